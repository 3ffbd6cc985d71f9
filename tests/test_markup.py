import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formatting.markup import RESET, Style, parse, to_ansi
from formatting.sanitize import strip_sgr
from harness import find_cells, pyte_color, screen_of
from protocol import lines

SGR = re.compile(r"\x1b\[[0-9;]*m")


def render(text: str, color: str | None = None) -> str:
    """A message body as the server renders it: markup in, ANSI out."""
    return to_ansi(parse(text, Style(color=color)))


def plain(text: str) -> str:
    """What the reader sees, from the spans (not from the ANSI)."""
    return "".join(span.text for span in parse(text))


def cells(text: str, word: str):  # type: ignore[no-untyped-def]
    return find_cells(screen_of(render(text)), word)


def test_bold_italic_strike_as_a_terminal_shows_them() -> None:
    screen = screen_of(render("a **bold** b __it__ c ~~gone~~ d"))
    assert all(c.bold and not c.italics for c in find_cells(screen, "bold"))
    assert all(c.italics and not c.bold for c in find_cells(screen, "it"))
    assert all(c.strikethrough for c in find_cells(screen, "gone"))
    assert not any(c.bold or c.italics or c.strikethrough for c in find_cells(screen, " d"))


def test_nested_and_overlapping_markers_combine() -> None:
    screen = screen_of(render("**bold __both ~~all~~__ bold** plain"))
    assert all(c.bold and c.italics and c.strikethrough for c in find_cells(screen, "all"))
    assert all(c.bold and c.italics and not c.strikethrough for c in find_cells(screen, "both"))
    assert not any(c.bold for c in find_cells(screen, "plain"))
    overlap = screen_of(render("**a __b** c__"))
    assert find_cells(overlap, "a")[0].bold and not find_cells(overlap, "a")[0].italics
    b = find_cells(overlap, "b")[0]
    assert b.bold and b.italics
    c = find_cells(overlap, "c")[0]
    assert c.italics and not c.bold


def test_colour_combines_with_markup() -> None:
    screen = screen_of(render("hi **there**", color="green"))
    assert all(c.fg == "green" for c in find_cells(screen, "hi"))
    assert all(c.fg == "green" and c.bold for c in find_cells(screen, "there"))


@pytest.mark.parametrize(
    "text",
    ["2 ** 3 ** 4", "**", "****", "unclosed **bold", "snake__case__name", "a ~~ b", "__ spaced __"],
)
def test_what_is_not_markup_stays_literal(text: str) -> None:
    assert plain(text) == text
    assert not any(
        c.bold or c.italics or c.strikethrough
        for row in screen_of(render(text)).buffer.values()
        for c in row.values()
    )


def test_backslash_escapes_a_marker() -> None:
    assert plain(r"\**not bold**") == "**not bold**"
    assert plain(r"C:\Users\me") == r"C:\Users\me"


def test_every_rendered_line_ends_reset() -> None:
    line = lines.message("12:00:00", "alice", "**unclosed and __open", "red")
    assert line.endswith(RESET)
    assert lines.notice(None, "x").endswith(RESET)


def test_a_style_does_not_bleed_into_the_next_line() -> None:
    first = lines.message("12:00:00", "alice", "**bold** and red", "red")
    screen = screen_of(first + "\r\n" + "after\r\n")
    after = find_cells(screen, "after")
    assert all(c.fg == "default" and not c.bold for c in after)


def test_message_layout_with_nick_colour() -> None:
    line = lines.message("12:34:56", "alice", "hello")
    assert strip_sgr(line) == "[12:34:56] <alice> hello"
    nick = find_cells(screen_of(line), "<alice>")
    assert nick[0].bold and nick[0].fg != "default"


def test_pyte_names_our_colours() -> None:
    for name in ("red", "bright_red", "yellow"):
        assert find_cells(screen_of(render("x", name)), "x")[0].fg == pyte_color(name)


markup_text = st.text(alphabet=st.sampled_from(list("ab *_~\\é🎉")), max_size=40)


@given(markup_text, st.sampled_from([None, "red", "bright_cyan"]))
def test_render_only_emits_sgr_and_ends_plain(text: str, color: str | None) -> None:
    out = render(text, color)
    assert "\x1b" not in SGR.sub("", out)
    assert SGR.sub("", out) == plain(text)
    codes = SGR.findall(out)
    assert not codes or codes[-1] == RESET  # whatever follows the last code is plain: nothing bleeds


@given(markup_text)
def test_plain_text_only_loses_paired_markers(text: str) -> None:
    shown = plain(text)
    for char in shown:
        assert char in text
    if not any(m in text for m in ("**", "__", "~~")):
        assert shown == text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.9, "59s"), (60, "1m00s"), (307, "5m07s"), (3600, "1h00m"), (11520, "3h12m")],
)
def test_durations_read_at_a_glance(seconds: float, shown: str) -> None:
    assert lines.duration(seconds) == shown
