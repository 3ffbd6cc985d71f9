"""The colour table: names users may type, and the SGR codes they stand for.

One table serves ``/color``, the help text, the nickname palette and the
error that lists valid colours, so a colour is added or renamed in one place.
"""

from __future__ import annotations

import zlib

BASE_COLORS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")

#: Canonical name -> SGR foreground code: the eight ANSI colours (30-37) and
#: their bright variants (90-97).
COLORS: dict[str, int] = {
    **{name: 30 + i for i, name in enumerate(BASE_COLORS)},
    **{f"bright_{name}": 90 + i for i, name in enumerate(BASE_COLORS)},
}

ALIASES = {"grey": "bright_black", "gray": "bright_black", "purple": "magenta"}

#: Colours a nickname may get: readable on dark and light backgrounds alike.
NICK_PALETTE = (
    "red",
    "green",
    "yellow",
    "blue",
    "magenta",
    "cyan",
    "bright_red",
    "bright_green",
    "bright_yellow",
    "bright_blue",
    "bright_magenta",
    "bright_cyan",
)


def lookup_color(name: str) -> str | None:
    """The canonical name for what a user typed, or None if it is no colour.

    Case, hyphens, spaces and a missing underscore are forgiven:
    ``Bright-Red``, ``bright red`` and ``brightred`` all mean ``bright_red``.
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key.startswith("bright") and not key.startswith("bright_"):
        key = "bright_" + key[len("bright") :]
    key = ALIASES.get(key, key)
    return key if key in COLORS else None


def nick_color(name: str) -> str:
    """A stable colour per name, so a speaker is recognisable at a glance."""
    return NICK_PALETTE[zlib.crc32(name.casefold().encode()) % len(NICK_PALETTE)]
