"""The web side: the page over HTTP (h11), and the room over a WebSocket (wsproto), a thread per connection.

``WebServer`` is the TCP listener's ``ChatServer`` on another port with
another handler, so it accepts, threads and backs off exactly as the TCP side
does. ``WebConnection`` is the handler:

1. TLS first, when the server has it (``https://``, ``wss://``); a browser
   that asked for plain ``http://`` is sent to the ``https://`` address.
2. HTTP/1.1 with h11: the page's files (``chatroom.web.routes``), with
   keep-alive, each request due within ``HTTP_IDLE``.
3. On a WebSocket request from the page's own origin, the 101 response, then
   wsproto takes the bytes and the member's ``Session`` runs, as for a TCP
   client: the same greeting, name rules, operator, limits, flood control,
   history and commands. This connection is its ``LineSource``: each text
   message is a line (or several, if it holds line breaks), read through the
   same ``LineReader``, so a message longer than ``--max-line`` is reported
   and skipped like an overlong TCP line, and a frame, however big it says it
   is, is never held whole: wsproto hands its payload over as it arrives.
   Emoji shortcodes become emoji here, as ``Client.py`` does before sending.

Writing goes through the member's ``Peer`` like everything else
(``chatroom.delivery``), with ``WEB_FRAMES`` as its rendering: the fan-out
sends browsers pre-built frames, and a browser that stops reading is behind,
stalled and cut off like a TCP reader. This thread only reads; a ping's pong
and the closing handshake go out through the Peer too.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import time

import h11
from wsproto import ConnectionType
from wsproto.connection import Connection as WebSocket
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from chatroom.config import Settings
from chatroom.delivery import Peer
from chatroom.listener import TLS_HANDSHAKE_RECORD, TLS_HANDSHAKE_TIMEOUT, ChatServer, handshake_tls, tune
from chatroom.room import Room
from chatroom.rules import Member, Via
from chatroom.session import Session
from chatroom.transport import Disconnected, Stream
from chatroom.web.rendering import NAME_PROMPT, PASSWORD_PROMPT, WEB_FRAMES, close_frame, hello
from chatroom.web.routes import MAX_REQUEST_HEAD, Refused, Reply, Site, Upgrade, static_files
from formatting.shortcodes import to_emoji
from protocol import lines
from protocol.framing import Event, Line, LineReader

log = logging.getLogger("chat")

#: How long an HTTP connection may take to send a request (or stay idle between two).
HTTP_IDLE = 10.0


class WebPeer(Peer):
    """A browser's writing side: the connection ends with the WebSocket's close frame, however it ends."""

    __slots__ = ("closing",)

    def __init__(self, sock: socket.socket, label: str) -> None:
        super().__init__(sock, label, WEB_FRAMES)
        self.closing = False  # a close frame went out (or the connection never upgraded)

    def hang_up(self) -> None:
        self._say_goodbye()
        super().hang_up()

    def release(self) -> None:
        self._say_goodbye()
        super().release()

    def _say_goodbye(self) -> None:
        if not self.closing:
            self.closing = True
            self.send_last(close_frame())


class WebConnection(socketserver.BaseRequestHandler):
    """One browser connection; socketserver runs setup(), handle() and finish() in a thread of its own."""

    server: WebServer
    request: socket.socket

    def setup(self) -> None:
        """Must not raise: socketserver skips finish() (and so the close) if it does."""
        self.settings = self.server.settings
        self.host, self.port = str(self.client_address[0]), int(self.client_address[1])
        self.session: Session | None = None
        tune(self.request, self.settings)
        self.peer = WebPeer(self.request, lines.address(self.host, self.port))
        self.peer.closing = True  # plain HTTP until the upgrade
        self.server.room.fanout.add(self.peer)
        self.stream = Stream(self.request, self.peer.flush_transform, "browser")
        self.ws: WebSocket | None = None
        self.reader = LineReader(self.settings.max_line)
        self._closed_by_browser = False

    def handle(self) -> None:
        try:
            first = self._tls() if self.server.tls_context is not None else b""
            if first is None:
                return
            trailing = self._http(first)
            if trailing is not None:
                self._websocket(trailing)
        except (Disconnected, TimeoutError, ConnectionError):
            pass
        except OSError as error:
            log.info("web connection %s lost: %s", self.peer.label, error.__class__.__name__)

    def finish(self) -> None:
        """Whatever happened, the member leaves and the socket goes back to the fan-out."""
        if self.session is not None:
            self.session.finish(self.peer.drop_reason)
        self.peer.release()

    # --- TLS and HTTP -----------------------------------------------------------------------

    def _tls(self) -> bytes | None:
        """The TLS handshake; None if the browser spoke plain HTTP (it is sent to https://)."""
        assert self.server.tls_context is not None
        deadline = time.monotonic() + min(TLS_HANDSHAKE_TIMEOUT, HTTP_IDLE)
        data = self.stream.recv(deadline)
        if data[0] == TLS_HANDSHAKE_RECORD:
            handshake_tls(self.stream, self.peer, self.server.tls_context, data, deadline)
            return b""
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        http.receive_data(data)
        event = http.next_event()
        if isinstance(event, h11.Request):
            host = dict(event.headers).get(b"host", b"").decode("latin-1")
            target = event.target.decode("ascii", "replace")
            location = [("Location", f"https://{host}{target}")]
            self._reply(
                http, Reply(301, location, b"This chat is served with TLS: use https://.\n", True), event
            )
        self.peer.hang_up()
        return None

    def _http(self, first: bytes) -> bytes | None:
        """Serve the page's files until the page opens its WebSocket; what came after its request, then."""
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        site: Site = self.server.site
        if first:
            http.receive_data(first)
        deadline = time.monotonic() + HTTP_IDLE
        answer: Reply | Upgrade | Refused | None = None
        request: h11.Request | None = None
        while True:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as error:
                if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = error.error_status_hint
                    self._reply(http, Reply(status, [], f"Bad request: {error}\n".encode(), True), None)
                return None
            if event is h11.NEED_DATA:
                data = self.stream.data(deadline)
                if data:
                    http.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request, answer = event, site.answer(event)
                if isinstance(answer, Refused):
                    log.info("refused web connection %s: %s", self.peer.label, answer.why)
                    self._reply(http, answer.reply, request)
                elif isinstance(answer, Reply):
                    self._reply(http, answer, request)
            elif event is h11.PAUSED and isinstance(answer, Upgrade):
                self.peer.send(http.send(answer.head()))
                return http.trailing_data[0]
            elif isinstance(event, h11.EndOfMessage):
                if http.our_state in (h11.MUST_CLOSE, h11.CLOSED):
                    return None
                if (http.our_state, http.their_state) == (h11.DONE, h11.DONE):  # keep-alive: the next request
                    http.start_next_cycle()
                    deadline, answer, request = time.monotonic() + HTTP_IDLE, None, None
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    def _reply(self, http: h11.Connection, reply: Reply, request: h11.Request | None) -> None:
        out = http.send(reply.head()) or b""
        if reply.body and (request is None or request.method != b"HEAD"):
            out += http.send(h11.Data(data=reply.body)) or b""
        out += http.send(h11.EndOfMessage()) or b""
        self.peer.send(out)
        if reply.close:
            self.peer.hang_up()

    # --- the room, over a WebSocket ------------------------------------------------------------

    def _websocket(self, trailing: bytes) -> None:
        self.ws = WebSocket(ConnectionType.SERVER, trailing_data=trailing)
        self.peer.closing = False
        self.peer.send(hello(self.settings))
        member = Member(self.peer, self.host, self.port, time.time(), time.monotonic(), via=Via.WEB)
        self.session = Session(self.server.room, self.settings, member, self)
        self.session.run()

    def read(self, deadline: float | None) -> list[Event]:
        """The session's ``LineSource``: lines from the messages of the next read."""
        found = self._events()
        if found or self._closed_by_browser:
            return found
        data = self.stream.data(deadline)
        if data:
            assert self.ws is not None
            self.ws.receive_data(data)
        return self._events()

    def ask_name(self) -> None:
        self.peer.send(NAME_PROMPT)

    def ask_password(self) -> None:
        self.peer.send(PASSWORD_PROMPT)

    def _events(self) -> list[Event]:
        if self._closed_by_browser:
            raise Disconnected("closed by browser")
        assert self.ws is not None
        out: list[Event] = []
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                data = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
                out += self.reader.feed(data)
                if event.message_finished:
                    out += self.reader.feed(b"\n")
            elif isinstance(event, Ping):
                self.peer.send(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._close(event)
                break
        return [Line(to_emoji(e.text)) if isinstance(e, Line) else e for e in out]

    def _close(self, event: CloseConnection) -> None:
        """The browser closes (or broke the protocol): answer its close, then the session ends."""
        assert self.ws is not None
        if event.code not in (1000, 1001, 1005):
            log.info("web connection %s closed: %s %s", self.peer.label, event.code, event.reason or "")
        if self.ws.state is ConnectionState.REMOTE_CLOSING and not self.peer.closing:
            self.peer.closing = True
            self.peer.send_last(self.ws.send(event.response()))
        self._closed_by_browser = True


class WebServer(ChatServer):
    """The web front door: ``ChatServer``'s accept loop and threads, on ``--web-port``."""

    def __init__(self, settings: Settings, room: Room, tls_context: ssl.SSLContext | None) -> None:
        assert settings.web_port is not None
        self.site = Site(static_files(), "https" if tls_context is not None else "http")
        super().__init__(settings, room, tls_context, settings.web_port, WebConnection)

    @property
    def url(self) -> str:
        """The page's address."""
        return f"{self.site.scheme}://{self.address}/"
