"""Under load, faults and hostile input the room keeps working, loses nothing, admits no stranger.

Each test here fails without the protection it names.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatroom.config import parse_settings
from formatting.sanitize import strip_sgr
from harness import (
    PYTHON,
    ROOT,
    WAIT,
    RawClient,
    ServerProcess,
    StartServer,
    client_process,
    find_cells,
    process_fds,
    process_rss_kib,
    process_threads,
    reset,
    screen_of,
    wait_until,
)
from protocol import messages


class Readers:
    """Many sockets read by one thread, counting the payload lines each receives."""

    def __init__(self, clients: list[RawClient], marker: str) -> None:
        self.got: dict[int, list[int]] = {i: [] for i in range(len(clients))}
        self._marker = re.compile(re.escape(marker) + r"(\d+)")
        self._clients = clients
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        buffers = {}
        for i, client in enumerate(self._clients):
            client.sock.setblocking(False)
            selector.register(client.sock, selectors.EVENT_READ, i)
            buffers[i] = client.buffer
        while not self._stop.is_set():
            for key, _ in selector.select(0.1):
                i = key.data
                try:
                    data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                *complete, buffers[i] = (buffers[i] + data).split(b"\n")
                for line in complete:
                    found = self._marker.search(line.decode("utf-8", "replace"))
                    if found:
                        self.got[i].append(int(found.group(1)))
        selector.close()

    def wait_all(self, count: int, timeout: float = 30) -> None:
        wait_until(lambda: all(len(v) >= count for v in self.got.values()), timeout, f"{count} lines each")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- 1. slow consumers ------------------------------------------------------------


def test_a_reader_that_never_reads_is_cut_and_everyone_else_gets_everything(
    start_server: StartServer,
) -> None:
    server = start_server("--approve", "all", "--flood-rate", "0", "--max-outbox", "65536")
    stalled_sock = socket.socket()
    stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled_sock.connect((server.host, server.port))
    stalled = RawClient(server.host, server.port, stalled_sock)
    stalled.send_name("stalled")
    stalled.expect(messages.WELCOME)  # ...and from now on it never reads again
    readers = [server.connect(f"reader{i}") for i in range(50)]
    counting = Readers(readers, "payload-")
    sender = readers[0]
    # Far more than the stalled client's buffers can hold, sent as fast as the
    # live readers take it: they keep reading, so they must lose nothing.
    lines, chunk, filler = 1000, 50, "x" * 900
    for start in range(0, lines, chunk):
        sender.sock.sendall("".join(f"payload-{i} {filler}\n" for i in range(start, start + chunk)).encode())
        counting.wait_all(start + chunk)
    counting.stop()
    for got in counting.got.values():
        assert got == list(range(lines))  # every line, once, in order
    server.log.wait_for(r"leave stalled .*not reading: over 65536 bytes waiting")
    assert server.log.text().count("not reading") == 1
    watcher = server.connect("watcher")
    watcher.send("/who")
    assert "stalled" not in watcher.expect(messages.WHO)


def test_a_reader_slower_than_a_blast_loses_nothing_and_is_not_cut_off(start_server: StartServer) -> None:
    """Back-pressure: the blaster is slowed to the slow reader's pace instead of the reader being cut."""
    server = start_server(
        "--approve", "all", "--flood-rate", "0", "--backlog", "32768", "--max-outbox", "262144"
    )
    slow_sock = socket.socket()
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_sock.connect((server.host, server.port))
    slow = RawClient(server.host, server.port, slow_sock)
    slow.send_name("slow")
    slow.expect(messages.WELCOME)
    blaster = server.connect("blaster")
    threading.Thread(target=lambda: all(iter(lambda: blaster.sock.recv(65536), b"")), daemon=True).start()
    lines, filler = 4000, "y" * 200  # about 1 MB: four times what may wait for the slow reader
    blast = threading.Thread(
        target=blaster.sock.sendall,
        args=("".join(f"blast-{i} {filler}\n" for i in range(lines)).encode(),),
        daemon=True,
    )
    blast.start()
    got: list[int] = []
    while len(got) < lines:
        slow_sock.settimeout(WAIT)
        data = slow_sock.recv(1024)  # a reader on a slow link: small reads, a pause after each
        assert data, f"cut off after {len(got)} lines"
        slow.buffer += data
        *complete, slow.buffer = slow.buffer.split(b"\n")
        got += [int(found.group(1)) for line in complete if (found := re.search(rb"blast-(\d+) ", line))]
        time.sleep(0.0005)
    blast.join(WAIT)
    assert got == list(range(lines))  # every line, once, in order
    assert "not reading" not in server.log.text()


