"""The load generator: asyncio clients in worker processes, driven phase by phase by the runner.

Each worker process owns a slice of the clients and runs one event loop. The
runner (``bench.measure``) sends every worker the same commands over a pipe and
waits for all replies before the next, so the phases line up across processes:

``Join``    connect and get every client into the room (a bounded number of
            handshakes in flight), report how long that took;
``Settle``  wait until the join chatter (every server tells everyone about every
            newcomer) has stopped arriving;
``Go``      senders send from a common start time for ``duration``: either as fast
            as TCP lets them (flood) or at a fixed rate; readers count throughout;
``Drain``   given how many lines each sender sent, wait until every reader has
            them all, or nothing has arrived for ``idle`` seconds, then report;
``Close``   hang up and exit.

Protocol callbacks rather than streams, and numpy for big chunks (``bench.wire``),
keep the per-line cost of reading low: on a small machine the generator shares
the CPU with the server it measures, and the report shows how much it used.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import resource
import select
import socket
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.wire import (
    MARK,
    Handshake,
    Reader,
    Tally,
    WebHandshake,
    WebMessages,
    clean_ncat,
    make_line,
    strip_sgr,
)

#: How often readers that are not timed collect what has arrived, and how much at most.
BATCH_TICK = 0.05
BATCH_READ = 1 << 18

#: Receive buffer of the stalled reader: small, so a server that waits for it does so at once.
STALLED_RCVBUF = 4096
#: Lines per write when flooding.
FLOOD_BATCH = 16
#: Bytes kept from the end of each connection's input, to say why it was closed.
TAIL = 256
_STAMP = re.compile(r"^\[\d\d:\d\d(?::\d\d)?\] ")


# --- plans and commands (pickled between the runner and its workers) -------------------


@dataclass(frozen=True)
class ClientPlan:
    cid: int
    rank: int | None = None  # position among all senders; None: only reads
    stalled: bool = False  # joins, then never reads again
    eager: bool = True  # reads each line as it comes and times it; else reads in batches, untimed
    web: bool = False  # a browser: joins and reads through the web front door's WebSocket


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    host: str
    port: int
    dialect: str
    clients: tuple[ClientPlan, ...]
    line_bytes: int = 64
    parallel: int = 64
    join_timeout: float = 30.0
    window: int = 1000
    #: Runs only on a core nothing else wants, and counts only once the sending is over
    #: (see ``bench.measure.plans``).
    background: bool = False
    web_port: int = 0  # the web front door, for clients that are browsers


@dataclass(frozen=True)
class Join:
    """Join part ``part`` of ``parts`` equal slices of this worker's clients."""

    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class Settle:
    quiet: float
    timeout: float


@dataclass(frozen=True)
class Go:
    start_ns: int
    duration: float
    rate: float | None  # lines/s for each sender; None floods
    senders: int  # all senders, in every worker (to spread their start times)


@dataclass(frozen=True)
class Drain:
    sent: dict[int, int]
    idle: float
    timeout: float


@dataclass(frozen=True)
class Close:
    pass


