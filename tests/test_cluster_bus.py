"""The Redis adapter in-process: two ``ClusterBus`` against a real redis-server, rooms played by recorders."""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from chatroom.bus import BanChange, Enter, Leave, Publish, Release, SendPrivate
from chatroom.cluster import ClusterBus
from chatroom.config import Settings
from chatroom.passwords import Registration
from harness import WAIT, RedisServer, wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


class Recorder:
    """A room that writes down what its bus hands it (and answers as the real room does)."""

    def __init__(self) -> None:
        self.bus: ClusterBus | None = None
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lines: list[str] = []
        self.new: list[str] = []
        self._cond = threading.Condition()

    def _note(self, what: str, *args: Any) -> None:
        with self._cond:
            self.calls.append((what, args))
            self._cond.notify_all()

    def wait_for(
        self, what: str, test: Callable[[tuple[Any, ...]], bool] = lambda _args: True
    ) -> tuple[Any, ...]:
        with self._cond:
            found: list[tuple[Any, ...]] = []

            def seen() -> bool:
                found[:] = [args for name, args in self.calls if name == what and test(args)]
                return bool(found)

            assert self._cond.wait_for(seen, WAIT), f"no {what}; got {self.calls}"
            return found[0]

    def lines_arrived(self, rendered: list[str], new: list[str]) -> None:
        with self._cond:
            self.lines += rendered
            self.new += new
            self._cond.notify_all()

    def private_arrived(self, key: str, sender: str, line: str) -> None:
        self._note("private", key, sender, line)

    def ban_arrived(self, kind: str, value: str, banned: bool, node: str) -> None:
        self._note("ban", kind, value, banned, node)

    def names_lost(self, keys: list[str]) -> None:
        self._note("names_lost", keys)

    def bans_stored(self, stored: list[tuple[str, str]]) -> None:
        self._note("bans_stored", stored)

    def registration_arrived(self, key: str, registration: Registration | None) -> None:
        self._note("registration", key, registration)

    def bus_lost(self) -> None:
        assert self.bus is not None
        self._note("lost", self.bus.part())

    def bus_back(self, elsewhere: int, announce: bool = True) -> None:
        assert self.bus is not None
        self.bus.rejoin()
        self._note("back", elsewhere, announce)

    def bans(self) -> list[tuple[str, str]]:
        return []

    def count(self) -> int:
        return 0


Joined = tuple[ClusterBus, Recorder]


@pytest.fixture
def join(redis_server: RedisServer) -> Iterator[Callable[[str], Joined]]:
    started: list[ClusterBus] = []

    def start(node: str) -> Joined:
        settings = replace(Settings(), redis=redis_server.url, redis_ttl=1.5, history=10)
        bus, room = ClusterBus(settings), Recorder()
        room.bus = bus
        bus.start(room, node)
        started.append(bus)
        return bus, room

    yield start
    for bus in started:
        bus.close([], 2.0)


def test_public_lines_reach_every_server_in_one_order_and_history(join: Callable[[str], Joined]) -> None:
    (a, room_a), (b, room_b) = join("a"), join("b")
    assert room_a.wait_for("back") == (0, False) and room_b.wait_for("back") == (0, False)
    a.send(Publish(("a1", "a2")))
    b.send(Publish(("b1",)))
    a.send(Publish(("a3",)))
    wait_until(lambda: len(room_a.lines) == 4 and len(room_b.lines) == 4, what="all lines on both")
    assert room_a.lines == room_b.lines and room_a.new == room_a.lines
    assert [x for x in room_a.lines if x.startswith("a")] == ["a1", "a2", "a3"]
    assert a.recent() == [] and b.recent() == []  # the room remembers what arrives, through Remember
    c, room_c = join("c")
    room_c.wait_for("back")
    assert c.recent() == room_a.lines  # loaded from the stream


