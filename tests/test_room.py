"""The chat room end to end: a real Server.py, approved through its stdin, and raw sockets."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from formatting.sanitize import strip_sgr
from harness import ROOT, WAIT, RawClient, ServerProcess, StartServer, find_cells, pyte_color, screen_of
from protocol import messages

STAMP = r"^\[\d\d:\d\d:\d\d\] "


def test_listening_line_names_the_real_port(server: ServerProcess) -> None:
    assert server.port > 0
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d listening on 127\.0\.0\.1:\d+", server.log.lines[-1])


def test_a_busy_port_or_a_bad_one_is_explained() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = subprocess.run(
            [sys.executable, str(ROOT / "Server.py"), "--port", str(port), "--db", ":memory:"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
    assert started.returncode == 1
    assert f"cannot start: port {port} on 127.0.0.1 is already in use" in started.stdout + started.stderr
    assert "--port 0 for a free one" in started.stdout + started.stderr
    typo = subprocess.run(
        [sys.executable, str(ROOT / "Server.py"), "--port", "55555555"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert typo.returncode == 2 and "argument --port: wants a port number from 0 to 65535" in typo.stderr


def test_join_flow_name_then_wait_then_welcome(server: ServerProcess) -> None:
    alice = RawClient(server.host, server.port)
    alice.expect(messages.GREETING)
    alice.send_name("alice")
    alice.expect(messages.WAITING)
    request = strip_sgr(server.asked_about("alice"))
    assert re.search(r"alice from 127\.0\.0\.1:\d+ - let in\? \[y/n\]", request)
    server.console("y")
    welcome = alice.expect(messages.WELCOME)
    assert messages.WELCOME.match(welcome) == {"name": "alice", "count": "1", "names": "alice"}
    alice.expect(messages.JOINED)
    server.log.wait_for(r"join alice \(127\.0\.0\.1:\d+\) \(1 in room, 0 waiting, 1 connected\)")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "it is empty"),
        ("two words", "it contains a space"),
        ("x" * 30, "longer than 24"),
        ("esc\x1b[31m", "control characters"),
        ("server", "reserved"),
        ("<alice>", "only letters"),
    ],
)
def test_bad_names_are_explained_and_asked_again(open_server: ServerProcess, bad: str, reason: str) -> None:
    client = RawClient(open_server.host, open_server.port)
    client.send_name(bad)
    rejected = client.expect(messages.NAME_REJECTED)
    assert reason in rejected
    client.send_name("fine")
    client.expect(messages.WELCOME)


def test_taken_names_are_refused_case_insensitively(open_server: ServerProcess) -> None:
    alice = open_server.connect("Alice")
    for spoof in ("alice", "ALICE", "аlice"):  # the last one has a Cyrillic a
        other = RawClient(open_server.host, open_server.port)
        other.send_name(spoof)
        assert "already taken" in other.expect(messages.NAME_REJECTED)
    alice.close()


def test_a_waiting_name_is_taken_too(server: ServerProcess) -> None:
    waiting = RawClient(server.host, server.port)
    waiting.send_name("carol")
    waiting.expect(messages.WAITING)
    other = RawClient(server.host, server.port)
    other.send_name("Carol")
    assert "already taken" in other.expect(messages.NAME_REJECTED)


def test_refusal_is_clear_and_disconnects(server: ServerProcess) -> None:
    alice = server.connect("alice")
    mallory = RawClient(server.host, server.port)
    mallory.send_name("mallory")
    server.refuse("mallory")
    mallory.expect(messages.REFUSED)
    mallory.expect_closed()
    server.log.wait_for(r"refused mallory \(127\.0\.0\.1:\d+\): refused by the operator")
    alice.send("still here?")
    alice.expect(messages.MESSAGE)
    assert not any("mallory" in strip_sgr(line) for line in alice.lines)


def test_waiting_clients_see_nothing_and_cannot_talk(server: ServerProcess) -> None:
    alice = server.connect("alice")
    bob = RawClient(server.host, server.port)
    bob.send_name("bob")
    bob.expect(messages.WAITING)
    alice.send("secret plans")
    alice.expect("secret plans")
    bob.send("can anyone hear me?")
    bob.expect(messages.NOT_YET)
    assert not any("secret plans" in line for line in bob.drain())
    assert not any("anyone hear me" in line for line in alice.drain())
    server.approve("bob")
    bob.expect(messages.WELCOME)


def test_several_waiting_are_asked_in_order_and_one_who_leaves_is_dropped(server: ServerProcess) -> None:
    clients = {}
    for name in ("ann", "ben", "cat"):
        clients[name] = RawClient(server.host, server.port)
        clients[name].send_name(name)
        clients[name].expect(messages.WAITING)
    server.asked_about("ann")
    clients["ben"].close()
    server.log.wait_for(r"gave up waiting ben")
    start = len(server.log.lines)
    server.console("y")  # ann
    clients["ann"].expect(messages.WELCOME)
    server.log.wait_for(r"join request: cat from ", start=start)
    server.console("n")
    clients["cat"].expect(messages.REFUSED)


def test_approve_and_deny_by_name_in_any_order(server: ServerProcess) -> None:
    a = RawClient(server.host, server.port)
    a.send_name("first")
    b = RawClient(server.host, server.port)
    b.send_name("second")
    b.expect(messages.WAITING)
    server.console("/approve second")
    b.expect(messages.WELCOME)
    server.console("/deny first")
    a.expect(messages.REFUSED)


def test_broadcast_reaches_everyone_with_timestamp_and_name(open_server: ServerProcess) -> None:
    alice, bob, carol = (open_server.connect(n) for n in ("alice", "bob", "carol"))
    alice.send("hello everyone")
    for client in (alice, bob, carol):
        line = client.expect(messages.MESSAGE)
        assert re.match(STAMP + r"<alice> hello everyone$", strip_sgr(line))


def test_emoji_and_any_script_arrive_intact(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    text = "ça va? 👍🏽 👨‍👩‍👧 你好 🎉"
    alice.send(text)
    assert messages.MESSAGE.match(bob.expect(messages.MESSAGE)) == {"name": "alice", "text": text}


def test_private_message_reaches_only_the_recipient_and_never_the_log(open_server: ServerProcess) -> None:
    alice, bob, eve = (open_server.connect(n) for n in ("alice", "bob", "eve"))
    alice.send("/private bob the eagle has landed")
    got = bob.expect(messages.PRIVATE_FROM)
    assert messages.PRIVATE_FROM.match(got) == {"name": "alice", "text": "the eagle has landed"}
    assert "[PM to bob] the eagle has landed" in strip_sgr(alice.expect(r"\[PM to bob\]"))
    alice.send("DM bob second secret")
    bob.expect("second secret")
    alice.send("dm Bob third secret")
    bob.expect("third secret")
    alice.send("done")  # a public line after the private ones
    eve.expect("<alice> done")
    assert not any("secret" in line or "eagle" in line for line in eve.lines)
    open_server.log.wait_for(r"private message alice -> bob \(text not logged\)")
    open_server.log.wait_for(r"<alice> done")
    assert "eagle" not in open_server.log.text() and "secret" not in open_server.log.text()


def test_reply_answers_whoever_wrote_last(open_server: ServerProcess) -> None:
    alice, bob, carol = (open_server.connect(name) for name in ("alice", "bob", "carol"))
    bob.send("/reply anyone?")
    bob.expect(messages.NO_ONE_TO_REPLY)
    alice.send("/private bob from alice")
    bob.expect("from alice")
    carol.send("DM bob from carol")
    bob.expect("from carol")
    bob.send("/reply /color green hi carol")
    assert messages.PRIVATE_FROM.match(carol.expect(messages.PRIVATE_FROM)) == {
        "name": "bob",
        "text": "hi carol",
    }
    bob.expect(messages.PRIVATE_TO)
    bob.send("said after the reply")
    alice.expect("said after the reply")  # alice got everything after the reply, and not the reply
    assert not any("hi carol" in line for line in alice.lines)


def stored(client: RawClient, words: str) -> None:
    """Wait until the line with ``words`` is in the file: newcomers are replayed only stored lines
    (README, "What survives kill -9"), and /search answers once the lines before it are written."""
    client.send(f"/search {words}")
    client.expect(messages.SEARCH_START)


def test_private_messages_are_not_in_history(open_server: ServerProcess) -> None:
    alice, _bob = open_server.connect("alice"), open_server.connect("bob")
    alice.send("/private bob hush")
    alice.expect(r"\[PM to bob\]")
    alice.send("public words")
    alice.expect("public words")
    stored(alice, "public words")
    late = open_server.connect("late")
    late.expect(messages.HISTORY_END)
    assert any("public words" in line for line in late.lines)
    assert not any("hush" in line for line in late.lines)


def test_coloured_private_message_as_a_terminal_shows_it(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    alice.send("/private bob /color red **hot** tip")
    line = bob.expect(messages.PRIVATE_FROM)
    screen = screen_of(line)
    assert all(c.fg == pyte_color("red") and c.bold for c in find_cells(screen, "hot"))
    assert all(c.fg == pyte_color("red") and not c.bold for c in find_cells(screen, "tip"))


def test_markup_and_colour_render_as_a_terminal_shows_them(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    alice.send("/color bright_blue **b** __i__ ~~s~~ **__~~all~~__** \\**lit**")
    line = bob.expect(messages.MESSAGE)
    screen = screen_of(line + "\r\nnext line\r\n")
    blue = pyte_color("bright_blue")
    assert all(c.bold and c.fg == blue for c in find_cells(screen, "b ")[:1])
    assert find_cells(screen, " i ")[1].italics
    assert find_cells(screen, " s ")[1].strikethrough
    assert all(c.bold and c.italics and c.strikethrough and c.fg == blue for c in find_cells(screen, "all"))
    assert not any(c.bold for c in find_cells(screen, "**lit**"))
    assert all(c.fg == "default" and not c.bold for c in find_cells(screen, "next line"))


def test_unknown_command_colour_and_recipient_get_clear_errors(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    alice.send("/dance")
    assert messages.UNKNOWN_COMMAND.match(alice.expect(messages.UNKNOWN_COMMAND)) == {"command": "/dance"}
    alice.send("/color chartreuse hi")
    alice.expect(messages.UNKNOWN_COLOR)
    alice.send("/private nobody hi")
    alice.expect(messages.NO_SUCH_USER)
    alice.send("/private alice hi")
    alice.expect(messages.PM_SELF)
    alice.send("visible")
    bob.expect("visible")
    assert not any("dance" in line or "chartreuse" in line for line in bob.lines)


def test_who_and_help(open_server: ServerProcess) -> None:
    alice = open_server.connect("alice")
    bob = open_server.connect("bob")
    alice.send("/who")
    assert messages.WHO.match(alice.expect(messages.WHO)) == {"count": "2", "names": "alice, bob"}
    alice.send("/help")
    alice.expect(r"/private <name> <text>")
    bob.close()


def test_nick_renames_you_for_everyone(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    alice.send("/nick alicia")
    assert messages.RENAMED.match(bob.expect(messages.RENAMED)) == {"old": "alice", "new": "alicia"}
    alice.expect(messages.RENAMED)
    open_server.log.wait_for(r"rename alice -> alicia \(127\.0\.0\.1:\d+\)")
    alice.send("still me")
    assert messages.MESSAGE.match(bob.expect("still me")) == {"name": "alicia", "text": "still me"}
    bob.send("/private alicia got it")
    alice.expect("got it")
    bob.send("/private alice hello?")
    bob.expect(messages.NO_SUCH_USER)
    bob.send("/who")
    assert messages.WHO.match(bob.expect(messages.WHO)) == {"count": "2", "names": "alicia, bob"}
    open_server.connect("alice")  # the old name is free again (connect waits for the welcome)


def test_nick_checks_the_new_name_like_a_first_one(open_server: ServerProcess) -> None:
    alice, _bob = open_server.connect("alice"), open_server.connect("bob")
    open_server.console("/ban mallory")
    open_server.log.wait_for(r"banned name mallory")
    for bad, reason in (
        ("mallory", "that name is banned"),
        ("BOB", "'BOB' is already taken"),
        ("server", "'server' is reserved"),
        ("two words", "it contains a space"),
        ("alice", "it is your name already"),
    ):
        alice.send(f"/nick {bad}")
        assert reason in alice.expect(messages.RENAME_REJECTED)
    alice.send("/nick Alice")  # a change of case is a change of name
    alice.expect(r"alice is now known as Alice")
    alice.send("hi")
    assert messages.MESSAGE.match(alice.expect("hi")) == {"name": "Alice", "text": "hi"}
    assert not any(messages.NAME_REJECTED.matches(line) for line in alice.lines)


def test_whois_says_since_when_and_how_long_idle(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    bob.send("/whois ALICE")
    found = messages.WHOIS.match(bob.expect(messages.WHOIS))
    assert found is not None and found["name"] == "alice"
    assert re.fullmatch(r"\d\d:\d\d:\d\d", found["since"]) and re.fullmatch(r"\d+s", found["idle"])
    bob.send("/whois nobody")
    bob.expect(messages.NO_SUCH_USER)
    alice.close()


def test_leave_and_disconnect_both_notify_the_room(server: ServerProcess) -> None:
    alice, bob, carol = (server.connect(n) for n in ("alice", "bob", "carol"))
    bob.send("/leave")
    bob.expect(messages.GOODBYE)
    bob.expect_closed()
    assert messages.LEFT.match(alice.expect(messages.LEFT)) == {"name": "bob", "count": "2"}
    server.log.wait_for(r"leave bob \(127\.0\.0\.1:\d+\): left with /leave \(2 in room")
    carol.close()
    assert messages.LEFT.match(alice.expect(messages.LEFT)) == {"name": "carol", "count": "1"}
    server.log.wait_for(r"disconnect carol .*\(1 in room, 0 waiting, 1 connected\)")


def test_history_is_replayed_on_join(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--history", "3")
    alice = server.connect("alice")
    for i in range(5):
        alice.send(f"line {i}")
        alice.expect(f"line {i}")
    stored(alice, "line 4")
    late = server.connect("late")
    assert messages.HISTORY_START.match(late.expect(messages.HISTORY_START)) == {"count": "3"}
    replay = [strip_sgr(late.expect(messages.MESSAGE)) for _ in range(3)]
    assert [line.split("> ")[1] for line in replay] == ["line 2", "line 3", "line 4"]
    assert all(re.match(STAMP, line) for line in replay)
    late.expect(messages.HISTORY_END)


def test_lines_are_timestamped_with_the_time_they_were_sent(open_server: ServerProcess) -> None:
    alice = open_server.connect("alice")
    before = time.strftime("%H:%M:%S")
    alice.send("tick")
    line = strip_sgr(alice.expect("tick"))
    after = time.strftime("%H:%M:%S")
    stamp = line[1:9]
    assert before <= stamp <= after or before > after  # (midnight)


def test_idle_client_is_not_dropped(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    alice.drain(quiet=3.0)  # idle for a while
    bob.send("still with us?")
    alice.expect("still with us")


def test_operator_can_kick_and_announce(server: ServerProcess) -> None:
    alice, bob = server.connect("alice"), server.connect("bob")
    server.console("/say maintenance at noon")
    assert messages.ANNOUNCEMENT.match(bob.expect(messages.ANNOUNCEMENT)) == {"text": "maintenance at noon"}
    server.console("/kick bob spamming")
    assert "spamming" in bob.expect(messages.KICKED)
    bob.expect_closed()
    alice.expect(messages.KICKED_NOTICE)


def test_shutdown_tells_clients_and_exits_zero(server: ServerProcess) -> None:
    alice = server.connect("alice")
    assert server.stop() == 0
    alice.expect(messages.SHUTTING_DOWN)
    alice.expect_closed()


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat is not installed")
def test_nc_is_a_usable_client(open_server: ServerProcess) -> None:
    alice = open_server.connect("alice")
    nc = subprocess.Popen(
        ["nc", open_server.host, str(open_server.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert nc.stdin is not None and nc.stdout is not None
    nc.stdin.write(b"ncuser\nhello from nc \xf0\x9f\x91\x8b\n")
    nc.stdin.flush()
    assert messages.MESSAGE.match(alice.expect("hello from nc")) == {
        "name": "ncuser",
        "text": "hello from nc 👋",
    }
    alice.send("hi nc")
    alice.expect("<alice> hi nc")  # so it was sent to nc too, before nc leaves
    nc.stdin.write(b"/leave\n")
    nc.stdin.close()
    out = nc.stdout.read().decode()
    nc.wait(WAIT)
    assert messages.NAME_PROMPT in out and "<alice> hi nc" in strip_sgr(out) and "Goodbye, ncuser" in out


@pytest.mark.parametrize(
    "enter",
    [b"\n", b"\r\n", b"\r\x00", b"\r"],
    ids=["nc LF", "telnet CR LF", "telnet character mode CR NUL", "raw terminal CR"],
)
def test_every_kind_of_enter_key_ends_a_line(open_server: ServerProcess, enter: bytes) -> None:
    alice = open_server.connect("alice")
    bob = RawClient(open_server.host, open_server.port)
    bob.read_until_prompt()
    bob.sock.sendall(b"bob" + enter)
    bob.expect(messages.WELCOME)
    bob.sock.sendall(b"one" + enter + b"two" + enter)
    bob.sock.sendall(b"three" + enter[:1])
    bob.sock.sendall(enter[1:] + b"four" + enter)
    for text in ("one", "two", "three", "four"):
        assert messages.MESSAGE.match(alice.expect(messages.MESSAGE)) == {"name": "bob", "text": text}
    bob.expect("<bob> four")
    assert not [line for line in bob.lines if messages.NAME_REJECTED.matches(line) or "\x1b[0;31m" in line]


def test_joins_and_leaves_are_not_announced_to_a_crowd(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--announce-limit", "2")
    first = server.connect("first")
    second = server.connect("second")
    first.expect(r"second joined \(2 in the room\)")
    third = server.connect("third")  # the room is now over the limit
    server.log.wait_for(r"join third")
    third.close()
    server.log.wait_for(r"leave third")
    second.send("/leave")
    first.expect(r"second left \(1 in the room\)")  # back under the limit: announced again
    assert not any("third" in line for line in first.lines)


@pytest.mark.skipif(shutil.which("telnet") is None, reason="telnet is not installed")
def test_telnet_is_a_usable_client(open_server: ServerProcess) -> None:
    alice = open_server.connect("alice")
    telnet = subprocess.Popen(
        ["telnet", open_server.host, str(open_server.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert telnet.stdin is not None and telnet.stdout is not None
    telnet.stdin.write("tuser\nhello from telnet 👋\n".encode())  # telnet sends CR LF (or CR NUL)
    telnet.stdin.flush()
    said = alice.expect("hello from telnet")
    assert messages.MESSAGE.match(said) == {"name": "tuser", "text": "hello from telnet 👋"}
    alice.send("hi telnet")
    alice.expect("<alice> hi telnet")
    telnet.stdin.write(b"/leave\n")
    telnet.stdin.flush()
    alice.expect(messages.LEFT)
    # telnet quits as soon as its stdin ends, so keep it open until the server hangs up.
    telnet.wait(timeout=WAIT)
    out = telnet.stdout.read().decode()
    telnet.stdin.close()
    telnet.stdout.close()
    assert "<alice> hi telnet" in strip_sgr(out) and "Goodbye, tuser" in out
