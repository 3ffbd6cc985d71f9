"""The operator's side: answering join requests and running the room.

Answers arrive as text lines, from a terminal or a pipe alike, so scripts and
tests can approve. ``y``/``n`` answer the oldest request, the one the last
prompt named; ``/approve NAME`` and ``/deny NAME`` answer any request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from chatroom.room import Member, Room
from protocol import messages

log = logging.getLogger("chat")

YES = frozenset({"y", "yes"})
NO = frozenset({"n", "no"})

HELP = (
    "operator commands:",
    "  y | n                  let in / turn away the oldest waiting client",
    "  /approve NAME          let NAME in        /deny NAME     turn NAME away",
    "  /pending               who is waiting     /who           who is in the room",
    "  /kick NAME [reason]    remove someone     /say TEXT      announce to the room",
    "  /quit                  shut the server down",
)


def ask_line(member: Member) -> str:
    return f"join request: {member.name} from {member.address} - let in? [y/n]"


class Operator:
    """What the operator's words do. Output goes to the log, like everything else."""

    def __init__(self, room: Room, shutdown: Callable[[], None]) -> None:
        self.room = room
        self.shutdown = shutdown
        self._asked: Member | None = None
        self._lock = threading.Lock()  # the queue changes from client threads
        room.on_queue_change = self.queue_changed

    def queue_changed(self) -> None:
        """Prompt about the oldest request whenever it changes."""
        waiting = self.room.waiting()
        head = waiting[0] if waiting else None
        with self._lock:
            if head is self._asked:
                return
            self._asked = head
        if head is not None:
            more = f" ({len(waiting) - 1} more waiting)" if len(waiting) > 1 else ""
            log.info("%s%s", ask_line(head), more)

    def run(self, answers: Iterable[str]) -> None:
        for line in answers:
            self.execute(line.strip())
        if self.room.settings.approve == "ask":
            log.info("console input closed: nobody can answer join requests (see --approve)")

    def execute(self, text: str) -> None:
        if not text:
            return
        word, _, rest = text.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in YES or word in NO:
            self._answer(word in YES, rest)
        elif word == "/approve":
            self._answer(True, rest)
        elif word == "/deny":
            self._answer(False, rest)
        elif word == "/pending":
            waiting = self.room.waiting()
            log.info("waiting (%d): %s", len(waiting), ", ".join(m.who for m in waiting) or "nobody")
        elif word in ("/who", "/names"):
            self._who()
        elif word == "/kick":
            name, _, reason = rest.partition(" ")
            kicked = self.room.kick(name, reason.strip()) if name else None
            if kicked is None:
                log.info("no one called %r to kick", name)
        elif word == "/say":
            if rest:
                self.room.announce(rest)
        elif word in ("/quit", "/shutdown"):
            self.shutdown()
        elif word in ("/help", "help", "?"):
            for line in HELP:
                log.info("%s", line)
        else:
            log.info("unknown operator command %r; /help lists them", word)

    def _answer(self, yes: bool, name: str) -> None:
        if name:
            member = self.room.find(name)
            if member is None or member not in self.room.waiting():
                log.info("no one called %r is waiting", name)
                return
        else:
            waiting = self.room.waiting()
            if not waiting:
                log.info("no one is waiting")
                return
            member = waiting[0]
        if yes:
            self.room.admit(member)
        else:
            self.room.refuse(member, messages.REFUSED, "refused by the operator")

    def _who(self) -> None:
        now = time.monotonic()
        members = self.room.members()
        log.info("in the room (%d):", len(members))
        for m in members:
            since = time.strftime("%H:%M:%S", time.localtime(m.connected_at))
            idle = int(now - m.last_active)
            log.info("  %-24s %-22s since %s, idle %ds", m.name, m.address, since, idle)
