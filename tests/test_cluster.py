"""Several Server.py processes, one room, through a real redis-server started for each test.

Every node runs with ``--redis-ttl 1.5``: names and presence of a dead node
expire in 1.5 s, claims are refreshed every 0.5 s, and reconnecting backs off
to at most 0.5 s, so crash and outage tests take a couple of seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from formatting.sanitize import strip_sgr
from harness import ROOT, WAIT, RawClient, RedisServer, ServerProcess, StartServer, free_port, wait_until
from protocol import messages

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

TTL = 1.5


Node = Callable[..., ServerProcess]


@pytest.fixture
def node(redis_server: RedisServer, start_server: StartServer) -> Node:
    """``node("a")``: a Server.py in the room kept in the test's Redis, letting everyone in."""

    def start(name: str, *args: str) -> ServerProcess:
        return start_server(
            "--approve", "all", "--redis", redis_server.url, "--node", name, "--redis-ttl", str(TTL), *args
        )

    return start


def said(client: RawClient, text: str) -> str:
    """Send a line and wait for the room's echo of it."""
    client.send(text)
    return client.expect(re.escape(text))


def enter(server: ServerProcess, name: str) -> RawClient:
    """Join, and wait for one's own join notice: from then on every server knows one is in."""
    client = server.connect(name)
    client.expect(f"{name} joined")
    return client


def welcome(client: RawClient) -> dict[str, str]:
    return next(found for line in client.lines if (found := messages.WELCOME.match(line)))


def answer_to_name(client: RawClient, name: str) -> str:
    """Give a name at the prompt; the server's answer: refused (asked again), welcome, or banned."""
    client.send_name(name)
    return strip_sgr(client.expect(r"can't be used|Welcome, |banned"))


def texts(client: RawClient) -> list[str]:
    """The public messages a client has received, as text."""
    return [found["text"] for line in client.lines if (found := messages.MESSAGE.match(line))]


def test_lines_reach_every_node_once_in_one_order(node: Node) -> None:
    a, b, c = (node(name, "--flood-rate", "0") for name in "abc")
    clients = {"a": enter(a, "alice"), "b": enter(b, "bob"), "c": enter(c, "carol")}
    clients["a"].expect("carol joined")  # everyone is in before anyone talks
    for i in range(20):
        for where, client in clients.items():
            client.send(f"m{i} from {where}")
    for client in clients.values():
        wait_until(lambda c=client: len(texts(c.drain(0.05) and c)) == 60, what="all 60 lines")  # type: ignore[misc]
    # Rendered once, by the sender's server: the same bytes, stamp and all, in one order everywhere.
    seen = [[line for line in client.lines if messages.MESSAGE.matches(line)] for client in clients.values()]
    assert seen[0] == seen[1] == seen[2]
    for where in clients:  # and each sender's lines in the order they were sent
        assert [t for t in texts(clients["a"]) if t.endswith(where)] == [
            f"m{i} from {where}" for i in range(20)
        ]


def test_notices_and_announcements_count_the_whole_room(node: Node) -> None:
    a, b = node("a"), node("b")
    alice = enter(a, "alice")
    bob = enter(b, "bob")
    assert welcome(bob) == {"name": "bob", "count": "2", "names": "alice, bob"}
    assert messages.JOINED.match(alice.expect("bob joined")) == {"name": "bob", "count": "2"}
    a.console("/say hello both servers")
    assert messages.ANNOUNCEMENT.match(bob.expect(messages.ANNOUNCEMENT)) == {"text": "hello both servers"}
    bob.send("/leave")
    assert messages.LEFT.match(alice.expect(messages.LEFT)) == {"name": "bob", "count": "1"}


def test_who_shows_everyone_and_the_console_shows_their_server(node: Node) -> None:
    a, b = node("a"), node("b")
    alice, bob = enter(a, "alice"), enter(b, "bob")
    bob.send("/who")
    assert messages.WHO.match(bob.expect(messages.WHO)) == {"count": "2", "names": "alice, bob"}
    alice.expect("bob joined")  # whoever has seen that notice finds bob in /who
    start = len(a.log.lines)
    a.console("/who")
    a.log.wait_for(r"in the room \(2\):", start=start)
    a.log.wait_for(r"  alice  127\.0\.0\.1:\d+  on a  connected \d\d:\d\d:\d\d, idle \d+s$", start=start)
    a.log.wait_for(r"  bob    127\.0\.0\.1:\d+  on b  connected \d\d:\d\d:\d\d$", start=start)
    alice.close()


