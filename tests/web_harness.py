"""The web front door from outside: its address in the server's log, and a bare WebSocket client.

``WebClient`` speaks to the real server over a real socket, with wsproto on the
client side: the HTTP upgrade, then JSON records, as the page gets them.
"""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import time
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from formatting.sanitize import strip_sgr
from harness import WAIT, ServerProcess

Record = dict[str, Any]


def web_address(server: ServerProcess) -> tuple[str, str, int]:
    """(scheme, host, port) of the page, from the line the server logs after ``listening on``."""
    line = strip_sgr(server.log.wait_for(r"web page at https?://"))
    found = re.search(r"web page at (https?)://(\S+):(\d+)/", line)
    assert found, line
    return found.group(1), found.group(2).strip("[]"), int(found.group(3))


def web_url(server: ServerProcess) -> str:
    scheme, host, port = web_address(server)
    return f"{scheme}://{host}:{port}/"


class WebClient:
    """A WebSocket client of the chat, as a browser's page would be (or, with ``origin``, would not)."""

    def __init__(
        self,
        server: ServerProcess,
        origin: str | None = "",
        context: ssl.SSLContext | None = None,
        rcvbuf: int = 0,
        path: str = "/chat",
    ) -> None:
        """``origin``: "" for the page's own, None for none at all, or another site's."""
        scheme, host, port = web_address(server)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(WAIT)
        sock.connect((host, port))
        self.sock: socket.socket = context.wrap_socket(sock, server_hostname=host) if context else sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        if origin == "":
            origin = f"{scheme}://{host}:{port}"
        headers = [(b"Origin", origin.encode())] if origin is not None else []
        self.records: list[Record] = []
        self.lines: list[Record] = []  # every line record, in order
        self.seen = 0  # lines before this index were consumed by expect()
        self.pongs: list[bytes] = []
        self.closed = False
        self.close_code: int | None = None
        self.status = 0  # of the handshake: 101, or the refusal's
        self.refusal = b""
        self._partial = ""
        self.sock.sendall(self.ws.send(Request(host=f"{host}:{port}", target=path, extra_headers=headers)))
        deadline = time.monotonic() + WAIT
        while not self.status and not self.closed:
            self._fill(deadline - time.monotonic())
            if time.monotonic() > deadline:
                raise AssertionError("no answer to the WebSocket handshake")
        if self.status == 101:
            return
        while not self.closed and time.monotonic() < deadline:  # the refusal's body
            self._fill(deadline - time.monotonic())

    # --- sending

    def send(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def send_frames(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ping(self, payload: bytes) -> None:
        self.sock.sendall(self.ws.send(Ping(payload=payload)))

    def join(self, name: str) -> None:
        self.expect_prompt()
        self.send(name)

    def close(self) -> None:
        self.sock.close()

    # --- receiving

    def _fill(self, timeout: float) -> bool:
        """Read what is there (waiting up to ``timeout``); False once closed."""
        if self.closed:
            return False
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        ready, _, _ = select.select([self.sock], [], [], 0 if pending else max(0.0, timeout))
        if not ready and not pending:
            return True
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError, ssl.SSLError):
            data = b""
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            self._take(event)
        if not data:
            self.closed = True
        return not self.closed

    def _take(self, event: Event) -> None:
        if isinstance(event, AcceptConnection):
            self.status = 101
        elif isinstance(event, RejectConnection):
            self.status = event.status_code
            if not event.has_body:
                self.closed = True
        elif isinstance(event, RejectData):
            self.refusal += event.data
            if event.body_finished:
                self.closed = True
        elif isinstance(event, TextMessage):
            self._partial += event.data
            if event.message_finished:
                record: Record = json.loads(self._partial)
                self._partial = ""
                self.records.append(record)
                self.lines += record.get("lines", [])
        elif isinstance(event, Pong):
            self.pongs.append(bytes(event.payload))
        elif isinstance(event, CloseConnection):
            if self.close_code is None:  # the close frame's code, not the end of the stream after it
                self.close_code = event.code
            if self.ws.state.name == "REMOTE_CLOSING":
                self.sock.sendall(self.ws.send(event.response()))

    def wait(self, condition: Any, what: str, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if not self._fill(deadline - time.monotonic()) or time.monotonic() > deadline:
                result = condition()
                if result:
                    return result
                raise AssertionError(f"never got {what}; got {self.records}")

    def expect_hello(self) -> Record:
        """The first frame: the server's command table, colours and limits."""
        found = self.wait(lambda: next((r for r in self.records if "hello" in r), None), "the hello")
        return dict(found["hello"])

    def expect_prompt(self) -> Record:
        found = self.wait(lambda: next((r for r in self.records if "prompt" in r), None), "the name prompt")
        self.records.remove(found)
        return dict(found)

    def expect(self, kind: str, text: str = "", timeout: float = WAIT) -> Record:
        """The next line record of ``kind`` whose text contains ``text``."""

        def find() -> Record | None:
            while self.seen < len(self.lines):
                line = self.lines[self.seen]
                self.seen += 1
                if line["kind"] == kind and text in body_text(line):
                    return line
            return None

        return dict(self.wait(find, f"a {kind} line with {text!r}", timeout))

    def expect_closed(self, timeout: float = WAIT) -> None:
        self.wait(lambda: self.closed, "the close", timeout)

    def drain(self, quiet: float = 0.3) -> list[Record]:
        """Every line record that arrives until the connection has been quiet for ``quiet`` seconds."""
        while True:
            before = len(self.lines)
            if not self._fill(quiet) or len(self.lines) == before:
                return self.lines


def body_text(record: Record) -> str:
    return "".join(run[0] for run in record.get("body", []))
