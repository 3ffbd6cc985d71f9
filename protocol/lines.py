"""The layout of every line the server sends, with its styles.

Bodies are markup (see ``formatting.markup``) and must already be clean
(``formatting.sanitize.clean``); labels and notices are plain text. The
caller supplies the time (as text, or as a wall-clock value to format):
this module never reads a clock.
Every result ends with the SGR reset, so no style reaches the next line.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence

from formatting.colors import nick_color
from formatting.markup import RESET, Span, Style, has_markup, parse, to_ansi
from formatting.sanitize import strip_sgr
from protocol import messages

STAMP = Style(dim=True)
INFO = Style(color="cyan")
ERROR = Style(color="red")
PRIVATE = Style(bold=True, color="magenta")
SPACE = Span(" ", Style())


@functools.lru_cache(maxsize=4)
def _head(stamp: str) -> list[Span]:
    return [Span(f"[{stamp}]", STAMP), SPACE]


def _line(stamp: str | None, spans: list[Span]) -> str:
    text = to_ansi(_head(stamp) + spans if stamp is not None else spans)
    return text if text.endswith(RESET) else text + RESET


@functools.lru_cache(maxsize=4096)
def _speaker(name: str) -> Span:
    return Span(messages.SPEAKER(name=name), Style(bold=True, color=nick_color(name)))


@functools.lru_cache(maxsize=64)
def _body_style(color: str | None) -> Style:
    return Style(color=color)


@functools.lru_cache(maxsize=4096)
def _message_head(stamp: str, name: str) -> str:
    """``[12:00:00] <alice> `` with its styles, ending plain: what comes before an unstyled body."""
    return to_ansi([*_head(stamp), _speaker(name), SPACE])


def message(stamp: str, name: str, body: str, color: str | None = None) -> str:
    """``[12:00:00] <alice> hello``."""
    if color is None and not has_markup(body):  # most lines: the same bytes, built without spans
        return _message_head(stamp, name) + body + RESET
    return _line(stamp, [_speaker(name), SPACE, *parse(body, _body_style(color))])


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


@functools.lru_cache(maxsize=4)
def clock(second: int) -> str:
    """A wall-clock second as ``HH:MM:SS``, in the server's zone like every stamp.

    Cached: a busy room stamps thousands of lines within the same second.
    """
    return time.strftime("%H:%M:%S", time.localtime(second))


def stamp(at: float) -> str:
    """The ``HH:MM:SS`` of a line said at wall-clock time ``at``."""
    return clock(int(at))


def unstamped(line: str) -> str:
    """A rendered line as the server's log shows it (the log has timestamps of its own)."""
    return strip_sgr(line).split("] ", 1)[-1]


_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ", re.M)


def unstamped_lines(rendered: Sequence[str]) -> list[str]:
    """``unstamped`` for a batch of stamped lines, in two passes over the whole batch, not two a line."""
    return _STAMP.sub("", strip_sgr("\n".join(rendered))).split("\n")


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets so the port stays readable."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def duration(seconds: float) -> str:
    """``42s``, ``5m07s``, ``3h12m``: how long, as a glance wants it."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
