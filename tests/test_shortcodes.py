"""Emoji shortcodes both ways, as pure text functions."""

from __future__ import annotations

import pytest

from formatting.shortcodes import starting_with, to_emoji, to_shortcodes


def test_shortcodes_become_emoji() -> None:
    assert to_emoji(":thumbs_up: great :red_heart:") == "👍 great ❤️"


def test_aliases_from_other_chat_programs_work_too() -> None:
    assert to_emoji(":thumbsup: :+1: :smile:") == "👍 👍 😄"


@pytest.mark.parametrize(
    "text",
    [
        "meet at 12:30:45",
        "ratio 1:2:3",
        "a :not_an_emoji_name: stays",
        "::",
        "trailing colon:",
        "/color red :",
    ],
)
def test_text_that_is_no_shortcode_stays_as_typed(text: str) -> None:
    assert to_emoji(text) == text


def test_emoji_become_their_names() -> None:
    assert to_shortcodes("👍 nice ❤️") == ":thumbs_up: nice :red_heart:"


def test_skin_tones_and_flags_have_names_too() -> None:
    assert to_shortcodes("👍🏽 🇯🇵") == ":thumbs_up_medium_skin_tone: :Japan:"


def test_names_and_emoji_make_a_round_trip() -> None:
    text = "ok 👍 and 🎉 and 日本語"
    assert to_emoji(to_shortcodes(text)) == text


def test_styles_and_plain_text_pass_through_untouched() -> None:
    line = "\x1b[0;1m<alice>\x1b[0m 👍 **not markup here**"
    assert to_shortcodes(line) == "\x1b[0;1m<alice>\x1b[0m :thumbs_up: **not markup here**"


def test_completion_candidates_start_with_the_prefix_in_any_case() -> None:
    found = starting_with(":THUMBS_U")
    codes = [code for code, _glyph in found]
    assert ":thumbs_up:" in codes and ":thumbs_down:" not in codes
    assert all(code.casefold().startswith(":thumbs_u") for code in codes)


def test_each_candidate_shows_the_emoji_it_sends() -> None:
    for code, glyph in starting_with(":th"):
        assert to_emoji(code) == glyph, code


def test_aliases_are_candidates_with_the_emoji_they_send() -> None:
    assert (":+1:", "👍") in starting_with(":+")
    assert dict(starting_with(":egg"))[":egg:"] == to_emoji(":egg:")
