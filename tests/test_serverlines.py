"""A server line in, what it says out: read from lines made by the server's own renderers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import lines, messages
from protocol import serverlines as s

STAMP = "12:00:00"


def notice(text: str) -> str:
    return lines.notice(STAMP, text)


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (lines.notice(None, messages.GREETING()), s.Greeting()),
        (lines.error(None, messages.NAME_REJECTED(reason="it is empty")), s.NameRejected("it is empty")),
        (lines.notice(None, messages.WAITING(name="bob")), s.Waiting("bob")),
        (
            notice(messages.WELCOME(name="bob", count=3, names="alice, bob, carol")),
            s.Welcome("bob", 3, ("alice", "bob", "carol")),
        ),
        (
            notice(messages.WELCOME(name="bob", count=40, names="alice, bob and 38 more")),
            s.Welcome("bob", 40, ("alice", "bob")),
        ),
        (notice(messages.HISTORY_START(count=2)), s.HistoryStart(2)),
        (notice(messages.HISTORY_END()), s.HistoryEnd()),
        (notice(messages.JOINED(name="dave", count=4)), s.Joined("dave", 4)),
        (notice(messages.LEFT(name="dave", count=3)), s.Left("dave", 3, s.Departure.LEFT)),
        (notice(messages.DISCONNECTED(name="dave", count=3)), s.Left("dave", 3, s.Departure.DISCONNECTED)),
        (notice(messages.KICKED_NOTICE(name="dave", count=3)), s.Left("dave", 3, s.Departure.REMOVED)),
        (notice(messages.RENAMED(old="bob", new="robert")), s.Renamed("bob", "robert")),
        (lines.message(STAMP, "alice", "hi **there**", "red"), s.Message("alice", "hi there")),
        (lines.action(STAMP, "alice", "waves"), s.Action("alice", "waves")),
        (lines.private(STAMP, messages.PM_FROM(name="carol"), "psst"), s.PrivateFrom("carol", "psst")),
        (lines.private(STAMP, messages.PM_TO(name="carol"), "psst"), s.PrivateTo("carol", "psst")),
        (notice(messages.WHO(count=2, names="alice, bob")), s.WhoList(2, ("alice", "bob"))),
        (notice(messages.WHO_MORE(names="carol, dave")), s.WhoMore(("carol", "dave"))),
        (notice(messages.HELP_END()), s.HelpEnd()),
        (notice(messages.GOODBYE(name="bob")), s.Goodbye("bob")),
        (notice(messages.KICKED(reason=": spam")), s.Kicked(": spam")),
        (lines.notice(None, messages.SHUTTING_DOWN()), s.ShuttingDown()),
        (lines.notice(None, messages.NEEDS_TLS()), s.NeedsTls()),
        (
            lines.notice(None, messages.ROOM_FULL(limit=10)),
            s.Refused("The room is full (10 people). Try again later."),
        ),
        (notice(messages.NO_SUCH_USER(name="zed")), s.Notice("No one called 'zed' is in the room.")),
        ("SSH-2.0-OpenSSH_9.6", s.Other("SSH-2.0-OpenSSH_9.6")),
    ],
)
def test_each_line_says_what_the_server_meant(line: str, event: s.Event) -> None:
    assert s.read(line) == event


def test_every_refusal_is_a_refusal() -> None:
    fields = {"limit": 3, "name": "bob", "where": "address"}
    for refusal in messages.REFUSALS:
        event = s.read(lines.notice(None, refusal(**fields)))
        assert isinstance(event, s.Refused) and event.text in refusal(**fields)


def test_a_look_alike_in_an_announcement_is_only_a_notice() -> None:
    line = notice(messages.ANNOUNCEMENT(text="x joined (3 in the room)"))
    assert s.read(line) == s.Notice("Operator: x joined (3 in the room)")
    spoof = notice(messages.JOINED(name="two words", count=3))
    assert isinstance(s.read(spoof), s.Notice)


def test_someone_saying_a_notice_is_still_a_message() -> None:
    line = lines.message(STAMP, "mallory", messages.GOODBYE(name="bob"))
    assert s.read(line) == s.Message("mallory", "*** Goodbye, bob.")


def test_the_text_starts_after_the_label() -> None:
    for line, label in [
        (lines.message(STAMP, "alice", "hi"), "[12:00:00] <alice> "),
        (lines.action(STAMP, "alice", "waves"), "[12:00:00] * alice "),
        (lines.private(STAMP, messages.PM_TO(name="carol"), "psst"), "[12:00:00] [PM to carol] "),
        (notice(messages.JOINED(name="dave", count=4)), "[12:00:00] *** "),
        ("SSH-2.0-OpenSSH_9.6", ""),
    ]:
        assert s.text_start(line) == len(label)


def test_the_name_prompt_is_recognised_as_an_unfinished_line() -> None:
    assert s.is_name_prompt(messages.NAME_PROMPT)
    assert not s.is_name_prompt(messages.NAME_PROMPT.strip())


@given(st.text())
def test_read_is_total(line: str) -> None:
    event = s.read(line)
    assert not isinstance(event, s.NamePrompt)  # a prompt is never a line