def test_private_message_crosses_servers_and_goes_nowhere_else(node: Node, redis_server: RedisServer) -> None:
    a, b, c = node("a"), node("b"), node("c")
    alice, bob, carol = enter(a, "alice"), enter(b, "bob"), enter(c, "carol")
    alice.expect("carol joined")
    alice.send("/private bob the eagle has landed")
    got = bob.expect(messages.PRIVATE_FROM)
    assert messages.PRIVATE_FROM.match(got) == {"name": "alice", "text": "the eagle has landed"}
    alice.expect(messages.PRIVATE_TO)
    bob.send("/reply roger that")  # to the sender, on the server that holds her
    alice.expect("roger that")
    said(alice, "over and out")
    carol.expect("over and out")  # carol got everything public said after the secrets...
    assert not any("eagle" in line or "roger" in line for line in carol.lines)  # ...and no secret
    a.log.wait_for(r"private message alice -> bob on b \(text not logged\)")
    b.log.wait_for(r"private message alice -> bob \(text not logged\)")
    for server in (a, b, c):
        assert "eagle" not in server.log.text() and "roger" not in server.log.text()
    history = cast(list[tuple[bytes, dict[bytes, bytes]]], redis_server.client.xrange("chatroom:0:history"))
    assert any(b"over and out" in fields[b"line"] for _id, fields in history)
    stored = redis_server.everything()
    assert "over and out" in stored and "eagle" not in stored and "roger" not in stored
    alice.send("/private nobody hello?")
    alice.expect(messages.NO_SUCH_USER)


def test_a_name_taken_on_one_server_is_refused_on_another(node: Node) -> None:
    a, b = node("a"), node("b")
    alice = a.connect("Alice")
    spoof = RawClient(b.host, b.port)
    for name in ("alice", "ALICE", "аlice"):  # the last one has a Cyrillic a
        assert "'" + name + "' is already taken" in answer_to_name(spoof, name)
    alice.send("/leave")
    alice.expect_closed()
    wait_until(lambda: "Welcome" in answer_to_name(spoof, "alice"), what="the name to be free elsewhere")


def test_a_rename_is_seen_and_claimed_on_every_server(node: Node) -> None:
    a, b = node("a"), node("b")
    alice, bob = enter(a, "alice"), enter(b, "bob")
    alice.send("/nick alicia")
    assert messages.RENAMED.match(bob.expect(messages.RENAMED)) == {"old": "alice", "new": "alicia"}
    bob.send("/who")
    assert messages.WHO.match(bob.expect(messages.WHO)) == {"count": "2", "names": "alicia, bob"}
    bob.send("/private alicia across")
    alice.expect("across")
    bob.send("/whois alicia")
    assert messages.WHOIS_ELSEWHERE.match(bob.expect(messages.WHOIS_ELSEWHERE))["name"] == "alicia"  # type: ignore[index]
    bob.send("/nick ALICIA")
    assert "'ALICIA' is already taken" in bob.expect(messages.RENAME_REJECTED)
    spoof = RawClient(b.host, b.port)
    wait_until(lambda: "Welcome" in answer_to_name(spoof, "alice"), what="the old name to be free elsewhere")


def test_history_is_shared_between_servers(node: Node) -> None:
    a = node("a", "--history", "3")
    b = node("b", "--history", "3")
    alice = a.connect("alice")
    for i in range(5):
        said(alice, f"line {i}")
    late = b.connect("late")
    assert messages.HISTORY_START.match(late.expect(messages.HISTORY_START)) == {"count": "3"}
    replay = [messages.MESSAGE.match(late.expect(messages.MESSAGE)) for _ in range(3)]
    assert [m["text"] for m in replay if m] == ["line 2", "line 3", "line 4"]
    late.expect(messages.HISTORY_END)


