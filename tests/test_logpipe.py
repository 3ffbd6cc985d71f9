"""The server's log into a pipe whose reader has stopped: nothing waits, order is kept, drops are counted."""

from __future__ import annotations

import os
import re

from chatroom.logpipe import PipeLog, is_pipe
from harness import wait_until


def read_until(fd: int, marker: bytes) -> bytes:
    got = bytearray()

    def arrived() -> bool:
        got.extend(os.read(fd, 1 << 16))
        return marker in got

    wait_until(arrived, what=f"{marker!r} in the pipe")
    return bytes(got)


def test_a_stalled_reader_costs_lines_not_time() -> None:
    reader, writer = os.pipe()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        assert is_pipe(writer) and not is_pipe(devnull)
        log = PipeLog(writer, backlog=10_000)
        lines = [f"line {i:04d} ".ljust(99, ".").encode() + b"\n" for i in range(1000)]  # 100 KB
        for line in lines:
            log.write(line)  # the pipe holds 64 KiB and nobody reads: none of these may block
        seen = read_until(reader, lines[600])  # the reader wakes up
        assert log.flush(10)  # the backlog follows into the room the reader made
        log.write(b"back\n")
        seen += read_until(reader, b"back\n")
        kept = [int(n) for n in re.findall(rb"line (\d{4}) ", seen)]
        assert kept == list(range(len(kept)))  # in order, and no gaps before the drop
        dropped = re.search(rb"\[(\d+) log lines dropped: nothing was reading them\]\nback\n$", seen)
        assert dropped is not None and len(kept) + int(dropped.group(1)) == 1000
    finally:
        for fd in (reader, writer, devnull):
            os.close(fd)


def test_a_reader_that_is_gone_for_good_is_not_written_to_again() -> None:
    reader, writer = os.pipe()
    os.close(reader)
    log = PipeLog(writer)
    log.write(b"into the void\n")  # EPIPE: no exception, and no more trying
    log.write(b"and again\n")
    assert log.flush(1.0)
    os.close(writer)
