"""The listening socket: stdlib ``socketserver`` with a thread per client.

``ThreadingTCPServer`` already is the accept loop the design card asks for;
we override three hooks. Sockets are not closed when a handler returns
(``shutdown_request``): the fan-out owns closing, because it may still be
flushing a goodbye. Handler errors go to the log, not to stderr.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl

from chatroom.config import Settings
from chatroom.room import Room
from chatroom.session import Session

log = logging.getLogger("chat")


class ChatServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 4096

    def __init__(self, settings: Settings, room: Room, tls_context: ssl.SSLContext | None) -> None:
        self.settings = settings
        self.room = room
        self.tls_context = tls_context
        if ":" in settings.host:
            self.address_family = socket.AF_INET6
        super().__init__((settings.host, settings.port), Session)

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        """Leave the socket open: the session's fan-out shard closes it."""

    def handle_error(self, request: object, client_address: object) -> None:
        log.exception("unexpected error with %s", client_address)
