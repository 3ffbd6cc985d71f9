#!/usr/bin/env python3
"""Client.py - talk in the chat room from a terminal.

A receiving thread prints what the server sends while you type: on a
terminal the input line is prompt_toolkit's, and incoming lines are printed
above it (``patch_stdout``), so they never break what you are typing. When
standard input is not a terminal, lines are read plainly, so the client can
be scripted: ``printf 'hi\\n' | python Client.py --name bot``.

The wire protocol is plain text (see the README); this program adds the
input line, name prompts, colours, and clean exits on top of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chatroom.config import DEFAULT_PORT
from chatroom.tls import TlsLayer, client_context
from formatting.sanitize import strip_sgr
from protocol import messages
from protocol.framing import Line, LineReader, encode_line

EXIT_LEFT = 0
EXIT_LOST = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130

#: Server lines can be long (a /who of a big room); this only bounds memory.
MAX_SERVER_LINE = 1 << 20
#: How long to wait for the server's goodbye after asking to leave.
LEAVE_WAIT = 3.0


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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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


class Chat:
    """What the client knows about the conversation; fed by the receiving thread."""

    def __init__(self, link: Link, name: str | None, interactive: bool, show: Callable[[str], None]) -> None:
        self.link = link
        self.show = show
        self.interactive = interactive
        self.state = "connecting"  # -> naming -> waiting -> in room
        self.name = name
        self._auto_name = name
        self._name_tries = 0
        self.names: set[str] = set()
        self._held: list[str] = []  # typed before we were let in
        self._lock = threading.Lock()  # state is shared by the input and receiving threads
        self.outcome: Outcome | None = None
        self.done = threading.Event()  # we know how this ends
        self.closed = threading.Event()  # the server side is closed
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
        self.show(line)
        if fields := messages.WAITING.match(line):
            self._set(state="waiting", name=fields["name"])
        elif fields := messages.WELCOME.match(line):
            self._admitted(fields)
        elif (fields := messages.JOINED.match(line)) is not None:
            self.names.add(fields["name"])
        elif (
            (fields := messages.LEFT.match(line))
            or (fields := messages.DISCONNECTED.match(line))
            or (fields := messages.KICKED_NOTICE.match(line))
        ):
            self.names.discard(fields["name"])
        elif fields := messages.WHO.match(line):
            self.names = set(fields["names"].split(", "))
        elif fields := messages.WHO_MORE.match(line):
            self.names.update(fields["names"].split(", "))
        elif messages.GOODBYE.matches(line):
            self.finish(EXIT_LEFT, "you left the room")
        elif messages.KICKED.matches(line):
            self.finish(EXIT_REFUSED, "removed by the operator")
        elif messages.SHUTTING_DOWN.matches(line):
            self.finish(EXIT_LOST, "the server shut down")
        elif any(refusal.matches(line) for refusal in messages.REFUSALS):
            self.finish(EXIT_REFUSED, "not let in")

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
            elif state != "in room":
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
        try:
            self.link.send_line(text)
        except OSError:
            self.finish(EXIT_LOST, "the connection was lost")

    def prompt_text(self) -> str:
        if self.state == "naming":
            return messages.NAME_PROMPT
        if self.state == "in room":
            return f"{self.name}> "
        if self.state == "waiting":
            return "(waiting for the operator) "
        return "> "


# --- terminals ----------------------------------------------------------------------


def make_printer(color: bool) -> Callable[[str], None]:
    lock = threading.Lock()

    def show(line: str) -> None:
        text = line if color else strip_sgr(line)
        with lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    return show


def run_plain(chat: Chat) -> None:
    """Standard input is a pipe or file: one line, one message; its end leaves."""

    def feed() -> None:
        for raw in sys.stdin:
            chat.submit(raw.rstrip("\r\n"))
        chat.leave()

    threading.Thread(target=feed, name="stdin", daemon=True).start()
    chat.done.wait()


def run_terminal(chat: Chat) -> None:
    """A prompt_toolkit input line; incoming text is printed above it."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    session: PromptSession[str] = PromptSession(lambda: chat.prompt_text())

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
            chat.submit(text)

    with patch_stdout(raw=True):
        asyncio.run(main())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="Client.py",
        description="Join a chat room served by Server.py. Type to talk; /help lists commands.",
        epilog="Exit status: 0 you left (/leave, Ctrl-D, end of input); 1 connection failed "
        "or lost, or the server shut down; 2 bad options; 3 not let in (refused, timed out, "
        "room full, banned, name not accepted) or removed by the operator; 130 Ctrl-C. "
        "NO_COLOR in the environment turns colours off.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="server port (default %(default)s)")
    parser.add_argument("--name", help="your name; asked for if not given")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--cafile", metavar="PEM", help="trust the server certificate(s) in PEM")
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colours and styles: auto = only on a terminal, and not with NO_COLOR (default)",
    )
    return parser


def use_color(choice: str) -> bool:
    if choice != "auto":
        return choice == "always"
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import colorama

        colorama.just_fix_windows_console()
    except ImportError:
        pass
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    name = args.name
    if name is None and not interactive:
        name = sys.stdin.readline().strip()  # scripted: the first line is the name
        if not name:
            print("Client.py: no name given (use --name or a first line)", file=sys.stderr)
            return EXIT_USAGE
    try:
        link = Link.open(args.host, args.port, args.tls, args.cafile)
    except OSError as error:
        print(f"Client.py: cannot connect to {args.host}:{args.port}: {error}", file=sys.stderr)
        return EXIT_LOST
    chat = Chat(link, name, interactive, make_printer(use_color(args.color)))
    threading.Thread(target=chat.receive, name="receive", daemon=True).start()
    try:
        (run_terminal if interactive else run_plain)(chat)
    except KeyboardInterrupt:
        chat.finish(EXIT_INTERRUPTED, "interrupted")
        chat.leave()
    chat.closed.wait(LEAVE_WAIT)  # let the goodbye arrive, if we asked to leave
    link.close()
    outcome = chat.outcome or Outcome(EXIT_LEFT, "you left")
    print(f"Client.py: {outcome.why}.", file=sys.stderr)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
