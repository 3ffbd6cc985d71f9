"""The operator's console: answers, bans, the allow-list, and the interactive terminal console."""

from __future__ import annotations

import re
from pathlib import Path

from chatroom.console import COMMANDS
from harness import (
    RawClient,
    ServerProcess,
    StartServer,
    Terminal,
    TerminalClient,
    TerminalServer,
    wait_until,
)
from protocol import messages


def test_who_says_when_people_connected_apart_from_whois_saying_when_they_joined(
    server: ServerProcess,
) -> None:
    alice = server.connect("alice")
    start = len(server.log.lines)
    server.console("/who")
    server.log.wait_for(r"in the room \(1\):", start=start)
    row = server.log.wait_for(r"  alice  127\.0\.0\.1:\d+  connected \d\d:\d\d:\d\d, idle \d+s$", start)
    connected = row.split("connected ")[1][:8]
    alice.send("/whois alice")
    joined = messages.WHOIS.match(alice.expect(messages.WHOIS))["since"]  # type: ignore[index]
    assert connected <= joined  # the two times, each named for what it is


def test_pending_lists_the_queue_one_a_line(server: ServerProcess) -> None:
    clients = [RawClient(server.host, server.port) for _ in range(2)]
    for client, name in zip(clients, ("ann", "bartholomew"), strict=True):
        client.send_name(name)
        client.expect(messages.WAITING)
    start = len(server.log.lines)
    server.console("/pending")
    server.log.wait_for(r"waiting \(2\):$", start=start)
    server.log.wait_for(r"  ann          127\.0\.0\.1:\d+  waiting \d+s$", start=start)
    server.log.wait_for(r"  bartholomew  127\.0\.0\.1:\d+  waiting \d+s$", start=start)


def test_help_lists_the_operator_commands(server: ServerProcess) -> None:
    server.console("/help")
    for command in ("/approve", "/deny", "/pending", "/who", "/kick", "/ban", "/unban", "/say", "/allow"):
        server.log.wait_for(rf"  {command} ")


def test_commands_without_their_argument_show_their_usage(server: ServerProcess) -> None:
    for command, usage in (
        ("/kick", "NAME [why]"),
        ("/ban", "NAME|IP"),
        ("/say", "TEXT"),
        ("/allow", "NAME"),
    ):
        server.console(command)
        server.log.wait_for(rf"usage: {re.escape(command)} {re.escape(usage)}$")
    server.console("/frobnicate now")
    server.log.wait_for(r"unknown operator command '/frobnicate'; /help lists them")


