"""The fan-out in-process, over socket pairs: order, renderings, slow readers, hang-ups."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence

import pytest

from chatroom.delivery import ANSI_LINES, Fanout, Peer
from harness import WAIT, wait_until


class Counting:
    """A rendering of its own that counts how often it is asked to encode."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, lines: Sequence[str]) -> bytes:
        self.calls += 1
        return b"".join(b"<" + line.encode() + b">" for line in lines)


@pytest.fixture
def fanout() -> Iterator[Fanout]:
    fanout = Fanout(2)
    fanout.start()
    yield fanout
    fanout.stop(WAIT)


def connected(fanout: Fanout, limit: int = 1 << 20, **options: object) -> tuple[Peer, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.settimeout(WAIT)
    peer = Peer(ours, "test", limit, **options)  # type: ignore[arg-type]
    fanout.add(peer)
    return peer, theirs


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


def test_broadcasts_reach_every_attached_peer_in_order(fanout: Fanout) -> None:
    pairs = [connected(fanout) for _ in range(5)]
    for peer, _theirs in pairs:
        peer.attach()
    for i in range(100):
        fanout.broadcast([f"line {i}"])
    expected = b"".join(f"line {i}\r\n".encode() for i in range(100))
    for _peer, theirs in pairs:
        assert read_exactly(theirs, len(expected)) == expected


def test_a_broadcast_is_encoded_once_per_rendering(fanout: Fanout) -> None:
    counting = Counting()
    terminals = [connected(fanout) for _ in range(3)]
    others = [connected(fanout, rendering=counting) for _ in range(4)]
    for peer, _theirs in terminals + others:
        peer.attach()
    fanout.broadcast(["hello"])
    for _peer, theirs in terminals:
        assert read_exactly(theirs, 7) == b"hello\r\n"
    for _peer, theirs in others:
        assert read_exactly(theirs, 7) == b"<hello>"
    assert counting.calls == 1


def test_a_tell_reaches_one_peer_after_what_was_queued_before(fanout: Fanout) -> None:
    (alice, alice_end), (bob, bob_end) = connected(fanout), connected(fanout)
    alice.tell(["first"])
    alice.attach()
    bob.attach()
    fanout.broadcast(["everyone"])
    alice.tell(["only you"])
    assert read_exactly(alice_end, 27) == b"first\r\neveryone\r\nonly you\r\n"
    assert read_exactly(bob_end, 10) == b"everyone\r\n"
    bob_end.setblocking(False)
    with pytest.raises(BlockingIOError):
        bob_end.recv(1)


def test_a_peer_that_stops_reading_is_cut_off_and_the_others_keep_getting_everything(fanout: Fanout) -> None:
    stalled, stalled_end = connected(fanout, limit=64 * 1024)
    stalled_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader, reader_end = connected(fanout)
    stalled.attach()
    reader.attach()
    line = "x" * 1000
    for _ in range(500):
        fanout.broadcast([line])
    expected = 500 * (len(line) + 2)
    assert len(read_exactly(reader_end, expected)) == expected
    wait_until(lambda: stalled.drop_reason is not None, what="the stalled peer to be cut off")
    assert stalled.drop_reason is not None and stalled.drop_reason.startswith("not reading")
    assert reader.drop_reason is None


def test_a_hang_up_flushes_first_and_release_closes(fanout: Fanout) -> None:
    peer, theirs = connected(fanout)
    peer.tell(["bye"])
    peer.hang_up()
    assert read_exactly(theirs, 5) == b"bye\r\n"
    assert theirs.recv(1) == b""  # shut down after the goodbye
    peer.release()
    wait_until(lambda: peer.sock.fileno() == -1, what="the socket to be closed")


def test_ansi_lines_end_with_crlf() -> None:
    assert ANSI_LINES.encode(["a", "ü"]) == b"a\r\n\xc3\xbc\r\n"
