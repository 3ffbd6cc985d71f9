"""Drive the real programs: a Server.py process, raw sockets, Client.py processes.

Everything waits for a condition with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

import pyte
import redis

from formatting.sanitize import strip_sgr
from protocol import messages
from protocol.messages import Wording

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WAIT = 10.0


def wait_until(condition: Callable[[], object], timeout: float = WAIT, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Output:
    """Lines from a stream, collected by a thread, searchable with a deadline."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Iterable[bytes]) -> None:
        for raw in stream:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = WAIT, start: int = 0) -> str:
        """The first line (from index ``start``) matching the regex, stripped of SGR."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if regex.search(strip_sgr(line)):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise AssertionError(f"no line matching {pattern!r}; got:\n" + "\n".join(self.lines))
                self._cond.wait(remaining)

    def wait_closed(self, timeout: float = WAIT) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._closed, timeout)
            if not self._closed:
                raise AssertionError("stream still open")


class ServerProcess:
    """``python Server.py --port 0`` with its console on a pipe."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, wrapper: tuple[str, ...] = ()) -> None:
        """``wrapper``: a command to run the server under, e.g. ``("prlimit", "--nofile=40")``."""
        self.args = args
        self.proc = subprocess.Popen(
            [*wrapper, PYTHON, "-u", str(ROOT / "Server.py"), "--port", "0", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            process_group=0,  # a job of its own, which a test can signal as a terminal would
        )
        assert self.proc.stdout is not None
        self.log = Output(self.proc.stdout)
        line = self.log.wait_for(r"listening on \S+:\d+")
        found = re.search(r"listening on (\S+):(\d+)", strip_sgr(line))
        assert found
        self.host, self.port = found.group(1).strip("[]"), int(found.group(2))

    def console(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def asked_about(self, name: str) -> str:
        return self.log.wait_for(rf"join request: {re.escape(name)} from ")

    def approve(self, name: str) -> None:
        self.asked_about(name)
        self.console("y")

    def refuse(self, name: str) -> None:
        self.asked_about(name)
        self.console("n")

    def connect(self, name: str | None = None, approve: bool = True) -> RawClient:
        client = RawClient(self.host, self.port)
        if name is not None:
            client.send_name(name)
            if approve and "all" not in self.args:
                self.approve(name)
            if approve:
                client.expect(messages.WELCOME)
        return client

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.wait_closed()
        return self.proc.returncode


#: The ``start_server`` fixture: ``start_server("--approve", "all", db=PATH)``.
StartServer = Callable[..., "ServerProcess"]


class RawClient:
    """A bare socket speaking the wire protocol, as nc would."""

    def __init__(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.create_connection((host, port), timeout=WAIT)
        self.buffer = b""
        self.lines: list[str] = []  # everything received, in order
        self.seen = 0  # lines before this index were consumed by expect()
        self.closed = False

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def send_name(self, name: str) -> None:
        self.read_until_prompt()
        self.send(name)

    def _fill(self, timeout: float) -> bool:
        """Read what is there (waiting up to ``timeout``); False once closed."""
        if self.closed:
            return False
        buffered = getattr(self.sock, "pending", lambda: 0)()  # TLS records already decrypted
        ready, _, _ = select.select([self.sock], [], [], 0 if buffered else max(0.0, timeout))
        if not ready and not buffered:
            return True
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\n")
        self.lines += [line.decode("utf-8", "replace").rstrip("\r") for line in complete]
        return True

    def read_until_prompt(self, timeout: float = WAIT, prompt: str = messages.NAME_PROMPT) -> None:
        """Wait for a prompt (a line without its newline): the name's, or another."""
        deadline = time.monotonic() + timeout
        while not self.buffer.decode("utf-8", "replace").endswith(prompt):
            if not self._fill(deadline - time.monotonic()) or time.monotonic() > deadline:
                raise AssertionError(f"no name prompt; got {self.lines} {self.buffer!r}")
        self.buffer = b""

    def expect(self, wanted: Wording | str, timeout: float = WAIT) -> str:
        """Wait for the next line that is ``wanted`` (a Wording, or a regex); return it."""
        deadline = time.monotonic() + timeout
        while True:
            while self.seen < len(self.lines):
                line = self.lines[self.seen]
                self.seen += 1
                if _matches(wanted, line):
                    return line
            if not self._fill(deadline - time.monotonic()) or time.monotonic() > deadline:
                raise AssertionError(f"never got {wanted!r}; got {self.lines}")

    def expect_closed(self, timeout: float = WAIT) -> list[str]:
        deadline = time.monotonic() + timeout
        while self._fill(deadline - time.monotonic()):
            if time.monotonic() > deadline:
                raise AssertionError(f"connection still open; got {self.lines}")
        return self.lines

    def drain(self, quiet: float = 0.3) -> list[str]:
        """Everything that arrives until the line has been quiet for ``quiet`` seconds."""
        while True:
            before = len(self.lines)
            if not self._fill(quiet) or len(self.lines) == before:
                return self.lines

    def close(self) -> None:
        self.sock.close()


def _matches(wanted: Wording | str, line: str) -> bool:
    if isinstance(wanted, Wording):
        return wanted.matches(line)
    return re.search(wanted, strip_sgr(line)) is not None


def client_process(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Client.py with pipes: not a terminal, so it reads plain lines."""
    return subprocess.Popen(
        [PYTHON, "-u", str(ROOT / "Client.py"), "--port", str(port), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


# --- seeing it as a terminal does -------------------------------------------------

PYTE_COLORS = {"yellow": "brown", "bright_yellow": "brightbrown"}


def pyte_color(name: str) -> str:
    """pyte's name for one of our colours."""
    return PYTE_COLORS.get(name, name.replace("_", ""))


def screen_of(text: str, columns: int = 120, rows: int = 40) -> pyte.Screen:
    screen = pyte.Screen(columns, rows)
    stream = pyte.Stream(screen)
    stream.feed(text.replace("\r\n", "\n").replace("\n", "\r\n"))
    return screen


def find_cells(screen: pyte.Screen, word: str) -> list[pyte.screens.Char]:
    """The cells showing ``word`` (its first occurrence on screen)."""
    for row in range(screen.lines):
        line = "".join(screen.buffer[row][col].data for col in range(screen.columns))
        at = line.find(word)
        if at >= 0:
            return [screen.buffer[row][at + i] for i in range(len(word))]
    raise AssertionError(f"{word!r} not on screen:\n" + "\n".join(screen.display))


class Terminal:
    """A program in a pseudo-terminal, its screen kept by a terminal emulator."""

    def __init__(
        self, argv: list[str], columns: int = 100, rows: int = 30, env: dict[str, str] | None = None
    ) -> None:
        import pexpect

        self.child = pexpect.spawn(
            PYTHON,
            argv,
            cwd=str(ROOT),
            env={**os.environ, "TERM": "xterm-256color", **(env or {})},
            dimensions=(rows, columns),
        )
        terminal = self

        class AnsweringScreen(pyte.Screen):
            def write_process_input(self, data: str) -> None:
                terminal.answer(data)  # answers cursor-position queries like a real terminal

        self.screen = AnsweringScreen(columns, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        import pexpect

        while True:
            try:
                data = self.child.read_nonblocking(65536, timeout=None)
            except (pexpect.EOF, OSError, ValueError):  # ValueError: closed by the test meanwhile
                return
            with self._lock:
                self.raw += data
                self.stream.feed(data)

    def answer(self, data: str) -> None:
        """Send what the terminal answers to a query (where the cursor is): at once, here."""
        self.child.send(data)

    def display(self) -> str:
        with self._lock:
            return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_screen(self, pattern: str, timeout: float = WAIT) -> str:
        regex = re.compile(pattern)
        wait_until(lambda: regex.search(self.display()), timeout, f"{pattern!r} on screen")
        return self.display()

    def cells(self, word: str) -> list[pyte.screens.Char]:
        with self._lock:
            return find_cells(self.screen, word)

    def wait_prompt(self, prompt: str, timeout: float = WAIT) -> None:
        """Wait until the input line shows ``prompt`` (the client is ready for keys)."""
        wait_until(lambda: self.cursor_line().startswith(prompt.rstrip()), timeout, f"prompt {prompt!r}")

    def cursor_line(self) -> str:
        with self._lock:
            return self.screen.display[self.screen.cursor.y].rstrip()

    def type(self, text: str) -> None:
        self.child.send(text)

    def wait_exit(self, timeout: float = WAIT) -> int:
        wait_until(lambda: not self.child.isalive(), timeout, "the client to exit")
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


class TerminalClient(Terminal):
    """Client.py on a terminal."""

    def __init__(
        self, port: int, *args: str, columns: int = 100, rows: int = 30, env: dict[str, str] | None = None
    ) -> None:
        super().__init__([str(ROOT / "Client.py"), "--port", str(port), *args], columns, rows, env)


class TerminalServer(Terminal):
    """Server.py with its interactive console on a terminal."""

    def __init__(self, *args: str, columns: int = 120, rows: int = 30) -> None:
        super().__init__([str(ROOT / "Server.py"), "--port", "0", "--db", ":memory:", *args], columns, rows)
        found = re.search(r"listening on \S+:(\d+)", self.wait_screen(r"listening on \S+:\d+"))
        assert found
        self.port = int(found.group(1))


def process_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def process_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def process_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])


def reset(sock: socket.socket) -> None:
    """Close abruptly: RST instead of FIN, as a crashed peer or a middlebox would."""
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- Redis, for the cluster tests ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """redis-server on a free port, no persistence: stopping it loses everything, as a crash would."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(port=self.port, socket_timeout=WAIT)
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, what="redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.client.connection_pool.disconnect()

    def everything(self) -> str:
        """Every key's contents, as text, to look for what must never be stored."""
        out = []
        for key in self.client.scan_iter():
            kind = cast(bytes, self.client.type(key)).decode()
            if kind == "string":
                out.append(repr(self.client.get(key)))
            elif kind == "hash":
                out.append(repr(self.client.hgetall(key)))
            elif kind == "set":
                out.append(repr(self.client.smembers(key)))
            elif kind == "stream":
                out.append(repr(self.client.xrange(key)))
        return "\n".join(out)