def test_registrations_away_and_search_hold_on_every_server(node: Node) -> None:
    a, b = node("a"), node("b")
    alice = a.connect("alice")
    alice.send("/register a good password")
    alice.expect(messages.REGISTERED)
    said(alice, "the cake is on server a")
    alice.send("/away baking")
    alice.expect(messages.AWAY)
    bob = enter(b, "bob")
    bob.send("/who")
    assert "alice (away: baking)" in bob.expect(messages.WHO)
    bob.send("/private alice hello")
    assert messages.IS_AWAY.match(bob.expect(messages.IS_AWAY)) == {"name": "alice", "reason": ": baking"}
    bob.send("/search cake")
    assert messages.SEARCH_START.match(bob.expect(messages.SEARCH_START)) == {"words": "'cake'", "count": "1"}
    assert "the cake is on server a" in bob.expect(messages.MESSAGE)
    alice.send("/leave")
    alice.expect_closed()
    again = RawClient(b.host, b.port)  # the registration holds on server b too
    again.send_name("alice")
    again.read_until_prompt(prompt=messages.PASSWORD_PROMPT)
    again.send("a good password")
    again.expect(messages.WELCOME)


def test_a_crashed_server_frees_its_names_after_the_ttl(node: Node) -> None:
    a, c = node("a"), node("c")
    alice, _dave = enter(a, "alice"), enter(c, "dave")
    alice.expect("dave joined")
    newcomer = RawClient(a.host, a.port)
    assert "already taken" in answer_to_name(newcomer, "dave")  # asked before the crash: no race with the TTL
    c.proc.kill()  # kill -9: no goodbye, no clean-up
    c.proc.wait()
    wait_until(lambda: "Welcome" in answer_to_name(newcomer, "dave"), what="dave's name to expire")
    alice.send("/who")
    assert messages.WHO.match(alice.expect(messages.WHO)) == {"count": "2", "names": "alice, dave"}


def test_a_server_started_again_under_its_name_frees_its_names_at_once(node: Node) -> None:
    a, c = node("a"), node("c", "--redis-ttl", "60")  # names that would outlive the test
    alice, _dave = enter(a, "alice"), enter(c, "dave")
    alice.expect("dave joined")
    c.proc.kill()  # kill -9: no goodbye, no clean-up; dave's name would stay taken for a minute
    c.proc.wait()
    again = node("c", "--redis-ttl", "60")
    again.log.wait_for(r"freed 1 names an earlier run of node c still held")
    newcomer = RawClient(a.host, a.port)
    assert "Welcome" in answer_to_name(newcomer, "dave")
    alice.send("/who")  # and the dave who was on c is gone from the room
    assert messages.WHO.match(alice.expect(messages.WHO)) == {"count": "2", "names": "alice, dave"}


def test_redis_outage_splits_the_room_and_it_heals(node: Node, redis_server: RedisServer) -> None:
    a, b = node("a"), node("b")
    alice, anna = enter(a, "alice"), enter(a, "anna")
    bob = enter(b, "bob")
    anna.expect("bob joined")
    said(alice, "before")
    bob.expect("before")

    redis_server.stop()
    for client, here in ((alice, "2"), (anna, "2"), (bob, "1")):
        assert messages.SEPARATED.match(client.expect(messages.SEPARATED)) == {"count": here}
    said(alice, "only on a")  # each server keeps serving its own people
    anna.expect("only on a")
    said(bob, "only on b")
    bob.send("/who")
    assert messages.WHO.match(bob.expect(messages.WHO)) == {"count": "1", "names": "bob"}
    ben = b.connect("ben")  # joining works too, in the room of one server
    assert welcome(ben)["names"] == "bob, ben"
    bob.send("/private alice are you there?")
    bob.expect(messages.NO_SUCH_USER)

    redis_server.start()  # empty: what was in it is gone, as after a crash
    for client in (alice, anna, bob, ben):
        client.expect(messages.REUNITED)
    said(alice, "after")
    bob.expect("after")
    said(ben, "hello a")
    anna.expect("hello a")
    bob.send("/who")
    assert messages.WHO.match(bob.expect(messages.WHO)) == {"count": "4", "names": "alice, anna, bob, ben"}
    assert "only on a" not in texts(bob) + texts(ben)
    assert "only on b" not in texts(alice) + texts(anna)
    newcomer = RawClient(a.host, a.port)
    assert "already taken" in answer_to_name(newcomer, "bob")  # claimed again in the new Redis
    late = a.connect("late")  # history is what Redis kept: lines said apart are not replayed
    late.expect(messages.HISTORY_END)
    assert texts(late) == ["after", "hello a"]
    for server in (a, b):
        assert server.proc.poll() is None
        assert len(re.findall(r"lost Redis at", server.log.text())) == 1
        server.log.wait_for(r"Redis at .* is back after \d+\.\ds: one room again")
        assert "Traceback" not in server.log.text()


