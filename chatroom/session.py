"""One member's session, from greeting to goodbye, whatever kind of connection carries it.

A connection's thread runs ``Session.run``: greet, ask for a name until one
is usable, put the member in front of the operator, then read lines and hand
them to the room. The connection itself (``chatroom.listener`` for TCP) is a
``LineSource``: it reads lines, and shows the name prompt its own way.

This thread only ever *reads* (writes go through the fan-out, see
``chatroom.delivery``), so it may wait for as long as the member is idle:
idle people are never dropped. Only while a member is choosing a name or
waiting for the operator is there a deadline.

Flood control (``protocol.flood``) stops reading for a while, so excess lines
wait in the kernel's buffers: none is lost or reordered. Lines that arrive
together (a paste, a flood) are handed to the room together (``Room.speak``):
one lock and one post to the fan-out between them.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

from chatroom.config import Settings
from chatroom.room import Room
from chatroom.rules import Hold, Member, State
from chatroom.transport import Disconnected
from formatting.sanitize import clean
from protocol import commands, lines, messages
from protocol.flood import TokenBucket
from protocol.framing import Event, Overlong

log = logging.getLogger("chat")

#: Wrong passwords for a registered name before the connection is closed.
PASSWORD_TRIES = 3


class LineSource(Protocol):
    """What a session needs of its connection, besides the member's ``Connection`` for writing."""

    def read(self, deadline: float | None) -> list[Event]:
        """The lines (and overlong-line reports) of the next read, perhaps none.

        ``TimeoutError`` past the deadline; ``Disconnected`` or ``OSError`` when the connection ends.
        """

    def ask_name(self) -> None:
        """Show the name prompt."""

    def ask_password(self) -> None:
        """Show the password prompt (a registered name)."""


class Session:
    def __init__(self, room: Room, settings: Settings, member: Member, source: LineSource) -> None:
        self.room = room
        self.settings = settings
        self.member = member
        self.source = source
        self.said: list[commands.Say | commands.Action] = []  # not yet handed to the room (see _speak)
        self.events: list[Event] = []  # from the last read, taken in order from index _next
        self._next = 0
        self.counted = False
        self.why = "closed by client"
        self.lost = False  # the connection failed, as opposed to being closed

    def run(self, handshake: Callable[[], None] | None = None) -> None:
        """The whole session; returns when it is over, however it ended (``why`` says how)."""
        try:
            if handshake is not None:
                handshake()
            if not self.room.connect(self.member):
                return
            self.counted = True
            self.member.conn.tell((lines.notice(None, messages.GREETING()),))
            self._choose_name()
            self.room.request(self.member)
            self._converse()
        except Disconnected as gone:
            self.why, self.lost = str(gone), gone.lost
        except (ConnectionResetError, BrokenPipeError):
            self.why = "closed by client (reset)"
        except (OSError, ssl.SSLError) as error:
            self.lost = True
            self.why = f"connection lost: {error.__class__.__name__}"

    def finish(self, dropped: str | None) -> None:
        """Whatever happened, the member leaves; ``dropped``: why the fan-out cut them off, if it did."""
        lost = self.lost or dropped is not None
        notice = messages.DISCONNECTED if lost else messages.LEFT
        self.room.depart(self.member, notice, dropped or self.why)
        if self.counted:
            self.room.disconnect(self.member)

    # --- joining ------------------------------------------------------------------------

    def _choose_name(self) -> None:
        """Ask until the member gives a usable name (or time runs out, which ends the session)."""
        deadline = time.monotonic() + self.settings.name_timeout
        while True:
            self.source.ask_name()
            event = self._answer(deadline)
            if isinstance(event, Overlong):
                held: Hold | str = messages.NAME_TOO_LONG.format(limit=self.settings.max_name)
            else:
                held = self.room.claim(self.member, event.text)
            if isinstance(held, Hold):
                if held.registered:
                    self._prove(deadline)
                return
            self.member.conn.tell((lines.error(None, messages.NAME_REJECTED(reason=held)),))

    def _prove(self, deadline: float) -> None:
        """A registered name: its password, at most ``PASSWORD_TRIES`` times, or the session ends."""
        for tries in range(1, PASSWORD_TRIES + 1):
            self.source.ask_password()
            event = self._answer(deadline)
            password = "" if isinstance(event, Overlong) else event.text
            right, delay = self.room.check_password(self.member, password, tries)
            if right:
                return
            if tries < PASSWORD_TRIES:
                time.sleep(delay)  # answering wrong passwords slowly makes guessing slow
        name = self.member.name
        self.room.refuse(
            self.member, messages.PASSWORD_REFUSED, f"{PASSWORD_TRIES} wrong passwords", name=name
        )
        self.why = "wrong passwords"
        self.drain()

    def _answer(self, deadline: float) -> Event:
        """The next line while joining; past the deadline, the session ends."""
        try:
            return self._next_event(deadline)
        except TimeoutError:
            self.room.refuse(self.member, messages.NAME_TIMEOUT, "no name given in time")
            self.why = "no name given in time"
            self.drain()

    # --- in the room ------------------------------------------------------------------------

    def _converse(self) -> None:
        settings = self.settings
        approval_deadline = time.monotonic() + settings.approval_timeout
        bucket = TokenBucket(settings.flood_rate, settings.flood_burst, time.monotonic())
        throttled = False
        while True:
            if self._next == len(self.events):
                self._speak()  # what arrived together goes now, before waiting for more
                self.room.fanout.pressure.wait()  # readers who fell behind catch up first
            waiting = self.member.state is State.WAITING
            try:
                event = self._next_event(approval_deadline if waiting else None)
            except TimeoutError:
                self.room.refuse(self.member, messages.APPROVAL_TIMEOUT, "operator did not answer in time")
                continue
            # Flood control: past the burst, stop reading for a while. The
            # lines wait in the kernel's buffers, so none is lost or reordered.
            delay = bucket.delay(time.monotonic())
            if delay and not throttled:
                log.info("flood control: slowing down %s", self.member.who)
            throttled = bool(delay)
            if delay:
                self._speak()
                time.sleep(delay)
            state = self.member.state
            if state is State.WAITING:
                self.member.conn.tell((lines.notice(None, messages.NOT_YET()),))
            elif state is State.IN_ROOM and not self._obey(event):
                return

    def _next_event(self, deadline: float | None) -> Event:
        while self._next == len(self.events):
            self.events, self._next = self.source.read(deadline), 0
        self._next += 1
        return self.events[self._next - 1]

    def _obey(self, event: Event) -> bool:
        """Carry out one line; False when the member has left."""
        if isinstance(event, Overlong):
            self.member.conn.tell(
                (lines.error(lines.stamp(time.time()), messages.LINE_TOO_LONG(limit=event.limit)),)
            )
            return True
        command = commands.parse(clean(event.text))
        if isinstance(command, commands.Say | commands.Action):
            self.said.append(command)
            return True
        self._speak()  # whatever this command does comes after what was said before it
        if not self.room.obey(self.member, command):
            self.why = "left with /leave"
            return False
        return True

    def _speak(self) -> None:
        if self.said:
            self.room.speak(self.member, self.said)
            self.said = []

    def drain(self) -> NoReturn:
        """Discard input until the hang-up asked for closes the connection."""
        while True:
            self.source.read(None)
