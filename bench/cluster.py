"""``python -m bench.cluster``: what sharing a room through Redis costs, 2 servers against 1.

Self-contained (it does not use the rest of ``bench/``): it starts a
redis-server on a free port, then for each setup the servers, and drives the
same clients at each with a small asyncio load generator in this process:

* ``1 server``: ``Server.py`` on its own (SQLite ``:memory:``, no Redis), today's default;
* ``1 server + Redis``: the same with ``--redis``: every line makes the round trip;
* ``2 servers + Redis``: the clients split evenly between two servers, each
  sender's lines reaching the other server's readers through Redis.

Every client reads; the first ``--senders`` also send. A line carries its
sender, number and send time (``CLOCK_MONOTONIC``, one clock for every process
on the machine). The event loop's readers count lines; one reader per server,
a *probe* in a process of its own, times every line it gets (see ``probe``
for why). Two loads per
setup: a fixed rate (lines/s from all senders together), where latency is the
figure, and a flood (each sender keeps ``--window`` lines in flight, waiting
for its own echo), where deliveries/s is. CPU seconds of the servers and of
Redis are read from /proc. Prints a Markdown table; ``--json`` keeps the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bench.servers import HOST, ROOT, cpu_seconds, free_port

PROMPT = b"Your name: "
PAYLOAD = re.compile(rb" z(\d+)-(\d+)-(\d+)")


class Process:
    """A child process whose output goes to a log file; ``ready`` waits for a line in it."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def ready(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log.read_text(errors="replace"))
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.log.name}: not ready:\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(workdir: Path, name: str, redis_url: str | None) -> tuple[Process, int]:
    argv = [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--approve", "all", "--db", ":memory:"]
    argv += ["--no-log-chat", "--flood-rate", "0", "--max-clients", "0", "--max-per-ip", "0"]
    argv += ["--max-pending", "0"]
    if redis_url:
        argv += ["--redis", redis_url, "--node", name]
    server = Process(argv, workdir / f"{name}.log")
    return server, int(server.ready(r"listening on \S+:(\d+)").group(1))


# --- the load generator -------------------------------------------------------------------


class Lines:
    """Whole lines out of a byte stream (a payload cut between two reads is kept for the next)."""

    def __init__(self) -> None:
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.tail + chunk
        cut = data.rfind(b"\n") + 1
        self.tail = data[cut:]
        return data[:cut]


def join(sock: socket.socket, name: str) -> None:
    """The join flow on a blocking socket: prompt, name, welcome."""
    buffer = b""
    while not buffer.endswith(PROMPT):
        buffer += sock.recv(4096)
    sock.sendall(name.encode() + b"\n")
    while b"Welcome, " not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"{name} was not let in")
        buffer += chunk


def probe(port: int, name: str, control: Connection) -> None:
    """A reader in a process of its own that times every line.

    The asyncio readers share one event loop, which takes a while to get round
    a hundred sockets; timing lines there would measure the generator. A probe
    only waits in recv(), so what it times is the servers (and Redis).
    """
    sock = socket.create_connection((HOST, port))
    join(sock, name)
    control.send("in")
    control.recv()  # go
    latencies: array[int] = array("q")
    lines, expected, deadline = Lines(), -1, float("inf")
    sock.settimeout(0.05)
    while len(latencies) != expected and time.monotonic() < deadline:
        if expected < 0 and control.poll():
            expected, deadline = control.recv(), time.monotonic() + 10.0
        try:
            chunk = sock.recv(262144)
        except TimeoutError:
            continue
        now = time.monotonic_ns()
        latencies.extend(now - int(sent) for _sender, _seq, sent in PAYLOAD.findall(lines.feed(chunk)))
    control.send(latencies.tobytes())
    sock.close()


