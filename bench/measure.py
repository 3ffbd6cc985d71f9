"""One measurement: one server, one load, one size, from start to teardown, as one result row.

The runner calls ``measure`` once per (scenario, size, server). It starts the
server, starts the generator's worker processes, walks them through the phases
of ``bench.loadgen`` in lock step, reads the server's cost from /proc between
phases, and always tears both down. Nothing here raises for a server that
misbehaves: a crash, a refusal or a hang becomes the row's ``status`` and
``reason``, because "ncat gave up at 1021 clients" is a result too.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen import (
    ClientPlan,
    Close,
    Command,
    Drain,
    Go,
    Join,
    Settle,
    WorkerPlan,
    raise_file_limit,
    worker_main,
)
from bench.servers import HOST, ROOT, SERVERS, ProcSample, Sampler, ServerProcess, pss_kib, sample
from bench.wire import HIST_BUCKETS, SLOT_NS, percentile

# Workers come from a fork server that has already imported the generator (and numpy),
# so starting them is quick and nothing of the runner's own threads is inherited.
_CONTEXT = mp.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["bench.loadgen"])

#: The senders start this long after the command, so every worker starts together.
START_DELAY_NS = 200_000_000


@dataclass(frozen=True)
class Setup:
    server: str
    scenario: str
    clients: int  # live clients; every one reads, the first ``senders`` also send
    senders: int
    duration: float
    rate: float | None  # lines/s from all senders together; None: flood
    stalled: int = 0  # extra clients that join and then never read
    workers: int = 1
    line_bytes: int = 64
    parallel: int = 64  # handshakes in flight at once, over all workers
    quiet: float = 0.3  # join chatter is over after this long without a byte
    idle: float = 2.0  # a drain gives up after this long without a new delivery
    window: int = 1000  # a flooding sender's lines in flight (see loadgen.Worker._flood)
    probes: int = 50  # readers that time every line (spread evenly); the others only count
    #: Timed clients in a process of their own, the counting ones at a lower CPU priority
    #: (see ``plans``); ``workers`` then counts the counting processes.
    probe_worker: bool = False
    ignore_limits: bool = False
    ours: str = str(ROOT)  # the checkout whose Server.py is "ours"
    ours_args: tuple[str, ...] = ()  # added to its command line (tuning flags)
    web_share: float = 0.0  # readers that are browsers, reading through the web front door

    @property
    def total(self) -> int:
        return self.clients + self.stalled

    @property
    def join_timeout(self) -> float:
        """Generous: the textbook server greets newcomers one at a time and tells each join to
        everyone with blocking sends, O(N²) of them, so 10,000 clients take minutes to join."""
        return 30.0 + 0.1 * self.total

    @property
    def drain_timeout(self) -> float:
        return 30.0 + 3 * self.duration


def auto_workers(clients: int, cores: int) -> int:
    """One process per thousand clients, at most one per core (they share it with the server)."""
    return max(1, min(cores, -(-clients // 1000)))


def in_flight(setup: Setup) -> int:
    """Handshakes in flight at once: ``parallel``, but never more than the server's backlog takes.

    ncat listens with a backlog of 10. A burst beyond it makes Linux answer with
    SYN cookies and drop the handshake's last ACK while the queue is full; the
    client then believes it is connected, the server knows nothing of it, and a
    client that waits for the server to speak first (ours all do) waits forever.
    """
    backlog = SERVERS[setup.server].backlog
    return max(1, min(setup.parallel, backlog - 2)) if backlog else setup.parallel


def plans(setup: Setup, port: int, dialect: str, web_port: int = 0) -> list[WorkerPlan]:
    """Clients go round-robin to workers, so the senders (the first ids) land in different ones.

    With ``probe_worker`` the senders and timed readers get a process of their
    own and the others are spread over ``workers`` processes that run in the
    background (``SCHED_IDLE``: only on a core the server and the timed
    readers leave free). At 10,000 clients counting costs the generator several
    times the CPU the server spends sending (30 us against 9 us a delivery, on
    two cores shared by all): timed readers in the same event loop as thousands
    of counting ones would wait for them, and a server would wait for the
    generator, so both would measure the generator. The background workers
    also leave their lines in the kernel while the sending lasts and count
    them when it is over (a scale run's 20 lines are a few KiB a socket):
    the kernel still lets an idle-priority process that has waited long run
    a whole tick (4 ms and more) in the middle of a server's fan-out, which
    showed in its tail latency. The server's work for each line is the same
    either way; whether every line reached every reader is still checked.
    """
    extra = 1 if setup.probe_worker else 0
    slices: list[list[ClientPlan]] = [[] for _ in range(setup.workers + extra)]
    stride = max(1, -(-setup.clients // max(1, setup.probes)))  # every stride-th reader is timed
    senders = min(setup.senders, setup.clients)
    for cid in range(setup.total):
        sends = cid < senders
        stalled = cid >= setup.clients
        eager = sends or (cid % stride == 0 and not stalled)
        index = 0 if extra and eager else extra + cid % setup.workers
        reader = cid - senders  # browsers are spread evenly over the readers that only read
        web = (
            not sends and not stalled and int((reader + 1) * setup.web_share) > int(reader * setup.web_share)
        )
        slices[index].append(ClientPlan(cid, cid if sends else None, stalled, eager, web))
    timeout = setup.join_timeout
    parallel = max(1, in_flight(setup) // len(slices))
    return [
        WorkerPlan(
            i,
            HOST,
            port,
            dialect,
            tuple(mine),
            setup.line_bytes,
            parallel,
            timeout,
            setup.window,
            background=bool(extra and i > 0),
            web_port=web_port,
        )
        for i, mine in enumerate(slices)
        if mine
    ]


class Workers:
    """The generator's processes and their pipes; every command goes to all of them."""

    def __init__(self, worker_plans: list[WorkerPlan]) -> None:
        self.pipes: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for plan in worker_plans:
            ours, theirs = _CONTEXT.Pipe()
            proc = _CONTEXT.Process(target=worker_main, args=(theirs, plan), daemon=True)
            proc.start()
            theirs.close()
            self.pipes.append(ours)
            self.procs.append(proc)

    def ask(self, command: Command, timeout: float) -> list[dict[str, Any]]:
        for pipe in self.pipes:
            pipe.send(command)
        deadline = time.monotonic() + timeout
        replies = []
        for i, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                what = type(command).__name__
                raise RuntimeError(f"generator worker {i} did not finish {what} in {timeout:.0f}s")
            try:
                kind, body = pipe.recv()
            except EOFError:
                raise RuntimeError(f"generator worker {i} died during {type(command).__name__}") from None
            if kind != "ok":
                raise RuntimeError(f"generator worker {i} failed: {body}")
            replies.append(body)
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(Close())
        deadline = time.monotonic() + 5.0
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        for pipe in self.pipes:
            pipe.close()


def measure(setup: Setup, log_dir: Path) -> dict[str, Any]:
    """Run one measurement; the result row (never raises for the server's sake)."""
    spec = SERVERS[setup.server]
    row: dict[str, Any] = {**asdict(setup), "status": "ok", "reason": ""}
    why_not = spec.available()
    if why_not is None and spec.max_clients and setup.total > spec.max_clients and not setup.ignore_limits:
        why_not = f"{setup.total} clients: {spec.limit_reason}"
    if why_not is None and setup.web_share and not spec.web:
        why_not = "no web front door: browsers cannot join it"
    if why_not:
        row.update(status="skipped", reason=why_not)
        return row
    raise_file_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = log_dir / f"{stamp}-{setup.scenario}-{setup.clients}-{setup.stalled}-{setup.server}.log"
    server = ServerProcess(
        spec, setup.total, log_path, Path(setup.ours), setup.ours_args, setup.web_share > 0
    )
    measured: list[int] = []  # the log's size when the measurement ended, before teardown
    try:
        with server:
            row.update(_drive(setup, server, measured))
    except Exception as error:  # the row says what went wrong; the run goes on
        row.update(status="failed", reason=f"{error}")
    row["server_log"] = {"path": str(log_path), **server.scan_log(measured[0] if measured else None)}
    if row["status"] != "skipped" and server.exit_status() not in (None, 0, -15):
        row["server_log"]["exit"] = server.exit_status()
    return row


def _drive(setup: Setup, server: ServerProcess, measured: list[int]) -> dict[str, Any]:
    pid = server.pid
    idle = _sample(server)
    sampler = Sampler(pid)
    workers = Workers(plans(setup, server.port, server.spec.dialect, server.web_port))
    marks: dict[str, ProcSample] = {"idle": idle}
    try:
        sampler.start()
        # Under probe_worker the timed readers join spread over the whole join, one
        # round each, so they sit all along every server's list of readers.
        rounds = max(1, setup.probes) if setup.probe_worker else 1
        joins, deadline = [], time.monotonic() + setup.join_timeout + 15
        for part in range(rounds):
            joins += workers.ask(Join(part, rounds), max(1.0, deadline - time.monotonic()))
        marks["joined"] = _sample(server)
        pss = [pss_kib(pid)]
        settles = workers.ask(Settle(setup.quiet, setup.join_timeout), setup.join_timeout + 15)
        marks["go"] = _sample(server)
        start_ns = time.monotonic_ns() + START_DELAY_NS
        per_sender = None if setup.rate is None else setup.rate / max(1, setup.senders)
        sends = workers.ask(Go(start_ns, setup.duration, per_sender, setup.senders), setup.duration + 30)
        sent: dict[int, int] = {}
        for reply in sends:
            sent.update(reply["sent"])
        drains = workers.ask(Drain(sent, setup.idle, setup.drain_timeout), setup.drain_timeout + 15)
        finished_ns = time.monotonic_ns()
        marks["end"] = _sample(server)
        pss.append(pss_kib(pid))
        measured.append(server.log_size())
    finally:
        workers.close()
        sampler.stop()
    alive = server.exit_status() is None
    row = _summarise(setup, joins, settles, sent, drains, start_ns, finished_ns)
    row["server"] = setup.server
    row["in_flight"] = in_flight(setup)
    row["proc"] = _costs(setup, marks, sampler)
    row["proc"]["pss_kib"] = max(pss)
    problems = []
    if row["joined"] < setup.total:
        problems.append(f"{setup.total - row['joined']} of {setup.total} clients did not join")
    if not alive:
        problems.append(f"server exited with {server.exit_status()}: {server.log_tail(2)}")
    if problems:
        row.update(status="degraded", reason="; ".join(problems))
    return row


def _sample(server: ServerProcess) -> ProcSample:
    now = sample(server.pid) if server.exit_status() is None else None
    if now is None:
        raise RuntimeError(f"server exited with {server.exit_status()}: {server.log_tail(2)}")
    return now


def _summarise(
    setup: Setup,
    joins: list[dict[str, Any]],
    settles: list[dict[str, Any]],
    sent: dict[int, int],
    drains: list[dict[str, Any]],
    start_ns: int,
    finished_ns: int,
) -> dict[str, Any]:
    joined = sum(j["joined"] for j in joins)
    failures: Counter[str] = Counter()
    for j in joins:
        failures.update(j["failures"])
    join_s = 0.0  # summed over the rounds of the join, leaving out the waits between them
    for part in {j["part"] for j in joins}:
        firsts = [j["first_ns"] for j in joins if j["joined"] and j["part"] == part]
        lasts = [j["last_ns"] for j in joins if j["joined"] and j["part"] == part]
        join_s += (max(lasts) - min(firsts)) / 1e9 if firsts else 0.0
    join_ms = np.array([ms for j in joins for ms in j["join_ms"]] or [0.0])

    hist = [0] * HIST_BUCKETS
    disconnects: Counter[str] = Counter()
    for d in drains:
        for index, count in d["hist"].items():
            hist[int(index)] += count
        disconnects.update(d["disconnects"])
    expected = sum(d["expected"] for d in drains)
    delivered = sum(d["delivered"] for d in drains)
    # Over the sending time, or longer if deliveries went on after it: a server that
    # stops delivering (a stalled reader) is not flattered by a short window.
    last_ns = max((d["last_ns"] for d in drains if d["last_ns"]), default=0)
    window = (max(last_ns, start_ns + int(setup.duration * 1e9)) - start_ns) / 1e9
    sent_total = sum(sent.values())
    p50, p99 = percentile(hist, 50), percentile(hist, 99)
    timeline = [0] * max((len(d["timeline"]) for d in drains), default=0)
    for d in drains:
        for slot, count in enumerate(d["timeline"]):
            timeline[slot] += count
    # The last second of sending: a server that has stopped delivering shows 0 here.
    end_slot = int(setup.duration * 1e9) // SLOT_NS
    per_second = 1_000_000_000 // SLOT_NS
    span = max(1, min(end_slot, per_second))
    final = sum(timeline[end_slot - span : end_slot]) / (span * SLOT_NS / 1e9)
    max_us = max(d["max_us"] for d in drains)
    return {
        "joined": joined,
        "join_failures": dict(failures),
        "join_s": round(join_s, 3),
        "join_rate": round(joined / join_s, 1) if join_s > 0 else None,
        "join_ms": {
            "p50": round(float(np.percentile(join_ms, 50)), 2),
            "p99": round(float(np.percentile(join_ms, 99)), 2),
            "max": round(float(join_ms.max()), 2),
        },
        "join_bytes": sum(s["bytes_rx"] for s in settles),
        "settled": all(s["quiet"] for s in settles),
        "sent": sent_total,
        "send_rate": round(sent_total / setup.duration, 1),
        "readers": sum(d["readers"] for d in drains),
        "timed_readers": sum(d["eager"] for d in drains),
        "expected": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "duplicates": sum(d["duplicates"] for d in drains),
        "own_echoes": sum(d["own"] for d in drains),
        "mangled": sum(d["mangled"] for d in drains),
        "garbled": sum(d["garbled"] for d in drains),
        "deliveries_per_s": round(delivered / window, 1),
        "delivery_window_s": round(window, 3),
        "final_second_rate": round(final, 1),
        "last_delivery_s": round((last_ns - start_ns) / 1e9, 3) if last_ns else None,
        "timeline_100ms": timeline,
        "reader_min": min(d["reader_min"] for d in drains),
        "reader_max": max(d["reader_max"] for d in drains),
        "latency_ms": {  # a percentile is a bucket's middle: never report it above the exact max
            "p50": None if p50 is None else round(min(p50, max_us) / 1000, 3),
            "p99": None if p99 is None else round(min(p99, max_us) / 1000, 3),
            "max": round(max_us / 1000, 3),
            "samples": sum(hist),
        },
        "disconnects": dict(disconnects),
        **_by_kind_of_reader(drains, hist),
        "generator": {
            "workers": len(drains),
            "cpu_s_run": round(sum(d["cpu_s"] for d in drains) - sum(s["cpu_s"] for s in settles), 2),
            "run_s": round((finished_ns - start_ns) / 1e9, 2),
        },
    }


def _latency(hist: list[int], max_us: int | None = None) -> dict[str, Any]:
    """p50 and p99 of a histogram, in ms (never above the exact max, when it is known)."""
    top = float("inf") if max_us is None else max_us
    p50, p99 = percentile(hist, 50), percentile(hist, 99)
    return {
        "p50": None if p50 is None else round(min(p50, top) / 1000, 3),
        "p99": None if p99 is None else round(min(p99, top) / 1000, 3),
        "samples": sum(hist),
    }


def _by_kind_of_reader(drains: list[dict[str, Any]], hist: list[int]) -> dict[str, Any]:
    """With browsers among the readers: the latency of the browsers, and of the terminals (the rest)."""
    web_readers = sum(d.get("web_readers", 0) for d in drains)
    if not web_readers:
        return {}
    web = [0] * HIST_BUCKETS
    for d in drains:
        for index, count in d["web_hist"].items():
            web[int(index)] += count
    tcp = [everyone - browsers for everyone, browsers in zip(hist, web, strict=True)]
    return {
        "web_readers": web_readers,
        "web_latency_ms": {**_latency(web, max(d["web_max_us"] for d in drains))},
        "tcp_latency_ms": _latency(tcp),
    }


def _costs(setup: Setup, marks: dict[str, ProcSample], sampler: Sampler) -> dict[str, Any]:
    idle, end = marks["idle"], marks["end"]
    grown = max(0, end.hwm_kib - idle.rss_kib)
    return {
        "rss_idle_kib": idle.rss_kib,
        "peak_rss_kib": end.hwm_kib,
        "rss_per_client_kib": round(grown / setup.total, 1) if setup.total else None,
        "threads_idle": idle.threads,
        "threads_peak": max(sampler.peak_threads, end.threads),
        "cpu_s_join": round(marks["joined"].cpu_s - idle.cpu_s, 2),
        "cpu_s_settle": round(marks["go"].cpu_s - marks["joined"].cpu_s, 2),
        "cpu_s_run": round(end.cpu_s - marks["go"].cpu_s, 2),
        "cpu_s_total": round(end.cpu_s, 2),
    }
