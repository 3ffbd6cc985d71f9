"""The server's log: every line in one ordered queue, written out by a thread of its own.

Everything the server does is logged, and by default so is every public line
said in the room. Formatting and writing a log line costs about as much as
delivering it to a room of readers, and the room's lock is held while public
lines are posted, so the log is written behind the room:

* ``handler`` (for ``logging``) and ``chat`` (public lines, a batch at a
  time) only append to a queue: the callers never format, and never wait
  for a terminal, a file or a pipe.
* The writer thread takes everything queued, formats it (the date is
  formatted once a second, not once a line) and writes it as one piece,
  in the order it was queued.
* Into a pipe, it writes through ``PipeLog``, so a reader that stops
  reading never stops the writer either (see ``chatroom.logpipe``).
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Sequence

from chatroom.logpipe import PipeLog
from protocol.lines import unstamped_lines

#: Bytes of log waiting to be formatted past which new lines are dropped (and counted).
QUEUE_LIMIT = 4 << 20
#: What a queued item holds: log lines, or public lines said in the room (logged without stamp and styles).
LOG, CHAT = "log", "chat"
#: The line that takes the place of lines dropped.
DROPPED = "[{count} log lines dropped: the log could not keep up]"


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


class _Handler(logging.Handler):
    def __init__(self, log: ServerLog) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._log.put(record.created, (text,), LOG)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self._log.flush()


class ServerLog:
    def __init__(self, pipe: PipeLog | None, grace: float) -> None:
        """Lines go to ``pipe`` if given, else to whatever ``sys.stdout`` is when written.

        ``grace``: how long a flush at exit waits for a slow reader.
        """
        self._pipe = pipe
        self._grace = grace
        self._cond = threading.Condition()
        self._queue: list[tuple[float, Sequence[str], str]] = []  # (time, lines, LOG or CHAT)
        self._queued = 0  # characters in _queue, roughly
        self._dropped = 0
        self._writing = False
        self.handler = _Handler(self)
        threading.Thread(target=self._write, name="log-writer", daemon=True).start()

    def put(self, at: float, lines: Sequence[str], kind: str) -> None:
        """Queue lines, to be written after everything queued before; never waits."""
        with self._cond:
            if self._queued > QUEUE_LIMIT:
                self._dropped += len(lines)
                return
            if not self._queue:
                self._cond.notify()
            self._queue.append((at, lines, kind))
            self._queued += 80 * len(lines)

    def chat(self, lines: Sequence[str]) -> None:
        """Public lines said in the room, as rendered (the log shows them without stamp and styles)."""
        self.put(time.time(), lines, CHAT)

    def flush(self) -> None:
        """Write out what is queued (at exit); waits at most the grace period."""
        deadline = time.monotonic() + self._grace
        with self._cond:
            self._cond.wait_for(lambda: not self._queue and not self._writing, self._grace)
        if self._pipe is not None:
            self._pipe.flush(max(0.0, deadline - time.monotonic()))

    def _write(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                queue, self._queue, self._queued = self._queue, [], 0
                dropped, self._dropped = self._dropped, 0
                self._writing = True
            self._emit(self._render(queue, dropped))
            with self._cond:
                self._writing = False
                self._cond.notify_all()

    def _render(self, queue: list[tuple[float, Sequence[str], str]], dropped: int) -> str:
        """What is queued as the text to write, in order; ``dropped`` lines are said to be missing."""
        out = []
        for at, lines, kind in queue:
            date = _date(int(at))
            out += [f"{date} {line}\n" for line in (unstamped_lines(lines) if kind == CHAT else lines)]
        if dropped:
            out.append(f"{_date(int(time.time()))} {DROPPED.format(count=dropped)}\n")
        return "".join(out)

    def _emit(self, text: str) -> None:
        try:
            if self._pipe is not None:
                self._pipe.write(text.encode("utf-8", "backslashreplace"))
            else:
                sys.stdout.write(text)
                sys.stdout.flush()
        except Exception:  # a log that cannot be written must not end the writer
            pass
