#!/usr/bin/env python3
"""Client.py - talk in the chat room from a terminal.

A receiving thread prints what the server sends while you type: on a
terminal the input line is prompt_toolkit's, and incoming lines are printed
above it (``patch_stdout``), so they never break what you are typing. When
standard input is not a terminal, lines are read plainly, so the client can
be scripted: ``printf 'hi\\n' | python Client.py --name bot``.

The wire protocol is plain text (see the README); this program adds the
input line with completion and history, name prompts, colours, highlighted
mentions with a bell, emoji shortcodes, wrapping, and clean exits on top of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, DynamicCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, History, InMemoryHistory

from chatroom.config import DEFAULT_PORT
from chatroom.sockets import keepalive_options, set_options
from chatroom.tls import TlsLayer, client_context
from formatting import layout, lines, shortcodes
from formatting.colors import COLORS
from formatting.sanitize import strip_sgr
from protocol import messages
from protocol.framing import Line, LineReader, encode_line
from protocol.names import name_key

KEEPALIVE_IDLE = 60  # seconds of silence before TCP asks whether the server is still there
EXIT_LEFT = 0
EXIT_LOST = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130

#: Server lines can be long (a /who of a big room); this only bounds memory.
MAX_SERVER_LINE = 1 << 20
#: How long to wait for the server's goodbye after asking to leave.
LEAVE_WAIT = 3.0

EXIT_STATUS = (
    (EXIT_LEFT, "you left: /leave, /quit, Ctrl-D, or the end of input"),
    (EXIT_LOST, "could not connect, the connection was lost, or the server shut down"),
    (EXIT_USAGE, "bad options"),
    (
        EXIT_REFUSED,
        "not let in (refused, timed out, room full, banned, or the name was not accepted "
        "when scripted), or removed by the operator",
    ),
    (EXIT_INTERRUPTED, "interrupted with Ctrl-C"),
)
#: What the client adds to the server's /help, and to --help.
KEYS = (
    ("Tab", "complete a name, command, colour or :emoji_name:; again for the next one"),
    ("Up, Down", "the lines you typed before; Ctrl-R searches them"),
    ("Ctrl-D", "leave the room, like /leave (on an empty line)"),
    ("Ctrl-C", "leave at once: the connection just closes, without /leave"),
)
KEY_WIDTH = 12
EXTRAS = (
    "/ignore NAME hides NAME's messages in this client (/unignore NAME; /ignore alone lists them).",
    ":thumbs_up: and other emoji names are sent as the emoji itself.",
    "Your name in someone else's message is highlighted and rings the bell, as does a private message.",
)

#: Completed after Tab at the start of a line, besides names.
COMMANDS = (
    "/private",
    "/msg",
    "/reply",
    "/color",
    "/me",
    "/nick",
    "/who",
    "/whois",
    "/ignore",
    "/unignore",
    "/help",
    "/leave",
    "/quit",
    "DM",
)
#: Commands whose next word is a name.
TO_SOMEONE = frozenset({"/private", "/msg", "dm", "/whois", "/ignore", "/unignore"})
#: Commands this client carries out itself; the server never sees them.
LOCAL = frozenset({"/ignore", "/unignore"})
#: What comes after a name at the start of a line, as irssi and weechat do.
ADDRESS_SUFFIX = ": "

# Whole lines whose text after a label is the message: wrapped rows line up after the label.
LABELLED = (
    messages.MESSAGE,
    messages.ACTION,
    messages.PRIVATE_FROM,
    messages.PRIVATE_TO,
    messages.NOTICE_TEXT,
)


class NamePrompt:
    """The server is waiting for a name (its prompt has no newline)."""


class Link:
    """The connection: ``send_line`` from any thread, ``receive`` on one."""

    def __init__(self, sock: socket.socket, tls: TlsLayer | None) -> None:
        self.sock = sock
        self.tls = tls
        self._send_lock = threading.Lock()  # input and receiving threads both send

    @classmethod
    def open(cls, host: str, port: int, use_tls: bool, cafile: str | None) -> Link:
        sock = socket.create_connection((host, port), timeout=10)
        # A quiet room is fine forever; a server that vanished is noticed within two minutes.
        set_options(sock, [(socket.IPPROTO_TCP, "TCP_NODELAY", 1), *keepalive_options(KEEPALIVE_IDLE)])
        tls = TlsLayer(client_context(cafile), server_hostname=host) if use_tls else None
        if tls is not None:
            done = tls.handshake(b"")
            while True:
                sock.sendall(tls.encrypt(b""))
                if done:
                    break
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection during the TLS handshake")
                done = tls.handshake(data)
        sock.settimeout(None)
        return cls(sock, tls)

    def send_line(self, text: str) -> None:
        self.send(encode_line(text))

    def send(self, data: bytes) -> None:
        with self._send_lock:
            if self.tls is not None:
                data = self.tls.encrypt(data)
            self.sock.sendall(data)

    def receive(self) -> Iterator[str | NamePrompt]:
        """Lines as they arrive, and a ``NamePrompt`` whenever one is pending."""
        reader = LineReader(MAX_SERVER_LINE)
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self.tls is not None:
                data, goodbye = self.tls.decrypt(data)
                if self.tls.has_output:
                    self.send(b"")
                if goodbye and not data:
                    return
            for event in reader.feed(data):
                if isinstance(event, Line):
                    yield event.text
            if reader.partial() == messages.NAME_PROMPT:
                reader.feed(b"\n")  # consume it, so it is reported once
                yield NamePrompt()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass
class Outcome:
    code: int
    why: str


@dataclass(frozen=True)
class Incoming:
    """A line to show, and what the client noticed about it."""

    text: str
    prefix: int = 0  # characters before the message itself, where wrapped rows line up
    mention: str | None = None  # your name, when someone else's message says it
    alert: bool = False  # worth a bell: a mention or a private message, as it happens


def label_length(line: str) -> int:
    """How many characters of ``line`` come before its text: ``[12:00:00] <alice> ``."""
    for wording in LABELLED:
        if fields := wording.match(line):
            return len(strip_sgr(line)) - len(fields["text"])
    return 0


class Chat:
    """What the client knows about the conversation; fed by the receiving thread."""

    def __init__(
        self, link: Link, name: str | None, interactive: bool, show: Callable[[Incoming], None]
    ) -> None:
        self.link = link
        self.show = show
        self.interactive = interactive
        self.state = "connecting"  # -> naming -> waiting -> in room
        self.name = name
        self._auto_name = name
        self._name_tries = 0
        self.names: set[str] = set()
        self._last_heard: dict[str, int] = {}  # name -> when it last spoke (a count of lines)
        self._heard = 0
        self._replaying = False  # between the history markers: old news, no bells
        self.ignored: dict[str, str] = {}  # name key -> name: /ignore, in this client only
        self._held: list[str] = []  # typed before we were let in
        self._lock = threading.Lock()  # state is shared by the input and receiving threads
        self.outcome: Outcome | None = None
        self.done = threading.Event()  # we know how this ends
        self.closed = threading.Event()  # the server side is closed
        self.sent_leave = threading.Event()  # so it is worth waiting for the goodbye
        self.on_change: Callable[[], None] = lambda: None

    # --- the receiving thread -----------------------------------------------------

    def receive(self) -> None:
        for item in self.link.receive():
            if isinstance(item, NamePrompt):
                self._prompted()
            else:
                self._line(item)
        self.finish(EXIT_LOST, "the server closed the connection")
        self.closed.set()

    def _prompted(self) -> None:
        with self._lock:
            self._name_tries += 1
            if self._auto_name is not None:
                name, self._auto_name = self._auto_name, None
                self.link.send_line(name)
                return
            if not self.interactive and self._name_tries > 1:
                give_up = True
            else:
                give_up = False
                self.state = "naming"
        if give_up:
            self.finish(EXIT_REFUSED, "the name was not accepted")
        self.on_change()

    def _line(self, line: str) -> None:
        speaker = self._speaker(line)
        if not self._ignores(speaker):
            self.show(self._noticed(line, speaker))
        self._track_names(line)
        if fields := messages.WAITING.match(line):
            self._set(state="waiting", name=fields["name"])
        elif fields := messages.WELCOME.match(line):
            self._admitted(fields)
        elif messages.RENAMED.matches(line):
            self.on_change()  # the prompt shows the new name
        elif messages.HISTORY_START.matches(line):
            self._replaying = True
        elif messages.HISTORY_END.matches(line):
            self._replaying = False
        elif messages.HELP_END.matches(line) and self.interactive:
            self._show_client_help(line)
        elif messages.GOODBYE.matches(line):
            self.finish(EXIT_LEFT, "you left the room")
        elif messages.KICKED.matches(line):
            self.finish(EXIT_REFUSED, "removed by the operator")
        elif messages.SHUTTING_DOWN.matches(line):
            self.finish(EXIT_LOST, "the server shut down")
        elif messages.NEEDS_TLS.matches(line):
            self.finish(EXIT_LOST, "the server speaks TLS: add --tls")
        elif any(refusal.matches(line) for refusal in messages.REFUSALS):
            self.finish(EXIT_REFUSED, "not let in")

    @staticmethod
    def _speaker(line: str) -> dict[str, str] | None:
        """The name and text of a line someone said (to the room, as an action, or to us)."""
        return (
            messages.MESSAGE.match(line) or messages.ACTION.match(line) or messages.PRIVATE_FROM.match(line)
        )

    def _ignores(self, speaker: dict[str, str] | None) -> bool:
        with self._lock:
            return speaker is not None and name_key(speaker["name"]) in self.ignored

    def _noticed(self, line: str, speaker: dict[str, str] | None) -> Incoming:
        """Who spoke, and whether it was to us: for completion order, highlight and bell."""
        if speaker is None:
            return Incoming(line, label_length(line))
        with self._lock:
            self._heard += 1
            self._last_heard[speaker["name"]] = self._heard
            me = self.name
        private = messages.PRIVATE_FROM.matches(line)
        mentioned = (
            me is not None
            and speaker["name"].casefold() != me.casefold()
            and layout.mentions(speaker["text"], me)
        )
        return Incoming(
            line,
            label_length(line),
            mention=me if mentioned else None,
            alert=(mentioned or private) and not self._replaying,
        )

    def _track_names(self, line: str) -> None:
        """Keep ``names`` up to date from join and leave notices and /who replies."""
        with self._lock:
            if fields := messages.JOINED.match(line):
                self.names.add(fields["name"])
            elif (
                (fields := messages.LEFT.match(line))
                or (fields := messages.DISCONNECTED.match(line))
                or (fields := messages.KICKED_NOTICE.match(line))
            ):
                self.names.discard(fields["name"])
            elif fields := messages.RENAMED.match(line):
                self.names.discard(fields["old"])
                self.names.add(fields["new"])
                if fields["old"] == self.name and not self._replaying:
                    self.name = fields["new"]  # /nick: mentions and the prompt follow
                if self.ignored.pop(name_key(fields["old"]), None) is not None:
                    self.ignored[name_key(fields["new"])] = fields["new"]  # a new name hides no one
            elif fields := messages.WHO.match(line):
                self.names = set(fields["names"].split(", "))
            elif fields := messages.WHO_MORE.match(line):
                self.names.update(fields["names"].split(", "))

    def others(self) -> list[str]:
        """Everyone else in the room, the most recent speakers first, as irssi completes."""
        with self._lock:
            names = [name for name in self.names if name != self.name]
            heard = dict(self._last_heard)
        return sorted(names, key=lambda name: (-heard.get(name, 0), name.casefold()))

    def _show_client_help(self, help_end: str) -> None:
        """The keys of this program, below the server's own /help and in its layout."""
        stamp = messages.STAMP.match(strip_sgr(help_end))
        rows = [("Keys in Client.py:", "")]
        rows += [(f"  {key:<{KEY_WIDTH}}", meaning) for key, meaning in KEYS]
        rows += [("", extra) for extra in EXTRAS]
        for label, text in rows:
            line = lines.notice(stamp and stamp.group(1), f"{messages.NOTICE} {label}{text}")
            self.show(Incoming(line, len(strip_sgr(line)) - len(text)))

    def _admitted(self, fields: dict[str, str]) -> None:
        names = fields["names"].split(" and ")[0]
        with self._lock:
            self.state, self.name = "in room", fields["name"]
            self.names = set(names.split(", "))
            held, self._held = self._held, []
        for text in held:
            self._send(text)
        self.on_change()

    def _set(self, **changes: object) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)
        self.on_change()

    def finish(self, code: int, why: str) -> None:
        """The first reason to stop wins; later ones (the close after a goodbye) don't."""
        with self._lock:
            if self.outcome is None:
                self.outcome = Outcome(code, why)
        self.done.set()
        self.on_change()

    # --- the input thread -----------------------------------------------------------

    def submit(self, text: str) -> None:
        """What the user typed: a name when asked for one, else a line for the room."""
        with self._lock:
            state = self.state
            if state == "naming":
                self.state = "connecting"
            else:
                text = shortcodes.to_emoji(text)
                if state != "in room":
                    self._held.append(text)
                    return
        if state == "naming":
            self.link.send_line(text)
            self.on_change()
        else:
            self._send(text)

    def leave(self) -> None:
        """Ask to leave; held lines (typed while waiting) go first if we get in."""
        with self._lock:
            if self.state != "in room":
                self._held.append("/leave")
                return
        self._send("/leave")

    def _send(self, text: str) -> None:
        word, _, rest = text.strip().partition(" ")
        if word.lower() in LOCAL:
            self._ignore(word.lower() == "/ignore", rest.strip())
            return
        try:
            self.link.send_line(text)
        except OSError:
            self.finish(EXIT_LOST, "the connection was lost")
            return
        if text == "/leave":
            self.sent_leave.set()

    def _ignore(self, on: bool, name: str) -> None:
        """/ignore and /unignore: which speakers this client stops (or starts again) showing."""
        key = name_key(name)
        with self._lock:
            if not name:
                notice = messages.IGNORED_LIST(
                    count=len(self.ignored), names=", ".join(self.ignored.values()) or "no one"
                )
            elif on and self.name is not None and key == name_key(self.name):
                notice = messages.IGNORE_SELF()
            elif on:
                self.ignored[key] = name
                notice = messages.IGNORING(name=name)
            elif self.ignored.pop(key, None) is not None:
                notice = messages.UNIGNORED(name=name)
            else:
                notice = messages.NOT_IGNORED(name=name)
        self.show(Incoming(lines.notice(time.strftime("%H:%M:%S"), notice)))

    def prompt_text(self) -> str:
        if self.state == "naming":
            return messages.NAME_PROMPT
        if self.state == "in room":
            return f"{self.name}> "
        if self.state == "waiting":
            return "(waiting for the operator) "
        return "> "


