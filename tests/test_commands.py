from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import messages
from protocol.commands import (
    CLIENT_COMMANDS,
    COMMANDS,
    NICK_USAGE,
    REPLY_USAGE,
    WHOIS_USAGE,
    Action,
    Arg,
    Command,
    Empty,
    Help,
    Ignore,
    Invalid,
    Leave,
    Private,
    Rename,
    Reply,
    Say,
    Unignore,
    Who,
    Whois,
    next_argument,
    parse,
    parse_client,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", Say("hello")),
        ("  padded  ", Say("padded")),
        ("", Empty()),
        ("   ", Empty()),
        ("/private bob hi there", Private("bob", "hi there")),
        ("/msg bob hi", Private("bob", "hi")),
        ("DM bob hello dear", Private("bob", "hello dear")),
        ("dm bob hello", Private("bob", "hello")),
        ("DM", Say("DM")),
        ("Dm bob hi", Say("Dm bob hi")),
        ("/private bob /color red psst", Private("bob", "psst", "red")),
        ("DM bob /color bright-blue **psst**", Private("bob", "**psst**", "bright_blue")),
        ("/color red hot", Say("hot", "red")),
        ("/COLOR Green go", Say("go", "green")),
        ("/color brightmagenta wow", Say("wow", "bright_magenta")),
        ("/leave", Leave()),
        ("/quit", Leave()),
        ("/who", Who()),
        ("/help", Help()),
        ("/me waves", Action("waves")),
        ("/nick alicia", Rename("alicia")),
        ("/reply thanks!", Reply("thanks!")),
        ("/whois alice", Whois("alice")),
        ("/whois", Invalid(messages.USAGE(usage=WHOIS_USAGE))),
        ("/reply /color cyan ok", Reply("ok", "cyan")),
        ("/reply", Invalid(messages.USAGE(usage=REPLY_USAGE))),
        ("/NICK two words", Rename("two words")),  # the room explains what is wrong with it
        ("/nick", Invalid(messages.USAGE(usage=NICK_USAGE))),
        ("//not a command", Say("/not a command")),
        # every alias
        ("/pm bob hi", Private("bob", "hi")),
        ("/query bob /colour red hi", Private("bob", "hi", "red")),
        ("/msg bob /COLOUR red hi", Private("bob", "hi", "red")),
        ("/colour red hot", Say("hot", "red")),
        ("/names", Who()),
        ("/?", Help()),
        ("/exit", Leave()),
        ("/part now", Leave()),
    ],
)
def test_parse(line: str, command: object) -> None:
    assert parse(line) == command


def test_unknown_command_names_it() -> None:
    result = parse("/dance now")
    assert isinstance(result, Invalid)
    assert messages.UNKNOWN_COMMAND.match(result.error) == {"command": "/dance"}


def test_unknown_colour_lists_the_valid_ones() -> None:
    result = parse("/color blurple hi")
    assert isinstance(result, Invalid)
    fields = messages.UNKNOWN_COLOR.match(result.error)
    assert fields is not None and fields["color"] == "blurple" and "bright_red" in fields["colors"]


@pytest.mark.parametrize("line", ["/private", "/private bob", "DM bob", "/color", "/color red", "/me"])
def test_missing_arguments_give_usage(line: str) -> None:
    result = parse(line)
    assert isinstance(result, Invalid) and messages.USAGE.match(result.error)


def test_unknown_colour_in_private_message() -> None:
    result = parse("/private bob /color nope hi")
    assert isinstance(result, Invalid) and messages.UNKNOWN_COLOR.match(result.error)


def test_commands_only_the_client_knows_are_unknown_to_the_server() -> None:
    assert parse("/ignore carol") == Invalid(messages.UNKNOWN_COMMAND(command="/ignore"))
    assert parse_client("/ignore carol") == Ignore("carol")
    assert parse_client("/IGNORE") == Ignore("")
    assert parse_client("  /unignore  carol ") == Unignore("carol")
    assert parse_client("hello /ignore") is None
    assert parse_client("/private carol hi") is None


def test_every_spelling_in_the_table_is_a_command() -> None:
    for spec in COMMANDS:
        for spelling in spec.spellings:
            assert parse(f"{spelling} bob /color red hi") == spec.build("bob /color red hi")
    for client_spec in CLIENT_COMMANDS:
        for spelling in client_spec.spellings:
            assert parse_client(f"{spelling} bob") == client_spec.build("bob")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], Arg.TEXT),
        (["hello"], Arg.TEXT),
        (["/private"], Arg.NAME),
        (["DM", "bob"], Arg.PRIVATE_TEXT),
        (["/pm", "bob", "/colour"], Arg.COLOR),
        (["/query", "bob", "/color", "red"], Arg.TEXT),
        (["/msg", "bob", "hi"], Arg.TEXT),
        (["/reply"], Arg.PRIVATE_TEXT),
        (["/reply", "/color"], Arg.COLOR),
        (["/colour"], Arg.COLOR),
        (["/color", "red", "hi"], Arg.TEXT),
        (["/whois"], Arg.NAME),
        (["/whois", "alice"], None),
        (["/nick"], Arg.NEW_NAME),
        (["/who"], None),
        (["/ignore"], Arg.NAME),
        (["Dm"], Arg.TEXT),  # not DM: just a word
    ],
)
def test_what_comes_next(words: list[str], expected: Arg | None) -> None:
    assert next_argument(words) == expected


@given(st.text())
def test_parse_is_total(line: str) -> None:
    command = parse(line)
    assert isinstance(command, get_args(Command))
    if isinstance(command, Invalid):  # a mistake is explained
        wordings = (messages.USAGE, messages.UNKNOWN_COMMAND, messages.UNKNOWN_COLOR)
        assert any(wording.matches(command.error) for wording in wordings)
    if isinstance(command, Say):
        assert command.text and line.strip()


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc", "Zl", "Zp")), min_size=1).filter(
        lambda t: not t.startswith("/") and t not in ("DM", "dm")
    )
)
def test_plain_words_are_said_verbatim(text: str) -> None:
    assert parse(text) == Say(text.strip())
