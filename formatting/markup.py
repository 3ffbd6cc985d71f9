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
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from formatting.colors import COLORS

MARKERS = {"**": "bold", "__": "italic", "~~": "strike"}
ESCAPE = "\\"

RESET = "\x1b[0m"
_SGR_CODES = {"bold": 1, "dim": 2, "italic": 3, "underline": 4, "reverse": 7, "strike": 9}


@dataclass(frozen=True, slots=True)
class Style:
    bold: bool = False
    italic: bool = False
    strike: bool = False
    dim: bool = False
    underline: bool = False
    reverse: bool = False
    color: str | None = None

    def toggled(self, attribute: str) -> Style:
        flags: dict[str, bool] = {attribute: not getattr(self, attribute)}
        return replace(self, **flags)  # type: ignore[arg-type]

    def sgr(self) -> str:
        """The escape that sets exactly this style from any previous one."""
        codes = ["0"]
        codes += [str(code) for attr, code in _SGR_CODES.items() if getattr(self, attr)]
        if self.color is not None:
            codes.append(str(COLORS[self.color]))
        return "\x1b[" + ";".join(codes) + "m"


PLAIN = Style()


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


def _tokenize(text: str) -> list[str | _Marker]:
    tokens: list[str | _Marker] = []
    i, n = 0, len(text)
    while i < n:
        pair = text[i : i + 2]
        if text[i] == ESCAPE and text[i + 1 : i + 3] in MARKERS:
            tokens.append(text[i + 1 : i + 3])
            i += 3
        elif pair in MARKERS:
            before = text[i - 1] if i > 0 else " "
            after = text[i + 2] if i + 2 < n else " "
            can_open = not after.isspace()
            can_close = not before.isspace()
            if pair == "__":
                can_open = can_open and not before.isalnum()
                can_close = can_close and not after.isalnum()
            tokens.append(_Marker(pair, can_open, can_close))
            i += 2
        else:
            tokens.append(text[i])
            i += 1
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


def parse(text: str, base: Style = PLAIN) -> list[Span]:
    """Split marked-up text into runs of one style each."""
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
    current = PLAIN
    for span in spans:
        if span.style != current:
            out.append(RESET if span.style == PLAIN else span.style.sgr())
            current = span.style
        out.append(span.text)
    if current != PLAIN:
        out.append(RESET)
    return "".join(out)


def render(text: str, color: str | None = None) -> str:
    """Markup in, ANSI out: the one call the server makes per message body."""
    return to_ansi(parse(text, Style(color=color)))


def escape(text: str) -> str:
    """Make every marker in ``text`` literal, so ``render`` shows it as typed."""
    for marker in MARKERS:
        text = text.replace(marker, ESCAPE + marker)
    return text


def plain(text: str) -> str:
    """What the reader sees with styles ignored."""
    return "".join(span.text for span in parse(text))