# --- terminals ----------------------------------------------------------------------


class Printer:
    """Puts incoming lines on standard output, fitted to what the reader can see."""

    def __init__(
        self,
        color: bool,
        bell: bool = False,
        emoji_names: bool = False,
        columns: Callable[[], int] | None = None,
    ) -> None:
        self.color = color
        self.bell = bell
        self.emoji_names = emoji_names
        self.columns = columns  # the terminal's width, when rows should be wrapped to it
        self._lock = threading.Lock()  # one line at a time, from the receiving thread and others

    def show(self, incoming: Incoming) -> None:
        text = incoming.text
        if self.emoji_names:
            text = shortcodes.to_shortcodes(text)
        if incoming.mention is not None:
            text = layout.highlight(text, incoming.mention, incoming.prefix)
        if not self.color:
            text = strip_sgr(text)
        rows = [text] if self.columns is None else layout.hanging_wrap(text, self.columns(), incoming.prefix)
        bell = "\a" if self.bell and incoming.alert else ""
        with self._lock:
            sys.stdout.write(bell + "\n".join(rows) + "\n")
            sys.stdout.flush()


class ChatCompleter(Completer):
    """Tab completion as in irssi: commands, names, colours and emoji names.

    A name at the start of a line gets ``: `` after it (addressing someone);
    after /private, /msg and DM, and in mid-line, a space.
    """

    def __init__(self, others: Callable[[], Iterable[str]], emoji_glyphs: bool = True) -> None:
        self.others = others
        self.emoji_glyphs = emoji_glyphs  # show the emoji beside its name in the menu

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        words = before.split()
        word = "" if not before or before[-1].isspace() else words.pop()
        previous = [w.casefold() for w in words]
        if word.startswith(":") and len(word) > 2:
            for code, glyph in shortcodes.starting_with(word):
                yield Completion(code, -len(word), display_meta=glyph if self.emoji_glyphs else None)
        elif not previous and word.startswith("/"):
            yield from _starting_with(word, COMMANDS, " ")
        elif not previous and word:
            yield from _starting_with(word, self.others(), ADDRESS_SUFFIX)
            yield from _starting_with(word, COMMANDS, " ")
        elif previous == ["/color"] or (
            len(previous) == 3 and previous[0] in TO_SOMEONE and previous[2] == "/color"
        ):
            yield from _starting_with(word, COLORS, " ")
        elif len(previous) == 1 and previous[0] in TO_SOMEONE:
            yield from _starting_with(word, self.others(), " ")
        elif len(previous) == 2 and previous[0] in TO_SOMEONE and word.startswith("/"):
            yield from _starting_with(word, ["/color"], " ")
        elif word:
            yield from _starting_with(word, self.others(), " ")


