"""The room's shell: one lock around the rules, and the effects carried out.

``chatroom.rules`` decides; this module asks the other servers what a step
needs to know (without the lock), takes the lock, steps the rules, and
applies the effects they return before letting go. Applying is cheap and
never waits: a line to a member or a broadcast is posted to the fan-out
(``chatroom.delivery``), an operation to the bus is queued, a log line goes
to a log that never blocks (``chatroom.logpipe``). Posting under the lock is
what gives every reader the same order of lines, and history the order the
room saw.

Everything the connections (``chatroom.session``), the operator
(``chatroom.console``) and the bus (``chatroom.bus.RoomEvents``) ask of the
room comes through here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from chatroom import passwords
from chatroom.access import Access, append_allow_file
from chatroom.bus import Bus, SearchUnavailable
from chatroom.config import Settings
from chatroom.delivery import Fanout
from chatroom.effects import (
    AllowListed,
    Attach,
    Broadcast,
    Detach,
    Effect,
    HangUp,
    Log,
    LogChat,
    QueueChanged,
    Remember,
    Tell,
    ToBus,
)
from chatroom.rules import Hold, Member, Now, RoomRules, State
from protocol import commands, lines, messages
from protocol.commands import Action, Say
from protocol.messages import Wording
from protocol.names import name_key

log = logging.getLogger("chat")

#: Lines a /search shows at the most.
SEARCH_RESULTS = 20


def now() -> Now:
    return Now(time.time(), time.monotonic())


class Room:
    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        fanout: Fanout,
        access: Access,
        log_chat: Callable[[Sequence[str]], None] | None = None,
        registered: dict[str, passwords.Registration] | None = None,
    ) -> None:
        """``log_chat``: where public lines go for the log (``ServerLog.chat``; else one record each)."""
        self.settings = settings
        self._log_chat = log_chat or self._log_lines
        self.bus = bus
        self.fanout = fanout
        self.lock = threading.Lock()
        self.rules = RoomRules(settings, access, registered)
        #: Called (without the lock) whenever the approval queue changes.
        self.on_queue_change: Callable[[], None] = lambda: None

    # --- stepping the rules -------------------------------------------------------------

    def _apply(self, effects: Sequence[Effect]) -> bool:
        """Carry out effects in order (callers hold the lock); True if the queue changed."""
        queue_changed = False
        for effect in effects:
            match effect:
                case Tell(conn, told):
                    conn.tell(told)
                case Broadcast(said):
                    self.fanout.broadcast(said)
                case Remember(said):
                    self.bus.remember(said)
                case ToBus(op):
                    self.bus.send(op)
                case Log(text):
                    log.info("%s", text)
                case LogChat(said):
                    self._log_chat(said)
                case Attach(conn):
                    conn.attach()
                case Detach(conn):
                    conn.detach()
                case HangUp(conn):
                    conn.hang_up()
                case AllowListed(name):
                    if self.settings.allow_file:
                        append_allow_file(self.settings.allow_file, name)
                case QueueChanged():
                    queue_changed = True
        return queue_changed

    @staticmethod
    def _log_lines(said: Sequence[str]) -> None:
        for line in said:
            log.info("%s", lines.unstamped(line))

    def _step(self, step: Callable[[Now], Sequence[Effect]]) -> bool:
        """Take the lock, step the rules, apply; the queue callback runs after. True if anything happened."""
        with self.lock:
            effects = step(now())
            queue_changed = self._apply(effects)
        if queue_changed:
            self.on_queue_change()
        return bool(effects)

    def _elsewhere(self) -> int:
        """How many are in the room on other servers (asked without the lock: a hint for counts)."""
        return len(self.bus.elsewhere())

    # --- reading ------------------------------------------------------------------------

    def members(self) -> list[Member]:
        with self.lock:
            return self.rules.members()

    def waiting(self) -> list[Member]:
        with self.lock:
            return self.rules.waiting()

    def find(self, name: str) -> Member | None:
        with self.lock:
            return self.rules.find(name)

    def count(self) -> int:
        """People in the room on this server."""
        with self.lock:
            return len(self.rules.members())

    # --- a connection's life --------------------------------------------------------------

    def connect(self, member: Member) -> bool:
        """Count a new connection; False if it was turned away (and told why)."""
        self._step(lambda _now: self.rules.connect(member))
        return member.state is not State.GONE

    def claim(self, member: Member, raw: str) -> Hold | str:
        """Give ``member`` a first name, or say why not (a registered one wants its password next)."""
        held = self._hold(member, raw)
        if isinstance(held, str):
            return held
        with self.lock:
            self.rules.named(member, held)
        return held

    def check_password(self, member: Member, password: str, tries: int) -> tuple[bool, float]:
        """Is it the password of the member's registered name? If not, how long to wait before the next try.

        Hashing takes tens of milliseconds: it happens outside the lock.
        """
        with self.lock:
            secret = self.rules.secret(member.key)
        right = secret is not None and passwords.check(password, secret)
        if right:
            self._step(lambda _now: self.rules.password_right(member))
            return True, 0.0
        delay = 0.0

        def wrong(at: Now) -> list[Effect]:
            nonlocal delay
            delay, effects = self.rules.password_wrong(member, at, tries)
            return effects

        self._step(wrong)
        return False, delay

    def _hold(self, member: Member, raw: str) -> Hold | str:
        """A name checked and held here, then on every server (a first name and /nick alike)."""
        with self.lock:
            held = self.rules.hold(member, raw)
        if isinstance(held, Hold) and held.claim and held.key != member.key and not self.bus.claim(held.key):
            with self.lock:
                self.rules.unhold(member, held)
            return messages.NAME_TAKEN.format(name=held.name)
        return held

    def request(self, member: Member) -> None:
        """A named member: in front of the operator, or straight in, or out."""
        with self.lock:
            at_once = self.rules.admits_at_once(member)
        elsewhere = self.bus.elsewhere() if at_once else []
        self._step(
            lambda now: self.rules.request(member, now, elsewhere, self.bus.recent(), self._missed(member))
        )

    def admit(self, member: Member, how: str = "approved") -> bool:
        elsewhere = self.bus.elsewhere()
        return self._step(
            lambda now: self.rules.admit(member, now, elsewhere, self.bus.recent(), how, self._missed(member))
        )

    def _missed(self, member: Member) -> list[str] | None:
        """What a registered name missed since it last left (callers hold the lock)."""
        since = self.rules.missed_since(member)
        return None if since is None else self.bus.since(since)

    def refuse(self, member: Member, wording: Wording, why: str, **fields: object) -> bool:
        """Turn away a member who is not in the room yet."""
        return self._step(lambda _now: self.rules.refuse(member, wording, why, **fields))

    def depart(self, member: Member, notice: Wording, why: str, farewell: str | None = None) -> bool:
        """Take a member out of the room or the queue; True if this call did it."""
        elsewhere = self._elsewhere() if member.state is State.IN_ROOM else 0
        return self._step(lambda now: self.rules.depart(member, now, elsewhere, notice, why, farewell))

    def disconnect(self, member: Member) -> None:
        """The connection is over: free its name and its place in the counts."""
        self._step(lambda _now: self.rules.disconnect(member))

    # --- what members say ----------------------------------------------------------------------

    def speak(self, member: Member, said: Sequence[Say | Action]) -> None:
        """Lines from ``member`` for the whole room, in one go (a paste arrives together).

        Rendered before the lock is taken: only the member's own thread renames it.
        """
        at = now()
        stamp, render = at.stamp, RoomRules.render
        rendered = [render(member.name, line, stamp) for line in said]
        with self.lock:
            self._apply(self.rules.speak(member, rendered, at))

    def obey(self, member: Member, command: commands.Command) -> bool:
        """Carry out a command other than talking; False once the member has left."""
        match command:
            case commands.Private(recipient, text, color):
                self.private(member, recipient, text, color)
            case commands.Reply(text, color) if member.reply_to:
                self.private(member, member.reply_to, text, color)
            case commands.Rename(name):
                self.rename(member, name)
            case commands.Who():
                elsewhere = self.bus.elsewhere()
                self._step(lambda now: self.rules.who(member, now, elsewhere))
            case commands.Whois(name):
                found = None if self._is_here(name) else self.bus.find(name_key(name))
                self._step(lambda now: self.rules.whois(member, name, now, found))
            case commands.Leave():
                count = self._elsewhere()
                self._step(lambda now: self.rules.leave(member, now, count))
                return False
            case commands.Away(reason):
                self._step(lambda now: self.rules.away(member, reason, now))
            case commands.Back():
                self._step(lambda now: self.rules.back(member, now))
            case commands.Search(words):
                self.search(member, words)
            case commands.Register(password):
                self._register(member, password, self.rules.register_refusal, self.rules.register)
            case commands.ChangePassword(password):
                self._register(member, password, self.rules.password_refusal, self.rules.change_password)
            case commands.Unregister():
                self._step(lambda now: self.rules.unregister(member, now))
            case _:
                self._step(lambda now: self.rules.obey(member, command, now))
        return True

    def _register(
        self,
        member: Member,
        password: str,
        refusal: Callable[[Member, str], str | None],
        done: Callable[[Member, str, Now], list[Effect]],
    ) -> None:
        """/register and /password: checked, then hashed outside the lock, then stored."""
        with self.lock:
            reason = refusal(member, password)
        if reason is not None:
            self._step(lambda now: self.rules.rejected_registration(member, now, reason))
            return
        secret = passwords.make_secret(password)
        self._step(lambda now: done(member, secret, now))

    def search(self, member: Member, words: str) -> None:
        """/search: asked of the store (or Redis) outside the lock."""
        try:
            found: list[str] | str = self.bus.search(words.split(), SEARCH_RESULTS)
        except SearchUnavailable as error:
            found = str(error)
        self._step(lambda now: self.rules.searched(member, words, found, now))

    def _is_here(self, name: str) -> bool:
        with self.lock:
            return self.rules.is_here(name)

    def private(self, member: Member, recipient: str, text: str, color: str | None = None) -> None:
        key = name_key(recipient)
        found = None if key == member.key or self._is_here(recipient) else self.bus.find(key)
        self._step(lambda now: self.rules.private(member, recipient, text, color, now, found))

    def rename(self, member: Member, raw: str) -> None:
        """/nick: a new name, checked and claimed like a first one, and announced."""
        with self.lock:
            reason = self.rules.rename_refusal(member, raw)
        held = self._hold(member, raw) if reason is None else reason
        if isinstance(held, str):
            self._step(lambda now: self.rules.rejected_rename(member, now, held))
            return
        elsewhere = self._elsewhere()
        self._step(lambda now: self.rules.renamed(member, held, now, elsewhere))

    # --- the operator -------------------------------------------------------------------------------

    def kick(self, name: str, reason: str = "") -> Member | None:
        """The operator removes someone from the room or the queue, by name."""
        member = self.find(name)
        return member if member is not None and self.remove(member, reason) else None

    def remove(self, member: Member, reason: str = "") -> bool:
        elsewhere = self._elsewhere() if member.state is State.IN_ROOM else 0
        return self._step(lambda now: self.rules.remove(member, now, elsewhere, reason))

    def ban(self, target: str) -> list[str]:
        """Ban a name or an address and remove whoever it covers; returns what was done."""
        elsewhere = self._elsewhere()
        return self._step_reporting(lambda now: self.rules.ban(target, now, elsewhere))

    def unban(self, target: str) -> list[str]:
        return self._step_reporting(lambda _now: self.rules.unban(target))

    def _step_reporting(self, step: Callable[[Now], tuple[list[str], list[Effect]]]) -> list[str]:
        """``_step`` for steps that also say what they did (for the operator)."""
        done: list[str] = []

        def run(at: Now) -> list[Effect]:
            said, effects = step(at)
            done.extend(said)
            return effects

        self._step(run)
        return done

    def bans(self) -> list[tuple[str, str]]:
        with self.lock:
            return self.rules.access.bans()

    def allow(self, name: str) -> bool:
        """Put a name on the allow-list; someone waiting under it is let in."""
        with self.lock:
            added, effects, waiting = self.rules.allow(name)
            self._apply(effects)
        if waiting is not None:
            self.admit(waiting, "approved (allow-list)")
        return added

    def unregister(self, name: str) -> list[str]:
        """The operator lets a registered name go."""
        return self._step_reporting(lambda _now: self.rules.unregister_name(name))

    def registered(self) -> list[str]:
        with self.lock:
            return sorted(registration.name for registration in self.rules.registered.values())

    def announce(self, text: str) -> None:
        self._step(lambda now: self.rules.announce(text, now))

    # --- what other servers say (chatroom.bus.RoomEvents) --------------------------------------------

    def lines_arrived(self, rendered: list[str], new: list[str]) -> None:
        with self.lock:
            self._apply(self.rules.lines_arrived(rendered, new))

    def private_arrived(self, key: str, sender: str, line: str) -> None:
        self._step(lambda _now: self.rules.private_arrived(key, sender, line))

    def ban_arrived(self, kind: str, value: str, banned: bool, node: str) -> None:
        elsewhere = self._elsewhere()
        self._step(lambda now: self.rules.ban_arrived(kind, value, banned, node, now, elsewhere))

    def registration_arrived(self, key: str, registration: passwords.Registration | None) -> None:
        self._step(lambda _now: self.rules.registration_arrived(key, registration))

    def bans_stored(self, stored: list[tuple[str, str]]) -> None:
        elsewhere = self._elsewhere()
        self._step(lambda now: self.rules.bans_stored(stored, now, elsewhere))

    def names_lost(self, keys: list[str]) -> None:
        if keys:
            elsewhere = self._elsewhere()
            self._step(lambda now: self.rules.names_lost(keys, now, elsewhere))

    def bus_lost(self) -> None:
        """The bus lost the other servers; what it had not sent is delivered here."""
        self._step(lambda now: self.rules.separated(self.bus.part(), now))

    def bus_back(self, elsewhere: int, announce: bool = True) -> None:
        """The bus is in touch with the other servers (again)."""

        def rejoin(at: Now) -> list[Effect]:
            self.bus.rejoin()
            return self.rules.reunited(elsewhere, at, announce)

        self._step(rejoin)

    # --- shutting down ------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Tell everyone the server is going away and hang up; returns the farewells for other servers."""
        elsewhere = self._elsewhere()
        return self._step_reporting(lambda now: self.rules.close(now, elsewhere))
