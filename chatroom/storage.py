"""What survives a restart: public history and bans, in one SQLite file, written behind the room.

**Write-behind.** A thread of the store's own holds the connection and writes,
in order, batches of what it was given: the lines (``append``) and the ban
changes (``save_ban``) that arrived since its last write, one transaction a
batch. Callers only queue, so a slow, full, locked or vanished disk never
holds up the room; a line is usually durable a few milliseconds after it was
shown. ``close`` gives the queue a last chance, within a time limit.

**What ``recent()`` holds** (the replay for a newcomer): the last ``keep``
lines known to be in the file, never a line that is not. A line on its way
(being written) is not in it yet, so someone let in during those milliseconds
sees that line neither replayed nor live: the price of never replaying what
a restart would not. While storing fails, ``recent()`` stays as it was (history
is paused); the lines said meanwhile wait in memory, are retried (with a
backoff) and join ``recent()`` once written. At most ``keep`` lines wait: when
more come (a long failure, or a burst faster than the disk) the oldest are
dropped unsaid, as they would have fallen out of the replay anyway. What ``kill -9`` can
lose is what was waiting: lines of the last few milliseconds, or said while
storing failed. A line that has been replayed to anyone survives it.

**Failures** are reported through ``report``: one line when storing starts
failing, one when it works again, never a traceback, never a line per
attempt. Before each batch (and every few seconds when idle) the file at the
path is compared with the one this store wrote: if it was deleted, replaced,
truncated or overwritten, the connection is dropped and the file now at the
path is used (a fresh one if there is none), given the room's bans and the
recent lines it lacks. A file there that is not a usable database is left
alone, and history stays paused until someone moves it away. The comparison
is of the file's identity, size and modification time, before and after each
batch: a change made while a batch is being written can go unnoticed.

**No SIGBUS.** In WAL mode SQLite maps the ``-shm`` file into memory, and a
process that touches a page of a mapped file truncated under it dies of
SIGBUS. ``locking_mode=EXCLUSIVE`` set before WAL keeps the WAL index in the
process's own memory, so no ``-shm`` file exists, and ``mmap_size=0`` keeps
the database file itself unmapped: every access is a read or write call that
can fail with an error. The trade-off: the server holds the file's lock for as
long as it runs, so no other program can read the database meanwhile (the
``sqlite3`` shell says "database is locked"). After each batch the WAL is
checkpointed into the file, so between batches the file alone is complete: a
copy of it (``cp``) can be read while the server runs, and a file changed
under the server between batches never gets the server's pages mixed into it
when the connection is closed.
``:memory:`` gives the same code an in-memory database that dies with the
process.

**More than the replay.** The file keeps the last ``archive`` lines (at least
``keep``), with a full-text index (SQLite's FTS5) of their text as readers see
it, for ``/search``; the last ``chatroom.replay.CATCH_UP`` of them are also kept in memory
with their times, for what a registered name missed while away (``since``).
Registered names and their hashed passwords (``chatroom.passwords``) are in
the file too, written behind like the rest. A search is run by the writer
thread between batches; the caller waits for it, with a time limit.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from chatroom.passwords import Registration
from chatroom.replay import Dated, Replay
from protocol.lines import unstamped_lines

MEMORY = ":memory:"
#: How long a search may wait for the writer (it may be busy with a slow disk).
SEARCH_WAIT = 3.0

#: How long opening at startup waits for another program to let go of the file;
#: a reopen while running never waits (the writer retries instead).
STARTUP_WAIT = 2.0
#: Retries of a failing store: the first after this long, then twice as long each time...
FIRST_RETRY = 0.1
#: ...up to this: a failing attempt costs next to nothing, and history resumes soon after the fault.
LAST_RETRY = 2.0
#: How often an idle writer checks that the file at the path is still the one it wrote.
CHECK_EVERY = 5.0

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
CREATE TABLE IF NOT EXISTS registered (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    seen REAL NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_text USING fts5(text);
"""