Command = Join | Settle | Go | Drain | Close


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_file_limit() -> int:
    """Each client is a file descriptor; take all the kernel allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def last_words(tail: bytes, error: BaseException | None) -> str:
    """Why a connection ended, as its last line of text says (or the error)."""
    lines = strip_sgr(tail).decode("utf-8", "replace").strip().splitlines()
    line = _STAMP.sub("", lines[-1].strip()) if lines else ""
    if MARK.decode() in line or not line:
        return f"closed by server ({type(error).__name__})" if error else "closed by server"
    return line[:100]


# --- one connection ------------------------------------------------------------------


class Client:
    """One joined connection: its counters, and how it reads (eagerly or in batches)."""

    def __init__(
        self, worker: Worker, plan: ClientPlan, sock: socket.socket, web: WebMessages | None = None
    ) -> None:
        self.worker = worker
        self.plan = plan
        self.sock = sock
        self.reader = Reader(plan.cid)
        self.web = web  # a browser's frames, taken apart into messages (one line each)
        self.web_reader = Reader(plan.cid)  # its count in the browsers' own tally
        self.transport: asyncio.Transport | None = None  # eager clients only
        self.writable = asyncio.Event()
        self.writable.set()
        self.partial = b""
        self.tail = b""
        self.sent = 0
        self.gone = False
        self.hung_up = False  # by us
        #: Set whenever data arrives, for a flooding sender that uses this client as its probe.
        self.progress: asyncio.Event | None = None

    @property
    def live_reader(self) -> bool:
        """Meant to read (the stalled one is not) and still connected."""
        return not self.plan.stalled and not self.gone

    def received(self, data: bytes, now: int) -> None:
        worker = self.worker
        worker.last_rx_ns = now
        worker.bytes_rx += len(data)
        self.tail = data[-TAIL:] if len(data) >= TAIL else (self.tail + data)[-TAIL:]
        if self.web is not None:
            self.messages("\n".join(self.web.feed(data)).encode() + b"\n", now)
            return
        buffer = self.partial + data if self.partial else data
        cut = buffer.rfind(b"\n") + 1
        self.partial = buffer[cut:]
        if cut:
            lines = buffer[:cut] if cut < len(buffer) else buffer
            if worker.plan.dialect == "ncat":
                lines, mangled = clean_ncat(lines)
                worker.mangled += mangled
            worker.tally.feed(self.reader, lines, now, timed=self.plan.eager)
        if self.progress is not None:
            self.progress.set()

    def messages(self, lines: bytes, now: int) -> None:
        """A browser's messages, counted like lines, and in the browsers' own tally too."""
        self.worker.tally.feed(self.reader, lines, now, timed=self.plan.eager)
        self.worker.web_tally.feed(self.web_reader, lines, now, timed=self.plan.eager)
        if self.progress is not None:
            self.progress.set()

    def lost(self, error: BaseException | None) -> None:
        """The connection ended; if the server ended it, say why."""
        if self.gone:
            return
        self.gone = True
        self.writable.set()  # wake a sender waiting for room
        if self.progress is not None:
            self.progress.set()
        if not self.hung_up:
            self.worker.disconnects[last_words(self.tail, error)] += 1

    def hang_up(self) -> None:
        self.hung_up = True
        if self.transport is not None:
            self.transport.close()
        else:
            self.worker.forget(self)
            self.sock.close()


class _Eager(asyncio.Protocol):
    """Reads as soon as data arrives, so each line's arrival time is its latency."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.received(data, time.monotonic_ns())

    def pause_writing(self) -> None:
        self.client.writable.clear()

    def resume_writing(self) -> None:
        self.client.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(exc)


# --- one worker process ----------------------------------------------------------------


