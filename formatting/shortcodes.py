"""Emoji shortcodes both ways: ``:thumbs_up:`` to 👍, and 👍 back to ``:thumbs_up:``.

People type shortcodes because keyboards have no emoji keys, and read them on
terminals without emoji fonts. The names come from the ``emoji`` package, which
follows the Unicode releases, so no table is kept here.
"""

from __future__ import annotations

import functools

import emoji


def to_emoji(text: str) -> str:
    """Every shortcode in ``text`` as its emoji; anything else stays as typed.

    Aliases from Slack and GitHub work too (``:thumbsup:``, ``:+1:``), so
    fingers trained elsewhere are not wrong here.
    """
    return emoji.emojize(text, language="alias")


def to_shortcodes(text: str) -> str:
    """Every emoji in ``text`` as its shortcode, for terminals that cannot draw it."""
    return emoji.demojize(text)


@functools.cache
def _shortcodes() -> tuple[tuple[str, str], ...]:
    """(shortcode, emoji) for every name and alias, sorted for completion menus."""
    names: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for glyph, data in emoji.EMOJI_DATA.items():
        fully_qualified = data["status"] == emoji.STATUS["fully_qualified"]
        for table, codes in ((names, [data["en"]]), (aliases, data.get("alias", []))):
            for code in codes:
                if code not in table or fully_qualified:
                    table[code] = glyph  # the form to_emoji sends, when there are several
    pairs = names | aliases  # an alias wins a clash, as in to_emoji (:egg: is 🍳 there)
    return tuple(sorted(pairs.items(), key=lambda pair: pair[0].casefold()))


def starting_with(prefix: str) -> list[tuple[str, str]]:
    """(shortcode, emoji) pairs whose shortcode starts with ``prefix`` (``:thu``), any case."""
    key = prefix.casefold()
    return [pair for pair in _shortcodes() if pair[0].casefold().startswith(key)]
