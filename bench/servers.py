"""The servers under test: how to start each, when it is ready, what it costs, how to stop it.

Each runs as its own process group on 127.0.0.1 and a free port, with its output
in a log file, and is killed with its whole group whatever happens. Its cost is
read from ``/proc`` for the process and every process it started (``ours-p2``
is a supervisor, two server processes and a private redis-server; the others
are one process): peak resident memory (``VmHWM``, summed over the processes,
each at its own peak), thread count and CPU time (``utime + stime``), and
proportional memory (``Pss`` from ``smaps_rollup``: pages shared between
processes counted once, in shares) when asked.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
READY_TIMEOUT = 15.0
STOP_GRACE = 2.0
#: A server with processes of its own stops them first, each telling thousands of clients goodbye.
TREE_STOP_GRACE = 20.0
_TICK = os.sysconf("SC_CLK_TCK")

#: ncat watches its sockets with select(): it aborts ("Attempt to FD_SET fd 1024, which is
#: not less than FD_SETSIZE") when a connection gets fd 1024. Fds 0-2 are stdio and 3 the
#: listener, so 1020 clients is its ceiling whatever --max-conns says.
NCAT_MAX_CLIENTS = 1020


@dataclass(frozen=True)
class ServerSpec:
    name: str
    title: str
    dialect: str
    max_clients: int | None = None
    limit_reason: str = ""
    #: Its listen() backlog, if it is small enough to matter (see ``bench.measure.in_flight``).
    backlog: int | None = None
    #: Log lines worth counting: label -> regex.
    notable: dict[str, str] = field(default_factory=dict)
    #: It serves browsers too (``--web-port``).
    web: bool = False
    #: More Server.py flags, for variants of ours.
    flags: tuple[str, ...] = ()
    #: Sockets listening on the port once it is ready (one per server process).
    listeners: int = 1

    def command(
        self,
        port: int,
        clients: int,
        ours: Path = ROOT,
        ours_args: tuple[str, ...] = (),
        web_port: int = 0,
    ) -> list[str]:
        """The command line; ``ours`` is the checkout whose Server.py is measured, with ``ours_args``."""
        if self.dialect == "ours":
            return [
                sys.executable,
                str(ours / "Server.py"),
                *("--port", str(port), "--approve", "all", "--flood-rate", "0", "--db", ":memory:"),
                *("--max-clients", "0", "--max-per-ip", "0", "--max-pending", "0"),
                *(("--web-port", str(web_port)) if web_port else ()),
                *self.flags,
                *ours_args,
            ]
        if self.name == "ncat":
            # --max-conns defaults to 100; give it room for everyone plus our readiness probe.
            return ["ncat", "--chat", "-l", HOST, str(port), "--max-conns", str(clients + 8)]
        if self.name == "textbook":
            return [sys.executable, str(ROOT / "bench" / "textbook_server.py"), "--port", str(port)]
        raise ValueError(self.name)

    def available(self) -> str | None:
        """Why this server cannot run here, or None."""
        if self.name == "ncat" and shutil.which("ncat") is None:
            return "ncat is not installed (Debian package ncat)"
        if "--processes" in self.flags and shutil.which("redis-server") is None:
            return "redis-server is not installed (Debian package redis-server): --processes needs it"
        return None


#: What in our log is worth counting.
OUR_NOTABLE = {
    "cut off (not reading)": r"not reading",
    "connection lost": r"connection lost",
    "flood control": r"flood control",
    "refused": r"\brefused\b",
    "errors": r"unexpected error|Traceback|Error:",
    "process died": r"process \d+ \(pid \d+\) (killed|exited)",
}

SERVERS: dict[str, ServerSpec] = {
    "ours": ServerSpec("ours", "this server (Server.py)", "ours", notable=OUR_NOTABLE, web=True),
    "ours-p2": ServerSpec(
        "ours-p2",
        "this server with --processes 2 (two processes, a private redis-server)",
        "ours",
        notable=OUR_NOTABLE,
        flags=("--processes", "2"),
        listeners=2,
    ),
    "ncat": ServerSpec(
        "ncat",
        "ncat --chat",
        "ncat",
        max_clients=NCAT_MAX_CLIENTS,
        limit_reason=f"ncat uses select(): it aborts at fd 1024 (FD_SETSIZE), so at most "
        f"{NCAT_MAX_CLIENTS} clients",
        backlog=10,
        notable={"errors": r"FD_SETSIZE|[Ee]rror|abort"},
    ),
    "textbook": ServerSpec(
        "textbook",
        "textbook threads (bench/textbook_server.py)",
        "textbook",
        notable={"errors": r"Traceback|Error"},
    ),
}


def listeners(pids: Sequence[int], port: int) -> int:
    """How many TCP sockets listening on ``port`` the processes ``pids`` hold (from /proc, no connection).

    Connecting to find out has side effects: ncat --chat announces every
    newcomer to everyone, calling getpeername() on each connection, and exits
    ("getpeername ... failed: Transport endpoint is not connected") if one of
    them was reset meanwhile, as a probe that hangs up before reading is.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows, None)
            for row in rows:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(fields[9])
    held = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        held.add(link[8:-1])
    return len(held)


