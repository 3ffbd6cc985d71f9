import pytest

from harness import RawClient, StartServer
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


# --- invisible characters (UTS #39, UTS #31) ---------------------------------------------

INVISIBLE = {
    "VS1": "\ufe00",
    "VS16": "\ufe0f",
    "VS17": "\U000e0100",
    "combining grapheme joiner": "\u034f",
    "Mongolian free variation selector 1": "\u180b",
    "Mongolian free variation selector 4": "\u180f",
    "Hangul filler": "\u3164",
    "Hangul choseong filler": "\u115f",
    "Hangul jungseong filler": "\u1160",
    "half-width Hangul filler": "\uffa0",
    "Khmer inherent vowel": "\u17b4",
}


@pytest.mark.parametrize("char", INVISIBLE.values(), ids=INVISIBLE.keys())
def test_a_name_with_an_invisible_character_is_refused_and_shares_the_visible_names_key(char: str) -> None:
    for spoof in (f"alice{char}", f"al{char}ice"):
        assert check_name(spoof) == BadName(messages.NAME_HAS_INVISIBLE)
        assert name_key(spoof) == name_key("alice")  # /private, /ban and the allow-list see through it


BLANK = ["\u3164", "\u3164\u3164", "\uffa0", "\u115f\u1160", "\u2800", "\u200b", "\ufe0f"]


@pytest.mark.parametrize("blank", BLANK)
def test_a_name_that_would_show_as_blank_is_refused(blank: str) -> None:
    assert check_name(blank) == BadName(messages.NAME_BLANK)


def test_combining_marks_are_capped_at_eight_per_character_as_in_messages() -> None:
    assert check_name("a" + "\u0316" * 8) == "a" + "\u0316" * 8
    assert check_name("a" + "\u0316" * 9) == BadName(messages.NAME_TOO_MANY_MARKS.format(limit=8))
    assert check_name("a" + "\u0301" * 21) == BadName(messages.NAME_TOO_MANY_MARKS.format(limit=8))


def test_an_invisible_copy_of_a_name_in_the_room_is_refused_with_the_reason(
    start_server: StartServer,
) -> None:
    server = start_server("--approve", "all")
    alice = server.connect("alice")
    for char in ("\ufe0f", "\U000e0100", "\u034f", "\u180b", "\u3164"):
        spoof = RawClient(server.host, server.port)
        spoof.send_name(f"alice{char}")
        refused = spoof.expect(messages.NAME_REJECTED)
        assert messages.NAME_REJECTED.match(refused) == {"reason": messages.NAME_HAS_INVISIBLE}
        spoof.close()
    blank = RawClient(server.host, server.port)
    blank.send_name("\u3164")
    refused = blank.expect(messages.NAME_REJECTED)
    assert messages.NAME_REJECTED.match(refused) == {"reason": messages.NAME_BLANK}
    alice.send("/who")
    assert messages.WHO.match(alice.expect(messages.WHO)) == {"count": "1", "names": "alice"}
