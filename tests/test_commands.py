import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import messages
from protocol.commands import (
    NICK_USAGE,
    REPLY_USAGE,
    WHOIS_USAGE,
    Action,
    Empty,
    Help,
    Invalid,
    Leave,
    Private,
    Rename,
    Reply,
    Say,
    Who,
    Whois,
    parse,
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


@given(st.text())
def test_parse_is_total(line: str) -> None:
    parse(line)


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc", "Zl", "Zp")), min_size=1).filter(
        lambda t: not t.startswith("/") and t not in ("DM", "dm")
    )
)
def test_plain_words_are_said_verbatim(text: str) -> None:
    assert parse(text) == Say(text.strip())
