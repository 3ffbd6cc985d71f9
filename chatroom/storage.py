"""What survives a restart: public history and bans, in one SQLite file.

WAL mode with ``synchronous=NORMAL``: every line is committed before the room
sees it, and a committed line survives ``kill -9`` of the server (it is in
the WAL, which the OS holds), though not necessarily a power cut. Commits
cost tens of microseconds, cheap enough to do inline. ``:memory:`` gives the
same code an in-memory database that dies with the process.

The connection is shared by the client threads (history, under the room
lock) and the console (bans, also under the room lock), so the room's lock
is what serialises it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence

MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bans (
    kind TEXT NOT NULL CHECK (kind IN ('name', 'address')),
    value TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (kind, value)
);
"""

#: Old rows are deleted every this many inserts.
_TRIM_EVERY = 256


class Database:
    """The SQLite file: history rows and ban rows."""

    def __init__(self, path: str) -> None:
        if path != MEMORY:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def last_lines(self, count: int) -> list[str]:
        rows = self._db.execute("SELECT line FROM messages ORDER BY id DESC LIMIT ?", (count,))
        return [line for (line,) in reversed(rows.fetchall())]

    def add_lines(self, lines: list[str]) -> int:
        """Commit the lines in one transaction; returns the last row's id."""
        now = time.time()
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT INTO messages (at, line) VALUES (?, ?)", [(now, x) for x in lines])
            last = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return int(last)

    def forget_lines_up_to(self, row: int) -> None:
        self._db.execute("DELETE FROM messages WHERE id <= ?", (row,))

    def bans(self) -> list[tuple[str, str]]:
        return [(kind, value) for kind, value in self._db.execute("SELECT kind, value FROM bans")]

    def add_ban(self, kind: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO bans VALUES (?, ?, ?)", (kind, value, time.time()))

    def remove_ban(self, kind: str, value: str) -> None:
        self._db.execute("DELETE FROM bans WHERE kind = ? AND value = ?", (kind, value))

    def close(self) -> None:
        self._db.close()


class Store:
    """History and bans: the interface the room uses."""

    def __init__(self, path: str, keep: int, report: Callable[[str], None]) -> None:
        self.path = path
        self.keep = keep
        self._report = report
        self._db = Database(path)
        self._recent: deque[str] = deque(self._db.last_lines(keep), maxlen=keep)
        self._bans = self._db.bans()
        self._inserts = 0

    def bans(self) -> list[tuple[str, str]]:
        return list(self._bans)

    def append(self, lines: Sequence[str]) -> None:
        """Store rendered public lines; returns once they are durable."""
        if not self.keep:
            return
        self._recent.extend(lines)
        row = self._db.add_lines(list(lines))
        before, self._inserts = self._inserts, self._inserts + len(lines)
        if before // _TRIM_EVERY != self._inserts // _TRIM_EVERY:
            self._db.forget_lines_up_to(row - self.keep)

    def save_ban(self, kind: str, value: str, banned: bool) -> None:
        if banned:
            self._db.add_ban(kind, value)
        else:
            self._db.remove_ban(kind, value)

    def recent(self) -> list[str]:
        return list(self._recent)

    def close(self, timeout: float) -> None:
        self._db.close()
