"""A process started by the supervisor (``--processes``): its end of the link to the one console.

The supervisor (``chatroom.supervisor``) starts each process with one end of
a socket pair (``--supervised FD``). Everything between them travels on it
as lines of JSON, each an array whose first item says what it is:

from the process
    ``["log", time, text]``        a line of its log (the supervisor writes the one log)
    ``["queue", [[key, name, address, connected, since, via], ...]]``
                                   who waits for the operator here, oldest first, on every change
    ``["ready", pid, node]``       it listens, and serves as this node
    ``["reply", id, answer]``      the answer to a request
to the process
    ``["ask", id, what, args]``    a request from the console (``REQUESTS``)

The log and the messages go through one queue and one writer (``RelayedLog``),
so the supervisor sees them in the order the process made them: a reply
after the log lines of what the request did. Like the log of a server on
its own, that writer never blocks the room: what the supervisor has not
read waits in a bounded backlog (``chatroom.logpipe``).

The process reads requests on a thread of the link's own and answers them
with its room, the way the console of a server on its own would. When the
link closes (the supervisor is gone, even killed), the process shuts down.
"""

from __future__ import annotations

import json
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple
from typing import Any

from chatroom.console import RoomDesk
from chatroom.logpipe import PipeLog
from chatroom.room import Room
from chatroom.serverlog import CHAT, DROPPED, ServerLog
from chatroom.supervisor import encode
from protocol.lines import unstamped_lines
from protocol.names import name_key

log = logging.getLogger("chat")

#: What a queued item of ``RelayedLog`` holds besides log lines: a message, already JSON.
MESSAGE = "message"


class RelayedLog(ServerLog):
    """The process's log and its messages to the supervisor, as JSON lines, in one order."""

    def __init__(self, fd: int, grace: float) -> None:
        super().__init__(PipeLog(fd), grace)

    def send(self, message: Sequence[object]) -> None:
        """A message for the supervisor, after every log line queued before it; never waits."""
        self.put(time.time(), (encode(message).decode().rstrip("\n"),), MESSAGE)

    def _render(self, queue: list[tuple[float, Sequence[str], str]], dropped: int) -> str:
        out = []
        for at, lines, kind in queue:
            if kind == MESSAGE:
                out += [line + "\n" for line in lines]
                continue
            for text in unstamped_lines(lines) if kind == CHAT else lines:
                out.append(encode(["log", at, text]).decode())
        if dropped:
            out.append(encode(["log", time.time(), DROPPED.format(count=dropped)]).decode())
        return "".join(out)


class SupervisorLink:
    """Answers the supervisor's requests with the room, and tells it who waits here."""

    def __init__(self, fd: int, relay: RelayedLog, gone: Callable[[], None]) -> None:
        """``gone`` is called once the supervisor is gone (the link closed)."""
        self._fd = fd
        self._relay = relay
        self._gone = gone
        self._room: Room | None = None
        self._desk: RoomDesk | None = None  # answers as this room's own console would
        self._lock = threading.Lock()  # the queue changes on client threads
        self._sent: list[list[object]] = []  # the queue as last sent
        self._since: dict[str, float] = {}  # when each one waiting here began to (by name key)
        threading.Thread(target=self._read, name="supervisor-link", daemon=True).start()

    def serve(self, room: Room) -> None:
        """From now on requests are answered with ``room`` (before, they wait)."""
        self._room = room
        self._desk = RoomDesk(room)
        self._desk.on_queue_change = self.queue_changed

    def ready(self, node: str) -> None:
        self._relay.send(["ready", os.getpid(), node])

    def queue_changed(self) -> None:
        room = self._need_room()
        with self._lock:
            waiting = room.waiting()
            now = time.time()
            self._since = {m.key: self._since.get(m.key, now) for m in waiting}
            queue = [
                [m.key, m.name, m.address, m.connected_at, self._since[m.key], m.via.name] for m in waiting
            ]
            if queue != self._sent:
                self._sent = queue
                self._relay.send(["queue", queue])

    # --- requests -------------------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        while True:
            select.select([self._fd], [], [])
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                log.info("the supervisor is gone: shutting down")
                self._gone()
                return
            *lines, buffer = (buffer + data).split(b"\n")
            for line in lines:
                self._request(json.loads(line))

    def _request(self, message: list[Any]) -> None:
        _ask, request_id, what, args = message
        try:  # the supervisor asks only once this process is ready, so the room exists
            answer = REQUESTS[what](self, *args)
        except Exception:
            log.exception("unexpected error answering the console's %r", what)
            answer = None
        self._relay.send(["reply", request_id, answer])

    def _need_room(self) -> Room:
        assert self._room is not None, "serve() first"
        return self._room

    def _need_desk(self) -> RoomDesk:
        assert self._desk is not None, "serve() first"
        return self._desk

    def answer(self, key: str, yes: bool) -> bool:
        """Let in or turn away the one waiting under ``key``; False if no one waits under it here."""
        member = next((m for m in self._need_room().waiting() if m.key == key), None)
        if member is None:
            return False
        self._need_desk().answer(member, yes)
        return True

    def who(self, elsewhere: bool) -> list[list[object]]:
        """People here, with idle time; with ``elsewhere``, those on other servers too, without."""
        seen = self._need_desk().who()
        return [list(astuple(person)) for person in seen if elsewhere or person.idle is not None]

    def kick(self, name: str, reason: str) -> list[object]:
        """``["kicked"]``, ``["elsewhere", node]`` or ``["nobody"]``."""
        room = self._need_room()
        if room.kick(name, reason) is not None:
            return ["kicked"]
        found = room.bus.find(name_key(name))
        return ["elsewhere", found.node] if found is not None else ["nobody"]

    def count(self) -> int:
        """Everyone in the room, here and elsewhere."""
        room = self._need_room()
        return len(room.members()) + len(room.bus.elsewhere())


def _on_desk(method: Callable[..., Any]) -> Callable[..., Any]:
    """A request answered by the process's own console desk, as a server on its own answers it."""
    return lambda link, *args: method(link._need_desk(), *args)


#: What the console can ask a process, by name; the arguments follow in the request.
REQUESTS: dict[str, Callable[..., Any]] = {
    "answer": SupervisorLink.answer,
    "who": SupervisorLink.who,
    "kick": SupervisorLink.kick,
    "count": SupervisorLink.count,
    "ban": _on_desk(RoomDesk.ban),
    "unban": _on_desk(RoomDesk.unban),
    "bans": _on_desk(RoomDesk.bans),
    "allow": _on_desk(RoomDesk.allow),
    "announce": _on_desk(RoomDesk.announce),
    "names": _on_desk(RoomDesk.names),
    "registered": _on_desk(RoomDesk.registered),
    "unregister": _on_desk(RoomDesk.unregister),
}
