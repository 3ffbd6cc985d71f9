import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formatting.sanitize import MAX_COMBINING, clean, strip_sgr


@pytest.mark.parametrize(
    ("dirty", "safe"),
    [
        ("red \x1b[31mtext\x1b[0m", "red text"),
        ("pasted \x1b[38;5;196mcolour\x1b[m", "pasted colour"),
        ("clear\x1b[2J\x1b[H screen", "clear screen"),
        ("title \x1b]0;pwned\x07 bel", "title  bel"),
        ("title \x1b]2;pwned\x1b\\ st", "title  st"),
        ("hyperlink \x1b]8;;http://x\x1b\\here\x1b]8;;\x1b\\", "hyperlink here"),
        ("unterminated \x1b]0;swallows the rest", "unterminated "),
        ("reset \x1bc terminal", "reset  terminal"),
        ("charset \x1b(0x", "charset x"),
        ("broken \x1b[12", "broken 12"),
        ("bare \x1b", "bare "),
        ("a\rb", "ab"),
        ("new\nline", "newline"),
        ("c1 \x9b31mred", "c1 red"),
        ("c1 \x9d0;title\x9c osc", "c1  osc"),
        ("bidi \u202eevil\u202c", "bidi evil"),
        ("zero\u200bwidth\u2060", "zerowidth"),
        ("sep\u2028\u2029", "sep"),
        ("tab\there", "tab here"),
        ("bom\ufeff", "bom"),
    ],
)
def test_control_and_invisible_characters_are_removed(dirty: str, safe: str) -> None:
    assert clean(dirty) == safe


@pytest.mark.parametrize(
    "emoji",
    [
        "👍",
        "👍🏽",
        "👨\u200d👩\u200d👧",
        "🏳️\u200d🌈",
        "1️⃣",
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    ],
)
def test_emoji_sequences_survive(emoji: str) -> None:
    assert clean(f"hi {emoji}!") == f"hi {emoji}!"


def test_text_in_any_script_survives() -> None:
    text = "Привет, 世界! مرحبا שלום नमस्ते Ελληνικά"
    assert clean(text) == text


def test_zalgo_is_capped() -> None:
    zalgo = "a" + "\u0301" * 50
    assert clean(zalgo) == "a" + "\u0301" * MAX_COMBINING


def test_strip_sgr() -> None:
    assert strip_sgr("\x1b[0;1;31mhi\x1b[0m") == "hi"


@given(st.text())
def test_clean_output_is_printable(text: str) -> None:
    out = clean(text)
    for i, char in enumerate(out):
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            assert char == "\u200d" or 0xE0020 <= ord(char) < 0xE0080, (text, out, i)
    assert "\x1b" not in out and "\n" not in out and "\r" not in out


@given(st.text())
def test_clean_is_idempotent(text: str) -> None:
    assert clean(clean(text)) == clean(text)
