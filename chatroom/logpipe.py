"""Log lines into a pipe without ever waiting for whoever reads it.

The server's log goes to standard output. When that is a pipe (``| tee``, a
supervisor, a test harness) and its reader stops reading, an ordinary write
blocks as soon as the pipe's 64 KiB are full. Every thread that logs then
stops, the room with them (joins and messages are logged), and even a SIGTERM
shutdown, which logs too.

``PipeLog`` never blocks the caller. A line goes straight into the pipe when
it fits; what does not fit waits in a bounded backlog that a thread of its own
writes out as the reader catches up, in order. Past the backlog's limit lines
are dropped, counted, and the count is written where they would have been.
A terminal or a regular file gets ordinary writes: neither stalls like that.
"""

from __future__ import annotations

import os
import select
import stat
import threading
import time

#: Bytes of log kept for a slow reader before lines are dropped.
BACKLOG = 1 << 20


def is_pipe(fd: int) -> bool:
    """A pipe or a socket: something whose reader can stop reading."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class PipeLog:
    def __init__(self, fd: int, backlog: int = BACKLOG) -> None:
        self._fd = fd
        self._limit = backlog
        self._backlog = bytearray()
        self._dropped = 0
        self._broken = False
        self._changed = threading.Condition()
        os.set_blocking(fd, False)
        threading.Thread(target=self._drain, name="log", daemon=True).start()

    def write(self, data: bytes) -> None:
        """Queue ``data`` after everything written before it; never waits."""
        with self._changed:
            if self._broken:
                return
            if len(self._backlog) + len(data) > self._limit:
                self._dropped += 1
                return
            if self._dropped:
                self._backlog += f"[{self._dropped} log lines dropped: nothing was reading them]\n".encode()
                self._dropped = 0
            self._backlog += data
            self._send_locked()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the backlog to reach the pipe (at exit)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._backlog and not self._broken:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _send_locked(self) -> None:
        """Write what the pipe takes now; wake the drain thread if some is left."""
        try:
            sent = os.write(self._fd, self._backlog)
        except BlockingIOError:
            sent = 0
        except OSError:  # the reader is gone for good: nothing more to say to it
            self._broken = True
            self._backlog.clear()
            self._changed.notify_all()
            return
        del self._backlog[:sent]
        self._changed.notify_all()

    def _drain(self) -> None:
        while True:
            with self._changed:
                while not self._backlog:
                    self._changed.wait()
            select.select([], [self._fd], [])  # until the reader makes room (no lock held)
            with self._changed:
                if self._backlog:
                    self._send_locked()
