"""What survives a restart: the public history (and, later, bans) in SQLite.

WAL mode with ``synchronous=NORMAL``: every line is committed before the room
sees it, and a committed line survives ``kill -9`` of the server (it is in
the WAL, which the OS holds), though not necessarily a power cut. Commits
cost tens of microseconds, cheap enough to do inline under the room lock,
which also serialises every use of the one connection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque

MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    line TEXT NOT NULL
);
"""

#: Rows kept beyond what is replayed, trimmed every this many inserts.
_TRIM_EVERY = 256


class History:
    """The last ``keep`` public lines, as rendered; persisted unless path is ':memory:'."""

    def __init__(self, path: str, keep: int) -> None:
        self.keep = keep
        self._recent: deque[str] = deque(maxlen=keep)
        self._db: sqlite3.Connection | None = None
        self._inserts = 0
        if path != MEMORY:
            self._db = _open(path)
            rows = self._db.execute("SELECT line FROM messages ORDER BY id DESC LIMIT ?", (keep,)).fetchall()
            self._recent.extend(line for (line,) in reversed(rows))

    @property
    def path(self) -> str:
        if self._db is None:
            return MEMORY
        return str(self._db.execute("PRAGMA database_list").fetchone()[2])

    def append(self, line: str) -> None:
        """Store a rendered public line; returns once it is durable."""
        if self.keep:
            self._recent.append(line)
        if self._db is None:
            return
        cursor = self._db.execute("INSERT INTO messages (at, line) VALUES (?, ?)", (time.time(), line))
        self._inserts += 1
        if self._inserts % _TRIM_EVERY == 0 and cursor.lastrowid is not None:
            self._db.execute("DELETE FROM messages WHERE id <= ?", (cursor.lastrowid - self.keep,))

    def recent(self) -> list[str]:
        return list(self._recent)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _open(path: str) -> sqlite3.Connection:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db