def tree(pid: int) -> list[int]:
    """``pid`` and every process it started, and they started, that is still alive."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent = int(stat[stat.rfind(")") + 2 :].split()[1])
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _alive(pid: int) -> bool:
    """Still running (a zombie, gone but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class ProcSample:
    rss_kib: int = 0
    hwm_kib: int = 0
    threads: int = 0
    cpu_s: float = 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after "(comm)": state is field 3, utime 14 and stime 15.
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _status(pid: int) -> dict[str, str] | None:
    """A process's ``/proc/PID/status``, field by field; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return dict(line.split(":", 1) for line in status.splitlines() if ":" in line)


def _sample_one(pid: int) -> ProcSample | None:
    values = _status(pid)
    if values is None:
        return None
    try:
        cpu_s = cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None

    def kib(key: str) -> int:
        return int(values.get(key, "0 kB").split()[0])

    return ProcSample(
        rss_kib=kib("VmRSS"),
        hwm_kib=kib("VmHWM"),
        threads=int(values.get("Threads", "0")),
        cpu_s=cpu_s,
    )


def sample(pid: int) -> ProcSample | None:
    """Memory, threads and CPU of a server's processes together, from /proc; None once it is gone."""
    total = _sample_one(pid)
    if total is None:
        return None
    for other in tree(pid)[1:]:
        one = _sample_one(other)
        if one is not None:
            total.rss_kib += one.rss_kib
            total.hwm_kib += one.hwm_kib
            total.threads += one.threads
            total.cpu_s += one.cpu_s
    return total


def pss_kib(pid: int) -> int:
    """Proportional memory of a server's processes together: shared pages counted once, in shares."""
    total = 0
    for one in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


class Sampler(threading.Thread):
    """Polls the thread count of a server's processes so the peak between two reads is seen.

    It shares the cores with the server it measures, so it stays out of its
    way: the processes are found once (again only when one is gone), each poll
    reads one small file per process, and the thread runs at ``SCHED_IDLE``,
    only when a core is free. (Reading every process's ``stat`` ten times a
    second, at normal priority, took a few per cent of a core and showed up
    in the server's latency at 10,000 clients.) Peak memory needs no polling:
    the kernel keeps it (``VmHWM``).
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_threads = 0
        self._pids: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only (Linux)
        while not self._stop_event.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        if not self._pids:
            self._pids = tree(self.pid)
        found = [_status(pid) for pid in self._pids]
        if None in found:  # one is gone (and may have been replaced): find them again
            self._pids = tree(self.pid)
            found = [_status(pid) for pid in self._pids]
        threads = sum(int(values.get("Threads", "0")) for values in found if values is not None)
        self.peak_threads = max(self.peak_threads, threads)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(2)
        self.poll()


class ServerProcess:
    """One server, started on a free port in its own process group; a context manager."""

    def __init__(
        self,
        spec: ServerSpec,
        clients: int,
        log_path: Path,
        ours: Path = ROOT,
        ours_args: tuple[str, ...] = (),
        web: bool = False,
    ) -> None:
        """``web``: serve browsers too, on a port of their own (``web_port``)."""
        self.spec = spec
        self.web = web
        self.web_port = 0
        self.clients = clients
        self.log_path = log_path
        self.ours = ours
        self.ours_args = ours_args
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.port = free_port()
        self.web_port = free_port() if self.web else 0
        self.proc = subprocess.Popen(
            self.spec.command(self.port, self.clients, self.ours, self.ours_args, self.web_port),
            cwd=self.ours if self.spec.name == "ours" else ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group, killed as one, in the generator's session: Linux's
            # autogroup shares the CPU between sessions first, and the counting readers'
            # SCHED_IDLE would mean nothing against a server in a session of its own.
            process_group=0,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        """Until the server's processes have their sockets listening on the port.

        Not by connecting: a test connection is a client to the server, and one
        that hangs up at the wrong moment kills ncat (see ``listeners``).
        """
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(
            listeners(tree(self.proc.pid), port) >= self.spec.listeners
            for port in (self.port, self.web_port)
            if port
        ):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.spec.name} did not listen within {READY_TIMEOUT}s")
            time.sleep(0.02)

    def exit_status(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after a grace period; never raises.

        Processes the server started in sessions of their own (ours-p2's) are
        stopped by it; any still there once it is gone are killed, so the next
        measurement starts on a quiet machine.
        """
        if self.proc is not None and self.proc.poll() is None:
            started = tree(self.proc.pid)[1:]
            grace = TREE_STOP_GRACE if started else STOP_GRACE
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            deadline = time.monotonic() + STOP_GRACE
            while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
                time.sleep(0.05)
            for pid in started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text("utf-8", "replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def scan_log(self, upto: int | None = None) -> dict[str, Any]:
        """Count the log lines that say something went wrong (or was refused, or cut off).

        ``upto`` (a size from ``log_size``) leaves out what the teardown caused.
        """
        try:
            with self.log_path.open("rb") as log:
                text = log.read(upto if upto is not None else -1).decode("utf-8", "replace")
        except OSError:
            return {}
        counts: Counter[str] = Counter()
        examples: dict[str, str] = {}
        patterns = {label: re.compile(rx) for label, rx in self.spec.notable.items()}
        lines = text.splitlines()
        for line in lines:
            for label, pattern in patterns.items():
                if pattern.search(line):
                    counts[label] += 1
                    examples.setdefault(label, line[:200])
        return {"lines": len(lines), "counts": dict(counts), "examples": examples}
