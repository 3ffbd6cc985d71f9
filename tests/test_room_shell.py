"""The room's shell in-process: sessions, the room's lock and effects, the fan-out and the store,
wired as Server.py wires them, with socket pairs instead of a listening socket."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from chatroom.access import Access
from chatroom.bus import LocalBus
from chatroom.config import Settings
from chatroom.delivery import Fanout
from chatroom.listener import LineConnection
from chatroom.room import Room
from chatroom.storage import Store
from harness import WAIT, RawClient, wait_until
from protocol import messages


@dataclass
class FakeServer:
    """What a connection handler asks of its socketserver."""

    settings: Settings
    room: Room
    tls_context: None = None


class InProcess:
    def __init__(self, **settings: object) -> None:
        self.settings = replace(Settings(db=":memory:", exempt=()), **settings)  # type: ignore[arg-type]
        self.logged: list[str] = []
        store = Store(":memory:", self.settings.history, self.logged.append)
        self.bus = LocalBus(store)
        self.fanout = Fanout(2)
        self.fanout.start()
        self.room = Room(self.settings, self.bus, self.fanout, Access())
        self.server = FakeServer(self.settings, self.room)
        self._ports = itertools.count(40000)
        self.threads: list[threading.Thread] = []

    def connect(self, name: str | None = None) -> RawClient:
        ours, theirs = socket.socketpair()
        address = ("10.0.0.1", next(self._ports))
        thread = threading.Thread(target=LineConnection, args=(ours, address, self.server), daemon=True)
        thread.start()
        self.threads.append(thread)
        client = RawClient("", 0, sock=theirs)
        if name is not None:
            client.send_name(name)
        return client

    def close(self) -> None:
        self.bus.close(self.room.close(), WAIT)
        self.fanout.stop(WAIT)
        for thread in self.threads:
            thread.join(WAIT)
            assert not thread.is_alive()


@pytest.fixture
def room() -> Iterator[InProcess]:
    server = InProcess(approve="all")
    yield server
    server.close()


def test_two_people_talk_and_one_leaves(room: InProcess) -> None:
    alice = room.connect("alice")
    alice.expect(messages.WELCOME)
    bob = room.connect("bob")
    bob.expect(messages.WELCOME)
    alice.expect(messages.JOINED)
    alice.send("hello **bob**")
    assert bob.expect(messages.MESSAGE).endswith("\x1b[0m")
    bob.send("/leave")
    bob.expect(messages.GOODBYE)
    bob.expect_closed()
    assert messages.LEFT.match(alice.expect(messages.LEFT)) == {"name": "bob", "count": "1"}
    assert [m.name for m in room.room.members()] == ["alice"]


def test_a_paste_arrives_whole_and_in_order(room: InProcess) -> None:
    alice, bob = room.connect("alice"), room.connect("bob")
    bob.expect(messages.WELCOME)
    alice.sock.sendall(b"".join(f"line {i}\n".encode() for i in range(8)))
    got = [messages.MESSAGE.match(bob.expect(messages.MESSAGE)) for _ in range(8)]
    assert [fields and fields["text"] for fields in got] == [f"line {i}" for i in range(8)]
    wait_until(
        lambda: (room.bus.recent() or [""])[-1].endswith("line 7\x1b[0m"),
        what="the paste in history, for the next newcomer",
    )


def test_the_operator_decides_and_waiting_lines_go_nowhere() -> None:
    room = InProcess(approve="ask")
    try:
        alice = room.connect("alice")
        alice.expect(messages.WAITING)
        alice.send("anyone there?")
        alice.expect(messages.NOT_YET)
        (waiting,) = room.room.waiting()
        assert room.room.admit(waiting)
        alice.expect(messages.WELCOME)
        bob = room.connect("bob")
        bob.expect(messages.WAITING)
        wait_until(lambda: len(room.room.waiting()) == 1, what="bob waiting")
        assert room.room.refuse(room.room.waiting()[0], messages.REFUSED, "refused by the operator")
        bob.expect(messages.REFUSED)
        bob.expect_closed()
    finally:
        room.close()


def test_a_kick_and_a_ban_from_the_operator(room: InProcess) -> None:
    alice, troll = room.connect("alice"), room.connect("troll")
    troll.expect(messages.WELCOME)
    assert room.room.kick("TROLL", "enough") is not None
    assert troll.expect(messages.KICKED).endswith("You were removed by the operator: enough.\x1b[0m")
    troll.expect_closed()
    alice.expect(messages.KICKED_NOTICE)
    again = room.connect("troll")
    again.expect(messages.WELCOME)
    assert room.room.ban("troll") == [
        "banned name troll",
        "banned address 10.0.0.1",
        "removed troll (10.0.0.1:40002)",
    ]
    again.expect_closed()
    assert [m.name for m in room.room.members()] == ["alice"]