#: Old lines go once the file has more than ``archive``: it is no log.
_TRIM = "DELETE FROM messages WHERE id <= (SELECT max(id) FROM messages) - ?"
_TRIM_TEXT = "DELETE FROM messages_text WHERE rowid <= (SELECT max(id) FROM messages) - ?"

#: What identifies the file this store wrote: device, inode, size, modification time.
Fingerprint = tuple[int, int, int, int]
#: Lines waiting to be written, each with its sequence number and time.
Lines = list[tuple[int, float, str]]
#: Bans made (True) or lifted (False), in order: (kind, value, banned).
BanChanges = list[tuple[str, str, bool]]
#: Names registered or changed, or let go (None), in order.
NameChanges = list[tuple[str, Registration | None]]


class StoreError(Exception):
    """The store cannot be opened at startup; the message names the file."""


class SearchUnavailable(Exception):
    """A search could not be answered; the message says why, for the one who searched."""


@dataclass
class _Search:
    words: list[str]
    limit: int
    found: list[str] = field(default_factory=list)
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Store:
    """History lines and bans in one SQLite file, written by a thread of its own.

    ``append``, ``save_ban`` and ``recent`` may be called from any thread and
    never wait for the disk: they take ``_lock`` only to touch the queues and
    ``_stored``, which the writer also holds only for that, never during I/O.
    Everything else (the connection, the fingerprint, the retry state) belongs
    to the writer thread alone once it has started.
    """

    def __init__(self, path: str, keep: int, report: Callable[[str], None], archive: int = 0) -> None:
        """``keep``: lines replayed to a newcomer (0: store none); ``archive``: lines kept for /search."""
        self.path = path
        self.keep = keep
        self.archive = max(keep, archive) if keep else 0
        self._memory = Replay(keep).size  # lines read back from the file: the replay's
        self._report = report
        try:
            db = _connect(path, STARTUP_WAIT)
            try:
                loaded, self._loaded_bans = _last_lines(db, self._memory), _bans_in(db)
                self._registrations = _registrations_in(db)
            except BaseException:
                db.close()
                raise
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"{path}: {_why(error)}") from None
        self._db: sqlite3.Connection | None = db
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stored = Replay(keep, loaded)  # the file's last lines
        self._waiting: deque[tuple[int, float, str]] = deque(maxlen=self._memory)  # (number, time, line)
        self._sequence = 0
        self._ban_changes: list[tuple[str, str, bool]] = []
        self._registration_changes: list[tuple[str, Registration | None]] = []
        self._searches: list[_Search] = []
        self._bans = set(self._loaded_bans)  # the room's bans, given to a file that lost them
        self._closing = False
        # The writer's own state.
        self._seen = self._fingerprint(None)
        self._lost: str | None = None  # how the file we wrote went away, until the one there has our state
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._backoff = FIRST_RETRY
        self._thread = threading.Thread(target=self._run, name="store", daemon=True)
        self._thread.start()

    # --- for the room (any thread; never waits for the disk) -----------------------

    def bans(self) -> list[tuple[str, str]]:
        """The bans as loaded at startup: (kind, value)."""
        return list(self._loaded_bans)

    def recent(self) -> list[str]:
        """The last ``keep`` lines that are in the file, oldest first."""
        with self._lock:
            return self._stored.recent()

    def since(self, at: float) -> list[str]:
        """The lines in the file said after ``at`` (wall clock), at most ``CATCH_UP`` of them."""
        with self._lock:
            return self._stored.since(at)

    def registrations(self) -> dict[str, Registration]:
        """The registered names as loaded at startup, by name key."""
        return dict(self._registrations)

    def append(self, lines: Sequence[str]) -> None:
        """Queue public lines for the file; with ``keep == 0`` nothing is kept."""
        if not self.keep or not lines:
            return
        now = time.time()
        with self._lock:
            for line in lines:
                self._sequence += 1
                self._waiting.append((self._sequence, now, line))
            self._wake.notify()

    def save_registration(self, key: str, registration: Registration | None) -> None:
        """Queue a name registered, changed (password, last seen) or let go (None)."""
        with self._lock:
            self._registration_changes.append((key, registration))
            if registration is None:
                self._registrations.pop(key, None)
            else:
                self._registrations[key] = registration
            self._wake.notify()

    def search(self, words: Sequence[str], limit: int) -> list[str]:
        """The most recent lines in the file holding every word, oldest first.

        Waits for the writer (at most ``SEARCH_WAIT``); raises ``SearchUnavailable``
        when it cannot answer (history paused, or a disk too slow).
        """
        request = _Search(list(words), limit)
        with self._lock:
            if self._failing_since is not None:
                raise SearchUnavailable("history is paused (the server cannot use its database)")
            self._searches.append(request)
            self._wake.notify()
        if not request.done.wait(SEARCH_WAIT):
            raise SearchUnavailable("the database is slow to answer")
        if request.error is not None:
            raise SearchUnavailable(request.error)
        return request.found

    def save_ban(self, kind: str, value: str, banned: bool) -> None:
        """Queue a ban made (``banned``) or lifted."""
        with self._lock:
            self._ban_changes.append((kind, value, banned))
            if banned:
                self._bans.add((kind, value))
            else:
                self._bans.discard((kind, value))
            self._wake.notify()

    def close(self, timeout: float) -> None:
        """Write what waits and close the file, giving up after ``timeout`` seconds (a stuck disk)."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._report(f"history: {self.path} did not answer within {timeout:g}s; recent lines may be lost")

    # --- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wake.wait_for(self._due, self._pause())
                closing = self._closing
                lines = list(self._waiting)
                bans = list(self._ban_changes)
                names = list(self._registration_changes)
                searches, self._searches = self._searches, []
            if lines or bans or names or self.path != MEMORY:
                self._attempt(lines, bans, names)
            self._answer(searches)
            if closing:
                self._finish()
                return

    def _pause(self) -> float | None:
        """How long the writer may sleep before it has something to do anyway."""
        if self._failing_since is not None:
            return max(0.0, self._retry_at - time.monotonic())
        return None if self.path == MEMORY else CHECK_EVERY

    def _due(self) -> bool:
        """Wake up now? (Called with the lock held.)"""
        if self._closing:
            return True
        if self._failing_since is not None:
            return time.monotonic() >= self._retry_at
        return bool(self._waiting or self._ban_changes or self._registration_changes or self._searches)

    def _answer(self, searches: list[_Search]) -> None:
        """Run the searches asked for since the last batch (the writer owns the connection)."""
        for request in searches:
            try:
                if self._db is None or self._failing_since is not None:
                    raise sqlite3.OperationalError("history is paused")
                request.found = _search(self._db, request.words, request.limit)
            except (sqlite3.Error, OSError) as error:
                request.error = "history is paused" if self._failing_since is not None else _why(error)
            request.done.set()

    def _attempt(self, lines: Lines, bans: BanChanges, names: NameChanges) -> None:
        """Write one batch; what got into the file joins ``recent()`` once the writer is done with the file.

        Done means closed after a failure, and fingerprinted: so whoever saw a
        line replayed may change the file at once, and it is noticed.
        """
        written = _Written()
        error: sqlite3.Error | OSError | None = None
        try:
            self._write(lines, bans, names, written)
        except (sqlite3.Error, OSError) as failure:
            error = failure
            if self.path != MEMORY:
                self._disconnect()  # the next attempt opens the file afresh
        if self._lost is None:  # the file there is ours, as our last writes (or closing) left it
            self._seen = self._fingerprint(self._seen)
        with self._lock:
            if written.replay is not None:
                self._stored = Replay(self.keep, written.replay)
            self._stored.extend(written.lines)
        if written.note:
            self._report(written.note)
        if error is not None:
            self._failed(error)
        elif self._failing_since is not None:
            paused = time.monotonic() - self._failing_since
            self._failing_since, self._backoff = None, FIRST_RETRY
            self._report(f"history resumed: lines are stored in {self.path} again (paused for {paused:.0f}s)")

    def _write(self, lines: Lines, bans: BanChanges, names: NameChanges, written: _Written) -> None:
        """Make sure the file at the path is ours and has our state, then write one batch."""
        if self.path != MEMORY:
            how = self._changed()
            if how is not None:
                self._lost = self._lost or how
                self._disconnect()
        if self._db is None:
            self._db = _connect(self.path, 0)
        if self._lost is not None:
            self._adopt(self._db, self._lost, written)
            self._lost = None
        if lines or bans or names:
            self._commit(self._db, lines, bans, names, written)

    def _commit(
        self, db: sqlite3.Connection, lines: Lines, bans: BanChanges, names: NameChanges, written: _Written
    ) -> None:
        now = time.time()
        with _transaction(db):
            for kind, value, banned in bans:
                if banned:
                    db.execute("INSERT OR REPLACE INTO bans VALUES (?, ?, ?)", (kind, value, now))
                else:
                    db.execute("DELETE FROM bans WHERE kind = ? AND value = ?", (kind, value))
            _save_registrations(db, names)
            _insert_lines(db, [(at, line) for _, at, line in lines])
            if lines:
                db.execute(_TRIM_TEXT, (self.archive,))
                db.execute(_TRIM, (self.archive,))
        written.lines = [(at, line) for _, at, line in lines]  # durable now
        with self._lock:  # no longer waiting
            last = lines[-1][0] if lines else 0
            while self._waiting and self._waiting[0][0] <= last:
                self._waiting.popleft()
            del self._ban_changes[: len(bans)]
            del self._registration_changes[: len(names)]
        if self.path != MEMORY:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _adopt(self, db: sqlite3.Connection, how: str, written: _Written) -> None:
        """The file now at the path stands for the one we wrote: give it our bans and the lines it lacks."""
        there = _last_lines(db, self._memory)
        with self._lock:
            ours = self._stored.dated()
            bans = sorted(self._bans)
            names = list(self._registrations.items())
        missing = ours[_overlap([line for _, line in there], [line for _, line in ours]) :]
        now = time.time()
        with _transaction(db):
            db.execute("DELETE FROM bans")
            db.executemany("INSERT INTO bans VALUES (?, ?, ?)", [(kind, value, now) for kind, value in bans])
            db.execute("DELETE FROM registered")
            _save_registrations(db, names)
            _insert_lines(db, missing)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        written.replay = _last_lines(db, self._memory)
        written.note = (
            f"history: {self.path} was {how} while the server ran; wrote the room's bans ({len(bans)}) "
            f"and the recent lines it lacked ({len(missing)}) into the file now there"
        )

    def _failed(self, error: sqlite3.Error | OSError) -> None:
        """Retry later; say so if this is the first failure."""
        now = time.monotonic()
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, LAST_RETRY)
        if self._failing_since is None:
            self._failing_since = now
            lost = f" (it was {self._lost} while the server ran)" if self._lost else ""
            why = _why(error)
            self._report(f"history paused: cannot store lines in {self.path}{lost}: {why}; chat goes on")

    def _finish(self) -> None:
        with self._lock:
            lines, bans = len(self._waiting), len(self._ban_changes) + len(self._registration_changes)
        if lines or bans:
            unsaved = f"{lines} lines and {bans} changes of bans or registered names"
            self._report(f"history: {unsaved} could not be stored in {self.path} before exit")
        self._disconnect()

    def _changed(self) -> str | None:
        """How the file at the path differs from the one we wrote last, if it does."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return "deleted"
        if self._seen is None:
            return None
        if (now.st_dev, now.st_ino) != self._seen[:2]:
            return "replaced"
        if (now.st_size, now.st_mtime_ns) != self._seen[2:]:
            return "changed by another program"
        return None

    def _fingerprint(self, otherwise: Fingerprint | None) -> Fingerprint | None:
        """The file at the path as it is now (after our own writes to it), or ``otherwise``."""
        if self.path == MEMORY:
            return None
        try:
            now = os.stat(self.path)
        except OSError:
            return otherwise
        return (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns)

    def _disconnect(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):  # nothing more to do with it: the next attempt reopens
                db.close()