def test_names_are_claimed_once_in_the_whole_room(join: Callable[[str], Joined]) -> None:
    (a, _room_a), (b, _room_b) = join("a"), join("b")
    assert a.claim("alice")
    assert not b.claim("alice")
    a.send(Enter("alice", "alice", "10.0.0.1:1", 1.0, 2.0))
    wait_until(lambda: [p.name for p in b.elsewhere()] == ["alice"], what="alice elsewhere")
    found = b.find("alice")
    assert found is not None and (found.node, found.address, found.joined) == ("a", "10.0.0.1:1", 2.0)
    assert a.find("alice") is None  # here, not elsewhere
    a.send(Leave("alice"))
    a.send(Release("alice"))
    wait_until(lambda: b.claim("alice"), what="alice free again")


def test_a_name_taken_over_is_found_among_hundreds_kept(
    join: Callable[[str], Joined], redis_server: RedisServer
) -> None:
    """Names are kept alive a batch at a time; one lost in a later batch is still reported."""
    import redis

    a, room = join("a")
    room.wait_for("back")
    names = [f"n{i}" for i in range(600)]  # more than two batches (writer.BATCH_CLAIMS)
    assert all(a.claim(name) for name in names)
    client = redis.Redis.from_url(redis_server.url)
    (key,) = client.keys("*:name:n550")
    client.set(key, "another-server 1")
    assert room.wait_for("names_lost", lambda args: bool(args[0])) == (["n550"],)
    assert client.get(key) == b"another-server 1"  # left to its holder
    (kept,) = client.keys("*:name:n3")
    assert client.pttl(kept) > 0 and client.get(kept) != b"another-server 1"


def test_private_messages_and_bans_reach_the_other_server(join: Callable[[str], Joined]) -> None:
    (a, room_a), (_b, room_b) = join("a"), join("b")
    a.send(SendPrivate("b", "bob", "alice", "[PM from alice] hi"))
    assert room_b.wait_for("private") == ("bob", "alice", "[PM from alice] hi")
    a.send(BanChange("name", "troll", True))
    assert room_b.wait_for("ban") == ("name", "troll", True, "a")
    assert ("ban", ("name", "troll", True, "a")) not in room_a.calls  # its own change does not come back


def test_an_outage_parts_with_the_unsent_lines_and_rejoins(
    join: Callable[[str], Joined], redis_server: RedisServer
) -> None:
    a, room = join("a")
    room.wait_for("back")
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # it hangs: only the writer's timeout can tell
    try:
        a.send(Publish(("said as Redis hung",)))
        (stranded,) = room.wait_for("lost")
        assert stranded == ["said as Redis hung"]
        a.send(BanChange("name", "troll", True))  # kept, and stored when Redis is back
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert room.wait_for("back", lambda args: args[1] is True)
    room.wait_for("bans_stored", lambda args: ("name", "troll") in args[0])


def test_who_is_elsewhere_is_in_the_order_they_were_let_in(join: Callable[[str], Joined]) -> None:
    (a, _room_a), (b, _room_b) = join("a"), join("b")

    def names() -> list[str]:
        return [p.name for p in b.elsewhere()]

    a.send(Enter("alice", "alice", "10.0.0.1:1", 1.0, 10.0))
    a.send(Enter("carol", "carol", "10.0.0.1:3", 1.0, 30.0))
    a.send(Enter("bob", "bob", "10.0.0.1:2", 1.0, 20.0))  # let in before carol, told after her
    wait_until(lambda: names() == ["alice", "bob", "carol"], what="all three, in order")
    a.send(Leave("alice"))
    a.send(Leave("carol"))  # a rename keeps one's place
    a.send(Enter("caroline", "caroline", "10.0.0.1:3", 1.0, 30.0))
    wait_until(lambda: names() == ["bob", "caroline"], what="alice gone, carol renamed")
    assert len(b.elsewhere()) == 2 and list(a.elsewhere()) == []  # nobody is elsewhere for a


def test_a_server_that_stopped_refreshing_is_nobody_elsewhere(
    join: Callable[[str], Joined], redis_server: RedisServer
) -> None:
    (a, _room_a), (b, _room_b) = join("a"), join("b")
    a.send(Enter("alice", "alice", "10.0.0.1:1", 1.0, 10.0))
    wait_until(lambda: [p.name for p in b.elsewhere()] == ["alice"], what="alice elsewhere")
    redis_server.client.delete("chatroom:0:alive:a")  # as when a crashed server stops refreshing it
    assert list(b.elsewhere()) == []
