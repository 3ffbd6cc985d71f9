"""The kernel's floor under the scale scenario: a line to 10,000 loopback readers with no server at all.

A bare loop of ``send()`` calls, in one process or split over several, sends a
line a second to N connected sockets; readers placed as the scale scenario
places them time it (50 spread evenly, in a process of their own, at normal
priority) or only hold it until the end (the rest). What no Python server can
beat on this machine: the textbook server is the one-process loop plus its own
work, ``Server.py --processes 2`` the two-process one plus Redis.

    python3 -m bench.floor                    # 1 and 2 processes, 9,900 readers, 20 lines
    python3 -m bench.floor --processes 2 --readers 5000

(9,900: the sending and the reading ends of every connection are in this one
process tree, and the file limit is usually 20,000.)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import selectors
import socket
import struct
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier

from bench.loadgen import raise_file_limit

PAD = b"x" * 100 + b"\n"  # with the 8-byte stamp, as long as one of our lines
PROBES = 50


def _timed(socks: list[socket.socket], lines: int, out: Connection) -> None:
    """Read every line as it comes; send back how late each was, in ms."""
    selector = selectors.EpollSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    late: list[float] = []
    while len(late) < len(socks) * lines:
        for key, _mask in selector.select():
            data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            now = time.monotonic_ns()
            for at in range(0, len(data), 8 + len(PAD)):
                late.append((now - struct.unpack_from("q", data, at)[0]) / 1e6)
    out.send(late)


def _sender(socks: list[socket.socket], lines: int, start: Barrier, stamp: Connection) -> None:
    for _ in range(lines):
        start.wait()
        data = struct.pack("q", stamp.recv()) + PAD
        for sock in socks:
            sock.send(data, socket.MSG_DONTWAIT)


def floor(readers: int, processes: int, lines: int, gap: float) -> list[float]:
    """How late each timed reader got each line (ms), sent by ``processes`` bare loops."""
    context = mp.get_context("fork")
    with socket.create_server(("127.0.0.1", 0), backlog=4096) as listener:
        ends = []
        for _ in range(readers):
            near = socket.create_connection(listener.getsockname())
            far, _address = listener.accept()
            far.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ends.append((near, far))
    stride = max(1, readers // PROBES)
    timed = [near for i, (near, _far) in enumerate(ends) if i % stride == 0]
    mine, theirs = context.Pipe()
    prober = context.Process(target=_timed, args=(timed, lines, theirs))
    prober.start()
    start = context.Barrier(processes + 1)
    stamps = [context.Pipe() for _ in range(processes)]
    senders = [
        context.Process(target=_sender, args=([far for _near, far in ends[k::processes]], lines, start, rx))
        for k, (rx, _tx) in enumerate(stamps)
    ]
    for sender in senders:
        sender.start()
    for _near, far in ends:  # the counting readers hold what they get in the kernel until the end
        far.close()
    for _ in range(lines):
        time.sleep(gap)
        now = time.monotonic_ns()
        for _rx, tx in stamps:
            tx.send(now)
        start.wait()
    late: list[float] = mine.recv()
    for process in [prober, *senders]:
        process.join()
    for near, _far in ends:
        near.close()
    return sorted(late)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readers", type=int, default=9900)
    parser.add_argument("--processes", type=int, action="append", help="sending processes (default: 1 and 2)")
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between lines")
    args = parser.parse_args()
    raise_file_limit()
    for processes in args.processes or [1, 2]:
        late = floor(args.readers, processes, args.lines, args.gap)
        p50, p99 = late[len(late) // 2], late[min(len(late) - 1, len(late) * 99 // 100)]
        print(
            f"{args.readers} readers, {processes} sending process(es), {args.lines} lines: "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {late[-1]:.1f} ms"
        )


if __name__ == "__main__":
    main()
