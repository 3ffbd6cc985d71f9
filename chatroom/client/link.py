"""Client.py's connection to the server: lines in through ``chatroom.transport``, lines out in order.

Reading (poll, recv, TLS, lines) is ``chatroom.transport``'s, as it is for
the server's sessions. Writing goes through a queue to one writer thread, so
neither the terminal nor the receiving thread ever waits for a server that is
slow to read (flood control pauses it on purpose), and lines leave in the
order they were sent. One lock serialises writes to the socket: the writer's
lines and the TLS records that reading produces.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

from chatroom.tls import TlsLayer
from chatroom.transport import LineStream, dial
from protocol.framing import Line, LineReader, encode_line
from protocol.serverlines import NamePrompt, PasswordPrompt, is_name_prompt, is_password_prompt

#: Seconds of silence before TCP asks whether the server is still there.
KEEPALIVE_IDLE = 60
#: Server lines can be long (a /who of a big room); this only bounds memory.
MAX_SERVER_LINE = 1 << 20


class Link:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stream = LineStream(sock, LineReader(MAX_SERVER_LINE), self._send_tls, "server")
        self._send_lock = threading.Lock()
        self._outbox: queue.Queue[str | None] = queue.Queue()

    @classmethod
    def open(cls, host: str, port: int, tls: ssl.SSLContext | None, deadline: float) -> Link:
        """Connect (and shake hands, with TLS) by ``deadline``, a ``time.monotonic()`` instant.

        Raises ``TimeoutError`` past it, ``OSError`` (``ssl.SSLError`` among them) otherwise.
        """
        sock = dial(host, port, KEEPALIVE_IDLE, timeout=max(0.001, deadline - time.monotonic()))
        link = cls(sock)
        if tls is not None:
            try:
                link.stream.handshake(TlsLayer(tls, server_hostname=host), b"", deadline)
            except BaseException:
                link.close()
                raise
        return link

    def receive(self, deadline: float | None) -> Iterator[list[str | NamePrompt | PasswordPrompt]]:
        """What each read brings: lines, and a prompt when the server asks for a name or a password.

        Until the first of them, waits no later than ``deadline`` (then
        ``TimeoutError``); after that, for ever. Ends with
        ``chatroom.transport.Disconnected`` (or another ``OSError``).
        """
        reader = self.stream.reader
        while True:
            batch: list[str | NamePrompt | PasswordPrompt] = [
                event.text for event in self.stream.events(deadline) if isinstance(event, Line)
            ]
            partial = reader.partial()
            if is_name_prompt(partial) or is_password_prompt(partial):
                reader.feed(b"\n")  # consume it, so it is reported once
                batch.append(NamePrompt() if is_name_prompt(partial) else PasswordPrompt())
            if batch:
                deadline = None
                yield batch

    def start_writing(self, failed: Callable[[], None]) -> None:
        """Start the writer thread; ``failed`` is called (from it) if the connection breaks."""
        threading.Thread(target=self._write, args=(failed,), name="send", daemon=True).start()

    def send(self, text: str) -> None:
        """Queue one line; never blocks."""
        self._outbox.put(text)

    def _write(self, failed: Callable[[], None]) -> None:
        while (text := self._outbox.get()) is not None:
            try:
                self._send(encode_line(text))
            except OSError:
                failed()
                return

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self.stream.tls is not None:
                data = self.stream.tls.encrypt(data)
            self.sock.sendall(data)

    def _send_tls(self) -> None:
        self._send(b"")

    def hang_up(self) -> None:
        """End the conversation: the server sees the connection close; reading ends."""
        self._outbox.put(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.hang_up()
        self.sock.close()
