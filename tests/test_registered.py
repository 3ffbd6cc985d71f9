"""Names that belong to someone, away, catch-up and search, end to end with raw sockets."""

from __future__ import annotations

import re
from pathlib import Path

from formatting.sanitize import strip_sgr
from harness import RawClient, ServerProcess, StartServer, Terminal, TerminalClient, client_process
from protocol import messages

PASSWORD = "correct horse"


def register(server: ServerProcess, name: str, password: str = PASSWORD) -> RawClient:
    """``name`` joins (asking the operator) and registers itself."""
    client = server.connect(name)
    client.send(f"/register {password}")
    client.expect(messages.REGISTERED)
    return client


def leave(client: RawClient) -> None:
    client.send("/leave")
    client.expect(messages.GOODBYE)
    client.expect_closed()


def come_back(server: ServerProcess, name: str, password: str = PASSWORD) -> RawClient:
    """A registered name joins again: its name, then its password."""
    client = RawClient(server.host, server.port)
    client.send_name(name)
    client.read_until_prompt(prompt=messages.PASSWORD_PROMPT)
    client.send(password)
    return client


def test_a_registered_name_comes_back_with_its_password_and_no_operator(start_server: StartServer) -> None:
    server = start_server()
    leave(register(server, "alice"))
    asked = server.log.text().count("join request: alice")
    alice = come_back(server, "alice")
    alice.expect(messages.WELCOME)
    server.log.wait_for(r"approved \(registered name\) alice")
    assert server.log.text().count("join request: alice") == asked  # the operator was not asked again
    assert PASSWORD not in server.log.text()


def test_three_wrong_passwords_and_the_connection_closes(start_server: StartServer) -> None:
    server = start_server()
    leave(register(server, "alice"))
    guesser = RawClient(server.host, server.port)
    guesser.send_name("Alice")
    for guess in ("guess one", "guess two"):
        guesser.read_until_prompt(prompt=messages.PASSWORD_PROMPT)
        guesser.send(guess)
        assert messages.PASSWORD_WRONG.match(guesser.expect(messages.PASSWORD_WRONG)) == {"name": "Alice"}
    guesser.read_until_prompt(prompt=messages.PASSWORD_PROMPT)
    guesser.send("guess three")
    guesser.expect(messages.PASSWORD_REFUSED)
    guesser.expect_closed()
    server.log.wait_for(r"refused Alice \(127\.0\.0\.1:\d+\): 3 wrong passwords")
    log = server.log.text()
    assert "wrong password for Alice (127.0.0.1:" in log and "(try 2; 2 from this address lately)" in log
    assert "guess" not in log and "join request: Alice" not in log


def test_nobody_else_can_take_a_registered_name_or_a_look_alike(start_server: StartServer) -> None:
    server = start_server("--approve", "all")
    leave(register(server, "alice"))
    for look_alike in ("ALICE", "аlice"):  # the second has a Cyrillic а
        impostor = RawClient(server.host, server.port)
        impostor.send_name(look_alike)
        impostor.read_until_prompt(prompt=messages.PASSWORD_PROMPT)  # not let in without it
        impostor.close()
    carol = server.connect("carol")
    carol.send("/nick alice")
    rejected = messages.RENAME_REJECTED.match(carol.expect(messages.RENAME_REJECTED))
    assert rejected == {"reason": messages.NAME_REGISTERED}


