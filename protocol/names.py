"""Name rules: what a name may look like and when two names are "the same".

A name is NFKC-normalised first, so a full-width ``ａｌｉｃｅ`` *is* ``alice``.
Two names collide when their keys are equal; the key folds case and maps the
Cyrillic and Greek letters that look exactly like Latin ones, so ``аlice``
(Cyrillic a) cannot pass as ``alice`` either.

Invisible characters follow Unicode's security mechanisms (UTS #39, with
UTS #31's identifiers): a name that holds a default-ignorable code point
(variation selectors, the combining grapheme joiner, Mongolian free variation
selectors, Hangul fillers, zero-width and bidi controls...) is *refused* with
the reason, because it would show as something it is not; and the key drops
them, as UTS #39's skeleton does, so ``alice`` + VS16 has the same key as
``alice`` wherever a name is looked up (``/private``, ``/ban``, the
allow-list). Refusing rather than silently stripping means nobody ends up
with a name other than the one they typed. A name with no visible character
at all is refused as blank, and a character may carry at most
``MAX_COMBINING`` combining marks, as in messages.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import regex

from formatting.sanitize import MAX_COMBINING
from protocol import messages

MAX_NAME_LENGTH = 24
EXTRA_NAME_CHARACTERS = frozenset("_-.")
RESERVED_NAMES = frozenset(
    {"server", "operator", "admin", "administrator", "system", "root", "everyone", "all", "nobody"}
)

#: Code points that render as nothing (Unicode's Default_Ignorable_Code_Point).
_INVISIBLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
#: Visible characters with an empty glyph, which that property does not cover.
_BLANK_GLYPHS = frozenset("\u2800")  # BRAILLE PATTERN BLANK

# Lower-case letters from other scripts that render like a Latin letter.
_LOOKALIKES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
        "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "һ": "h",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v",
        "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ζ": "z",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class BadName:
    """Why a name was refused, worded for the person who typed it."""

    reason: str


def normalize(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw.strip())


def name_key(name: str) -> str:
    """Equal keys mean "the same person" for uniqueness and lookups."""
    visible: str = _INVISIBLE.sub("", unicodedata.normalize("NFKC", name))
    return visible.casefold().translate(_LOOKALIKES)


def check_name(raw: str, max_length: int = MAX_NAME_LENGTH) -> str | BadName:
    """The normalised name, or why it cannot be used (uniqueness aside)."""
    name = normalize(raw)
    if not name:
        return BadName(messages.NAME_EMPTY)
    if all(c.isspace() or c in _BLANK_GLYPHS or _INVISIBLE.match(c) for c in name):
        return BadName(messages.NAME_BLANK)
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return BadName(messages.NAME_HAS_CONTROL)
    if any(c.isspace() for c in name):
        return BadName(messages.NAME_HAS_SPACE)
    if _INVISIBLE.search(name):
        return BadName(messages.NAME_HAS_INVISIBLE)
    if len(name) > max_length:
        return BadName(messages.NAME_TOO_LONG.format(limit=max_length))
    if not (_is_alnum(name[0]) and all(_allowed(c) for c in name)):
        return BadName(messages.NAME_BAD_CHARACTER)
    if _most_marks(name) > MAX_COMBINING:
        return BadName(messages.NAME_TOO_MANY_MARKS.format(limit=MAX_COMBINING))
    if name_key(name) in RESERVED_NAMES:
        return BadName(messages.NAME_RESERVED.format(name=name))
    return name


def _is_alnum(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN"


def _allowed(char: str) -> bool:
    return char in EXTRA_NAME_CHARACTERS or unicodedata.category(char)[0] in "LNM"


def _most_marks(name: str) -> int:
    """The most combining marks on one character (counted as the sanitiser counts them)."""
    most = run = 0
    for char in name:
        run = run + 1 if unicodedata.category(char) in ("Mn", "Me") else 0
        most = max(most, run)
    return most
