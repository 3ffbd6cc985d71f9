"""The room's lines as the page gets them, in-process: records, frames, rendered once per broadcast."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, TextMessage

from chatroom.config import Settings
from chatroom.delivery import Fanout, Limits
from chatroom.web import rendering
from chatroom.web.listener import WebPeer
from chatroom.web.rendering import WEB_FRAMES, close_frame, describe, hello
from chatroom.web.routes import static_files
from formatting.colors import COLORS, nick_color
from formatting.markup import PLAIN, Span, Style, from_ansi, parse, to_ansi
from harness import WAIT
from protocol import commands, lines, messages


def frames(data: bytes) -> list[object]:
    """What a browser makes of ``data``: the JSON of each text message, or ("close", code)."""
    browser = Connection(ConnectionType.CLIENT)
    browser.receive_data(data)
    out: list[object] = []
    for event in browser.events():
        if isinstance(event, TextMessage):
            assert event.message_finished
            out.append(json.loads(event.data))
        elif isinstance(event, CloseConnection):
            out.append(("close", event.code))
    return out


# --- SGR back into spans -------------------------------------------------------------------


styles = st.builds(
    Style,
    bold=st.booleans(),
    italic=st.booleans(),
    strike=st.booleans(),
    dim=st.booleans(),
    color=st.none() | st.sampled_from(list(COLORS)),
)


@given(st.lists(st.tuples(st.text(min_size=1).filter(lambda t: "\x1b" not in t), styles), max_size=6))
def test_from_ansi_reads_back_what_to_ansi_wrote(runs: list[tuple[str, Style]]) -> None:
    spans = [Span(text, style) for text, style in runs]
    merged: list[Span] = []
    for span in spans:  # neighbours of one style come back as one run
        if merged and merged[-1].style == span.style:
            merged[-1] = Span(merged[-1].text + span.text, span.style)
        else:
            merged.append(span)
    assert from_ansi(to_ansi(spans)) == merged


def test_from_ansi_of_a_rendered_line() -> None:
    line = lines.message("12:00:01", "alice", "a **b** __c__", "red")
    assert from_ansi(line) == [
        Span("[12:00:01]", Style(dim=True)),
        Span(" ", PLAIN),
        Span("<alice>", Style(bold=True, color=nick_color("alice"))),
        Span(" ", PLAIN),
        Span("a ", Style(color="red")),
        Span("b", Style(bold=True, color="red")),
        Span(" ", Style(color="red")),
        Span("c", Style(italic=True, color="red")),
    ]
    assert from_ansi("plain") == parse("plain")


# --- records ---------------------------------------------------------------------------------


def test_a_message_is_its_sender_time_and_styled_runs() -> None:
    record = describe(lines.message("12:00:01", "alice", "hi **you** <b>&amp;</b>", "green"))
    assert record == {
        "kind": "Message",
        "at": "12:00:01",
        "name": "alice",
        "hues": {"alice": nick_color("alice")},
        "tone": None,
        "body": [("hi ", "", "green"), ("you", "b", "green"), (" <b>&amp;</b>", "", "green")],
    }


def test_notices_carry_their_fields_and_tone() -> None:
    welcome = describe(lines.notice("12:00:02", messages.WELCOME(name="bob", count=2, names="alice, bob")))
    assert welcome["kind"] == "Welcome" and welcome["names"] == ("alice", "bob") and welcome["count"] == 2
    assert welcome["hues"] == {"bob": nick_color("bob"), "alice": nick_color("alice")}
    assert welcome["tone"] == "info"
    error = describe(lines.error("12:00:03", messages.NO_SUCH_USER(name="zed")))
    assert (error["kind"], error["tone"]) == ("Notice", "error")
    assert error["body"] == [("No one called 'zed' is in the room.", "", "red")]
    left = describe(lines.notice("12:00:04", messages.KICKED_NOTICE(name="eve", count=1)))
    assert (left["kind"], left["how"]) == ("Left", "removed")
    refused = describe(lines.notice(None, messages.REFUSED()))
    assert refused["kind"] == "Refused" and refused["at"] is None


def test_private_lines_name_the_other_person() -> None:
    got = describe(lines.private("12:00:05", messages.PM_FROM(name="carol"), "psst"))
    assert (got["kind"], got["name"], got["body"]) == ("PrivateFrom", "carol", [("psst", "", None)])
    sent = describe(lines.private("12:00:05", messages.PM_TO(name="dave"), "ok", "blue"))
    assert (sent["kind"], sent["name"], sent["body"]) == ("PrivateTo", "dave", [("ok", "", "blue")])


def test_a_batch_is_one_text_frame_and_blank_lines_are_left_out() -> None:
    batch = ["", lines.notice(None, messages.GREETING()), lines.action("12:00:06", "al", "waves")]
    [record] = frames(WEB_FRAMES.encode(batch))
    assert isinstance(record, dict)
    assert [line["kind"] for line in record["lines"]] == ["Greeting", "Action"]
    assert WEB_FRAMES.encode([""]) == b""
    assert frames(close_frame()) == [("close", 1000)]


def test_hello_holds_the_servers_own_command_table() -> None:
    [record] = frames(hello(Settings(max_line=300)))
    assert isinstance(record, dict)
    table = record["hello"]
    assert [(c["name"], tuple(c["aliases"]), c["word"]) for c in table["commands"]] == [
        (spec.name, spec.aliases, spec.word) for spec in commands.COMMANDS
    ]
    assert [c["args"] for c in table["commands"]] == [[a.name for a in s.args] for s in commands.COMMANDS]
    assert table["color_command"] == commands.COLOR.name
    assert table["colors"] == list(COLORS) and table["max_line"] == 300


# --- rendered once per broadcast, for every browser ---------------------------------------------


@pytest.fixture
def fanout() -> Iterator[Fanout]:
    fanout = Fanout(2, Limits())
    fanout.start()
    yield fanout
    fanout.stop(WAIT)


def test_a_broadcast_is_described_once_for_all_browsers(
    fanout: Fanout, monkeypatch: pytest.MonkeyPatch
) -> None:
    described: list[str] = []

    def counting(line: str) -> dict[str, object]:
        described.append(line)
        return describe(line)

    monkeypatch.setattr(rendering, "describe", counting)
    browsers = []
    for _ in range(6):
        ours, theirs = socket.socketpair()
        theirs.settimeout(WAIT)
        peer = WebPeer(ours, "browser")
        fanout.add(peer)
        peer.attach()
        browsers.append(theirs)
    said = [lines.message("12:00:07", "alice", f"line {i}") for i in range(3)]
    for line in said:
        fanout.broadcast([line])
    got = []
    for sock in browsers:
        data = b""
        while len([f for f in frames(data) if isinstance(f, dict)]) < 3:
            data += sock.recv(65536)
        got.append(data)
    assert len(set(got)) == 1  # the same bytes for every browser
    assert sorted(described) == sorted(said)  # each line described once, not once per browser


# --- the page's files ------------------------------------------------------------------------------


def test_the_page_draws_every_colour_of_the_table() -> None:
    css = static_files()["/chat.css"].decode()
    defined = set(re.findall(r"\.fg-([a-z_]+) \{", css))
    assert defined == set(COLORS)


def test_the_page_never_parses_text_as_html() -> None:
    script = re.sub(r"^\s*//.*$", "", static_files()["/chat.js"].decode(), flags=re.M)  # code, not comments
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    html = static_files()["/"].decode()
    assert "<script>" not in html  # no inline script (the policy would refuse it anyway)
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