def test_a_name_taken_twice_while_apart_stays_with_one(node: Node, redis_server: RedisServer) -> None:
    a, b = node("a"), node("b")
    alice, bob = enter(a, "alice"), enter(b, "bob")
    redis_server.stop()
    alice.expect(messages.SEPARATED)
    bob.expect(messages.SEPARATED)
    zeds = [a.connect("zed"), b.connect("zed")]  # each server only knows its own names
    redis_server.start()
    alice.expect(messages.REUNITED)
    bob.expect(messages.REUNITED)

    def one_lost() -> bool:
        return any(messages.NAME_LOST.matches(line) for zed in zeds for line in zed.drain(0.05))

    wait_until(one_lost, what="one zed to lose the name")
    loser = next(z for z in zeds if any(messages.NAME_LOST.matches(line) for line in z.lines))
    winner = zeds[1 - zeds.index(loser)]
    loser.expect_closed()
    said(winner, "still zed")
    alice.expect("still zed")
    bob.expect("still zed")


def test_bans_apply_on_every_server(node: Node) -> None:
    a, b, c = node("a"), node("b"), node("c")
    bob, troll = enter(b, "bob"), enter(b, "troll")
    a.console("/ban troll")  # an operator bans someone on another server
    a.log.wait_for(r"banned name troll")
    assert "banned" in troll.expect(messages.KICKED)
    troll.expect_closed()
    assert messages.KICKED_NOTICE.match(bob.expect(messages.KICKED_NOTICE)) == {"name": "troll", "count": "1"}
    b.log.wait_for(r"removed troll \(127\.0\.0\.1:\d+\) \(banned on a\)")
    c.log.wait_for(r"banned name troll \(on a\)")
    for server in (a, c):
        again = RawClient(server.host, server.port)
        again.send_name("Troll")
        again.expect(messages.BANNED)
        again.expect_closed()
    c.console("/bans")
    c.log.wait_for(r"bans \(1\): name troll")
    c.console("/unban troll")
    c.log.wait_for(r"unbanned name troll")

    wait_until(
        lambda: "Welcome" in answer_to_name(RawClient(a.host, a.port), "troll"), what="the unban to reach a"
    )


def test_a_clean_shutdown_tells_the_rest_of_the_room(node: Node) -> None:
    a, b = node("a"), node("b")
    alice, _bob = enter(a, "alice"), enter(b, "bob")
    alice.expect("bob joined")
    assert b.stop() == 0
    assert messages.DISCONNECTED.match(alice.expect(messages.DISCONNECTED)) == {"name": "bob", "count": "1"}
    newcomer = RawClient(a.host, a.port)
    newcomer.send_name("bob")  # its names are given back at once, not after the TTL
    newcomer.expect(messages.WELCOME)


def test_without_redis_py_redis_is_a_clear_error_and_the_default_never_imports_it(
    start_server: StartServer, tmp_path: Path
) -> None:
    fake = tmp_path / "redis"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'redis'\", name='redis')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--redis", "redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "--redis needs redis-py: pip install 'chatroom[cluster]'" in result.stdout + result.stderr
    alone = start_server("--approve", "all", env={"PYTHONPATH": env["PYTHONPATH"]})
    said(alone.connect("alice"), "no redis here")


def test_unreachable_redis_at_start_is_a_clear_error() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "Server.py"),
            "--port",
            "0",
            "--redis",
            f"redis://127.0.0.1:{free_port()}/0",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert re.search(
        r"cannot start: cannot reach Redis at redis://127\.0\.0\.1:\d+/0", strip_sgr(result.stdout)
    )