def test_registrations_survive_a_restart_and_the_operator_can_let_them_go(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = str(tmp_path / "room.sqlite3")
    first = start_server("--approve", "all", db=db)
    leave(register(first, "alice"))
    first.log.wait_for(r"disconnect alice")
    first.stop()
    second = start_server("--approve", "all", db=db)
    come_back(second, "alice").expect(messages.WELCOME)
    second.console("/registered")
    second.log.wait_for(r"registered names \(1\): alice")
    second.console("/unregister alice")
    second.log.wait_for(r"unregistered alice")
    second.console("/registered")
    second.log.wait_for(r"registered names \(0\): none")


def test_password_and_unregister(start_server: StartServer) -> None:
    server = start_server("--approve", "all")
    alice = register(server, "alice")
    alice.send("/password another secret")
    alice.expect(messages.PASSWORD_CHANGED)
    alice.send("/register yet another")
    assert "registered already" in alice.expect(messages.REGISTER_REJECTED)
    leave(alice)
    alice = come_back(server, "alice", "another secret")
    alice.send("/unregister")
    alice.expect(messages.UNREGISTERED)
    leave(alice)
    friend = server.connect("alice_friend")  # anyone may take it now, with no password asked
    friend.send("/nick alice")
    friend.expect(messages.RENAMED)


def test_away_is_shown_in_who_and_whois_and_answers_private_messages(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    bob.send("/away lunch, then a walk")
    assert messages.AWAY.match(bob.expect(messages.AWAY)) == {"reason": ": lunch, then a walk"}
    alice.send("/who")
    assert messages.WHO.match(alice.expect(messages.WHO)) == {
        "count": "2",
        "names": "alice, bob (away: lunch, then a walk)",
    }
    alice.send("/whois bob")
    alice.expect(messages.WHOIS)
    assert messages.IS_AWAY.match(alice.expect(messages.IS_AWAY)) == {
        "name": "bob",
        "reason": ": lunch, then a walk",
    }
    alice.send("/private bob are you there?")
    alice.expect(messages.PRIVATE_TO)
    alice.expect(messages.IS_AWAY)
    bob.expect(messages.PRIVATE_FROM)  # delivered all the same
    bob.send("/back")
    bob.expect(messages.BACK)
    alice.send("/who")
    assert messages.WHO.match(alice.expect(messages.WHO)) == {"count": "2", "names": "alice, bob"}


def test_a_registered_name_catches_up_on_more_than_the_history(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--history", "5")
    leave(register(server, "alice"))
    bob = server.connect("bob")
    for i in range(12):
        bob.send(f"line {i} while alice was out")
        bob.expect(rf"line {i} while")
    alice = come_back(server, "alice")
    start = messages.CATCH_UP_START.match(alice.expect(messages.CATCH_UP_START))
    assert start is not None and start["count"] == "12"
    missed = [alice.expect(messages.MESSAGE) for _ in range(12)]
    assert [messages.MESSAGE.match(line)["text"] for line in missed] == [  # type: ignore[index]
        f"line {i} while alice was out" for i in range(12)
    ]
    alice.expect(messages.CATCH_UP_END)
    leave(alice)
    alice = come_back(server, "alice")
    alice.expect(messages.NOTHING_MISSED)
    newcomer = server.connect("carol")  # not registered: the last --history lines, as ever
    assert not any(messages.CATCH_UP_START.matches(line) for line in newcomer.lines)


def test_history_is_the_conversation_not_the_comings_and_goings(open_server: ServerProcess) -> None:
    alice = open_server.connect("alice")
    alice.send("hello, is anyone here?")
    alice.expect("hello, is anyone")
    for name in ("bob", "carol", "dave"):
        leave(open_server.connect(name))
    newcomer = RawClient(open_server.host, open_server.port)
    newcomer.send_name("erin")
    replay = messages.HISTORY_START.match(newcomer.expect(messages.HISTORY_START))
    assert replay == {"count": "1"}
    assert "hello, is anyone here?" in newcomer.expect(messages.MESSAGE)
    newcomer.expect(messages.HISTORY_END)


def test_search_finds_public_lines_with_their_time_and_sender_never_private_ones(
    open_server: ServerProcess,
) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    alice.send("the **cake** is in the kitchen")
    bob.expect("the cake is in the kitchen")  # said first, for everyone
    bob.send("/private alice where is the secret cake?")
    bob.send("no cake for me, thanks")
    alice.expect("no cake for me")
    alice.send("/search CAKE")
    found = messages.SEARCH_START.match(alice.expect(messages.SEARCH_START))
    assert found == {"words": "'CAKE'", "count": "2"}
    first, second = alice.expect(messages.MESSAGE), alice.expect(messages.MESSAGE)
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] <alice> the cake is in the kitchen", strip_sgr(first))
    assert messages.MESSAGE.match(second) == {"name": "bob", "text": "no cake for me, thanks"}
    alice.expect(messages.SEARCH_END)
    bob.send("/search secret cake")
    bob.expect(messages.SEARCH_NOTHING)


def test_client_joins_a_registered_name_with_a_password_file(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server("--approve", "all")
    leave(register(server, "alice"))
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    client = client_process(server.port, "--name", "alice", "--password-file", str(secret))
    out, err = client.communicate(b"back with a password file\n", timeout=10)
    assert client.returncode == 0, err
    assert b"<alice> back with a password file" in out
    secret.write_text("not it\n")
    client = client_process(server.port, "--name", "alice", "--password-file", str(secret))
    _out, err = client.communicate(b"", timeout=10)
    assert client.returncode == 3 and b"the password in --password-file was not accepted" in err
    client = client_process(server.port, "--name", "alice")
    _out, err = client.communicate(b"", timeout=10)
    assert client.returncode == 3 and b"give its password with --password-file" in err


def test_on_a_terminal_passwords_are_asked_without_echo(
    open_server: ServerProcess, terminals: list[Terminal]
) -> None:
    term = TerminalClient(open_server.port, "--name", "alice")
    terminals.append(term)
    term.wait_prompt("alice>")
    term.type("/register\r")
    term.wait_prompt("New password (not shown):")
    term.type("sesame-open\r")
    term.wait_prompt("Password again:")
    term.type("sesame-open\r")
    term.wait_screen(r"alice is registered to you")
    assert "sesame" not in term.display() and b"sesame" not in term.raw.replace(b"\x1b", b"")
    term.type("/leave\r")
    assert term.wait_exit() == 0
    again = TerminalClient(open_server.port, "--name", "alice")
    terminals.append(again)
    again.wait_prompt("Password:")
    again.type("wrong one\r")
    again.wait_screen(r"Wrong password for alice")
    again.wait_prompt("Password:")
    again.type("sesame-open\r")
    again.wait_screen(r"Welcome, alice!")
    assert "sesame" not in again.display() and "wrong one" not in again.display()