# --- 2. bounded input ---------------------------------------------------------------


def test_megabytes_without_newline_cost_no_memory_and_the_connection_survives(
    open_server: ServerProcess,
) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    before = process_rss_kib(open_server.proc.pid)
    chunk = b"A" * (1 << 20)
    for _ in range(20):
        alice.sock.sendall(chunk)
    alice.sock.sendall(b"\nstill works\n")
    assert messages.LINE_TOO_LONG.match(alice.expect(messages.LINE_TOO_LONG)) == {"limit": "4096"}
    bob.expect("<alice> still works")
    assert process_rss_kib(open_server.proc.pid) - before < 8 * 1024  # 20 MiB went through
    assert not any("AAAA" in line for line in bob.lines)


def test_a_line_just_over_the_limit_is_refused_and_one_at_it_passes(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--max-line", "100")
    alice = server.connect("alice")
    alice.send("y" * 101)
    alice.expect(messages.LINE_TOO_LONG)
    alice.send("z" * 100)
    alice.expect("z" * 100)


# --- 3. flood control ---------------------------------------------------------------


def test_flood_control_delays_a_paste_but_delivers_it_whole_and_in_order(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--flood-rate", "20", "--flood-burst", "5")
    paster, watcher = server.connect("paster"), server.connect("watcher")
    paste = "".join(f"pasted line {i}\n" for i in range(45))
    started = time.monotonic()
    paster.sock.sendall(paste.encode())
    for i in range(45):
        watcher.expect(rf"<paster> pasted line {i}$")
    # 5 at once, then 20 per second: the bucket cannot be faster than this.
    assert time.monotonic() - started >= (45 - 5) / 20 * 0.9
    server.log.wait_for(r"flood control: slowing down paster")


def test_flood_control_can_be_switched_off(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--flood-rate", "0")
    paster, watcher = server.connect("paster"), server.connect("watcher")
    paster.sock.sendall("".join(f"fast {i}\n" for i in range(200)).encode())
    watcher.expect(r"<paster> fast 199$")
    assert "flood control" not in server.log.text()


# --- 4. terminal injection ------------------------------------------------------------


def test_escape_sequences_and_forged_lines_render_harmlessly(open_server: ServerProcess) -> None:
    mallory, bob = open_server.connect("mallory"), open_server.connect("bob")
    attack = (
        "\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b[31mred?\x9b1m "
        "\r[00:00:00] <bob> I owe mallory money\u2028[00:00:01] <bob> really \u202eevil\u200b"
    )
    mallory.sock.sendall(attack.encode() + b"\n")
    # The CR ends a line (a raw terminal's Enter), so the forgery is a second line: mallory's own.
    lines = [bob.expect(messages.MESSAGE), bob.expect(messages.MESSAGE)]
    for line in lines:
        fields = messages.MESSAGE.match(line)
        assert fields is not None and fields["name"] == "mallory"
        assert strip_sgr(line).count("\x1b") == 0 and "\r" not in line and "\u2028" not in line
    screen = screen_of("before\r\n" + "\r\n".join(lines) + "\r\n")
    assert screen.display[0].rstrip() == "before"  # nothing was cleared or moved
    assert screen.title == ""
    assert screen.display[1].rstrip().endswith("<mallory> red?")  # the sequences went whole
    assert "<mallory> [00:00:00] <bob> I owe mallory money[00:00:01] <bob> really evil" in screen.display[2]
    assert screen.display[3].strip() == ""  # no line was forged
    assert not any(c.fg == "red" for c in find_cells(screen, "red?"))


def test_invalid_utf8_becomes_replacement_characters(open_server: ServerProcess) -> None:
    alice, bob = open_server.connect("alice"), open_server.connect("bob")
    alice.sock.sendall(b"bad \xfe\x80 bytes \xc3\n")
    assert messages.MESSAGE.match(bob.expect(messages.MESSAGE)) == {
        "name": "alice",
        "text": "bad \ufffd\ufffd bytes \ufffd",
    }


def test_no_one_can_pass_as_another_user_or_the_server(open_server: ServerProcess) -> None:
    _alice = open_server.connect("alice")
    for spoof in ("ａｌｉｃｅ", "ALİCE".replace("İ", "I"), "аlice", "Server", "OPERATOR", "ali\u200bce"):
        client = RawClient(open_server.host, open_server.port)
        client.send_name(spoof)
        client.expect(messages.NAME_REJECTED)
        client.close()


# --- 5. admission limits ----------------------------------------------------------------


def test_room_full(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--max-clients", "2")
    _a, _b = server.connect("a"), server.connect("b")
    third = RawClient(server.host, server.port)
    assert messages.ROOM_FULL.match(third.expect(messages.ROOM_FULL)) == {"limit": "2"}
    third.expect_closed()
    server.log.wait_for(r"refused 127\.0\.0\.1:\d+: .*room is full")


def test_too_many_connections_from_one_address(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--max-per-ip", "2", "--exempt", "")
    _a, _b = RawClient(server.host, server.port), RawClient(server.host, server.port)
    _a.read_until_prompt()
    _b.read_until_prompt()
    third = RawClient(server.host, server.port)
    third.expect(messages.TOO_MANY_FROM_HOST)
    third.expect_closed()


def test_loopback_is_exempt_from_the_per_address_limit_by_default(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--max-per-ip", "2")
    clients = [server.connect(f"local{i}") for i in range(4)]
    assert len(clients) == 4


def test_approval_queue_limit(start_server: StartServer) -> None:
    server = start_server("--max-pending", "2")
    waiting = []
    for name in ("w1", "w2"):
        client = RawClient(server.host, server.port)
        client.send_name(name)
        client.expect(messages.WAITING)
        waiting.append(client)
    third = RawClient(server.host, server.port)
    third.send_name("w3")
    third.expect(messages.QUEUE_FULL)
    third.expect_closed()
    server.log.wait_for(r"refused w3 .*approval queue full")


def from_address(server: ServerProcess, source: str) -> RawClient:
    """A client connecting from another loopback address (the whole of 127.0.0.0/8 is this machine)."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((server.host, server.port))
    return RawClient(server.host, server.port, sock)


def test_one_address_cannot_fill_the_approval_queue(start_server: StartServer) -> None:
    """With the defaults (16 waiting), one address holds 4 places and its /24 network 8."""
    server = start_server()
    crowd = []
    for i in range(4):
        client = RawClient(server.host, server.port)
        client.send_name(f"crowd{i}")
        client.expect(messages.WAITING)
        crowd.append(client)
    one_more = RawClient(server.host, server.port)
    one_more.send_name("crowd4")
    refusal = messages.QUEUE_SHARE_FULL.match(one_more.expect(messages.QUEUE_SHARE_FULL))
    assert refusal == {"where": "address", "limit": "4"}
    one_more.expect_closed()
    server.log.wait_for(r"refused crowd4 \(127\.0\.0\.1:\d+\): approval queue: 4 waiting from 127\.0\.0\.1")
    neighbour = from_address(server, "127.0.0.2")
    neighbour.send_name("neighbour")
    neighbour.expect(messages.WAITING)  # someone else can still be asked...
    server.log.wait_for(r"waiting neighbour \(127\.0\.0\.2:")
    server.console("/approve neighbour")
    neighbour.expect(messages.WELCOME)  # ...and let in
    others = []
    for i in range(3, 7):  # the network's share: 4 waiting from .1, so 4 more from .3 to .6 fill 8
        other = from_address(server, f"127.0.0.{i}")
        other.send_name(f"other{i}")
        other.expect(messages.WAITING)
        others.append(other)
    last = from_address(server, "127.0.0.7")
    last.send_name("last")
    assert messages.QUEUE_SHARE_FULL.match(last.expect(messages.QUEUE_SHARE_FULL)) == {
        "where": "network",
        "limit": "8",
    }


def test_approval_timeout(start_server: StartServer) -> None:
    server = start_server("--approval-timeout", "1")
    client = RawClient(server.host, server.port)
    client.send_name("ignored")
    client.expect(messages.WAITING)
    client.expect(messages.APPROVAL_TIMEOUT)
    client.expect_closed()
    server.log.wait_for(r"refused ignored .*operator did not answer in time")
    server.console("y")
    server.log.wait_for(r"no one is waiting")


def test_name_timeout(start_server: StartServer) -> None:
    server = start_server("--name-timeout", "1")
    silent = RawClient(server.host, server.port)
    silent.expect(messages.NAME_TIMEOUT)
    silent.expect_closed()


def test_name_length_limit(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--max-name", "5")
    client = RawClient(server.host, server.port)
    client.send_name("sixsix")
    assert "longer than 5 characters" in client.expect(messages.NAME_REJECTED)
    client.send_name("five5")
    client.expect(messages.WELCOME)


def test_nothing_reaches_or_leaves_an_unapproved_client(server: ServerProcess) -> None:
    alice = server.connect("alice")
    lurker = RawClient(server.host, server.port)
    lurker.send_name("lurker")
    lurker.expect(messages.WAITING)
    lurker.send("/private alice let me in")
    lurker.send("/who")
    alice.send("room talk")
    alice.expect("room talk")
    lurker.expect(messages.NOT_YET)
    lurker.expect(messages.NOT_YET)
    assert not any("room talk" in line or "alice" in strip_sgr(line) for line in lurker.drain())
    assert not any("let me in" in line for line in alice.drain())


# --- 6. fault survival -------------------------------------------------------------------


def settle(server: ServerProcess, threads: int, fds: int) -> None:
    pid = server.proc.pid
    seen: list[tuple[int, int]] = []

    def back() -> bool:
        seen.append((process_threads(pid), process_fds(pid)))
        return seen[-1][0] <= threads and seen[-1][1] <= fds

    try:
        wait_until(back, 20, f"threads back to {threads} and fds back to {fds}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen {seen[-1][0]} and {seen[-1][1]}") from None


def test_hundreds_of_abrupt_resets_leave_no_trace(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--flood-rate", "0")
    pid = server.proc.pid
    witness = server.connect("witness")
    threads, fds = process_threads(pid), process_fds(pid)
    sockets = []
    for i in range(300):
        client = RawClient(server.host, server.port)
        stage = i % 3
        if stage >= 1:
            client.send_name(f"r{i}")
        if stage == 2:
            client.expect(messages.WELCOME)
            client.sock.sendall(b"half a li")  # vanishes mid-line
        sockets.append(client.sock)
    wait_until(lambda: process_threads(pid) >= threads + 300, what="every connection to have its thread")
    for sock in sockets:
        reset(sock)
    settle(server, threads, fds)
    witness.send("still standing")
    witness.expect("<witness> still standing")
    late = server.connect("late")
    late.send("hello")
    witness.expect("<late> hello")
    assert "Traceback" not in server.log.text()


def test_disconnects_while_naming_or_waiting_leave_the_queue_clean(start_server: StartServer) -> None:
    server = start_server("--max-pending-per-ip", "0", "--max-pending-per-net", "0")  # 10 wait from here
    pid = server.proc.pid
    threads, fds = process_threads(pid), process_fds(pid)
    waiting = []
    for i in range(10):
        client = RawClient(server.host, server.port)
        client.send_name(f"q{i}")
        client.expect(messages.WAITING)
        waiting.append(client)
    naming = [RawClient(server.host, server.port) for _ in range(10)]
    for client in naming:
        client.read_until_prompt()
    for client in waiting[::2] + naming[::2]:
        reset(client.sock)
    for client in waiting[1::2] + naming[1::2]:
        client.close()
    settle(server, threads, fds)
    start = len(server.log.lines)
    server.console("/pending")
    server.log.wait_for(r"waiting \(0\): nobody", start=start)


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed")
def test_running_out_of_file_descriptors_pauses_accepting_and_recovers(start_server: StartServer) -> None:
    server = start_server("--approve", "all", "--max-clients", "0", wrapper=("prlimit", "--nofile=48"))
    alice, bob = server.connect("alice"), server.connect("bob")
    flood = [socket.create_connection((server.host, server.port)) for _ in range(60)]
    server.log.wait_for(r"out of file descriptors \(Too many open files\): new connections wait")
    alice.send("still talking")
    bob.expect("<alice> still talking")
    for sock in flood:
        sock.close()
    server.log.wait_for(r"accepting connections again")
    late = server.connect("late")
    late.send("got in")
    alice.expect("<late> got in")
    assert server.log.text().count("out of file descriptors") == 1


def test_half_open_clients_do_not_block_others(start_server: StartServer) -> None:
    server = start_server("--approve", "all")
    silent = [socket.create_connection((server.host, server.port)) for _ in range(20)]  # never speak
    alice, bob = server.connect("alice"), server.connect("bob")
    alice.send("not blocked")
    bob.expect("<alice> not blocked")
    for sock in silent:
        sock.close()


GHOST = """
import socket, sys, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
data = b""
while b"Your name: " not in data:
    data += sock.recv(4096)
sock.sendall(b"ghost\\n")
while b"Welcome, ghost" not in data:
    data += sock.recv(4096)
print("in", flush=True)
time.sleep(120)
"""


@pytest.fixture
def test_host() -> Iterator[str]:
    """A second host: a network namespace joined to this one by a veth pair.

    Its addresses exist only inside this test's own namespace pair; nothing
    leaves the machine.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace")
    tag = f"{os.getpid() % 100000}"
    ns, outside, inside = f"chat{tag}", f"vo{tag}", f"vi{tag}"
    commands = [
        f"ip netns add {ns}",
        f"ip link add {outside} type veth peer name {inside}",
        f"ip link set {inside} netns {ns}",
        f"ip addr add 10.237.0.1/30 dev {outside}",
        f"ip link set {outside} up",
        f"ip netns exec {ns} ip addr add 10.237.0.2/30 dev {inside}",
        f"ip netns exec {ns} ip link set {inside} up",
    ]
    try:
        for command in commands:
            subprocess.run(command.split(), check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make a network namespace here: {error.stderr.decode().strip()}")
    yield ns
    subprocess.run(["ip", "link", "del", outside], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_a_peer_that_vanishes_from_the_network_is_detected(start_server: StartServer, test_host: str) -> None:
    server = start_server("--host", "10.237.0.1", "--approve", "all", "--keepalive", "1")
    watcher = server.connect("watcher")
    ghost = subprocess.Popen(
        ["ip", "netns", "exec", test_host, sys.executable, "-c", GHOST, server.host, str(server.port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert ghost.stdout is not None and ghost.stdout.readline() == b"in\n"
        watcher.expect(r"ghost joined")
        # The ghost's host drops off the network: no FIN, no RST, just silence.
        subprocess.run(["ip", "netns", "exec", test_host, "ip", "link", "set", f"vi{test_host[4:]}", "down"])
        assert messages.DISCONNECTED.match(watcher.expect(messages.DISCONNECTED, timeout=30)) == {
            "name": "ghost",
            "count": "1",
        }
        server.log.wait_for(r"leave ghost .*connection lost")
    finally:
        ghost.kill()
        ghost.wait()


def keepalive_timers(side: str, port: int) -> str:
    """``ss`` lines for established connections with ``side`` (sport or dport) ``port``."""
    command = ["ss", "-tnoH", "state", "established", f"{side} = :{port}"]
    return subprocess.run(command, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_keepalive_is_armed_on_client_connections(open_server: ServerProcess) -> None:
    _alice = open_server.connect("alice")
    # ss shows the retransmission timer while data is in flight, the keepalive one after.
    wait_until(
        lambda: "timer:(keepalive," in keepalive_timers("sport", open_server.port), what="the keepalive timer"
    )


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_client_py_notices_a_vanished_server_by_keepalive_too(open_server: ServerProcess) -> None:
    bob = client_process(open_server.port, "--name", "bob")
    assert bob.stdin is not None
    try:
        wait_until(
            lambda: "timer:(keepalive," in keepalive_timers("dport", open_server.port),
            what="the client's keepalive timer",
        )
    finally:
        bob.stdin.close()
        bob.wait(WAIT)


# --- 7. persistent history ------------------------------------------------------------------


def test_each_port_keeps_its_own_history_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    rooms = {port: parse_settings(["--port", port]).db for port in ("5555", "6000")}
    assert rooms == {
        "5555": str(tmp_path / "chatroom" / "history-5555.sqlite3"),
        "6000": str(tmp_path / "chatroom" / "history-6000.sqlite3"),
    }


def test_memory_db_keeps_nothing_across_restarts(start_server: StartServer) -> None:
    first = start_server("--approve", "all")
    first.connect("alice").send("ephemeral")
    first.log.wait_for("<alice> ephemeral")
    first.stop()
    second = start_server("--approve", "all")
    late = second.connect("late")
    assert not any(messages.HISTORY_START.matches(line) for line in late.drain())


def test_a_log_reader_that_stops_reading_never_stops_the_room() -> None:
    """``Server.py | something-stuck``: the log backs up, the room and SIGTERM do not."""
    proc = subprocess.Popen(
        [
            PYTHON,
            str(ROOT / "Server.py"),
            "--port",
            "0",
            "--db",
            ":memory:",
            "--approve",
            "all",
            "--flood-rate",
            "0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()  # and then never read again
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert found, first
        port = int(found.group(1))
        alice, bob = RawClient("127.0.0.1", port), RawClient("127.0.0.1", port)
        for client, name in ((alice, "alice"), (bob, "bob")):
            client.send_name(name)
            client.expect(messages.WELCOME)
        # Each line is logged: about 200 KB of log, three times what the pipe holds.
        alice.sock.sendall("".join(f"line {i} of a log nobody reads\n" for i in range(3000)).encode())
        bob.expect(r"<alice> line 2999 of a log nobody reads", timeout=WAIT * 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
        bob.expect(messages.SHUTTING_DOWN)
    finally:
        proc.kill()
        proc.wait()


# --- 8. graceful shutdown ----------------------------------------------------------------------


def test_sigterm_tells_everyone_flushes_history_and_exits_0(
    start_server: StartServer, tmp_path: Path
) -> None:
    db = str(tmp_path / "h.sqlite3")
    server = start_server("--approve", "all", db=db)
    alice = server.connect("alice")
    waiting_room = start_server(db=str(tmp_path / "other.sqlite3"))
    waiter = RawClient(waiting_room.host, waiting_room.port)
    waiter.send_name("waiter")
    waiter.expect(messages.WAITING)
    alice.send("last words")
    alice.expect("last words")
    started = time.monotonic()
    assert server.stop() == 0 and waiting_room.stop() == 0
    assert time.monotonic() - started < 8  # promptly, not after a timeout
    alice.expect(messages.SHUTTING_DOWN)
    waiter.expect(messages.SHUTTING_DOWN)
    alice.expect_closed()
    rows = [line for (line,) in sqlite3.connect(db).execute("SELECT line FROM messages")]
    assert any("last words" in line for line in rows)


def test_sigint_is_a_clean_shutdown_too(open_server: ServerProcess) -> None:
    alice = open_server.connect("alice")
    open_server.proc.send_signal(signal.SIGINT)
    assert open_server.proc.wait(WAIT) == 0
    alice.expect(messages.SHUTTING_DOWN)


# --- 9. TLS ----------------------------------------------------------------------------------


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(paths["cert"]), append=True)
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return {k: str(v) for k, v in paths.items()}


def test_a_tls_session_end_to_end(start_server: StartServer, certificates: dict[str, str]) -> None:
    server = start_server(
        "--approve", "all", "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]
    )
    server.log.wait_for(r"listening on .*\(TLS")
    context = ssl.create_default_context(cafile=certificates["ca"])
    raw = socket.create_connection((server.host, server.port))
    tls_sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")
    alice = RawClient(server.host, server.port, tls_sock)
    alice.send_name("alice")
    alice.expect(messages.WELCOME)

    proc = client_process(server.port, "--name", "bob", "--tls", "--cafile", certificates["ca"])
    out, err = proc.communicate(b"hello over **TLS** \xf0\x9f\x94\x92\n", timeout=WAIT)
    assert proc.returncode == 0, err
    assert "<bob> hello over TLS 🔒" in out.decode()
    assert messages.MESSAGE.match(alice.expect("<bob>")) == {"name": "bob", "text": "hello over TLS 🔒"}


def test_tls_client_refuses_an_untrusted_server(
    start_server: StartServer, certificates: dict[str, str]
) -> None:
    server = start_server(
        "--approve", "all", "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]
    )
    proc = client_process(server.port, "--name", "bob", "--tls")  # system CAs do not know our test CA
    _out, err = proc.communicate(b"", timeout=WAIT)
    assert proc.returncode == 1
    assert "unable to get local issuer certificate: give the CA certificate" in err.decode()
    assert "--cafile" in err.decode()


def test_tls_client_on_a_plain_port_is_told_to_leave_out_tls(open_server: ServerProcess) -> None:
    proc = client_process(open_server.port, "--name", "bob", "--tls")
    _out, err = proc.communicate(b"", timeout=WAIT)
    assert proc.returncode == 1 and "the server does not speak TLS: leave out --tls" in err.decode()


def test_plain_client_on_a_tls_port_is_dropped_and_the_server_carries_on(
    start_server: StartServer, certificates: dict[str, str]
) -> None:
    server = start_server(
        "--approve", "all", "--tls-cert", certificates["cert"], "--tls-key", certificates["key"]
    )
    plain = RawClient(server.host, server.port)
    plain.send("hello?")
    plain.expect(messages.NEEDS_TLS)  # in plain text, so nc and telnet users can read it
    plain.expect_closed()
    server.log.wait_for(r"refused 127\.0\.0\.1:\d+: not TLS")
    context = ssl.create_default_context(cafile=certificates["ca"])
    tls_sock = context.wrap_socket(
        socket.create_connection((server.host, server.port)), server_hostname="localhost"
    )
    ok = RawClient(server.host, server.port, tls_sock)
    ok.send_name("fine")
    ok.expect(messages.WELCOME)


def test_plain_client_py_waiting_on_a_tls_port_is_told_to_add_tls(
    start_server: StartServer, certificates: dict[str, str]
) -> None:
    # Client.py waits for the greeting, so it never speaks first: the server gives the
    # handshake until --name-timeout (at most 10 s), then says why in plain text.
    tls = ("--tls-cert", certificates["cert"], "--tls-key", certificates["key"])
    server = start_server("--approve", "all", "--name-timeout", "1", *tls)
    proc = client_process(server.port, "--name", "bob")
    out, err = proc.communicate(b"", timeout=WAIT)
    assert proc.returncode == 1 and "the server speaks TLS: add --tls" in err.decode()
    assert messages.NEEDS_TLS.matches(out.decode().strip())
    server.log.wait_for(r"refused 127\.0\.0\.1:\d+: no TLS handshake")


def test_plain_tcp_stays_the_default(open_server: ServerProcess) -> None:
    open_server.log.wait_for(r"listening on .*plain TCP")
