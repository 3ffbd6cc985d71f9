"""The operator's side: answering join requests and running the room.

Two front ends share one set of commands (``Operator``):

* On a terminal, a prompt_toolkit console: the log scrolls above, the
  operator types below, and a bar at the bottom says whom ``y``/``n``
  answers, then who else is waiting (cut to the terminal's width).
* Otherwise (a pipe, a file, a script), plain lines from standard input, so
  scripts and tests can approve.

``y``/``n`` answer the oldest request, the one the last prompt named;
``/approve NAME`` and ``/deny NAME`` answer any request, in any order.

The commands act on a ``Desk``: the room of this process (``RoomDesk``), or,
under ``--processes``, every process at once (``chatroom.supervisor``), whose
requests wait in one queue, oldest first, whichever process holds them. The
console only ever sees what a desk reports (who waits, who is in), never a
connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import wcwidth

from chatroom.rules import Via
from protocol import messages
from protocol.lines import duration
from protocol.lines import stamp as clock
from protocol.names import name_key

if TYPE_CHECKING:
    from chatroom.room import Room
    from chatroom.rules import Member

log = logging.getLogger("chat")

YES = frozenset({"y", "yes"})
NO = frozenset({"n", "no"})

#: Each command: what it takes and what it does, for /help (short enough for 80 columns),
#: usage lines and completion.
COMMANDS: dict[str, tuple[str, str]] = {
    "/approve": ("NAME", "let NAME in"),
    "/deny": ("NAME", "turn NAME away"),
    "/pending": ("", "who is waiting, oldest first"),
    "/who": ("", "who is in the room, when they connected"),
    "/kick": ("NAME [why]", "remove someone from the room"),
    "/ban": ("NAME|IP", "remove and keep out (name and address)"),
    "/unban": ("NAME|IP", "lift a ban"),
    "/bans": ("", "list bans"),
    "/allow": ("NAME", "let NAME in without asking from now on"),
    "/registered": ("", "registered names"),
    "/unregister": ("NAME", "let a registered name go"),
    "/say": ("TEXT", "announce to the room"),
    "/quit": ("", "shut the server down"),
    "/help": ("", "this list"),
}
#: Commands that mean nothing without an argument; alone they get their usage.
NEEDS_ARGUMENT = frozenset({"/kick", "/ban", "/unban", "/allow", "/say", "/unregister"})


class Waiting(Protocol):
    """Someone waiting for the operator, as the console shows them (a ``Member`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def connected_at(self) -> float: ...  # wall clock
    @property
    def via(self) -> Via: ...  # the kind of connection, named in the join request unless TCP


@dataclass(frozen=True)
class Seen:
    """Someone in the room, as ``/who`` at the console lists them."""

    name: str
    address: str
    node: str | None  # the server they are on, in a room shared between servers
    connected_at: float  # wall clock
    joined: float  # wall clock; the room lists people in this order
    idle: float | None  # seconds; None: on another server, which keeps that to itself


class Desk(Protocol):
    """What the operator's commands act on; ``on_queue_change`` is called whenever the queue changes."""

    on_queue_change: Callable[[], None]
    approve: str  # --approve: ask, all or allowlist

    def waiting(self) -> Sequence[Waiting]:
        """The approval queue, oldest first."""

    def find_waiting(self, name: str) -> Waiting | None: ...
    def answer(self, who: Waiting, yes: bool) -> None:
        """Let in or turn away someone who is (or was, a moment ago) waiting."""

    def in_room(self) -> int: ...
    def names(self) -> list[str]:
        """Names in the room, for completion."""

    def who(self) -> list[Seen]: ...
    def kick(self, name: str, reason: str) -> str | None:
        """Remove someone from the room or the queue; why not, if not."""

    def ban(self, target: str) -> list[str]:
        """Ban a name or an address and remove whoever it covers; what was done."""

    def unban(self, target: str) -> list[str]: ...
    def bans(self) -> list[tuple[str, str]]: ...
    def allow(self, name: str) -> bool: ...
    def announce(self, text: str) -> None: ...
    def registered(self) -> list[str]:
        """Registered names."""

    def unregister(self, name: str) -> list[str]:
        """Let a registered name go; what was done."""


class RoomDesk:
    """The room of this process."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.approve = room.settings.approve
        self.on_queue_change: Callable[[], None] = lambda: None
        room.on_queue_change = lambda: self.on_queue_change()

    def waiting(self) -> list[Member]:
        return self.room.waiting()

    def find_waiting(self, name: str) -> Member | None:
        member = self.room.find(name)
        return member if member is not None and member in self.room.waiting() else None

    def answer(self, who: Waiting, yes: bool) -> None:
        member = cast("Member", who)  # what waiting() gave; the rules ignore it if it waits no more
        if yes:
            self.room.admit(member)
        else:
            self.room.refuse(member, messages.REFUSED, "refused by the operator")

    def in_room(self) -> int:
        return len(self.room.members())

    def names(self) -> list[str]:
        return [m.name for m in self.room.members()]

    def who(self) -> list[Seen]:
        here, node, now = self.room.members(), self.room.bus.node, time.monotonic()
        people = [
            Seen(m.name, m.address, node, m.connected_at, m.joined_at, now - m.last_active) for m in here
        ]
        elsewhere = self.room.bus.elsewhere()
        return people + [Seen(p.name, p.address, p.node, p.since, p.joined, None) for p in elsewhere]

    def kick(self, name: str, reason: str) -> str | None:
        if self.room.kick(name, reason) is not None:
            return None
        elsewhere = self.room.bus.find(name_key(name))
        return not_kicked(name, elsewhere.node if elsewhere is not None else None)

    def ban(self, target: str) -> list[str]:
        return self.room.ban(target)

    def unban(self, target: str) -> list[str]:
        return self.room.unban(target)

    def bans(self) -> list[tuple[str, str]]:
        return self.room.bans()

    def allow(self, name: str) -> bool:
        return self.room.allow(name)

    def announce(self, text: str) -> None:
        self.room.announce(text)

    def registered(self) -> list[str]:
        return self.room.registered()

    def unregister(self, name: str) -> list[str]:
        return self.room.unregister(name)


def not_kicked(name: str, node: str | None) -> str:
    """Why /kick NAME did nothing: NAME is on the server ``node``, or nowhere."""
    if node is not None:
        return f"{name} is on {node}: its operator can kick (a /ban here applies everywhere)"
    return f"no one called {name!r} to kick"


def ask_line(who: Waiting, waiting: int) -> str:
    more = f" ({waiting - 1} more waiting)" if waiting > 1 else ""
    via = f" via {who.via.value}" if who.via is not Via.TCP else ""
    return f"join request: {who.name} from {who.address}{via} - let in? [y/n]{more}"


#: The log record attribute that marks a join request line (see ``Reminder``).
ASKS = "asks_about"


class Operator:
    """What the operator's words do. Replies go to the log, like everything else."""

    def __init__(self, desk: Desk, shutdown: Callable[[], None]) -> None:
        self.desk = desk
        self.shutdown = shutdown
        self._asked: Waiting | None = None
        self._lock = threading.Lock()  # the queue changes from client threads
        #: Called after the queue changes (the interactive console redraws).
        self.on_change: Callable[[], None] = lambda: None
        desk.on_queue_change = self.queue_changed

    def queue_changed(self) -> None:
        """Prompt about the oldest request whenever it changes."""
        waiting = self.desk.waiting()
        head = waiting[0] if waiting else None
        with self._lock:
            changed = head != self._asked
            self._asked = head
        if changed and head is not None:
            self._ask(head, len(waiting))
        self.on_change()

    def ask_again(self) -> None:
        """Print the request that ``y``/``n`` answers once more, if one is still open."""
        waiting = self.desk.waiting()
        with self._lock:
            head = self._asked
        if head is not None and waiting and waiting[0] == head:
            self._ask(head, len(waiting))

    @staticmethod
    def _ask(who: Waiting, waiting: int) -> None:
        log.info("%s", ask_line(who, waiting), extra={ASKS: who.name})

    def execute(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        word, _, rest = text.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in NEEDS_ARGUMENT and not rest:
            log.info("usage: %s %s", word, COMMANDS[word][0])
            return
        if word in YES or word in NO:
            self._answer(word in YES, rest)
        elif word in ("/approve", "/deny"):
            self._answer(word == "/approve", rest)
        elif word == "/pending":
            self._pending()
        elif word in ("/who", "/names"):
            self._who()
        elif word == "/kick":
            name, _, reason = rest.partition(" ")
            self._report([], self.desk.kick(name, reason.strip()))
        elif word == "/ban":
            self._report(self.desk.ban(rest), f"nothing new to ban for {rest!r}")
        elif word == "/unban":
            self._report(self.desk.unban(rest), f"{rest!r} is not banned")
        elif word == "/bans":
            bans = self.desk.bans()
            log.info("bans (%d): %s", len(bans), ", ".join(f"{k} {v}" for k, v in bans) or "none")
        elif word == "/allow":
            added = self.desk.allow(rest)
            log.info("%s %s the allow-list", rest, "added to" if added else "is already on")
        elif word == "/registered":
            names = self.desk.registered()
            log.info("registered names (%d): %s", len(names), ", ".join(names) or "none")
        elif word == "/unregister":
            self._report(self.desk.unregister(rest), f"{rest!r} is not registered")
        elif word == "/say":
            self.desk.announce(rest)
        elif word in ("/quit", "/shutdown"):
            self.shutdown()
        elif word in ("/help", "help", "?"):
            log.info("operator commands:")
            for line in help_lines():
                log.info("  %s", line)
        else:
            log.info("unknown operator command %r; /help lists them", word)

    @staticmethod
    def _report(done: list[str], nothing: str | None) -> None:
        for line in done or ([nothing] if nothing else []):
            log.info("%s", line)

    def _answer(self, yes: bool, name: str) -> None:
        if name:
            who = self.desk.find_waiting(name)
            if who is None:
                log.info("no one called %r is waiting", name)
                return
        else:
            waiting = self.desk.waiting()
            if not waiting:
                log.info("no one is waiting")
                return
            who = waiting[0]
        self.desk.answer(who, yes)

    def _pending(self) -> None:
        waiting = self.desk.waiting()
        if not waiting:
            log.info("waiting (0): nobody")
            return
        log.info("waiting (%d):", len(waiting))
        for line in pending_lines(waiting):
            log.info("  %s", line)

    def _who(self) -> None:
        people = self.desk.who()
        log.info("in the room (%d):", len(people))
        for line in who_lines(people):
            log.info("  %s", line)

    # --- front ends ------------------------------------------------------------------

    def run_lines(self, lines: Iterable[str]) -> None:
        """Plain console: one command per line, until the input ends."""
        for line in lines:
            self.execute(line)
        if self.desk.approve != "all":
            log.info("console input closed: nobody can answer join requests (see --approve)")


# --- what the console shows (no I/O: lists in, lines out) ------------------------------


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as columns two cells apart, each as wide as its widest entry (in terminal cells)."""
    if not rows:
        return []
    widths = [max(wcwidth.width(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*map(wcwidth.ljust, row[:-1], widths), row[-1]]) for row in rows]


def help_lines() -> list[str]:
    rows = [("y | n", "let in / turn away the oldest waiting")]
    rows += [(f"{command} {takes}".strip(), does) for command, (takes, does) in COMMANDS.items()]
    return table(rows)


def who_lines(people: Sequence[Seen]) -> list[str]:
    """People with their idle time (on this server), then people on other servers, by server.

    The time is when their connection came in, and says so: the room's
    ``/whois`` gives when they were let in, as "in the room since".
    """
    rows = []
    here = [p for p in people if p.idle is not None]
    there = sorted((p for p in people if p.idle is None), key=lambda p: (p.node or "", p.joined))
    for p in sorted(here, key=lambda p: (p.node or "", p.joined)):
        where = [f"on {p.node}"] if p.node is not None else []
        rows.append(
            [p.name, p.address, *where, f"connected {clock(p.connected_at)}, idle {duration(p.idle or 0)}"]
        )
    rows += [[p.name, p.address, f"on {p.node}", f"connected {clock(p.connected_at)}"] for p in there]
    return table(rows)


def pending_lines(waiting: Sequence[Waiting]) -> list[str]:
    """One waiting person a line, oldest (the one ``y``/``n`` answers) first."""
    now = time.time()
    return table([[m.name, m.address, f"waiting {duration(now - m.connected_at)}"] for m in waiting])


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells, with ``…`` where it was cut."""
    if wcwidth.width(text) <= width:
        return text
    return wcwidth.clip(text, 0, max(0, width - 1)) + "…"


def status_bar(waiting: Sequence[Waiting], in_room: int, width: int) -> str:
    """The bar under the prompt: whom ``y``/``n`` answers first, the rest cut to fit.

    The name an answer goes to is what the operator acts on, so it comes first
    and never falls off the edge of a narrow terminal; who else waits, from
    where and for how long is detail, and is cut where the width ends.
    """
    if not waiting:
        return fit(f" {in_room} in the room, nobody waiting   /help for commands", width)
    now = time.time()
    more = f" (+{len(waiting) - 1} more)" if len(waiting) > 1 else ""
    queue = ", ".join(f"{m.name} {m.address} {duration(now - m.connected_at)}" for m in waiting)
    return fit(f" y/n → {waiting[0].name}{more}   waiting: {queue}", width)


# --- the interactive console ---------------------------------------------------------

#: Seconds without a log line after which a burst is over.
QUIET = 1.0
#: Cells before each log line's text: the timestamp, ``2026-11-21 12:00:01 ``.
STAMP_CELLS = 20
#: Rows under the log: the prompt, the space kept for the completion menu, the bar.
MENU_ROWS = 4
BELOW_LOG = 1 + MENU_ROWS + 1


class Reminder(logging.Handler):
    """Prints the open join request again when a burst of log lines has buried it.

    The request line is what the operator answers, and in a burst (a crowd
    connecting, refusals, people giving up) it scrolls out of sight. Rule:
    once the log has been quiet for ``QUIET`` seconds, if the rows logged
    since the request was last printed fill the log area, it is printed
    again, as it was. One line of chatter after it, or a burst that leaves
    it on screen, reprints nothing; in a room that never goes quiet the bar
    still names whom ``y``/``n`` answers.
    """

    def __init__(self, operator: Operator, size: Callable[[], tuple[int, int]]) -> None:
        super().__init__()
        self.operator = operator
        self.size = size  # (rows, columns) of the terminal, now
        self._cond = threading.Condition()
        self._rows = 0  # log rows since the request was last printed
        self._last = 0.0  # when the last line was logged (monotonic)
        self._stopped = False

    def emit(self, record: logging.LogRecord) -> None:
        columns = self.size()[1]
        cells = STAMP_CELLS + wcwidth.width(record.getMessage())
        with self._cond:
            if hasattr(record, ASKS):
                self._rows = 0
            else:
                self._rows += max(1, -(-cells // max(1, columns)))
            self._last = time.monotonic()
            self._cond.notify()

    def _buried(self) -> bool:
        return self._rows >= self.size()[0] - BELOW_LOG

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and not self._buried():
                    self._cond.wait()
                if self._stopped:
                    return
                quiet = time.monotonic() - self._last
                if quiet < QUIET:
                    self._cond.wait(QUIET - quiet)
                    continue
                self._rows = 0  # asked again below, or nothing is open: either way, start over
            self.operator.ask_again()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()


def run_interactive(operator: Operator, stop: threading.Event) -> None:
    """prompt_toolkit console on the main thread; returns once ``stop`` is set."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import CompleteEvent, Completer, Completion
    from prompt_toolkit.document import Document
    from prompt_toolkit.patch_stdout import patch_stdout

    desk = operator.desk

    def names(people: Iterable[Waiting]) -> list[str]:
        return [p.name for p in people]

    #: What each command's argument can be, for Tab.
    arguments: dict[str, Callable[[], list[str]]] = {
        "/approve": lambda: names(desk.waiting()),
        "/deny": lambda: names(desk.waiting()),
        "/allow": lambda: names(desk.waiting()),
        "/kick": lambda: desk.names(),
        "/ban": lambda: desk.names() + names(desk.waiting()),
        "/unban": lambda: [value for _, value in desk.bans()],
        "/unregister": lambda: desk.registered(),
    }

    class OperatorCompleter(Completer):
        """Like ``Client.py``'s input line: a sole candidate goes in with a space after it."""

        def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
            words = document.text_before_cursor.split(" ")
            if len(words) == 1:
                candidates: Iterable[str] = COMMANDS
            elif len(words) == 2 and words[0].lower() in arguments:
                candidates = arguments[words[0].lower()]()
            else:
                return
            word = words[-1]
            for candidate in candidates:
                if candidate.casefold().startswith(word.casefold()):
                    yield Completion(candidate + " ", -len(word), display=candidate)

    session: PromptSession[str] = PromptSession(
        "operator> ",
        completer=OperatorCompleter(),
        complete_while_typing=False,  # a menu only on Tab, as in Client.py
        bottom_toolbar=lambda: status_bar(desk.waiting(), desk.in_room(), size()[1]),
        refresh_interval=1.0,
        reserve_space_for_menu=MENU_ROWS,  # the log above matters more than a tall menu
    )

    def size() -> tuple[int, int]:
        rows, columns = session.app.output.get_size()
        return rows, columns

    def redraw() -> None:
        app = session.app
        if app.is_running and app.loop is not None:
            app.loop.call_soon_threadsafe(app.invalidate)

    def interrupt() -> None:
        app = session.app
        if app.is_running and app.loop is not None:
            app.loop.call_soon_threadsafe(lambda: app.exit(exception=EOFError) if app.is_running else None)

    done = threading.Event()

    def stop_prompt() -> None:
        stop.wait()
        while not done.wait(0.1):  # until the loop below has seen it
            interrupt()

    reminder = Reminder(operator, size)
    operator.on_change = redraw
    threading.Thread(target=stop_prompt, name="console-stop", daemon=True).start()
    threading.Thread(target=reminder.run, name="console-reminder", daemon=True).start()
    log.addHandler(reminder)
    try:
        with patch_stdout(raw=True):
            while not stop.is_set():
                try:
                    text = session.prompt()
                except KeyboardInterrupt:
                    operator.shutdown()
                    break
                except EOFError:
                    if not stop.is_set():
                        log.info("type /quit to shut the server down")
                    continue
                operator.execute(text)
    finally:
        log.removeHandler(reminder)
        reminder.stop()
        done.set()
        operator.on_change = lambda: None
