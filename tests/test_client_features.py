"""What makes Client.py feel like irssi or weechat: completion, history, help, mentions,
the bell, emoji shortcodes and wrapping.

The layout is checked directly, the rest in a pseudo-terminal, as the screen
shows it. Completion and what a line means to the reader have their own, pure
tests (``test_completion.py``, ``test_conversation.py``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.utils import get_cwidth

from formatting import layout
from formatting.sanitize import strip_sgr
from harness import (
    PYTHON,
    ROOT,
    WAIT,
    ServerProcess,
    Terminal,
    TerminalClient,
    find_cells,
    screen_of,
    wait_until,
)
from protocol import lines, messages

UP = "\x1b[A"
KILL_LINE = "\x15"  # Ctrl-U
OSC = re.compile(rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")  # title and the like end in a BEL too


# --- layout, as a terminal shows it -----------------------------------------------


def test_a_mention_stands_out_and_the_style_around_it_goes_on() -> None:
    line = lines.message("12:00:00", "alice", "**hey bob, see** bob")
    screen = screen_of(layout.highlight(line, "bob", len("[12:00:00] <alice> ")))
    assert all(c.reverse and c.bold for c in find_cells(screen, "bob, see")[:3])
    assert all(c.bold and not c.reverse for c in find_cells(screen, ", see"))  # bold resumes after it
    assert all(c.reverse for c in find_cells(screen, "see bob")[4:])
    assert not any(c.reverse for c in find_cells(screen, "hey"))


def test_a_mention_in_the_label_is_left_alone() -> None:
    line = lines.private("12:00:00", messages.PM_FROM(name="alice"), "from pm")
    shown = screen_of(layout.highlight(line, "from", len("[12:00:00] [PM from alice] ")))
    assert not any(c.reverse for c in find_cells(shown, "PM from"))
    assert all(c.reverse for c in find_cells(shown, "] from")[2:])


def test_long_lines_wrap_with_a_hanging_indent_and_keep_their_styles() -> None:
    body = "one two three **four five six seven eight nine** ten eleven twelve"
    rows = layout.hanging_wrap(lines.message("12:00:00", "alice", body), 40, len("[12:00:00] <alice> "))
    screen = screen_of("\r\n".join(rows), columns=40, rows=10)
    shown = [row.rstrip() for row in screen.display[: len(rows)]]
    assert shown[0].startswith("[12:00:00] <alice> one")
    assert all(row.startswith(" " * 19) and row[19] != " " for row in shown[1:])
    assert " ".join(row.strip() for row in shown).endswith(body.replace("**", ""))
    assert all(c.bold for c in find_cells(screen, "eight"))
    assert not any(screen.buffer[row][x].bold for row in range(1, len(rows)) for x in range(19))
    assert all(c.bold for c in find_cells(screen, "nine")) and not any(
        c.bold for c in find_cells(screen, "ten")
    )


def test_wide_characters_count_as_two_columns() -> None:
    line = lines.message("12:00:00", "日本", "日本語の文章 " * 6 + "👍👍👍 fin")
    prefix = len("[12:00:00] <日本> ")
    rows = layout.hanging_wrap(line, 40, prefix)
    screen = screen_of("\r\n".join(rows), columns=40, rows=10)
    indent = get_cwidth("[12:00:00] <日本> ")
    assert indent == 18 and screen.buffer[0][indent].data == "日"
    for row in range(1, len(rows)):
        assert all(screen.buffer[row][col].data == " " for col in range(indent)), screen.display
        assert screen.buffer[row][indent].data != " ", screen.display
    assert len(rows) > 2 and all(get_cwidth(strip_sgr(row)) <= 40 for row in rows)


def test_short_lines_and_narrow_terminals() -> None:
    short = lines.message("12:00:00", "alice", "hi")
    assert layout.hanging_wrap(short, 40, 19) == [short]
    rows = layout.hanging_wrap(lines.message("12:00:00", "alice", "a few words here"), 24, 19)
    assert [strip_sgr(row) for row in rows] == ["[12:00:00] <alice> a few", "words here"]  # no indent


# --- in a terminal ------------------------------------------------------------------


@pytest.fixture
def join(open_server: ServerProcess, terminals: list[Terminal]):  # type: ignore[no-untyped-def]
    """Start Client.py as NAME in a terminal and wait until it can be typed into."""

    def start(name: str, *args: str, columns: int = 100) -> TerminalClient:
        term = TerminalClient(open_server.port, "--name", name, *args, columns=columns)
        terminals.append(term)
        term.wait_screen(rf"Welcome, {name}!")
        term.wait_prompt(f"{name}>")
        return term

    return start


def bells(term: TerminalClient) -> int:
    """Bells rung so far (not counting the BEL that ends a title sequence)."""
    with term._lock:
        raw = term.raw
    return OSC.sub(b"", raw).count(b"\x07")


def row_of(term: TerminalClient, pattern: str) -> int:
    regex = re.compile(pattern)
    rows = term.display().split("\n")
    return next(i for i, row in enumerate(rows) if regex.search(row))


def cells_in_row(term: TerminalClient, anchor: str, word: str) -> list[Any]:
    """The cells showing ``word`` in the first row that shows ``anchor``."""
    with term._lock:
        for row in term.screen.display:
            at = row.find(anchor)
            if at >= 0:
                y = term.screen.display.index(row)
                x = row.index(word, at)
                return [term.screen.buffer[y][x + i] for i in range(len(word))]
    raise AssertionError(f"{anchor!r} not on screen")


def test_tab_completes_a_name(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob")
    bob.type("/private al\t")
    wait_until(lambda: bob.cursor_line() == "bob> /private alice", what="the completed name")
    assert bob.screen.cursor.x == len("bob> /private alice ")
    bob.type("psst\r")
    alice.expect(r"\[PM from bob\] psst")


def test_tab_completes_a_command_a_colour_and_an_address(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob")
    bob.type("/co\t")
    wait_until(lambda: bob.cursor_line() == "bob> /color", what="/color")
    bob.type("bright_m\t")
    wait_until(lambda: bob.cursor_line() == "bob> /color bright_magenta", what="the colour")
    bob.type("loud\r")
    alice.expect("<bob> loud")
    bob.wait_prompt("bob>")
    bob.type("ali\t")
    wait_until(lambda: bob.cursor_line() == "bob> alice:", what="alice:")
    bob.type("hi\r")
    alice.expect("<bob> alice: hi")


def test_up_arrow_recalls_the_previous_line(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob")
    bob.type("first thought\r")
    alice.expect("<bob> first thought")
    bob.type("second\r")
    alice.expect("<bob> second")
    bob.type(UP + UP)
    wait_until(lambda: bob.cursor_line() == "bob> first thought", what="the recalled line")
    bob.type(" again\r")
    alice.expect("<bob> first thought again")


def test_history_file_keeps_lines_for_next_time(  # type: ignore[no-untyped-def]
    open_server: ServerProcess, join, tmp_path: Path
) -> None:
    history = tmp_path / "history"
    first = join("bob", "--history-file", str(history))
    first.type("remember me\r")
    first.wait_screen(r"<bob> remember me")
    first.type("\x04")
    assert first.wait_exit() == 0
    assert "remember me" in history.read_text()
    second = join("bob2", "--history-file", str(history))
    second.type(UP)
    wait_until(lambda: second.cursor_line() == "bob2> remember me", what="the line from last time")


def test_help_lists_the_client_keys_below_the_server_commands(join) -> None:  # type: ignore[no-untyped-def]
    bob = join("bob", columns=120)
    bob.type("/help\r")
    bob.wait_screen(r"Ctrl-C")
    server_last = row_of(bob, re.escape(strip_sgr(messages.HELP[-1])))
    assert row_of(bob, r"/me <action>") < row_of(bob, r"/who ") < server_last
    keys = [row_of(bob, rf"\*\*\*   {key} ") for key in ("Tab", "Up, Down", "Ctrl-D", "Ctrl-C")]
    assert server_last < row_of(bob, "Keys in Client.py") < keys[0] and keys == sorted(keys)


def test_a_mention_is_highlighted_and_rings_the_bell(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob")
    bob.type("bob talks about bob\r")
    bob.wait_screen(r"<bob> bob talks about bob")
    assert bells(bob) == 0
    assert not any(c.reverse for c in cells_in_row(bob, "<bob> bob", "bob talks"))
    alice.send("hey bob, look")
    bob.wait_screen(r"<alice> hey bob, look")
    assert all(c.reverse and c.bold for c in cells_in_row(bob, "<alice>", "bob"))
    assert not any(c.reverse for c in cells_in_row(bob, "<alice>", "hey"))
    assert not any(c.reverse for c in cells_in_row(bob, "<alice>", ", look"))
    assert bells(bob) == 1


def test_ignore_in_a_terminal(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice, carol = open_server.connect("alice"), open_server.connect("carol")
    bob = join("bob")
    bob.type("/ignore carol\r")
    bob.wait_screen(r"Ignoring carol")
    carol.send("you cannot see me")
    alice.send("but you see me")
    bob.wait_screen(r"<alice> but you see me")
    assert "cannot see me" not in bob.display()
    bob.type("/unignore carol\r")
    bob.wait_screen(r"No longer ignoring carol")
    carol.send("and now?")
    bob.wait_screen(r"<carol> and now\?")


def test_a_pasted_block_waits_for_enter_then_goes_line_by_line(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob")
    bob.type("\x1b[200~first pasted\nsecond pasted\x1b[201~")  # a bracketed paste, as terminals send it
    bob.wait_screen(r"second pasted")
    assert not any("pasted" in line for line in alice.drain(0.2))  # nothing sent yet
    bob.type("\r")
    assert messages.MESSAGE.match(alice.expect(messages.MESSAGE)) == {"name": "bob", "text": "first pasted"}
    assert messages.MESSAGE.match(alice.expect(messages.MESSAGE)) == {"name": "bob", "text": "second pasted"}


def test_a_private_message_rings_the_bell(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob")
    alice.send("just chatting")
    bob.wait_screen(r"<alice> just chatting")
    assert bells(bob) == 0
    alice.send("/private bob psst")
    bob.wait_screen(r"\[PM from alice\] psst")
    assert bells(bob) == 1


def test_no_bell_keeps_quiet_but_still_highlights(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob", "--no-bell")
    alice.send("/private bob psst")
    alice.send("hey bob")
    bob.wait_screen(r"<alice> hey bob")
    assert all(c.reverse for c in cells_in_row(bob, "<alice>", "bob"))
    assert bells(bob) == 0


def test_a_long_line_wraps_with_a_hanging_indent(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob", columns=50)
    words = [f"word{i}" for i in range(20)]
    alice.send(" ".join(words[:8]) + " ~~" + " ".join(words[8:14]) + "~~ " + " ".join(words[14:]))
    bob.wait_screen(r"word19")
    rows = bob.display().split("\n")
    first = row_of(bob, r"<alice> word0")
    last = row_of(bob, r"word19")
    assert last - first >= 2
    indent = len("[00:00:00] <alice> ")
    assert rows[first].index("word0") == indent
    for row in rows[first + 1 : last + 1]:
        assert row.startswith(" " * indent) and row[indent] != " ", rows
    assert " ".join(" ".join(rows[first : last + 1]).split()[2:]) == " ".join(words)
    assert all(c.strikethrough for c in cells_in_row(bob, "word13", "word13"))
    with bob._lock:
        assert not any(bob.screen.buffer[last][x].strikethrough for x in range(indent))


def test_typing_survives_wrapped_lines_and_bells(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob", columns=50)
    bob.type("half a thou")
    bob.wait_prompt("bob> half a thou")
    alice.send("bob, " + " ".join(f"word{i}" for i in range(20)))
    bob.wait_screen(r"word19")
    bob.wait_prompt("bob> half a thou")
    assert bob.cursor_line() == "bob> half a thou" and bells(bob) == 1
    bob.type("ght\r")
    alice.expect("<bob> half a thought")


def test_wide_characters_keep_alignment(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    sender = open_server.connect("日本")
    bob = join("bob", columns=50)
    sender.send("日本語の文章 " * 8 + "👍 end")
    bob.wait_screen(r"👍 end")
    first, last = row_of(bob, r"<日本> 日本語"), row_of(bob, r"👍 end")
    indent = get_cwidth("[00:00:00] <日本> ")
    with bob._lock:
        buffer = bob.screen.buffer
        assert buffer[first][indent].data == "日"
        for row in range(first + 1, last + 1):
            assert all(buffer[row][x].data == " " for x in range(indent)), bob.screen.display
            assert buffer[row][indent].data == "日" or row == last
    bob.type("日本語👍 ok")
    wait_until(lambda: bob.cursor_line() == "bob> 日本語👍 ok", what="the wide input line")
    assert bob.screen.cursor.x == get_cwidth("bob> 日本語👍 ok")


def test_a_shortcode_arrives_as_emoji(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob")
    bob.type(":thumbs_up: great\r")
    alice.expect("<bob> 👍 great")


def test_emoji_names_shows_incoming_emoji_as_shortcodes(open_server: ServerProcess, join) -> None:  # type: ignore[no-untyped-def]
    alice = open_server.connect("alice")
    bob = join("bob", "--emoji-names")
    alice.send("👍 nice")
    bob.wait_screen(r"<alice> :thumbs_up: nice")
    assert "👍" not in bob.display()


def test_help_option_reads_like_a_man_page() -> None:
    result = subprocess.run(
        [PYTHON, str(ROOT / "Client.py"), "--help"], capture_output=True, text=True, timeout=WAIT, cwd=ROOT
    )
    assert result.returncode == 0
    text = result.stdout
    assert text.startswith("usage: Client.py ")
    sections = [
        line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")
    ]
    assert sections == ["options:", "keys (on a terminal):", "exit status:", "environment:", "see also:"]
    for option in ("--no-bell", "--emoji-names", "--history-file FILE", "--color WHEN"):
        assert option in text
    status = text.split("exit status:")[1].split("environment:")[0]
    assert re.findall(r"^  (\d+) ", status, re.M) == ["0", "1", "2", "3", "130"]


def test_a_bad_option_exits_2() -> None:
    result = subprocess.run(
        [PYTHON, str(ROOT / "Client.py"), "--colour-me-bad"], capture_output=True, text=True, timeout=WAIT
    )
    assert result.returncode == 2 and "usage: Client.py" in result.stderr
