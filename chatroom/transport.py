"""A connection's reading side, shared by both programs: socket -> TLS -> bytes -> lines.

The server's thread per client and ``Client.py``'s receiving thread read the
same way: wait for the socket, ``recv``, decrypt when TLS is on
(``chatroom.tls``, a transform on bytes) (``Stream``), and, for a line
connection, feed a ``protocol.framing.LineReader`` (``LineStream``). The web
front door (``chatroom.web``) reads a ``Stream`` and hands the bytes to HTTP
and WebSocket parsers instead.
Writing differs (the server writes through its fan-out, the client directly),
so TLS records that reading produces (handshake, key updates) go out through
a callback, ``send_tls``.

Rules:

* Wait in ``poll``, then ``recv``: ``recv`` allocates its buffer before it
  blocks, and on the server every idle client is blocked here, so that buffer
  would be paid per client; this way it exists only while data is waiting.
* A deadline is a ``time.monotonic()`` instant or None (wait for ever: idle
  people are never dropped). Past it, ``TimeoutError``.
* The end of the stream is ``Disconnected``, saying whether the network
  failed (TCP gave up on the peer) or the peer closed.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

from chatroom.sockets import keepalive_options, set_options
from chatroom.tls import TlsLayer
from protocol.framing import Event, LineReader

#: Bytes read at once.
RECV_SIZE = 65536
_TCP_CLOSE = 7  # tcp_info.tcpi_state once the kernel has given up on a connection


class Disconnected(ConnectionError):
    """The other end is gone; the message says how, for the log."""

    def __init__(self, why: str, lost: bool = False) -> None:
        super().__init__(why)
        self.lost = lost  # the network failed, as opposed to the peer closing


def timed_out(sock: socket.socket) -> bool:
    """Did TCP give up on this peer (keepalive or retransmissions unanswered)?

    When that happens ``recv`` sometimes reports a plain end of stream, as if
    the peer had closed; TCP_INFO tells the two apart (Linux only).
    """
    if not hasattr(socket, "TCP_INFO"):
        return False
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 4)
    except OSError:
        return False
    state, _ca_state, retransmits, probes = info[:4]
    return state == _TCP_CLOSE and bool(retransmits or probes)


def dial(host: str, port: int, keepalive: int, timeout: float) -> socket.socket:
    """A client's TCP connection: low latency, and a server that vanished is noticed (keepalive)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    set_options(sock, [(socket.IPPROTO_TCP, "TCP_NODELAY", 1), *keepalive_options(keepalive)])
    sock.settimeout(None)
    return sock


class Stream:
    """Bytes from one socket, decrypted once ``handshake`` has switched TLS on."""

    def __init__(self, sock: socket.socket, send_tls: Callable[[], None], other: str) -> None:
        """``other`` names the other end in ``Disconnected`` messages ("client", "server")."""
        self.sock = sock
        self.other = other
        self.tls: TlsLayer | None = None
        self._early = b""  # application data that came in with the end of the TLS handshake
        self._send_tls = send_tls
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def recv(self, deadline: float | None) -> bytes:
        """Raw bytes as they arrive (never empty)."""
        timeout = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        if not self._poller.poll(timeout):
            raise TimeoutError
        data = self.sock.recv(RECV_SIZE)
        if not data:
            if timed_out(self.sock):
                raise Disconnected("connection lost: timed out", lost=True)
            raise Disconnected(f"closed by {self.other}")
        return data

    def handshake(self, tls: TlsLayer, data: bytes, deadline: float | None) -> None:
        """Complete a TLS handshake that starts with ``data`` (empty for the side that speaks first).

        Raises ``ssl.SSLError`` if it fails, ``TimeoutError`` past the deadline.
        """
        self.tls = tls
        while not self._handshake_step(tls, data):
            data = self.recv(deadline)
        # What the peer sent right behind its last handshake record (an HTTP request does
        # that) arrived with it: the next ``data`` hands it over without waiting for more.
        self._early, _goodbye = tls.decrypt(b"")

    def _handshake_step(self, tls: TlsLayer, data: bytes) -> bool:
        done = tls.handshake(data)
        self._send_tls()
        return done

    def data(self, deadline: float | None) -> bytes:
        """What the next read brought, decrypted; may be empty (a TLS record not yet whole)."""
        if self._early:
            early, self._early = self._early, b""
            return early
        data = self.recv(deadline)
        if self.tls is not None:
            data, goodbye = self.tls.decrypt(data)
            if self.tls.has_output:
                self._send_tls()
            if goodbye and not data:
                raise Disconnected(f"closed by {self.other}")
        return data


class LineStream(Stream):
    """Lines from one socket, through TLS once ``handshake`` has switched it on."""

    def __init__(
        self, sock: socket.socket, reader: LineReader, send_tls: Callable[[], None], other: str
    ) -> None:
        super().__init__(sock, send_tls, other)
        self.reader = reader

    def events(self, deadline: float | None) -> list[Event]:
        """The lines (and overlong-line reports) completed by the next read; may be empty."""
        return self.reader.feed(self.data(deadline))