def _starting_with(word: str, candidates: Iterable[str], suffix: str) -> Iterator[Completion]:
    key = word.casefold()
    for candidate in candidates:
        if candidate.casefold().startswith(key):
            yield Completion(candidate + suffix, -len(word), display=candidate)


def run_plain(chat: Chat) -> None:
    """Standard input is a pipe or file: one line, one message; its end leaves."""

    def feed() -> None:
        for raw in sys.stdin:
            chat.submit(raw.rstrip("\r\n"))
        chat.leave()

    threading.Thread(target=feed, name="stdin", daemon=True).start()
    chat.done.wait()


class Interrupted(Exception):
    """Ctrl-C at the input line."""


def run_terminal(chat: Chat, history: History, emoji_glyphs: bool) -> None:
    """A prompt_toolkit input line; incoming text is printed above it.

    What was typed is erased once sent, as in irssi: the room's echo of it is
    the record, so each line shows once.

    The terminal is never asked where the cursor is (a CPR, ``ESC [6n``): its
    answer comes back as input, and one that comes after the client has gone
    (late, as over ssh) would be typed into the shell. Without it
    prompt_toolkit does not know how many rows are below the cursor, so the
    input line grows downwards when Tab opens a menu; that is all it costs.
    """
    from prompt_toolkit import PromptSession
    from prompt_toolkit.output import create_output
    from prompt_toolkit.output.vt100 import Vt100_Output
    from prompt_toolkit.patch_stdout import patch_stdout

    output = create_output()
    if isinstance(output, Vt100_Output):
        output.enable_cpr = False

    completer = ChatCompleter(chat.others, emoji_glyphs)
    session: PromptSession[str] = PromptSession(
        lambda: chat.prompt_text(),
        history=history,
        completer=DynamicCompleter(lambda: None if chat.state == "naming" else completer),
        complete_while_typing=False,  # a menu only on Tab, not at every keystroke
        erase_when_done=True,
        interrupt_exception=Interrupted,  # a KeyboardInterrupt would escape the task as a traceback
        output=output,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def changed() -> None:
            loop.call_soon_threadsafe(session.app.invalidate)
            if chat.done.is_set():
                loop.call_soon_threadsafe(stop.set)

        chat.on_change = changed
        try:
            await converse(stop)
        finally:
            chat.on_change = lambda: None

    async def converse(stop: asyncio.Event) -> None:
        if chat.done.is_set():
            return
        stopper = asyncio.create_task(stop.wait())
        while not stop.is_set():
            asker = asyncio.create_task(session.prompt_async())
            finished, _ = await asyncio.wait({asker, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if asker not in finished:
                asker.cancel()
                break
            try:
                text = asker.result()
            except EOFError:
                chat.leave()
                break
            except Interrupted:  # not /leave: the server sees the connection close
                chat.finish(EXIT_INTERRUPTED, "interrupted")
                break
            chat.submit(text)

    with patch_stdout(raw=True):
        asyncio.run(main())


DESCRIPTION = """\
Talk in a chat room served by Server.py.

On a terminal, messages appear above an input line that stays put while you
type; Tab completes, the arrow keys recall what you typed, your name in
someone else's message is highlighted and rings the bell, and long lines wrap
with their text lined up after the name. Type /help in the room for the
commands. When standard input is not a terminal, each line read is sent as it
is (the first one is your name unless --name is given), and the end of input
leaves the room, so the client can be scripted."""


def _section(title: str, rows: Iterable[tuple[object, str]], width: int) -> str:
    """A man page's list of terms: ``  TERM    meaning``, the meaning wrapped to 79 columns."""
    entries = [
        textwrap.fill(meaning, 79, initial_indent=f"  {key!s:<{width}}", subsequent_indent=" " * (width + 2))
        for key, meaning in rows
    ]
    return "\n".join([f"{title}:", *entries])


def server_port(text: str) -> int:
    """An argparse type: a port to connect to (0, "any free port", makes sense only to a server)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, not {text}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    epilog = "\n\n".join(
        [
            _section("keys (on a terminal)", KEYS, KEY_WIDTH),
            _section("exit status", EXIT_STATUS, 6),
            _section("environment", [("NO_COLOR", "if set, --color auto means never")], KEY_WIDTH),
            "see also:\n  Server.py --help, and README.md for the protocol and markup",
        ]
    )
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default %(default)s)")
    parser.add_argument(
        "--port", type=server_port, default=DEFAULT_PORT, help="server port (default %(default)s)"
    )
    parser.add_argument("--name", help="your name; asked for if not given")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--cafile", metavar="PEM", help="trust the server certificate(s) in PEM")
    parser.add_argument(
        "--color",
        metavar="WHEN",
        choices=("auto", "always", "never"),
        default="auto",
        help="colours and styles: auto (only on a terminal, and not with NO_COLOR; the default), "
        "always or never",
    )
    parser.add_argument(
        "--no-bell",
        dest="bell",
        action="store_false",
        help="no terminal bell on mentions and private messages",
    )
    parser.add_argument(
        "--emoji-names",
        action="store_true",
        help="show emoji as their :names:, for terminals without emoji fonts",
    )
    parser.add_argument(
        "--history-file",
        metavar="FILE",
        help="keep the lines you type in FILE, for the arrow keys next time (default: this session only)",
    )
    return parser


def open_history(path: str | None) -> History:
    """The lines typed before: from ``path`` if given (which must be writable), else fresh."""
    if path is None:
        return InMemoryHistory()
    with open(path, "a", encoding="utf-8"):
        pass
    return FileHistory(path)


def terminal_width(fd: int) -> Callable[[], int]:
    """The width of the terminal on ``fd``, asked afresh for each line, as it may be resized.

    The terminal itself is asked, as prompt_toolkit asks it for the input line: a
    ``COLUMNS`` variable (which shutil prefers) can be stale or inherited.
    """

    def width() -> int:
        try:
            return os.get_terminal_size(fd).columns
        except OSError:
            return 80

    return width


def use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def why_not(error: OSError) -> str:
    """A failed connection explained, with the fix when TLS is what failed."""
    reason = getattr(error, "reason", None)
    if reason == "WRONG_VERSION_NUMBER":
        return "the server does not speak TLS: leave out --tls"
    if reason == "CERTIFICATE_VERIFY_FAILED":
        detail = getattr(error, "verify_message", None) or "certificate not trusted"
        return f"{detail}: give the CA certificate that signed the server's with --cafile"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import colorama

        colorama.just_fix_windows_console()
    except ImportError:
        pass
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        history = open_history(args.history_file)
    except OSError as error:
        print(f"Client.py: cannot keep history in {args.history_file}: {error}", file=sys.stderr)
        return EXIT_USAGE
    name = args.name
    if name is None and not interactive:
        name = sys.stdin.readline().strip()  # scripted: the first line is the name
        if not name:
            print("Client.py: no name given (use --name or a first line)", file=sys.stderr)
            return EXIT_USAGE
    try:
        link = Link.open(args.host, args.port, args.tls, args.cafile)
    except OSError as error:
        print(f"Client.py: cannot connect to {args.host}:{args.port}: {why_not(error)}", file=sys.stderr)
        return EXIT_LOST
    printer = Printer(
        use_color(args.color),
        bell=interactive and args.bell,
        emoji_names=args.emoji_names,
        columns=terminal_width(sys.stdout.fileno()) if interactive else None,
    )
    chat = Chat(link, name, interactive, printer.show)
    threading.Thread(target=chat.receive, name="receive", daemon=True).start()
    try:
        if interactive:
            run_terminal(chat, history, emoji_glyphs=not args.emoji_names)
        else:
            run_plain(chat)
    except KeyboardInterrupt:
        chat.finish(EXIT_INTERRUPTED, "interrupted")
    if chat.sent_leave.is_set():
        chat.closed.wait(LEAVE_WAIT)  # let the goodbye arrive
    link.close()
    outcome = chat.outcome or Outcome(EXIT_LEFT, "you left")
    print(f"Client.py: {outcome.why}.", file=sys.stderr)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
