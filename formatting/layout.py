"""Fitting a server line to a terminal: mentions highlighted, long lines wrapped.

Works on lines as the server sends them (text with SGR codes). Widths are
display cells as wcwidth counts them, so emoji and CJK take two and styles
take none. The caller says how wide the terminal is, keeping this pure.
"""

from __future__ import annotations

import re

import wcwidth

from formatting.markup import RESET, Style
from formatting.sanitize import strip_sgr

MENTION = Style(bold=True, reverse=True)
_SGR = re.compile(r"\x1b\[([0-9;]*)m\Z")


def mention_pattern(name: str) -> re.Pattern[str]:
    """``name`` as a word of its own, in any case.

    ``@bob``, ``Bob:`` and ``bob.`` mention bob; ``bobby`` and ``bob.smith``
    (a name of its own) do not.
    """
    return re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.[\w-])", re.IGNORECASE)


def mentions(text: str, name: str) -> bool:
    return mention_pattern(name).search(strip_sgr(text)) is not None


def split_visible(line: str, count: int) -> tuple[str, str]:
    """``line`` cut after ``count`` visible characters.

    Escapes right at the cut go with the text they style, after it.
    """
    head: list[str] = []
    tail: list[str] = []
    seen = 0
    for segment, is_sequence in wcwidth.iter_sequences(line):
        if is_sequence:
            (head if seen < count else tail).append(segment)
            continue
        take = max(0, min(len(segment), count - seen))
        head.append(segment[:take])
        tail.append(segment[take:])
        seen += len(segment)
    return "".join(head), "".join(tail)


def highlight(line: str, name: str, start: int = 0) -> str:
    """Each mention of ``name`` after the first ``start`` characters stands out.

    The style around a mention comes back right after it, so a mention in the
    middle of a bold or coloured run does not end that run.
    """
    head, body = split_visible(line, start)
    pattern = mention_pattern(name)
    out = [head]
    active: list[str] = []  # the SGR codes since the last reset: the style in force
    for segment, is_sequence in wcwidth.iter_sequences(body):
        if is_sequence:
            if found := _SGR.match(segment):
                if found.group(1).split(";")[0] in ("", "0"):
                    active = []
                active.append(segment)
            out.append(segment)
            continue
        marked = MENTION.sgr + r"\g<0>" + RESET + "".join(active)  # escapes only: no backslashes
        out.append(pattern.sub(marked, segment))
    return "".join(out)


def hanging_wrap(line: str, width: int, prefix: int) -> list[str]:
    """``line`` as rows of at most ``width`` cells, weechat style.

    Rows after the first are indented to line up after the first ``prefix``
    characters (``[12:00:00] <alice> ``), so the text reads as a column. Each
    row carries its own styles and ends plain; the indent itself is unstyled.
    When the prefix would take more than half the width, rows start at the
    left edge instead.
    """
    if wcwidth.width(line) <= width:
        return [line]
    head, body = split_visible(line, prefix)
    indent = wcwidth.width(head)
    if indent > width // 2:
        head, body, indent = "", line, 0
    elif head:
        head, body = wcwidth.propagate_sgr([head, body])
    rows = wcwidth.wrap(body, width - indent) or [""]
    return [head + rows[0], *(" " * indent + row for row in rows[1:])]
