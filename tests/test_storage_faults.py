"""History under real faults, end to end: the room talks on whatever happens to its database.

Each test runs the real ``Server.py`` and breaks its file from outside, the
way a full disk, an operator or another program would; two raw clients check
that chat goes on, a newcomer checks what is replayed (only what is stored),
and the log must say what happened in one line, with no traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from faults import lock_held, rows, siblings, small_disk, truncate_all
from formatting.sanitize import strip_sgr
from harness import PYTHON, ROOT, WAIT, RawClient, ServerProcess, StartServer, wait_until
from protocol import messages

#: Everyone is let in, and joins and leaves are not announced once two are in the room, so
#: the newcomers who check the replay add no lines to it: what the server writes is what the test said.
ROOM = ("--approve", "all", "--announce-limit", "1")


def replay_seen_by(server: ServerProcess, name: str) -> list[str]:
    """The public messages a newcomer called ``name`` is replayed, as ``<who> text``."""
    client = server.connect(name)
    start = client.seen
    client.send("/who")  # answered after the welcome and its history: marks their end
    client.expect(messages.WHO)
    shown = [strip_sgr(line) for line in client.lines[start : client.seen]]
    client.send("/leave")
    client.expect_closed()
    if not any(messages.HISTORY_START.matches(line) for line in shown):
        return []
    return [messages.STAMP.sub("", line) for line in shown if messages.MESSAGE.matches(line)]


def said(speaker: RawClient, listener: RawClient, text: str) -> None:
    """``speaker`` says ``text`` and ``listener`` hears it: the room is talking."""
    speaker.send(text)
    listener.expect(f"<alice> {re.escape(text)}$")


def stored(server: ServerProcess, text: str) -> None:
    """Wait until a newcomer is replayed ``text``, which the replay only holds once it is in the file."""
    newcomers = iter(range(1000))
    wait_until(lambda: f"<alice> {text}" in replay_seen_by(server, f"late{next(newcomers)}"), what=text)


def no_tracebacks(server: ServerProcess) -> None:
    assert "Traceback" not in server.log.text()


def stop_promptly(server: ServerProcess) -> None:
    """SIGTERM: exit 0 within the harness's wait (a stuck store must not hold it up)."""
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(WAIT) == 0
    server.log.wait_closed()


# --- what survives a crash ---------------------------------------------------------------


