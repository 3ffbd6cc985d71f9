"""Server.py's options: a bad value is reported by the option's name, with what it wants."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatroom.config import build_parser, parse_settings
from harness import ROOT, WAIT, RawClient, ServerProcess
from protocol import messages

#: Options whose value is any text (a host name, a path): nothing is wrong with it on its face.
ANY_TEXT = {"--host", "--db", "--allow-file"}
#: A value that is wrong for the option ("abc" otherwise).
BAD = {"--node": "no spaces"}


def server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "Server.py"), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )


def test_a_bad_number_is_reported_by_its_option_and_what_it_wants() -> None:
    for option, value, wants in (
        ("--port", "abc", "a port number from 0 to 65535"),
        ("--history", "abc", "a whole number of lines, 0 or more"),
        ("--history", "-5", "a whole number of lines, 0 or more"),
        ("--flood-rate", "x", "a number of lines a second, 0 or more"),
        ("--keepalive", "1.5", "a whole number of seconds, 0 or more"),
    ):
        result = server(option, value)
        assert result.returncode == 2
        message = f"argument {option}: wants {wants}, not {value!r}"
        assert result.stderr.splitlines()[-1] == f"Server.py: error: {message}"


def value_options() -> list[str]:
    return [
        action.option_strings[-1]
        for action in build_parser()._actions
        if action.option_strings and action.nargs != 0 and action.option_strings[-1] not in ANY_TEXT
    ]


@pytest.mark.parametrize("option", value_options())
def test_every_option_names_itself_and_what_it_wants(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    bad = BAD.get(option, "abc")
    with pytest.raises(SystemExit) as exited:
        parse_settings([option, bad])
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert f"error: argument {option}: " in error
    said = error.split(f"argument {option}: ")[1]
    assert said.startswith(("wants ", "invalid choice: ")), said  # never argparse's "invalid _count value"
    assert repr(bad) in said


def test_exempt_takes_addresses_or_nothing() -> None:
    assert parse_settings(["--exempt", "10.0.0.1, ::1"]).exempt == ("10.0.0.1", "::1")
    assert parse_settings(["--exempt", ""]).exempt == ()


def test_what_is_wrong_only_at_start_names_the_option_too(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("not SQLite\n")
    for args, said in (
        (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: "),
        (["--host", "192.0.2.1"], "--host 192.0.2.1 is not an address of this machine"),
        (["--tls-cert", str(junk), "--tls-key", str(junk)], "--tls-cert and --tls-key want a PEM"),
        (["--db", str(not_a_database)], f"--db {not_a_database}: file is not a database (move it away"),
        (["--db", str(tmp_path)], f"--db {tmp_path}: "),
        (["--allow-file", str(tmp_path)], f"--allow-file {tmp_path}: Is a directory; it wants a text file"),
    ):
        result = server("--port", "0", *args)
        assert result.returncode == 1
        assert f"cannot start: {said}" in result.stdout, result.stdout


def test_two_rooms_on_port_0_keep_apart_by_default(tmp_path: Path) -> None:
    """No --db: a --port 0 room starts empty, whatever an earlier one said or banned, and writes no file."""
    state = {"XDG_STATE_HOME": str(tmp_path)}
    first = ServerProcess("--approve", "all", env=state)
    second = None
    try:
        alice = first.connect("alice")
        alice.send("for the first room only")
        alice.expect("<alice> for the first room only")
        first.console("/ban troll")
        first.log.wait_for("banned name troll")

        second = ServerProcess("--approve", "all", env=state)
        bob = second.connect("bob")
        bob.send("hello")
        bob.expect("<bob> hello")  # anything replayed on joining came before this
        assert not any(messages.HISTORY_START.matches(line) for line in bob.lines), bob.lines
        troll = RawClient(second.host, second.port)
        troll.send_name("troll")
        troll.expect(messages.WELCOME)
        second.log.wait_for(r"history: 50 lines in :memory:")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert not (tmp_path / "chatroom").exists()
