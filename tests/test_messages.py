from protocol import lines, messages


def test_wording_round_trips_through_rendering_and_timestamps() -> None:
    line = lines.notice("09:15:00", messages.JOINED(name="bob", count=3))
    assert messages.JOINED.match(line) == {"name": "bob", "count": "3"}
    assert messages.LEFT.match(line) is None


def test_message_lines_are_recognised() -> None:
    line = lines.message("09:15:00", "alice", "hi **there** <bob> x")
    assert messages.MESSAGE.match(line) == {"name": "alice", "text": "hi there <bob> x"}
    private = lines.private("09:15:00", messages.PM_FROM(name="bob"), "psst")
    assert messages.PRIVATE_FROM.match(private) == {"name": "bob", "text": "psst"}


def test_help_mentions_every_command() -> None:
    text = "\n".join(messages.HELP)
    for command in ("/private", "DM", "/color", "/me", "/who", "/leave", "/help", "**bold**"):
        assert command in text
