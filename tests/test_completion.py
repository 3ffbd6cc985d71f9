"""Tab completion in Client.py: commands, names, colours and emoji names, from the server's table."""

from __future__ import annotations

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from chatroom.client.completion import ChatCompleter
from protocol.commands import Private, parse


def completions(text: str, others: list[str] | None = None) -> list[str]:
    """What Tab offers after ``text``: the text each completion would leave in the line."""
    completer = ChatCompleter(lambda: others if others is not None else ["alice", "albert", "Bob"])
    document = Document(text)
    found = completer.get_completions(document, CompleteEvent(completion_requested=True))
    return [text[: len(text) + c.start_position] + c.text for c in found]


def test_names_complete_after_private_msg_and_dm() -> None:
    assert completions("/private al") == ["/private alice ", "/private albert "]
    assert completions("/msg b") == ["/msg Bob "]
    assert completions("DM ALI") == ["DM alice "]
    assert completions("dm ") == ["dm alice ", "dm albert ", "dm Bob "]


def test_a_name_at_the_start_of_a_line_addresses_someone() -> None:
    assert completions("ali") == ["alice: "]
    assert completions("hello ali") == ["hello alice "]


def test_commands_complete_at_the_start_of_a_line() -> None:
    offered = (
        *("/private", "/reply", "/color", "/me", "/nick", "/who", "/whois", "/away", "/back", "/search"),
        *("/register", "/password", "/unregister", "/help", "/leave"),
        *("/ignore", "/unignore"),
    )
    assert completions("/") == [f"{command} " for command in offered]
    assert completions("/n") == ["/nick ", "/names "]
    assert completions("/wh") == ["/who ", "/whois "]
    assert completions("d", others=[]) == ["DM "]
    assert completions("say /wh") == []


def test_an_alias_is_offered_once_it_is_what_was_typed() -> None:
    assert completions("/co") == ["/color "]  # one candidate: Tab completes at once
    assert completions("/colou") == ["/colour "]
    assert completions("/q") == ["/query ", "/quit "]
    assert completions("/m") == ["/msg ", "/me "]


def test_colours_complete_after_color_also_in_a_private_message() -> None:
    assert completions("/color bright_r") == ["/color bright_red "]
    assert completions("/color gr") == ["/color green "]
    assert completions("/private alice /co") == ["/private alice /color "]
    assert completions("/private alice /color ma") == ["/private alice /color magenta "]
    assert completions("/reply /color ma") == ["/reply /color magenta "]


#: Each group: spellings the server takes for one command, the canonical one first.
ALIASES = [
    ("/private", "/msg", "/pm", "/query", "DM", "dm"),
    ("/color", "/colour"),
    ("/who", "/names"),
    ("/help", "/?"),
    ("/leave", "/quit", "/exit", "/part"),
]
#: What may follow a command, by what was typed after it.
AFTER = [" ", " al", " alice ", " alice /co", " alice /colou", " alice /color ma", " alice /colour ma", " gr"]


@pytest.mark.parametrize("group", ALIASES, ids=lambda group: group[0])
def test_every_alias_the_server_accepts_completes_the_same(group: tuple[str, ...]) -> None:
    canonical, *aliases = group
    for alias in aliases:
        sample = f"{alias} alice /color red hi"
        assert parse(sample) == parse(f"{canonical} alice /color red hi")  # the server takes it
        for after in AFTER:
            mine = [c.removeprefix(alias) for c in completions(alias + after)]
            theirs = [c.removeprefix(canonical) for c in completions(canonical + after)]
            assert mine == theirs, (alias + after, mine, theirs)


def test_a_private_message_with_a_colour_completes_in_every_spelling() -> None:
    for command in ("/msg bob", "/pm bob", "/query bob", "DM bob", "/private bob"):
        assert completions(f"{command} /color re") == [f"{command} /color red "]
        assert completions(f"{command} /colour re") == [f"{command} /colour red "]
        assert parse(f"{command} /colour red hi") == Private("bob", "hi", "red")


def test_emoji_names_complete_with_the_emoji_beside_them() -> None:
    completer = ChatCompleter(lambda: [])
    found = list(completer.get_completions(Document("nice :thumbs_u"), CompleteEvent()))
    assert [(c.text, c.display_meta_text) for c in found][:1] == [(":thumbs_up:", "👍")]
    assert completions("nice :t") == []  # one letter would offer hundreds


def test_nothing_to_complete_offers_nothing() -> None:
    assert completions("") == []
    assert completions("hello ") == []
    assert completions("zz") == []
    assert completions("/nick al") == []  # a new name is yours to choose
    assert completions("/who al") == []
