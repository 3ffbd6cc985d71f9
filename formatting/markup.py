"""Chat markup to styled spans to ANSI SGR.

``**bold**``, ``__italic__`` and ``~~strike~~``, nestable and overlapping,
combinable with a base colour. The rules follow the parts of Markdown people
rely on, and nothing else:

* A marker opens only if the next character is not whitespace and closes only
  if the previous one is not, so ``2 ** 3 ** 4`` stays arithmetic.
* ``__`` does not open or close inside a word, so ``snake__case__name`` stays.
* A pair with nothing between it (``****``) and a marker left unmatched stay
  literal text.
* A backslash right before a marker makes that marker literal.

Styles are independent attributes, so pairs may overlap
(``**a __b** c__``): each paired marker toggles its attribute.

``parse`` makes the spans and ``to_ansi`` the escapes; ``protocol.lines``
lays out whole lines with them. ``from_ansi`` reads such a line back into
spans, for renderings that show styles their own way (the web page).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from formatting.colors import COLORS

MARKERS = {"**": "bold", "__": "italic", "~~": "strike"}

RESET = "\x1b[0m"
_SGR_CODES = {"bold": 1, "dim": 2, "italic": 3, "underline": 4, "reverse": 7, "strike": 9}
_SGR_ATTRIBUTES = {code: attr for attr, code in _SGR_CODES.items()}
_SGR_COLORS = {code: name for name, code in COLORS.items()}
_SGR = re.compile(r"\x1b\[([0-9;]*)m")


@dataclass(frozen=True, slots=True)
class Style:
    bold: bool = False
    italic: bool = False
    strike: bool = False
    dim: bool = False
    underline: bool = False
    reverse: bool = False
    color: str | None = None
    #: The escape that sets exactly this style from any previous one; it also
    #: identifies the style, so rendering compares strings, not dataclasses.
    sgr: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = ["0", *(str(code) for attr, code in _SGR_CODES.items() if getattr(self, attr))]
        if self.color is not None:
            codes.append(str(COLORS[self.color]))
        object.__setattr__(self, "sgr", "\x1b[" + ";".join(codes) + "m")

    def toggled(self, attribute: str) -> Style:
        key = (self.sgr, attribute)
        style = _TOGGLED.get(key)
        if style is None:
            flags: dict[str, bool] = {attribute: not getattr(self, attribute)}
            style = _TOGGLED[key] = replace(self, **flags)  # type: ignore[arg-type]
        return style


PLAIN = Style()
assert PLAIN.sgr == RESET
_TOGGLED: dict[tuple[str, str], Style] = {}  # a few dozen styles exist; rendering is the hot path


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    style: Style


@dataclass(slots=True)
class _Marker:
    text: str
    can_open: bool
    can_close: bool
    paired: bool = False

    @property
    def kind(self) -> str:
        return MARKERS[self.text]


_MARKER = re.compile(r"\\(\*\*|__|~~)|(\*\*|__|~~)")


def _tokenize(text: str) -> list[str | _Marker]:
    """Literal runs and markers; an escaped marker is a literal run."""
    tokens: list[str | _Marker] = []
    last = 0
    for found in _MARKER.finditer(text):
        start, end = found.span()
        if start > last:
            tokens.append(text[last:start])
        last = end
        escaped, marker = found.groups()
        if escaped is not None:
            tokens.append(escaped)
            continue
        before = text[start - 1] if start > 0 else " "
        after = text[end] if end < len(text) else " "
        can_open = not after.isspace()
        can_close = not before.isspace()
        if marker == "__":
            can_open = can_open and not before.isalnum()
            can_close = can_close and not after.isalnum()
        tokens.append(_Marker(marker, can_open, can_close))
    if last < len(text):
        tokens.append(text[last:])
    return tokens


def _pair(tokens: list[str | _Marker]) -> None:
    """Mark which markers form pairs; the rest will be printed literally."""
    open_at: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if isinstance(token, str):
            continue
        opener = open_at.get(token.kind)
        if opener is not None and token.can_close:
            del open_at[token.kind]
            if any(isinstance(t, str) for t in tokens[opener + 1 : index]):
                token.paired = True
                first = tokens[opener]
                assert isinstance(first, _Marker)
                first.paired = True
        elif token.can_open:
            open_at[token.kind] = index


def has_markup(text: str) -> bool:
    """Might ``text`` style anything? (It holds a marker, perhaps escaped or unmatched.)"""
    return "**" in text or "__" in text or "~~" in text


def parse(text: str, base: Style = PLAIN) -> list[Span]:
    """Split marked-up text into runs of one style each."""
    if not has_markup(text):
        return [Span(text, base)] if text else []  # most lines: no markup at all
    tokens = _tokenize(text)
    _pair(tokens)
    spans: list[Span] = []
    style = base
    run: list[str] = []
    for token in tokens:
        if isinstance(token, _Marker) and token.paired:
            if run:
                spans.append(Span("".join(run), style))
                run = []
            style = style.toggled(token.kind)
        elif isinstance(token, _Marker):
            run.append(token.text)
        else:
            run.append(token)
    if run:
        spans.append(Span("".join(run), style))
    return spans


def to_ansi(spans: list[Span]) -> str:
    """SGR-encode spans. The result always ends plain, so nothing bleeds on."""
    out: list[str] = []
    current = RESET
    for span in spans:
        if span.style.sgr != current:
            current = span.style.sgr
            out.append(current)
        out.append(span.text)
    if current != RESET:
        out.append(RESET)
    return "".join(out)


def from_ansi(text: str) -> list[Span]:
    """The spans of SGR-encoded text: ``to_ansi`` read back (runs of one style, none empty).

    Codes this module does not write (underline colours, 256 colours) are
    ignored, and so is any other escape: the text comes from ``to_ansi``.
    """
    spans: list[Span] = []
    style = PLAIN
    last = 0
    for found in _SGR.finditer(text):
        if found.start() > last:
            _append(spans, text[last : found.start()], style)
        last = found.end()
        style = _apply_sgr(style, found.group(1))
    if last < len(text):
        _append(spans, text[last:], style)
    return spans


def _append(spans: list[Span], text: str, style: Style) -> None:
    if spans and spans[-1].style == style:
        spans[-1] = Span(spans[-1].text + text, style)
    else:
        spans.append(Span(text, style))


def _apply_sgr(style: Style, codes: str) -> Style:
    key = (style.sgr, codes)
    found = _AFTER_SGR.get(key)
    if found is None:
        found = _AFTER_SGR[key] = _read_sgr(style, codes)
    return found


_AFTER_SGR: dict[tuple[str, str], Style] = {}  # a few dozen styles exist, as for _TOGGLED


def _read_sgr(style: Style, codes: str) -> Style:
    for part in codes.split(";"):
        code = int(part) if part.isdigit() else 0
        if code == 0:
            style = PLAIN
        elif code in _SGR_ATTRIBUTES:
            style = replace(style, **{_SGR_ATTRIBUTES[code]: True})  # type: ignore[arg-type]
        elif code in _SGR_COLORS:
            style = replace(style, color=_SGR_COLORS[code])
        elif code == 39:
            style = replace(style, color=None)
    return style
