"""Real storage faults for the tests: a full disk, a frozen disk, another process holding SQLite's lock.

Nothing here pretends: a full disk is a small tmpfs filled to the last byte
(or, where mounting is not permitted, a file-size limit on the process that
writes), a frozen disk is an ext4 image frozen with ``fsfreeze``, a lock is
held by a second process in ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import PYTHON, WAIT


def _run(*argv: str) -> bool:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class SmallDisk:
    """A directory on a small file system that a test can fill and free again.

    ``how`` says which fault it is: ``"tmpfs"`` (a 1 MiB tmpfs, filled with a
    file until the kernel says ENOSPC), or ``"RLIMIT_FSIZE"`` where mounting is
    not permitted (a file-size limit of 0 on the writing process: Linux then
    refuses its every write to a file with EFBIG, and Python ignores SIGXFSZ,
    so the writes fail instead of killing it).
    """

    def __init__(self, directory: Path, how: str) -> None:
        self.dir = directory
        self.how = how
        self._limited: dict[int, tuple[int, int]] = {}

    def fill(self, pid: int) -> None:
        """No more room for the files of process ``pid`` (the server, or this test)."""
        if self.how == "tmpfs":
            with open(self.dir / "filler", "wb", buffering=0) as filler:
                try:
                    while filler.write(b"\0" * 4096):
                        pass
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
        else:
            limit = (0, resource.RLIM_INFINITY)
            self._limited[pid] = resource.prlimit(pid, resource.RLIMIT_FSIZE, limit)

    def free(self, pid: int) -> None:
        if self.how == "tmpfs":
            (self.dir / "filler").unlink()
        else:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, self._limited.pop(pid))


@contextlib.contextmanager
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    directory = tmp_path / "small"
    directory.mkdir()
    if _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)):
        try:
            yield SmallDisk(directory, "tmpfs")
        finally:
            _run("umount", "-l", str(directory))
    else:
        yield SmallDisk(directory, "RLIMIT_FSIZE")


class FrozenDisk:
    """A directory on an ext4 image; ``freeze`` makes every write to it wait until ``thaw``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.frozen = False

    def freeze(self) -> None:
        assert _run("fsfreeze", "--freeze", str(self.dir))
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            assert _run("fsfreeze", "--unfreeze", str(self.dir))
            self.frozen = False


@contextlib.contextmanager
def frozen_disk(tmp_path: Path) -> Iterator[FrozenDisk]:
    """Skips the test where loop devices, ext4 or fsfreeze are not available (they need root)."""
    image, directory = tmp_path / "disk.img", tmp_path / "frozen"
    directory.mkdir()
    with open(image, "wb") as out:
        out.truncate(16 << 20)
    if not (_run("mkfs.ext4", "-q", str(image)) and _run("mount", "-o", "loop", str(image), str(directory))):
        pytest.skip("cannot mount an ext4 image here (needs root and loop devices)")
    disk = FrozenDisk(directory)
    try:
        yield disk
    finally:
        disk.thaw()
        _run("umount", "-l", str(directory))


_HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
db.execute("COMMIT")
"""


class LockHolder:
    """A second process that holds SQLite's write lock on ``path`` until ``release``."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-c", _HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            assert self.proc.wait(WAIT) == 0


@contextlib.contextmanager
def lock_held(path: Path) -> Iterator[LockHolder]:
    holder = LockHolder(path)
    try:
        yield holder
    finally:
        holder.release()


def rows(path: Path | str, sql: str = "SELECT line FROM messages ORDER BY id") -> list[str]:
    """Read the database once the server has let go of it."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as db:
        return [" ".join(str(x) for x in row) for row in db.execute(sql)]


def siblings(path: Path) -> list[Path]:
    """The database and its journal files (-wal, -shm) as they are now."""
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name))


def truncate_all(path: Path) -> None:
    for sibling in siblings(path):
        os.truncate(sibling, 0)
