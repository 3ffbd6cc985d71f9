"""The store in-process, with real faults: what the room can count on whatever the disk does."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatroom.storage import MEMORY, Store, StoreError
from faults import frozen_disk, lock_held, rows, siblings, small_disk, truncate_all
from harness import wait_until


class Log:
    """What the store reported, one line each."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def wait_for(self, text: str) -> str:
        found = wait_until(lambda: next((x for x in self.lines if text in x), None), what=repr(text))
        assert isinstance(found, str)
        return found


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def opened() -> Iterator[list[Store]]:
    """Stores the test opened; each is closed afterwards."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        store.close(5)


def open_store(opened: list[Store], path: Path | str, log: Log, keep: int = 50) -> Store:
    store = Store(str(path), keep, log)
    opened.append(store)
    return store


def say(store: Store, *lines: str) -> None:
    """Append lines and wait until they are stored (``recent`` holds nothing else)."""
    store.append(list(lines))
    wait_until(lambda: store.recent()[-len(lines) :] == list(lines), what=f"{lines} stored")


# --- what is kept ------------------------------------------------------------------------


def test_lines_and_bans_are_written_behind_and_loaded_at_the_next_start(tmp_path: Path, log: Log) -> None:
    path = tmp_path / "history.sqlite3"
    store = Store(str(path), 50, log)
    store.save_ban("name", "troll", True)
    store.save_ban("address", "10.0.0.1", True)
    say(store, "one", "two")
    store.save_ban("address", "10.0.0.1", False)
    store.append(["three"])
    store.close(5)
    again = Store(str(path), 50, log)
    assert again.recent() == ["one", "two", "three"]
    assert again.bans() == [("name", "troll")]
    again.close(5)
    assert log.lines == []


def test_only_the_last_keep_lines_are_kept(tmp_path: Path, log: Log, opened: list[Store]) -> None:
    path = tmp_path / "history.sqlite3"
    store = open_store(opened, path, log, keep=3)
    for i in range(10):
        store.append([f"line {i}"])
    wait_until(lambda: store.recent() == ["line 7", "line 8", "line 9"], what="the last three lines")
    store.close(5)
    assert rows(path) == ["line 7", "line 8", "line 9"]


def test_history_zero_stores_no_lines_but_bans(tmp_path: Path, log: Log) -> None:
    path = tmp_path / "history.sqlite3"
    store = Store(str(path), 0, log)
    store.append(["not kept"])
    store.save_ban("name", "troll", True)
    store.close(5)
    assert store.recent() == []
    assert rows(path) == []
    assert rows(path, "SELECT kind, value FROM bans") == ["name troll"]


def test_memory_works_and_keeps_nothing(log: Log) -> None:
    store = Store(MEMORY, 50, log)
    say(store, "ephemeral")
    store.close(5)
    assert Store(MEMORY, 50, log).recent() == []


def test_no_shared_memory_file_is_mapped(tmp_path: Path, log: Log, opened: list[Store]) -> None:
    """WAL's -shm is what killed the server with SIGBUS when it was truncated: it must not exist."""
    path = tmp_path / "history.sqlite3"
    say(open_store(opened, path, log), "hello")
    assert [p.name for p in siblings(path)] == ["history.sqlite3", "history.sqlite3-wal"]


# --- opening at startup --------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_named_at_startup(tmp_path: Path, log: Log) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"these are not the droids\n" * 100)
    with pytest.raises(StoreError) as error:
        Store(str(path), 50, log)
    assert str(error.value).startswith(f"{path}: file is not a database")


def test_a_path_that_cannot_be_a_file_is_named_at_startup(tmp_path: Path, log: Log) -> None:
    (tmp_path / "plain").write_text("a file, not a directory")
    path = tmp_path / "plain" / "history.sqlite3"
    with pytest.raises(StoreError, match=f"^{path}: "):
        Store(str(path), 50, log)


def test_a_lock_another_process_holds_at_startup_is_named(tmp_path: Path, log: Log) -> None:
    path = tmp_path / "history.sqlite3"
    Store(str(path), 50, log).close(5)
    with lock_held(path), pytest.raises(StoreError) as error:
        Store(str(path), 50, log)
    assert str(error.value) == f"{path}: database is locked (another program is using it)"


# --- faults while running ------------------------------------------------------------------


def test_a_full_disk_pauses_history_and_it_resumes(tmp_path: Path, log: Log, opened: list[Store]) -> None:
    with small_disk(tmp_path) as disk:
        print(f"full disk made with {disk.how}")
        store = open_store(opened, disk.dir / "history.sqlite3", log)
        say(store, "before")
        disk.fill(os.getpid())
        try:
            store.append(["x" * 20000 + " while full"])
            assert "cannot store lines in" in log.wait_for("history paused:"), disk.how
            store.append(["still full"])
            store.save_ban("name", "troll", True)
            assert store.recent() == ["before"]  # nothing replayed that is not stored
        finally:
            disk.free(os.getpid())
        log.wait_for("history resumed:")
        assert store.recent()[-2:] == ["x" * 20000 + " while full", "still full"]
        store.close(5)
        assert rows(disk.dir / "history.sqlite3")[-1] == "still full"
        assert rows(disk.dir / "history.sqlite3", "SELECT value FROM bans") == ["troll"]
    assert len(log.lines) == 2, log.lines  # one line when it failed, one when it recovered


