"""The fan-out in-process, over socket pairs: order, renderings, slow readers, hang-ups."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence

import pytest

from chatroom.delivery import ANSI_LINES, Fanout, Limits, Peer, Rendering
from harness import WAIT, wait_until


class Counting:
    """A rendering of its own that counts how often it is asked to encode."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, lines: Sequence[str]) -> bytes:
        self.calls += 1
        return b"".join(b"<" + line.encode() + b">" for line in lines)


LIMITS = Limits(backlog=32 * 1024, most=512 * 1024, stall=1.0)


@pytest.fixture
def fanout() -> Iterator[Fanout]:
    fanout = Fanout(2, LIMITS)
    fanout.start()
    yield fanout
    fanout.stop(WAIT)


def connected(fanout: Fanout, rendering: Rendering = ANSI_LINES) -> tuple[Peer, socket.socket]:
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):  # small kernel buffers, so outboxes fill soon
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    theirs.settimeout(WAIT)
    peer = Peer(ours, "test", rendering)
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
    others = [connected(fanout, counting) for _ in range(4)]
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


def test_a_slow_reader_holds_the_senders_back_and_loses_nothing(fanout: Fanout) -> None:
    slow, slow_end = connected(fanout)
    slow.attach()
    line = "x" * 1000
    for _ in range(100):  # 100 KB: past the backlog, far below the most
        fanout.broadcast([line])
    wait_until(lambda: fanout.pressure.behind == 1, what="the slow reader to hold the senders back")
    expected = 100 * (len(line) + 2)
    assert len(read_exactly(slow_end, expected)) == expected  # reading, it catches up...
    wait_until(lambda: fanout.pressure.behind == 0, what="the senders to be let go")
    assert slow.drop_reason is None  # ...and is never cut off


class Reading(threading.Thread):
    """A reader that keeps reading, in a thread of its own, until it has ``size`` bytes."""

    def __init__(self, sock: socket.socket, size: int) -> None:
        super().__init__(daemon=True)
        self.sock, self.size, self.data = sock, size, b""
        self.start()

    def run(self) -> None:
        self.data = read_exactly(self.sock, self.size)


def send_like_a_session(fanout: Fanout, line: str, count: int) -> None:
    """Broadcast as the sessions do: each read waits while a live reader is behind."""
    for _ in range(count):
        fanout.pressure.wait()
        fanout.broadcast([line])


@pytest.mark.parametrize(
    ("count", "why"), [(100, "nothing taken for 1 s"), (1000, "over 524288 bytes waiting")]
)
def test_a_reader_that_stops_holds_nobody_back_and_is_cut_off(fanout: Fanout, count: int, why: str) -> None:
    """Cut off after LIMITS.stall without taking anything, or at once past LIMITS.most."""
    stalled, _stalled_end = connected(fanout)
    reader, reader_end = connected(fanout)
    stalled.attach()
    reader.attach()
    line = "x" * 1000
    reading = Reading(reader_end, count * (len(line) + 2))
    send_like_a_session(fanout, line, count)
    reading.join(WAIT)
    assert len(reading.data) == reading.size  # the live reader lost nothing
    wait_until(lambda: stalled.drop_reason is not None, what="the stalled reader to be cut off")
    assert stalled.drop_reason == f"not reading: {why}"
    assert reader.drop_reason is None and fanout.pressure.behind == 0


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


def test_nothing_is_written_after_the_last_bytes(fanout: Fanout) -> None:
    """A WebSocket's close frame ends the stream: a broadcast on its way, or a message, is dropped."""
    peer, theirs = connected(fanout)
    other, other_theirs = connected(fanout)
    for each in (peer, other):
        each.attach()
    fanout.broadcast(["before"])
    peer.send_last(b"<the end>")
    fanout.broadcast(["after"])
    peer.send(b"too late")
    peer.attach()  # nor does it come back
    fanout.broadcast(["later still"])
    peer.release()
    got = b""
    while chunk := theirs.recv(4096):
        got += chunk
    assert got == ANSI_LINES.encode(["before"]) + b"<the end>"
    expected = (
        ANSI_LINES.encode(["before"]) + ANSI_LINES.encode(["after"]) + ANSI_LINES.encode(["later still"])
    )
    assert read_exactly(other_theirs, len(expected)) == expected  # the others get everything
