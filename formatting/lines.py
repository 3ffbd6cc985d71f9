"""The layout of every line the server sends, with its styles.

Bodies are markup (see ``formatting.markup``) and must already be clean
(``formatting.sanitize.clean``); labels and notices are plain text. The
caller supplies the timestamp as text, keeping this module free of clocks.
Every result ends with the SGR reset, so no style reaches the next line.
"""

from __future__ import annotations

from formatting.colors import nick_color
from formatting.markup import RESET, Span, Style, parse, to_ansi
from protocol import messages

STAMP = Style(dim=True)
INFO = Style(color="cyan")
ERROR = Style(color="red")
PRIVATE = Style(bold=True, color="magenta")
SPACE = Span(" ", Style())


def _line(stamp: str | None, spans: list[Span]) -> str:
    head = [Span(f"[{stamp}]", STAMP), SPACE] if stamp is not None else []
    text = to_ansi(head + spans)
    return text if text.endswith(RESET) else text + RESET


def message(stamp: str, name: str, body: str, color: str | None = None) -> str:
    """``[12:00:00] <alice> hello``."""
    label = Span(messages.SPEAKER(name=name), Style(bold=True, color=nick_color(name)))
    return _line(stamp, [label, SPACE, *parse(body, Style(color=color))])


def action(stamp: str, name: str, body: str) -> str:
    """``[12:00:00] * alice waves``."""
    label = Span(messages.ACTOR(name=name), Style(color=nick_color(name)))
    return _line(stamp, [label, SPACE, *parse(body, Style(italic=True))])


def private(stamp: str, label: str, body: str, color: str | None = None) -> str:
    """``[12:00:00] [PM from alice] psst``, the label from ``protocol.messages``."""
    return _line(stamp, [Span(label, PRIVATE), SPACE, *parse(body, Style(color=color))])


def notice(stamp: str | None, text: str) -> str:
    """Something the server says: joins, leaves, replies, the handshake."""
    return _line(stamp, [Span(text, INFO)])


def error(stamp: str | None, text: str) -> str:
    """Something went wrong with what *you* sent; only you see it."""
    return _line(stamp, [Span(text, ERROR)])