def test_ban_by_name_removes_and_keeps_out_and_survives_a_restart(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = str(tmp_path / "bans.sqlite3")
    server = start_server("--approve", "all", db=db)
    alice, troll = server.connect("alice"), server.connect("troll")
    server.console("/ban troll")
    assert "banned" in troll.expect(messages.KICKED)
    troll.expect_closed()
    alice.expect(messages.KICKED_NOTICE)
    server.log.wait_for(r"banned name troll")
    again = RawClient(server.host, server.port)
    again.send_name("TROLL")
    again.expect(messages.BANNED)
    again.expect_closed()
    server.stop()

    restarted = start_server("--approve", "all", db=db)
    third = RawClient(restarted.host, restarted.port)
    third.send_name("troll")
    third.expect(messages.BANNED)
    restarted.console("/bans")
    restarted.log.wait_for(r"bans \(1\): name troll")
    restarted.console("/unban troll")
    restarted.log.wait_for(r"unbanned name troll")
    restarted.connect("troll")


def test_ban_by_address_refuses_connections(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--exempt", "")
    alice = server.connect("alice")
    server.console("/ban 127.0.0.1")
    server.log.wait_for(r"banned address 127\.0\.0\.1")
    alice.expect(messages.KICKED)
    newcomer = RawClient(server.host, server.port)
    newcomer.expect(messages.BANNED)
    newcomer.expect_closed()
    server.console("/unban 127.0.0.1")
    server.log.wait_for(r"unbanned address 127\.0\.0\.1")
    server.connect("welcome")


def test_banning_a_name_bans_its_address_unless_exempt(start_server: StartServer) -> None:
    exempt = start_server("--approve", "all")  # loopback is exempt by default
    _troll = exempt.connect("troll")
    exempt.console("/ban troll")
    exempt.log.wait_for(r"banned name troll")
    exempt.connect("someone")  # same address, still welcome

    strict = start_server("--approve", "all", "--exempt", "")
    _troll2 = strict.connect("troll")
    strict.console("/ban troll")
    strict.log.wait_for(r"banned address 127\.0\.0\.1")


def test_allowlist_mode_lets_in_only_listed_names(start_server: StartServer, tmp_path: Path) -> None:
    allow = tmp_path / "allowed.txt"
    allow.write_text("# friends\nAlice\n\nbob  # from work\n")
    server = start_server("--approve", "allowlist", "--allow-file", str(allow))
    for name in ("alice", "BOB"):
        friend = RawClient(server.host, server.port)
        friend.send_name(name)
        friend.expect(messages.WELCOME)
    stranger = RawClient(server.host, server.port)
    stranger.send_name("mallory")
    stranger.expect(messages.REFUSED)
    server.log.wait_for(r"refused mallory .*not on the allow-list")
    friend.send("/nick mallory")  # nor can a friend take a name that is not on it
    assert "not on the allow-list" in friend.expect(messages.RENAME_REJECTED)
    friend.send("/nick Bob")
    friend.expect(r"BOB is now known as Bob")


def test_ask_mode_with_an_allowlist_only_asks_about_strangers(
    start_server: StartServer, tmp_path: Path
) -> None:
    allow = tmp_path / "allowed.txt"
    allow.write_text("alice\n")
    server = start_server("--allow-file", str(allow))
    alice = RawClient(server.host, server.port)
    alice.send_name("alice")
    alice.expect(messages.WELCOME)  # no question asked
    carol = RawClient(server.host, server.port)
    carol.send_name("carol")
    carol.expect(messages.WAITING)
    server.asked_about("carol")
    server.console("/allow carol")
    carol.expect(messages.WELCOME)
    server.log.wait_for(r"carol added to the allow-list")
    assert allow.read_text().splitlines() == ["alice", "carol"]
    assert "join request: alice" not in server.log.text()


def test_interactive_console_approves_and_shows_the_queue(terminals: list[Terminal]) -> None:
    console = TerminalServer()
    terminals.append(console)
    console.wait_prompt("operator>")
    first = RawClient("127.0.0.1", console.port)
    first.send_name("first")
    first.expect(messages.WAITING)
    second = RawClient("127.0.0.1", console.port)
    second.send_name("second")
    second.expect(messages.WAITING)
    console.wait_screen(r"y/n → first \(\+1 more\)   waiting: first .*second")
    console.type("/approve sec\t")
    wait_until(lambda: console.cursor_line() == "operator> /approve second", what="the name completed")
    console.type("\r")
    second.expect(messages.WELCOME)
    console.wait_screen(r"y/n → first   waiting: first")
    console.type("y\r")
    first.expect(messages.WELCOME)
    console.wait_screen(r"2 in the room, nobody waiting")
    console.wait_screen(r"join first")  # the log scrolls above the prompt
    console.wait_prompt("operator>")


def test_interactive_console_keeps_typed_text_while_logs_arrive(terminals: list[Terminal]) -> None:
    console = TerminalServer("--approve", "all")
    terminals.append(console)
    console.wait_prompt("operator>")
    console.type("/say half-typed")
    wait_until(lambda: console.cursor_line().endswith("/say half-typed"), what="typed text")
    clients = [RawClient("127.0.0.1", console.port) for _ in range(3)]
    for i, client in enumerate(clients):
        client.send_name(f"guest{i}")
    console.wait_screen(r"join guest2")
    # (prompt_toolkit erases and redraws the input line around each log line: wait for the redraw)
    wait_until(lambda: console.cursor_line().endswith("operator> /say half-typed"), what="the typed text")
    console.type(" announcement\r")
    assert messages.ANNOUNCEMENT.match(clients[0].expect(messages.ANNOUNCEMENT)) == {
        "text": "half-typed announcement"
    }


def test_interactive_console_ctrl_c_shuts_down_cleanly(terminals: list[Terminal]) -> None:
    console = TerminalServer("--approve", "all")
    terminals.append(console)
    console.wait_prompt("operator>")
    guest = RawClient("127.0.0.1", console.port)
    guest.send_name("guest")
    guest.expect(messages.WELCOME)
    console.type("\x03")
    guest.expect(messages.SHUTTING_DOWN)
    assert console.wait_exit() == 0


def test_a_whole_session_on_terminals(terminals: list[Terminal]) -> None:
    """Operator and user both at real terminals: approve, complete, type through traffic, ring."""
    console = TerminalServer()
    terminals.append(console)
    console.wait_prompt("operator>")
    user = TerminalClient(console.port, "--name", "dana")
    try:
        console.wait_screen(r"y/n → dana   waiting: dana")
        console.type("y\r")
        user.wait_screen(r"Welcome, dana!")
        user.wait_prompt("dana>")
        friend = RawClient("127.0.0.1", console.port)
        friend.send_name("frankie")
        console.wait_screen(r"y/n → frankie")
        console.type("y\r")
        friend.expect(messages.WELCOME)
        user.wait_screen(r"frankie joined")
        user.type("/private fra")
        user.type("\t")
        wait_until(lambda: user.cursor_line().endswith("/private frankie"), what="the name completed")
        user.type("see you at noon")
        friend.send("hey dana, are you there?")
        user.wait_screen(r"<frankie> hey dana, are you there\?")
        typed = "dana> /private frankie see you at noon"
        wait_until(lambda: user.cursor_line().endswith(typed), what="the typed line, redrawn")
        wait_until(lambda: b"\x07" in user.raw, what="the bell for a mention")
        user.type("\r")
        assert messages.PRIVATE_FROM.match(friend.expect(messages.PRIVATE_FROM)) == {
            "name": "dana",
            "text": "see you at noon",
        }
    finally:
        user.close()


# --- what a newcomer to the console sees -------------------------------------------------


def bar(console: Terminal) -> str:
    """The bottom row: the console's status bar."""
    return console.display().split("\n")[-1]


def wait_in_line(port: int, *names: str) -> list[RawClient]:
    clients = []
    for name in names:
        client = RawClient("127.0.0.1", port)
        client.send_name(name)
        client.expect(messages.WAITING)
        clients.append(client)
    return clients


def test_the_bar_names_whom_y_and_n_answer_before_anything_is_cut(terminals: list[Terminal]) -> None:
    for columns, names in (
        (80, ("dorothea", "bartholomew")),
        (110, ("alexandra", "bartholomew", "cornelius")),
    ):
        console = TerminalServer(columns=columns)
        terminals.append(console)
        console.wait_prompt("operator>")
        _waiting = wait_in_line(console.port, *names)
        more = f" (+{len(names) - 1} more)"
        wait_until(
            lambda: bar(console).startswith(f" y/n → {names[0]}{more}   waiting: {names[0]} 127.0.0.1:"),  # noqa: B023
            what=f"the bar at {columns} columns",
        )
        # Who else waits is there as far as the width allows, and visibly cut where it ends.
        assert f", {names[1]} " in bar(console)
        assert len(bar(console)) == columns and bar(console).endswith("…")
        console.type("y\r")
        wait_until(lambda: bar(console).startswith(f" y/n → {names[1]}"), what="the next one named")  # noqa: B023


def test_a_join_request_buried_by_a_burst_is_shown_again_once_it_is_over(terminals: list[Terminal]) -> None:
    console = TerminalServer(rows=24)
    terminals.append(console)
    console.wait_prompt("operator>")
    _first = wait_in_line(console.port, "first")
    request = r"join request: first from 127\.0\.0\.1:\d+ - let in\? \[y/n\]"
    console.wait_screen(request)
    for _ in range(30):  # a crowd comes and goes: 60 log lines, more than the screen holds
        RawClient("127.0.0.1", console.port).close()
    wait_until(lambda: console.raw.count(b"disconnect 127.0.0.1:") >= 30, what="the burst")
    screen = console.wait_screen(request)  # on screen again, once the burst is over
    assert screen.count("join request: first") == 1
    assert console.raw.count(b"join request: first") >= 2
    console.type("y\r")
    console.wait_screen(r"join first")


def test_pending_puts_each_of_a_full_queue_on_a_line_of_its_own(terminals: list[Terminal]) -> None:
    console = TerminalServer("--max-pending-per-ip", "0", "--max-pending-per-net", "0", columns=80)
    terminals.append(console)
    console.wait_prompt("operator>")
    names = [f"guest{i}" if i % 3 else f"visitor_number_{i}" for i in range(16)]  # --max-pending: 16
    _waiting = wait_in_line(console.port, *names)
    console.type("/pending\r")
    screen = console.wait_screen(r"waiting \(16\):\n(.*\n){16}")
    rows = screen.split("waiting (16):\n")[1].split("\n")[:16]
    columns = set()
    for name, row in zip(names, rows, strict=True):
        found = re.fullmatch(rf"\S+ \S+   {name} +(127\.0\.0\.1:\d+)  waiting \d+s", row)
        assert found, row
        columns.add(found.start(1))
    assert len(columns) == 1  # the addresses line up


def test_help_is_a_table_whose_columns_line_up(terminals: list[Terminal]) -> None:
    console = TerminalServer(columns=80, rows=30)
    terminals.append(console)
    console.wait_prompt("operator>")
    console.type("/help\r")
    count = len(COMMANDS) + 1  # and y | n
    screen = console.wait_screen(rf"operator commands:\n(.*\n){{{count}}}")
    rows = screen.split("operator commands:\n")[1].split("\n")[:count]
    starts = set()
    for row in rows:
        assert len(row) < 80, row  # no row wraps at 80 columns
        found = re.fullmatch(r"\S+ \S+   (\S+(?: \S+)*)  +(\S.*)", row)
        assert found, row
        starts.add(found.start(2))
    assert [row.split()[2] for row in rows] == ["y", *COMMANDS]
    assert len(starts) == 1, rows


def test_tab_completes_a_sole_candidate_with_a_space_as_the_client_does(terminals: list[Terminal]) -> None:
    console = TerminalServer("--approve", "all")
    terminals.append(console)
    console.wait_prompt("operator>")

    def typed() -> tuple[str, int]:
        with console._lock:
            return console.screen.display[console.screen.cursor.y].rstrip(), console.screen.cursor.x

    console.type("/ki\t")
    wait_until(lambda: typed() == ("operator> /kick", len("operator> /kick ")), what="/kick and a space")
    assert "/kick" not in console.display().split("operator> /kick")[1]  # no menu left open
    console.type("\tx")  # a second Tab (nobody to kick yet) leaves it as it is
    wait_until(lambda: typed()[0] == "operator> /kick x", what="the line as it was")
    console.type("\x7f")
    guest = RawClient("127.0.0.1", console.port)
    guest.send_name("guestly")
    guest.expect(messages.WELCOME)
    console.type("gu\t")
    done = "operator> /kick guestly"
    wait_until(lambda: typed() == (done, len(done) + 1), what="the name and a space")
    console.type("\r")
    guest.expect(messages.KICKED)