class Worker:
    """One process's clients.

    Eager clients (senders, and the readers that time lines) are asyncio
    protocols, woken for every arrival. The other readers sit in an epoll set
    that one task drains every ``BATCH_TICK``: with hundreds of readers, one
    wake-up per line per reader would cost the generator more CPU than the
    servers it measures, and those readers' lines only need counting.
    """

    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.tally = Tally()
        self.web_tally = Tally()  # the browsers' deliveries only (they are in ``tally`` too)
        self.clients: list[Client] = []
        self.disconnects: Counter[str] = Counter()
        self.mangled = 0
        self.bytes_rx = 0
        self.last_rx_ns = 0
        self.batched: dict[int, Client] = {}
        self.batch_poll = select.epoll()
        self.batch_task: asyncio.Task[None] | None = None
        self.holding = False  # a background worker between Go and Drain: its lines wait in the kernel

    async def run(self, command: Command) -> dict[str, Any]:
        if isinstance(command, Join):
            return await self.join(command)
        if isinstance(command, Settle):
            return await self.settle(command)
        if isinstance(command, Go):
            return await self.go(command)
        if isinstance(command, Drain):
            return await self.drain(command)
        raise ValueError(f"unknown command {command!r}")

    # --- joining

    async def join(self, command: Join) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if self.batch_task is None:
            self.batch_task = asyncio.create_task(self._read_batches())
        count, part, parts = len(self.plan.clients), command.part, command.parts
        mine = self.plan.clients[count * part // parts : count * (part + 1) // parts]
        gate = asyncio.Semaphore(self.plan.parallel)
        deadline = loop.time() + self.plan.join_timeout
        durations: list[float] = []
        failures: Counter[str] = Counter()
        first: list[int] = []
        last: list[int] = []

        async def one(plan: ClientPlan) -> None:
            async with gate:
                started = time.monotonic_ns()
                try:
                    joined = await asyncio.wait_for(self._connect(plan), max(0.01, deadline - loop.time()))
                except (OSError, TimeoutError) as error:
                    failures[_describe(error)] += 1
                    return
                first.append(started)
                last.append(joined)
                durations.append((joined - started) / 1e6)

        await asyncio.gather(*(one(plan) for plan in mine))
        gc.freeze()  # thousands of long-lived objects: keep the collector off them
        return {
            "part": command.part,
            "joined": len(durations),
            "failed": sum(failures.values()),
            "failures": dict(failures),
            "first_ns": min(first, default=0),
            "last_ns": max(last, default=0),
            "join_ms": durations,
            "cpu_s": cpu_seconds(),
        }

    async def _connect(self, plan: ClientPlan) -> int:
        """Connect and get into the room; then read eagerly, in batches, or (stalled) never."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if plan.stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
        try:
            if plan.web:
                client, joined, after = await self._join_web(plan, sock)
                leftover: bytes | None = b""
            else:
                await loop.sock_connect(sock, (self.plan.host, self.plan.port))
                shake, tail = Handshake(self.plan.dialect, f"c{plan.cid}"), b""
                while True:
                    data = await loop.sock_recv(sock, 1 << 16)
                    if not data:
                        raise ConnectionError(last_words(tail, None))
                    tail = (tail + data)[-TAIL:]
                    reply, leftover = shake.feed(data)
                    if reply:
                        await loop.sock_sendall(sock, reply)
                    if leftover is not None:
                        break
                joined = time.monotonic_ns()
                client, after = Client(self, plan, sock), []
            if plan.eager and not plan.stalled:
                await loop.create_connection(lambda: _Eager(client), sock=sock)
        except BaseException:
            sock.close()
            raise
        self.clients.append(client)
        if not plan.eager and not plan.stalled:
            self.batched[sock.fileno()] = client
            self.batch_poll.register(sock.fileno(), select.EPOLLIN)
        if leftover and not plan.stalled:
            client.received(leftover, joined)
        if after:
            client.messages("\n".join(after).encode() + b"\n", joined)
        return joined

    async def _join_web(self, plan: ClientPlan, sock: socket.socket) -> tuple[Client, int, list[str]]:
        """A browser: the WebSocket upgrade on the web port, then the name, as the page does it."""
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (self.plan.host, self.plan.web_port))
        shake = WebHandshake(self.plan.host, self.plan.web_port, f"c{plan.cid}")
        await loop.sock_sendall(sock, shake.opening)
        while True:
            data = await loop.sock_recv(sock, 1 << 16)
            if not data:
                raise ConnectionError("closed by server during the WebSocket handshake")
            reply, after = shake.feed(data)
            if reply:
                await loop.sock_sendall(sock, reply)
            if after is not None:
                return Client(self, plan, sock, shake.messages), time.monotonic_ns(), after

    async def _read_batches(self) -> None:
        while True:
            await asyncio.sleep(BATCH_TICK)
            if self.holding:
                continue
            ready = self.batch_poll.poll(0)
            now = time.monotonic_ns()
            for fd, _events in ready:
                client = self.batched.get(fd)
                if client is None:
                    continue
                try:
                    data = client.sock.recv(BATCH_READ)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as error:
                    self.forget(client)
                    client.lost(error)
                    continue
                if data:
                    client.received(data, now)
                else:
                    self.forget(client)
                    client.lost(None)

    def forget(self, client: Client) -> None:
        """Stop polling a batch reader's socket (before it is closed)."""
        fd = client.sock.fileno()
        if self.batched.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self.batch_poll.unregister(fd)

    async def settle(self, command: Settle) -> dict[str, Any]:
        """Wait until nothing has arrived for ``quiet`` seconds (or time is up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + command.timeout
        quiet = False
        while loop.time() < deadline:
            idle = (time.monotonic_ns() - self.last_rx_ns) / 1e9
            if idle >= command.quiet:
                quiet = True
                break
            await asyncio.sleep(min(0.05, command.quiet - idle))
        return {"quiet": quiet, "bytes_rx": self.bytes_rx, "cpu_s": cpu_seconds()}

    # --- sending

    async def go(self, command: Go) -> dict[str, Any]:
        cpu = cpu_seconds()
        self.holding = self.plan.background
        self.tally.start(command.start_ns)
        self.web_tally.start(command.start_ns)
        senders = [c for c in self.clients if c.plan.rank is not None and c.live_reader]
        end_ns = command.start_ns + int(command.duration * 1e9)
        await asyncio.gather(*(self._send(c, command, end_ns) for c in senders))
        return {"sent": {c.plan.cid: c.sent for c in senders}, "cpu_s": cpu_seconds() - cpu}

    async def _send(self, client: Client, command: Go, end_ns: int) -> None:
        await asyncio.sleep(max(0.0, (command.start_ns - time.monotonic_ns()) / 1e9))
        if command.rate is None:
            await self._flood(client, end_ns)
        else:
            await self._paced(client, command, end_ns)

    async def _room(self, client: Client, end_ns: int) -> bool:
        """Wait for the connection to take more; False if the run ends (or it closes) first."""
        if not client.writable.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.writable.wait(), max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
        return client.writable.is_set() and not client.gone

    def _probe(self, sender: Client) -> Client | None:
        """The reader a flooding sender watches: the newest live one in this process (eager first).

        Every server here serves its clients in the order they came, so the newest
        is the last to get each line: when it has a line, (nearly) everyone has.
        """
        readers = [c for c in self.clients if c is not sender and c.live_reader]
        return max(readers, key=lambda c: (c.plan.eager, c.plan.cid), default=None)

    async def _progress(self, probe: Client, end_ns: int) -> None:
        if probe.progress is None:
            probe.progress = asyncio.Event()
        probe.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(probe.progress.wait(), max(0.0, (end_ns - time.monotonic_ns()) / 1e9))

    async def _flood(self, client: Client, end_ns: int) -> None:
        """As fast as the server takes it, with at most ``window`` lines not yet at the probe (0: no limit).

        The window keeps the server saturated while bounding what queues up in
        kernel buffers (megabytes on loopback), so the run measures the rate the
        server sustains rather than how much its buffers hold, and drains quickly.
        """
        size, cid = self.plan.line_bytes, client.plan.cid
        probe = self._probe(client)
        while time.monotonic_ns() < end_ns and not client.gone:
            if not await self._room(client, end_ns):
                continue
            if probe is not None and probe.gone:
                probe = self._probe(client)
            window = self.plan.window  # 0: a blast, as fast as the server reads
            if probe is not None and window and client.sent - probe.reader.last.get(cid, -1) > window:
                await self._progress(probe, end_ns)
                continue
            now, first = time.monotonic_ns(), client.sent
            assert client.transport is not None
            client.transport.write(b"".join(make_line(cid, first + i, now, size) for i in range(FLOOD_BATCH)))
            client.sent += FLOOD_BATCH
            await asyncio.sleep(0)

    async def _paced(self, client: Client, command: Go, end_ns: int) -> None:
        """Open loop at a fixed rate, sender starts spread evenly over one interval.

        The line carries the time it is written, except when the server held the
        sender back (TCP said wait): then it carries the time it was due, so that
        wait counts as latency instead of vanishing (no "coordinated omission").
        """
        assert command.rate is not None and client.plan.rank is not None
        interval = int(1e9 / command.rate)
        due = command.start_ns + client.plan.rank * interval // max(1, command.senders)
        size, cid = self.plan.line_bytes, client.plan.cid
        while due < end_ns and not client.gone:
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            held = not client.writable.is_set()
            if held and not await self._room(client, end_ns):
                break
            stamp = due if held else time.monotonic_ns()
            assert client.transport is not None
            client.transport.write(make_line(cid, client.sent, stamp, size))
            client.sent += 1
            due += interval

    # --- counting

    async def drain(self, command: Drain) -> dict[str, Any]:
        """Wait for every reader to have every line, or for arrivals to stop."""
        self.holding = False
        loop = asyncio.get_running_loop()
        total = sum(command.sent.values())
        readers = [c for c in self.clients if not c.plan.stalled]  # lost ones included: their loss counts
        expected = sum(total - command.sent.get(c.plan.cid, 0) for c in readers)
        deadline = loop.time() + command.timeout
        seen, since = self.tally.delivered, loop.time()
        while self.tally.delivered < expected and loop.time() < deadline:
            await asyncio.sleep(0.02)
            if self.tally.delivered != seen:
                seen, since = self.tally.delivered, loop.time()
            elif loop.time() - since >= command.idle:
                break
        tally = self.tally
        counts = [c.reader.delivered for c in readers]
        return {
            "readers": len(readers),
            "eager": sum(c.plan.eager for c in readers),
            "expected": expected,
            "delivered": tally.delivered,
            "duplicates": tally.duplicates,
            "own": tally.own,
            "garbled": tally.garbled,
            "mangled": self.mangled,
            "hist": {i: int(n) for i, n in enumerate(tally.hist.tolist()) if n},
            "web_readers": sum(c.plan.web for c in readers),
            "web_hist": {i: int(n) for i, n in enumerate(self.web_tally.hist.tolist()) if n},
            "web_max_us": self.web_tally.max_us,
            "max_us": tally.max_us,
            "first_ns": tally.first_ns,
            "last_ns": tally.last_ns,
            "timeline": tally.timeline,
            "reader_min": min(counts, default=0),
            "reader_max": max(counts, default=0),
            "disconnects": dict(self.disconnects),
            "bytes_rx": self.bytes_rx,
            "cpu_s": cpu_seconds(),
        }

    def close(self) -> None:
        if self.batch_task is not None:
            self.batch_task.cancel()
        for client in self.clients:
            client.hang_up()
        self.batch_poll.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out joining"
    text = str(error) or type(error).__name__
    return re.sub(r"\d+\.\d+\.\d+\.\d+:\d+|\[Errno \d+\] ", "", text)[:100]


async def _serve(conn: Connection, plan: WorkerPlan) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(plan)
    try:
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if isinstance(command, Close):
                break
            conn.send(("ok", await worker.run(command)))
    finally:
        worker.close()
        await asyncio.sleep(0)


def worker_main(conn: Connection, plan: WorkerPlan) -> None:
    """Entry point of a worker process."""
    raise_file_limit()
    if plan.background:
        try:  # SCHED_IDLE: below every ordinary process, however nice
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):  # not Linux
            os.nice(19)
    try:
        asyncio.run(_serve(conn, plan))
    except (EOFError, KeyboardInterrupt):
        pass
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
