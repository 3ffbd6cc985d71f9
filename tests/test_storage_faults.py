"""History under real faults, end to end: the room talks on whatever happens to its database.

Each test runs the real ``Server.py`` and breaks its file from outside, the
way a full disk, an operator or another program would; two raw clients check
that chat goes on, a newcomer checks what is replayed (only what is stored),
and the log must say what happened in one line, with no traceback.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from faults import rows
from formatting.sanitize import strip_sgr
from harness import WAIT, RawClient, ServerProcess, StartServer, wait_until
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