def test_a_deleted_file_is_started_afresh_with_the_rooms_lines_and_bans(
    tmp_path: Path, log: Log, opened: list[Store]
) -> None:
    path = tmp_path / "history.sqlite3"
    store = open_store(opened, path, log)
    store.save_ban("name", "troll", True)
    say(store, "one", "two")
    for sibling in siblings(path):
        sibling.unlink()
    say(store, "three")
    assert log.lines == [
        f"history: {path} was deleted while the server ran; wrote the room's bans (1) and the recent lines "
        "it lacked (2) into the file now there"
    ]
    store.close(5)
    assert rows(path) == ["one", "two", "three"]
    assert rows(path, "SELECT value FROM bans") == ["troll"]


def test_truncated_files_are_noticed_and_given_the_rooms_state(
    tmp_path: Path, log: Log, opened: list[Store]
) -> None:
    path = tmp_path / "history.sqlite3"
    store = open_store(opened, path, log)
    store.save_ban("name", "troll", True)
    say(store, "one")
    truncate_all(path)
    say(store, "two")
    assert "was changed by another program while the server ran" in log.lines[0]
    store.close(5)
    assert rows(path) == ["one", "two"]
    assert rows(path, "PRAGMA integrity_check") == ["ok"]


def test_a_file_overwritten_with_something_else_is_left_alone_until_moved_away(
    tmp_path: Path, log: Log, opened: list[Store]
) -> None:
    path = tmp_path / "history.sqlite3"
    store = open_store(opened, path, log)
    say(store, "one")
    junk = b"someone else's notes\n" * 500
    with open(path, "r+b") as same_file:  # the same inode, new contents
        same_file.write(junk)
    store.append(["two"])
    paused = log.wait_for("history paused:")
    assert paused == (
        f"history paused: cannot store lines in {path} (it was changed by another program while the server "
        "ran): file is not a database (move it away and a fresh one is started); chat goes on"
    )
    store.append(["three"])
    assert store.recent() == ["one"]
    assert path.read_bytes()[: len(junk)] == junk  # never written over
    path.rename(tmp_path / "notes")
    log.wait_for("history resumed:")
    assert store.recent() == ["one", "two", "three"]
    assert (tmp_path / "notes").read_bytes()[: len(junk)] == junk


def test_a_file_replaced_by_an_older_copy_gets_only_the_lines_it_lacks(
    tmp_path: Path, log: Log, opened: list[Store]
) -> None:
    path = tmp_path / "history.sqlite3"
    store = open_store(opened, path, log)
    say(store, "one", "two")
    shutil.copy(path, tmp_path / "backup")  # between batches the file alone is complete
    say(store, "three")
    os.replace(tmp_path / "backup", path)
    say(store, "four")
    assert "was replaced" in log.lines[0] and "the recent lines it lacked (1)" in log.lines[0]
    assert store.recent() == ["one", "two", "three", "four"]
    store.close(5)
    assert rows(path) == ["one", "two", "three", "four"]


def test_a_file_replaced_while_another_process_holds_its_lock(
    tmp_path: Path, log: Log, opened: list[Store]
) -> None:
    path = tmp_path / "history.sqlite3"
    store = open_store(opened, path, log)
    say(store, "one")
    other = tmp_path / "other.sqlite3"
    with lock_held(other):
        os.replace(other, path)  # the lock goes with the file
        store.append(["two"])
        paused = log.wait_for("history paused:")
        assert paused.endswith(": database is locked (another program is using it); chat goes on")
        assert store.recent() == ["one"]
    log.wait_for("history resumed:")
    assert store.recent() == ["one", "two"]


def test_close_gives_up_on_a_stuck_disk_and_callers_never_wait_for_it(tmp_path: Path, log: Log) -> None:
    with frozen_disk(tmp_path) as disk:
        store = Store(str(disk.dir / "history.sqlite3"), 50, log)
        say(store, "one")
        disk.freeze()
        store.append(["two"])  # the writer is now stuck in a write to the frozen disk...
        store.save_ban("name", "troll", True)  # ...and none of these wait for it
        assert store.recent() == ["one"]
        store.close(0.5)
        path = disk.dir / "history.sqlite3"
        assert log.lines == [f"history: {path} did not answer within 0.5s; recent lines may be lost"]
        assert disk.frozen  # close returned while the disk was still stuck