def test_a_line_replayed_to_a_newcomer_survives_kill_9_and_private_messages_are_never_stored(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = str(tmp_path / "history.sqlite3")
    first = start_server(*ROOM, db=db)
    alice, bob = first.connect("alice"), first.connect("bob")
    alice.send("remember **this**")
    alice.send("/private bob forget this secret")
    said(alice, bob, "and this")
    stored(first, "and this")  # a newcomer saw it replayed...
    first.proc.kill()  # ...then kill -9
    first.proc.wait()
    assert not any("secret" in line for line in rows(db))

    second = start_server(*ROOM, db=db)
    replay = replay_seen_by(second, "late")
    assert replay == ["<alice> remember this", "<alice> and this"]
    no_tracebacks(first)


# --- faults while the server runs ----------------------------------------------------------


def test_a_full_disk_pauses_history_while_the_room_talks_on(
    start_server: StartServer, tmp_path: Path
) -> None:
    with small_disk(tmp_path) as disk:
        print(f"full disk made with {disk.how}")
        db = disk.dir / "history.sqlite3"
        server = start_server(*ROOM, db=str(db))
        alice, bob = server.connect("alice"), server.connect("bob")
        said(alice, bob, "before the disk filled")
        stored(server, "before the disk filled")
        disk.fill(server.proc.pid)
        try:
            long = "y" * 3000
            said(alice, bob, long)
            server.log.wait_for(
                rf"history paused: cannot store lines in {re.escape(str(db))}: .*; chat goes on$"
            )
            said(alice, bob, "while the disk is full")
            replay = replay_seen_by(server, "newcomer")
            assert "<alice> before the disk filled" in replay
            assert not any(long in line or "while the disk is full" in line for line in replay)
        finally:
            disk.free(server.proc.pid)
        server.log.wait_for(rf"history resumed: lines are stored in {re.escape(str(db))} again")
        assert (
            replay_seen_by(server, "later")[-1] == "<alice> while the disk is full"
        )  # stored once it could be
        stop_promptly(server)
        assert server.log.text().count("history paused") == 1
        no_tracebacks(server)


def test_a_database_locked_by_another_program_pauses_history_not_the_room(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = tmp_path / "history.sqlite3"
    server = start_server(*ROOM, db=str(db))
    alice, bob = server.connect("alice"), server.connect("bob")
    server.console("/ban 10.9.8.7")
    said(alice, bob, "before the lock")
    stored(server, "before the lock")
    other = tmp_path / "other.sqlite3"
    with lock_held(other):
        os.replace(other, db)  # a file another program has locked takes the database's place
        said(alice, bob, "while it is locked")
        server.log.wait_for(
            rf"history paused: cannot store lines in {re.escape(str(db))} \(it was replaced while the server "
            r"ran\): database is locked \(another program is using it\); chat goes on$"
        )
        replay = replay_seen_by(server, "newcomer")
        assert "<alice> before the lock" in replay and "<alice> while it is locked" not in replay
    server.log.wait_for(r"history resumed:")
    assert "<alice> while it is locked" in replay_seen_by(server, "later")
    stop_promptly(server)
    assert {"<alice> before the lock", "<alice> while it is locked"} <= {strip_sgr(x)[11:] for x in rows(db)}
    assert rows(db, "SELECT kind, value FROM bans") == ["address 10.9.8.7"]
    no_tracebacks(server)


def test_sigterm_is_prompt_while_history_is_paused(start_server: StartServer, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    server = start_server(*ROOM, db=str(db))
    alice, bob = server.connect("alice"), server.connect("bob")
    other = tmp_path / "other.sqlite3"
    with lock_held(other):
        os.replace(other, db)
        said(alice, bob, "never stored")
        server.log.wait_for(r"history paused:")
        stop_promptly(server)
    bob.expect(messages.SHUTTING_DOWN)
    unsaved = r"history: \d+ lines and 0 changes of bans or registered names could not be stored in \S+"
    assert re.search(unsaved + " before exit", server.log.text())


def test_a_truncated_database_never_kills_the_server(start_server: StartServer, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    server = start_server(*ROOM, db=str(db))
    alice, bob = server.connect("alice"), server.connect("bob")
    server.console("/ban troll")
    said(alice, bob, "before truncation")
    stored(server, "before truncation")
    truncate_all(db)  # every file of it, as `truncate -s 0 history.sqlite3*` would
    said(alice, bob, "after truncation")
    server.log.wait_for(
        rf"history: {re.escape(str(db))} was changed by another program while the server ran; "
        r"wrote the room's bans \(1\) and the recent lines it lacked \(\d+\) into the file now there"
    )
    stored(server, "after truncation")
    stop_promptly(server)
    no_tracebacks(server)

    again = start_server(*ROOM, db=str(db))
    replay = replay_seen_by(again, "newcomer")
    assert replay.index("<alice> before truncation") < replay.index("<alice> after truncation")
    troll = RawClient(again.host, again.port)
    troll.send_name("troll")
    troll.expect(messages.BANNED)


def test_a_deleted_database_is_started_afresh_with_the_rooms_history_and_bans(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = tmp_path / "history.sqlite3"
    server = start_server(*ROOM, db=str(db))
    alice, bob = server.connect("alice"), server.connect("bob")
    server.console("/ban troll")
    said(alice, bob, "before deletion")
    stored(server, "before deletion")
    for path in siblings(db):
        path.unlink()
    said(alice, bob, "after deletion")
    server.log.wait_for(
        rf"history: {re.escape(str(db))} was deleted while the server ran; wrote the room's bans \(1\)"
    )
    stop_promptly(server)

    again = start_server(*ROOM, db=str(db))
    replay = replay_seen_by(again, "newcomer")
    assert replay.index("<alice> before deletion") < replay.index("<alice> after deletion")
    troll = RawClient(again.host, again.port)
    troll.send_name("troll")
    troll.expect(messages.BANNED)
    no_tracebacks(server)


def test_a_database_overwritten_with_something_else_pauses_history_until_it_is_moved_away(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = tmp_path / "history.sqlite3"
    server = start_server(*ROOM, db=str(db))
    alice, bob = server.connect("alice"), server.connect("bob")
    said(alice, bob, "before")
    stored(server, "before")
    junk = b"not a database at all\n" * 1000
    with open(db, "r+b") as same_file:
        same_file.write(junk)
    said(alice, bob, "while it is junk")
    server.log.wait_for(
        rf"history paused: cannot store lines in {re.escape(str(db))} \(it was changed by another program "
        r"while the server ran\): file is not a database \(move it away and a fresh one is started\)"
    )
    assert replay_seen_by(server, "newcomer")[-1] == "<alice> before"
    assert db.read_bytes()[: len(junk)] == junk  # someone's file: the server does not write over it
    db.rename(tmp_path / "junk")
    server.log.wait_for(r"history resumed:")
    assert replay_seen_by(server, "later")[-1] == "<alice> while it is junk"
    stop_promptly(server)
    no_tracebacks(server)


# --- at startup ----------------------------------------------------------------------------


def start_failing(db: Path) -> str:
    """Server.py on ``db`` that cannot start: its one line of output."""
    done = subprocess.run(
        [PYTHON, str(ROOT / "Server.py"), "--port", "0", "--db", str(db)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=ROOT,
    )
    assert done.returncode == 1, done
    return strip_sgr(done.stdout + done.stderr).strip()


def test_a_corrupt_database_at_startup_is_named(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    db.write_bytes(b"garbage\n" * 1000)
    assert start_failing(db).endswith(
        f"cannot start: --db {db}: file is not a database (move it away and a fresh one is started)"
    )


def test_a_database_locked_at_startup_is_named(start_server: StartServer, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite3"
    start_server(db=str(db)).stop()
    with lock_held(db):
        assert start_failing(db).endswith(
            f"cannot start: --db {db}: database is locked (another program is using it)"
        )
