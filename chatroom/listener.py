"""The TCP side: stdlib ``socketserver`` with a thread per client, each a line connection.

``ThreadingTCPServer`` already is the accept loop the design card asks for;
``ChatServer`` overrides four hooks:

* ``process_request`` starts the client's thread with ``_thread``, not
  ``threading.Thread``: a Thread object brings an Event, a Condition, a deque
  and registry entries, a tenth of what an idle client costs in all.
  Nothing joins these threads: they end when their client goes, and the
  process does not wait for them.
* ``shutdown_request`` leaves the socket open: the fan-out owns closing,
  because it may still be flushing a goodbye.
* ``get_request`` pauses when the process is out of file descriptors:
  the listening socket stays readable, and socketserver would otherwise
  retry ``accept`` in a tight loop at full CPU until a client leaves.
* ``handle_error`` logs instead of printing to stderr.

``LineConnection`` is the handler: it makes the client's ``Peer`` (writing,
``chatroom.delivery``) and ``LineStream`` (reading, ``chatroom.transport``),
does TLS when the server has it, and runs the member's ``Session``.
"""

from __future__ import annotations

import _thread
import errno
import logging
import socket
import socketserver
import ssl
import time
from typing import Any, NoReturn

from chatroom.config import Settings
from chatroom.delivery import Peer
from chatroom.room import Room
from chatroom.rules import Member
from chatroom.session import Session
from chatroom.sockets import keepalive_options, set_options
from chatroom.tls import TlsLayer
from chatroom.transport import Disconnected, LineStream, Stream
from protocol import lines, messages
from protocol.framing import Event, LineReader, encode_line

log = logging.getLogger("chat")

#: How long the accept loop rests when no file descriptor is left for a new client.
ACCEPT_BACKOFF = 0.1
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
TLS_HANDSHAKE_TIMEOUT = 10.0  # a TLS client sends its hello at once; a plain one waits for our greeting
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of every TLS client hello


def tune(sock: socket.socket, settings: Settings) -> None:
    """Low latency, dead-peer detection (``chatroom.sockets``) and a bounded kernel send buffer.

    Send buffer: left to autotuning, Linux lets one client that stops
    reading hold megabytes of kernel memory before our own outbox limit even
    sees it; a fixed buffer makes that limit mean what it says.
    """
    options = [(socket.SOL_SOCKET, "SO_SNDBUF", settings.sndbuf)] if settings.sndbuf else []
    options.append((socket.IPPROTO_TCP, "TCP_NODELAY", 1))
    set_options(sock, options + keepalive_options(settings.keepalive))


def handshake_tls(stream: Stream, peer: Peer, context: ssl.SSLContext, first: bytes, deadline: float) -> None:
    """Complete a server-side TLS handshake that began with ``first``; from then on ``peer`` encrypts.

    A failed or slow handshake is logged and ends the connection (``Disconnected``).
    """
    layer = TlsLayer(context)
    peer.transform = layer
    try:
        stream.handshake(layer, first, deadline)
    except ssl.SSLError as error:
        log.info("refused %s: TLS handshake failed: %s", peer.label, error.reason or error)
        raise Disconnected("TLS handshake failed", lost=True) from error
    except TimeoutError:
        log.info("refused %s: TLS handshake timed out", peer.label)
        raise Disconnected("TLS handshake timed out", lost=True) from None


class LineConnection(socketserver.BaseRequestHandler):
    """One TCP client; socketserver runs setup(), handle() and finish() in a thread of its own."""

    server: ChatServer
    request: socket.socket

    def setup(self) -> None:
        """Must not raise: socketserver skips finish() (and so the close) if it does."""
        settings = self.server.settings
        tune(self.request, settings)
        host, port = self.client_address[:2]
        self.peer = Peer(self.request, lines.address(str(host), int(port)))
        self.server.room.fanout.add(self.peer)
        self.stream = LineStream(
            self.request, LineReader(settings.max_line), self.peer.flush_transform, "client"
        )
        member = Member(self.peer, str(host), int(port), time.time(), time.monotonic())
        self.session = Session(self.server.room, settings, member, self)

    def handle(self) -> None:
        tls = self.server.tls_context
        self.session.run(None if tls is None else lambda: self._tls_handshake(tls))

    def finish(self) -> None:
        """Whatever happened, the member leaves and the socket goes back to the fan-out."""
        self.session.finish(self.peer.drop_reason)
        self.peer.release()

    # --- the session's LineSource ---------------------------------------------------------

    def read(self, deadline: float | None) -> list[Event]:
        return self.stream.events(deadline)

    def ask_name(self) -> None:
        self.peer.send(messages.NAME_PROMPT.encode())

    def ask_password(self) -> None:
        self.peer.send(messages.PASSWORD_PROMPT.encode())

    # --- TLS --------------------------------------------------------------------------------

    def _tls_handshake(self, context: ssl.SSLContext) -> None:
        """A TLS client speaks first, at once; anyone else is told, in plain text, to use --tls."""
        deadline = time.monotonic() + min(TLS_HANDSHAKE_TIMEOUT, self.server.settings.name_timeout)
        try:
            data = self.stream.recv(deadline)
        except TimeoutError:
            self._not_tls("no TLS handshake (a plain client?)")
        if data[0] != TLS_HANDSHAKE_RECORD:
            self._not_tls("not TLS")
        handshake_tls(self.stream, self.peer, context, data, deadline)

    def _not_tls(self, why: str) -> NoReturn:
        self.peer.send(encode_line(lines.notice(None, messages.NEEDS_TLS())))
        self.peer.hang_up()
        log.info("refused %s: %s", self.peer.label, why)
        self.session.drain()


class ChatServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 4096

    def __init__(
        self,
        settings: Settings,
        room: Room,
        tls_context: ssl.SSLContext | None,
        port: int | None = None,
        handler: type[socketserver.BaseRequestHandler] = LineConnection,
    ) -> None:
        """On ``--port`` with ``LineConnection``s, unless told another port and handler (the web's)."""
        self.settings = settings
        self.room = room
        self.tls_context = tls_context
        self._starved = False  # out of file descriptors at the last accept
        if ":" in settings.host:
            self.address_family = socket.AF_INET6
        # Under --processes, beside the other processes on one port: the kernel spreads
        # new connections among them.
        self.allow_reuse_port = settings.supervised >= 0
        super().__init__((settings.host, settings.port if port is None else port), handler)

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return lines.address(host, port)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            request = super().get_request()
        except OSError as error:
            if error.errno in _OUT_OF_DESCRIPTORS:
                if not self._starved:
                    log.warning("out of file descriptors (%s): new connections wait", error.strerror)
                self._starved = True
                time.sleep(ACCEPT_BACKOFF)
            raise
        if self._starved:
            log.info("accepting connections again")
            self._starved = False
        return request

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        _thread.start_new_thread(self.process_request_thread, (request, client_address))

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        """Leave the socket open: the connection's fan-out shard closes it."""

    def handle_error(self, request: object, client_address: object) -> None:
        log.exception("unexpected error with %s", client_address)
