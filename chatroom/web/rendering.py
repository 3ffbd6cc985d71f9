"""The room's lines as the page reads them: WebSocket text frames holding JSON, built once per broadcast.

The room renders every line once, as text with our own SGR codes
(``protocol.lines``). ``WEB_FRAMES`` is the ``Rendering`` of a browser's
``Peer`` (``chatroom.delivery``): ``Outgoing`` asks it once per broadcast, so
a line is turned into JSON once for every browser in the room, as it is
encoded once for every terminal.

Each line becomes a small record: what it is (the name of its
``protocol.serverlines`` event, read with the same wordings the server wrote
it with), its time, its sender, the event's fields (names, counts), and its
text as styled runs: ``[text, flags, colour]``, flags being letters from
``STYLE_FLAGS``. The page draws the runs as text nodes with classes; nothing
in a record is ever markup.

Frames are the same bytes for every reader because no extension is
negotiated: permessage-deflate would keep a compression context per
connection, and a broadcast would have to be compressed once per reader.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

from wsproto.frame_protocol import CloseReason, FrameProtocol

from chatroom.config import Settings
from formatting.colors import COLORS, nick_color
from formatting.markup import Span, Style, from_ansi
from formatting.sanitize import strip_sgr
from protocol import commands, lines, messages, serverlines

#: A style's attributes as the page's flag letters.
STYLE_FLAGS = {"bold": "b", "italic": "i", "strike": "s", "dim": "d", "underline": "u", "reverse": "r"}

Run = tuple[str, str, str | None]
#: Lines a person said (their colours are theirs); every other line is the server speaking.
SPOKEN = (serverlines.Message, serverlines.Action, serverlines.PrivateFrom, serverlines.PrivateTo)


def _frames() -> FrameProtocol:
    """A server's frame writer. One per frame: it remembers a message's type between its frames,
    so one shared by the fan-out threads could mislabel a frame."""
    return FrameProtocol(client=False, extensions=[])


def text_frame(record: object) -> bytes:
    """One unmasked text frame holding ``record`` as JSON."""
    return bytes(_frames().send_data(json.dumps(record, ensure_ascii=False, separators=(",", ":"))))


def close_frame(code: int = CloseReason.NORMAL_CLOSURE) -> bytes:
    return bytes(_frames().close(code))


def runs(spans: Iterable[Span]) -> list[Run]:
    return [(span.text, _flags(span.style), span.style.color) for span in spans if span.text]


def _flags(style: Style) -> str:
    return "".join(letter for attribute, letter in STYLE_FLAGS.items() if getattr(style, attribute))


def _split(spans: list[Span], count: int) -> tuple[list[Span], list[Span]]:
    """``spans`` cut after ``count`` characters."""
    head: list[Span] = []
    tail: list[Span] = []
    for span in spans:
        take = max(0, min(len(span.text), count))
        count -= take
        if take:
            head.append(Span(span.text[:take], span.style))
        if take < len(span.text):
            tail.append(Span(span.text[take:], span.style))
    return head, tail


def _tone(body: list[Span]) -> str | None:
    """A notice (the server speaking) or an error (about what you sent), from the style it was laid out in."""
    style = body[0].style if body else None
    if style == lines.ERROR:
        return "error"
    if style == lines.INFO:
        return "info"
    return None


def describe(line: str) -> dict[str, Any]:
    """One rendered line as the page's record."""
    event = serverlines.read(line)
    plain = strip_sgr(line)
    stamp = messages.STAMP.match(plain)
    spans = from_ansi(line)
    _label, body = _split(spans, serverlines.text_start(line))
    record: dict[str, Any] = {"kind": type(event).__name__, "at": stamp.group(1) if stamp else None}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if field.name != "text":
            record[field.name] = value.name.lower() if isinstance(value, serverlines.Departure) else value
    named = [record[key] for key in ("name", "old", "new") if key in record] + list(record.get("names", ()))
    if named:  # each name's colour, as terminals show it beside the name
        record["hues"] = {name: nick_color(name) for name in named}
    record["tone"] = None if isinstance(event, SPOKEN) else _tone(body)
    record["body"] = runs(body)
    return record


class WebFrames:
    """The ``Rendering`` of a browser: each batch of lines one text frame, ``{"lines": [...]}``.

    Blank lines are left out: a terminal gets one after the name prompt, to end that line.
    """

    def encode(self, rendered: Sequence[str]) -> bytes:
        described = [describe(line) for line in rendered if line]
        return text_frame({"lines": described}) if described else b""


WEB_FRAMES = WebFrames()


def hello(settings: Settings) -> bytes:
    """The first frame: the server's command table and colours (Tab completes from them), its limits."""
    table = [
        {
            "name": spec.name,
            "aliases": list(spec.aliases),
            "args": [a.name for a in spec.args],
            "word": spec.word,
        }
        for spec in commands.COMMANDS
    ]
    return text_frame(
        {
            "hello": {
                "commands": table,
                "color_command": commands.COLOR.name,
                "colors": list(COLORS),
                "max_line": settings.max_line,
                "max_name": settings.max_name,
            }
        }
    )


#: What the page shows as the name prompt.
NAME_PROMPT = text_frame({"prompt": messages.NAME_PROMPT})
#: What the page shows for a registered name: its password is asked for.
PASSWORD_PROMPT = text_frame({"password": messages.PASSWORD_PROMPT})
