"""What the web front door answers to each HTTP request: the page's files, or the chat's WebSocket.

No I/O: ``Site.answer`` takes a request as h11 parsed it and returns a
``Reply`` (status, headers, body) or an ``Upgrade`` (switch to WebSocket).
``chatroom.web.listener`` reads and writes the bytes.

Rules:

* The page is three files shipped in the package (``static/``), read once at
  start and served as they are: no templates, nothing computed per request.
* Every reply carries a strict Content-Security-Policy: scripts, styles and
  images from the page's own origin only, connections only back to it, no
  inline script or style, no frames, no forms. Text from others is put into
  the page as text nodes (``chat.js``); the policy is the second wall, should
  that ever slip.
* The WebSocket (``CHAT_PATH``) accepts only the page's own Origin: the scheme
  it is served with and the Host the browser asked for. Another site's page,
  which a visitor's browser would happily let connect here, sends its own
  Origin and is refused at the handshake (403), and so is a request with no
  Origin at all (a browser always sends one).
* Only GET and HEAD; anything else is 405. A request's head may take
  ``MAX_REQUEST_HEAD`` (431 beyond). No extension (compression) is
  negotiated, so a broadcast's frames are the same bytes for every browser
  (``chatroom.web.rendering``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources

import h11
from wsproto.utilities import generate_accept_token

#: The path of the chat's WebSocket.
CHAT_PATH = "/chat"
#: Path -> (file in static/, content type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Sent with every reply.
COMMON_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)
#: The most an HTTP request's head may take (h11 enforces it while the head is incomplete, this once whole).
MAX_REQUEST_HEAD = 16 * 1024
WEBSOCKET_VERSION = "13"
UPGRADE = (("Upgrade", "websocket"),)

Headers = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Headers
    body: bytes
    close: bool = False  # the connection closes after it

    def head(self) -> h11.Response:
        headers = [*COMMON_HEADERS, *self.headers, ("Content-Length", str(len(self.body)))]
        if self.close:
            headers.append(("Connection", "close"))
        return h11.Response(status_code=self.status, headers=headers, reason=HTTPStatus(self.status).phrase)


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Switch to WebSocket: the 101 response to send."""

    key: str

    def head(self) -> h11.InformationalResponse:
        headers: Headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", generate_accept_token(self.key.encode()).decode()),
        ]
        return h11.InformationalResponse(status_code=101, headers=headers, reason="Switching Protocols")


@dataclass(frozen=True, slots=True)
class Refused:
    """A WebSocket request turned away, and why (for the log)."""

    reply: Reply
    why: str


def static_files() -> dict[str, bytes]:
    """The page's files, from the installed package."""
    folder = resources.files("chatroom.web") / "static"
    return {path: (folder / name).read_bytes() for path, (name, _type) in FILES.items()}


def _text(status: int, text: str, close: bool = False, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    return Reply(
        status, [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])], text.encode(), close
    )


class Site:
    def __init__(self, files: dict[str, bytes], scheme: str) -> None:
        """``scheme``: ``http`` or ``https``, as the page is served (its Origin starts with it)."""
        self.files = files
        self.scheme = scheme

    def origin(self, host: str) -> str:
        """The page's own Origin, for a browser that asked for ``host``."""
        return f"{self.scheme}://{host}".lower()

    def answer(self, request: h11.Request) -> Reply | Upgrade | Refused:
        head = len(request.target) + sum(len(name) + len(value) for name, value in request.headers)
        if head > MAX_REQUEST_HEAD:
            return _text(431, "Request header fields too large.\n", True)
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        headers = {name.decode("ascii").lower(): value.decode("latin-1") for name, value in request.headers}
        if method not in ("GET", "HEAD"):
            return _text(405, "Only GET and HEAD are served here.\n", True, [("Allow", "GET, HEAD")])
        if path == CHAT_PATH:
            return self._websocket(headers)
        if path in self.files:
            content_type = FILES[path][1]
            return Reply(200, [("Content-Type", content_type)], self.files[path])
        return _text(404, "Not found. The chat is at /.\n")

    def _websocket(self, headers: dict[str, str]) -> Upgrade | Refused:
        upgrade = headers.get("upgrade", "").lower()
        connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
        if upgrade != "websocket" or "upgrade" not in connection:
            reply = _text(
                426, "This is the chat's WebSocket: open / in a browser.\n", True, [("Upgrade", "websocket")]
            )
            return Refused(reply, "not a WebSocket request")
        if headers.get("sec-websocket-version") != WEBSOCKET_VERSION:
            version = [("Sec-WebSocket-Version", WEBSOCKET_VERSION)]
            return Refused(_text(426, "WebSocket version 13 only.\n", True, version), "WebSocket version")
        key = headers.get("sec-websocket-key", "")
        if not key:
            return Refused(_text(400, "No Sec-WebSocket-Key.\n", True), "no Sec-WebSocket-Key")
        origin = headers.get("origin")
        expected = self.origin(headers.get("host", ""))
        if origin is None or origin.lower() != expected:
            why = f"Origin {origin} is not the page's own ({expected})" if origin else "no Origin"
            return Refused(_text(403, "Only the chat's own page may connect here.\n", True), why)
        return Upgrade(key)