class Reader:
    """One client of the event loop: joins, then counts the lines it gets (a sender: its echoes)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.deliveries = 0
        self.last_ns = 0
        self.echo: asyncio.Semaphore | None = None  # a flooding sender's window
        self.index = -1  # a sender's own number, to recognise its echo
        self.writer: asyncio.StreamWriter | None = None

    async def join(self, port: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        self.writer = writer
        buffer = b""
        while not buffer.endswith(PROMPT):
            buffer += await reader.read(4096)
        writer.write(self.name.encode() + b"\n")
        buffer = b""
        while b"Welcome, " not in buffer:
            chunk = await reader.read(65536)
            if not chunk:
                raise RuntimeError(f"{self.name} was not let in")
            buffer += chunk
        self.task = asyncio.create_task(self.read(reader))

    async def read(self, reader: asyncio.StreamReader) -> None:
        lines = Lines()
        while chunk := await reader.read(262144):
            data = lines.feed(chunk)
            self.deliveries += data.count(b" z")
            if self.echo is not None:
                mine = f" z{self.index}-".encode()
                for _ in range(data.count(mine)):
                    self.echo.release()
            self.last_ns = time.monotonic_ns()

    def send(self, text: str) -> None:
        assert self.writer is not None
        self.writer.write(text.encode() + b"\n")


@dataclass
class Row:
    setup: str
    load: str
    clients: int
    senders: int
    sent: int
    deliveries: int
    expected: int
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_servers_s: float
    cpu_redis_s: float


async def run_load(
    ports: list[int], probes: list[Connection], args: argparse.Namespace, rate: float | None
) -> tuple[int, int, array[int], float]:
    """Join the clients, round-robin over ``ports``, and send for a while.

    Returns lines sent, deliveries counted, the probes' latencies (ns) and the seconds it took.
    """
    readers = [Reader(f"u{i}") for i in range(args.clients - len(probes))]
    for at in range(0, len(readers), 50):  # a few handshakes at a time
        await asyncio.gather(
            *(r.join(ports[i % len(ports)]) for i, r in enumerate(readers) if at <= i < at + 50)
        )
    await asyncio.sleep(0.5)  # join notices settle
    for r in readers:
        r.deliveries = 0
    for control in probes:
        control.send("go")
    senders, sent = args.senders, [0] * args.senders
    start = time.monotonic()
    end = start + args.duration

    async def steady(i: int) -> None:
        interval = senders / rate
        due = start + i * interval / senders
        while due < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            readers[i].send(f"z{i}-{sent[i]}-{time.monotonic_ns()}")
            sent[i] += 1
            due += interval

    async def flood(i: int) -> None:
        me = readers[i]
        me.index, me.echo = i, asyncio.Semaphore(args.window)
        while time.monotonic() < end:
            await me.echo.acquire()
            me.send(f"z{i}-{sent[i]}-{time.monotonic_ns()}")
            sent[i] += 1
            if sent[i] % 64 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*((steady if rate else flood)(i) for i in range(senders)))
    total = sum(sent)
    deadline = time.monotonic() + 10.0
    while sum(r.deliveries for r in readers) < total * len(readers) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    elapsed = max(r.last_ns for r in readers) / 1e9 - start
    latencies: array[int] = array("q")
    for control in probes:
        control.send(total)
        latencies.frombytes(control.recv())
    for r in readers:
        r.task.cancel()
        if r.writer is not None:
            r.writer.close()
    deliveries = sum(r.deliveries for r in readers) + len(latencies)
    return total, deliveries, latencies, max(elapsed, args.duration)


def percentile(values: array[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def measure(
    workdir: Path,
    setup: str,
    nodes: int,
    redis_url: str | None,
    redis_pid: int | None,
    args: argparse.Namespace,
    rate: float | None,
) -> Row:
    servers = [start_server(workdir, f"{setup.split()[0]}-{chr(97 + i)}", redis_url) for i in range(nodes)]
    ports = [port for _server, port in servers]
    context = mp.get_context("fork")  # nothing runs in this process yet but this thread
    probes, controls = [], []
    try:
        for k, port in enumerate(ports):
            mine, theirs = context.Pipe()
            process = context.Process(target=probe, args=(port, f"probe{k}", theirs), daemon=True)
            process.start()
            probes.append(process)
            controls.append(mine)
            if not mine.poll(15.0) or mine.recv() != "in":
                raise RuntimeError(f"probe{k} could not join")
        before = [cpu_seconds(server.proc.pid) for server, _port in servers]
        redis_before = cpu_seconds(redis_pid) if redis_pid else 0.0
        sent, deliveries, latencies, elapsed = asyncio.run(run_load(ports, controls, args, rate))
        cpu = sum(
            cpu_seconds(server.proc.pid) - b for (server, _port), b in zip(servers, before, strict=True)
        )
        redis_cpu = cpu_seconds(redis_pid) - redis_before if redis_pid else 0.0
    finally:
        for process in probes:
            process.kill()
        for server, _port in servers:
            server.stop()
    return Row(
        setup=setup,
        load=f"{rate:g} lines/s" if rate else f"flood (window {args.window})",
        clients=args.clients,
        senders=args.senders,
        sent=sent,
        deliveries=deliveries,
        expected=sent * args.clients,
        deliveries_per_s=deliveries / elapsed,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        cpu_servers_s=cpu,
        cpu_redis_s=redis_cpu,
    )


def table(rows: list[Row]) -> str:
    out = [
        "| setup | load | deliveries/s | p50 ms | p99 ms | lost | CPU s servers | CPU s Redis |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.setup} | {r.load} | {r.deliveries_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.expected - r.deliveries} | {r.cpu_servers_s:.2f} | {r.cpu_redis_s:.2f} |"
        )
    return "\n".join(out)


SETUPS = (("1 server", 1, False), ("1 server + Redis", 1, True), ("2 servers + Redis", 2, True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="clients in the room, all reading")
    parser.add_argument("--senders", type=int, default=10, help="clients that also send")
    parser.add_argument("--rates", default="100,400", help="fixed loads, lines/s from all senders")
    parser.add_argument("--window", type=int, default=16, help="lines in flight per sender in the flood")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of sending per load")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)
    if args.clients < args.senders + 2:
        parser.error("--clients must leave room for the senders and a probe per server")
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (Debian package redis-server)", file=sys.stderr)
        return 1
    loads: list[float | None] = [float(r) for r in args.rates.split(",") if r.strip()] + [None]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        redis = Process(
            ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
            workdir / "redis.log",
        )
        try:
            redis.ready(r"Ready to accept connections")
            databases = iter(range(16))  # a fresh room (database) for each measurement
            for rate in loads:
                for setup, nodes, shared in SETUPS:
                    url = f"redis://{HOST}:{port}/{next(databases)}" if shared else None
                    row = measure(workdir, setup, nodes, url, redis.proc.pid if shared else None, args, rate)
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
        finally:
            redis.stop()
    sending = f"{args.clients} clients ({args.senders} sending)"
    print(f"\n{sending}, {args.duration:g} s per load, {os.cpu_count()} cores\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