@dataclass
class _Written:
    """What one attempt got into the file."""

    #: The file's last lines after adopting it, if it was adopted.
    replay: list[Dated] | None = None
    #: Lines committed, in order.
    lines: list[Dated] = field(default_factory=list)
    #: What to tell the operator about it.
    note: str = ""


def _connect(path: str, wait: float) -> sqlite3.Connection:
    """Open ``path`` (creating it if need be) the way this module's docstring explains."""
    if path != MEMORY:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path, timeout=wait, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: no -shm file to map
        db.execute("PRAGMA mmap_size=0")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        _index_old_lines(db)
        (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
        if check != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed ({check})")
    except BaseException:
        db.close()
        raise
    return db


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the error that brought us here is the one to report
                db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _insert_lines(db: sqlite3.Connection, lines: Sequence[Dated]) -> None:
    """Lines and their searchable text (as a reader sees it: no stamp, no styles) under one id."""
    if not lines:
        return
    texts = unstamped_lines([line for _at, line in lines])
    for (at, line), text in zip(lines, texts, strict=True):
        row = db.execute("INSERT INTO messages (at, line) VALUES (?, ?)", (at, line)).lastrowid
        db.execute("INSERT INTO messages_text (rowid, text) VALUES (?, ?)", (row, text))


def _index_old_lines(db: sqlite3.Connection) -> None:
    """Lines stored before there was an index (an older file) get indexed once."""
    (indexed,) = db.execute("SELECT count(*) FROM messages_text").fetchone()
    if indexed:
        return
    rows = db.execute("SELECT id, line FROM messages ORDER BY id").fetchall()
    if rows:
        texts = unstamped_lines([line for _id, line in rows])
        with _transaction(db):
            db.executemany(
                "INSERT INTO messages_text (rowid, text) VALUES (?, ?)",
                [(row, text) for (row, _line), text in zip(rows, texts, strict=True)],
            )


def _search(db: sqlite3.Connection, words: Sequence[str], limit: int) -> list[str]:
    """The last ``limit`` lines whose text holds every word (any case), oldest first."""
    query = " ".join('"' + word.replace('"', '""') + '"' for word in words)
    rows = db.execute(
        "SELECT m.line FROM messages_text t JOIN messages m ON m.id = t.rowid "
        "WHERE messages_text MATCH ? ORDER BY m.id DESC LIMIT ?",
        (query, limit),
    ).fetchall()
    return [line for (line,) in reversed(rows)]


def _registrations_in(db: sqlite3.Connection) -> dict[str, Registration]:
    rows = db.execute("SELECT key, name, secret, seen FROM registered")
    return {key: Registration(name, secret, seen) for key, name, secret, seen in rows}


def _save_registrations(db: sqlite3.Connection, changes: Sequence[tuple[str, Registration | None]]) -> None:
    for key, registration in changes:
        if registration is None:
            db.execute("DELETE FROM registered WHERE key = ?", (key,))
        else:
            row = (key, registration.name, registration.secret, registration.seen)
            db.execute("INSERT OR REPLACE INTO registered VALUES (?, ?, ?, ?)", row)


def _bans_in(db: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(kind, value) for kind, value in db.execute("SELECT kind, value FROM bans")]


def _last_lines(db: sqlite3.Connection, count: int) -> list[Dated]:
    rows = db.execute("SELECT at, line FROM messages ORDER BY id DESC LIMIT ?", (count,))
    return [(at, line) for at, line in reversed(rows.fetchall())]


def _overlap(there: list[str], ours: list[str]) -> int:
    """The largest n with ``there`` ending in ``ours[:n]``: how many of our lines a file already has."""
    for start in range(max(0, len(there) - len(ours)), len(there)):
        if there[start] == ours[0] and there[start:] == ours[: len(there) - start]:
            return len(there) - start
    return 0


def _why(error: sqlite3.Error | OSError) -> str:
    """The reason in words an operator can act on."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    name = getattr(error, "sqlite_errorname", "")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "database is locked (another program is using it)"
    if name == "SQLITE_NOTADB":
        return "file is not a database (move it away and a fresh one is started)"
    return str(error)
