import pytest

from protocol import messages
from protocol.names import BadName, check_name, name_key


@pytest.mark.parametrize("name", ["alice", "Bob_2", "jean-luc", "d.j", "Zoë", "李雷", "Ολγα", "नमस्ते"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", messages.NAME_EMPTY),
        ("   ", messages.NAME_EMPTY),
        ("two words", messages.NAME_HAS_SPACE),
        ("bell\x07", messages.NAME_HAS_CONTROL),
        ("esc\x1b[31m", messages.NAME_HAS_CONTROL),
        ("rtl\u202e", messages.NAME_HAS_CONTROL),
        ("x" * 25, messages.NAME_TOO_LONG.format(limit=24)),
        ("<bob>", messages.NAME_BAD_CHARACTER),
        ("**bold**", messages.NAME_BAD_CHARACTER),
        ("_under", messages.NAME_BAD_CHARACTER),
        ("Server", messages.NAME_RESERVED.format(name="Server")),
        ("ＳＥＲＶＥＲ", messages.NAME_RESERVED.format(name="SERVER")),
    ],
)
def test_bad_names_say_why(raw: str, reason: str) -> None:
    assert check_name(raw) == BadName(reason)


def test_full_width_is_normalised() -> None:
    assert check_name("ａｌｉｃｅ") == "alice"


@pytest.mark.parametrize("spoof", ["ALICE", "Alice", "аlice", "аlісе", "ａｌｉｃｅ"])
def test_look_alikes_share_a_key(spoof: str) -> None:
    assert name_key(spoof) == name_key("alice")


def test_different_names_differ() -> None:
    assert name_key("alice") != name_key("alicia")
