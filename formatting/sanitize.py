"""Make untrusted text safe to put on someone else's terminal.

Only the server's own renderer may emit escape sequences. Everything a peer
sends passes through ``clean`` first, which removes escape sequences whole and
every other character that could move the
cursor, change colours, rewrite the title, reorder text (bidi overrides),
hide text (zero-width characters) or start a new line (CR, LF, U+2028/9).
What remains is printable text; emoji sequences keep their joiners.
"""

from __future__ import annotations

import re
import unicodedata

#: Combining marks allowed on one base character; enough for any script,
#: too few for "Zalgo" text that smears over neighbouring lines.
MAX_COMBINING = 8

_ZWJ = "\u200d"
_TAGS = range(0xE0020, 0xE0080)  # subdivision-flag tags, e.g. the flag of Scotland
_BLACK_FLAG = "\U0001f3f4"
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SGR = re.compile(r"\x1b\[[0-9;]*m")
# Whole escape sequences (ECMA-48), so a pasted coloured line reads clean and
# an attack leaves no "[2J" behind: CSI, then string commands (OSC, DCS, SOS,
# PM, APC) up to their terminator or the end of the line, then two-byte ones
# such as ESC c. Whatever is left of a broken one is removed character by character.
_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d-\x9f]).*?(?:\x07|\x1b\\|\x9c|$)"
    r"|\x1b[ -/]*[0-~]",
    re.S,
)


def _is_pictograph(char: str) -> bool:
    return unicodedata.category(char) in ("So", "Sk") or char == "\ufe0f"


def clean(text: str) -> str:
    """Printable text only; tabs become spaces. Never raises."""
    if text.isascii() and text.isprintable():
        return text  # the common case, checked in C: nothing here can be harmful
    text = _ESCAPE.sub("", text)
    out: list[str] = []
    marks = 0
    for i, char in enumerate(text):
        if char == "\t":
            out.append(" ")
            marks = 0
            continue
        category = unicodedata.category(char)
        if category in _REMOVED_CATEGORIES and not _kept_format(text, i, out):
            continue
        if category in ("Mn", "Me"):
            marks += 1
            if marks > MAX_COMBINING:
                continue
        else:
            marks = 0
        out.append(char)
    return "".join(out)


def _kept_format(text: str, i: int, out: list[str]) -> bool:
    """Joiners inside emoji sequences and flag tags are content, not tricks."""
    char = text[i]
    if char == _ZWJ:
        return bool(out) and _is_pictograph(out[-1]) and i + 1 < len(text) and _is_pictograph(text[i + 1])
    if ord(char) in _TAGS:
        return bool(out) and (out[-1] == _BLACK_FLAG or ord(out[-1]) in _TAGS)
    return False


def strip_sgr(text: str) -> str:
    """Remove colour and style codes (the only escapes the server emits)."""
    return _SGR.sub("", text)
