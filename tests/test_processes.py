"""``Server.py --processes 2``: two processes on one port, one room, one console, end to end.

The server starts its private redis-server; clients connect to the one port
and the kernel hands each connection to one of the processes. A test that
needs people on both connects until it has them, and tells where each landed
from the log (every line a process logs starts with its number).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from formatting.sanitize import strip_sgr
from harness import ROOT, WAIT, RawClient, ServerProcess, wait_until
from protocol import messages

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")

Processes = Callable[..., ServerProcess]


@pytest.fixture
def processes() -> Iterator[Processes]:
    """``processes("--approve", "all")``: Server.py --processes 2, stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = ServerProcess("--processes", "2", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def landed(server: ServerProcess, client: RawClient) -> int:
    """The process that took this connection, from the line it logged."""
    port = client.sock.getsockname()[1]
    found = re.search(
        r"\[(\d+)\] connect ", strip_sgr(server.log.wait_for(rf"\] connect 127\.0\.0\.1:{port} "))
    )
    assert found
    return int(found.group(1))


def one_on_each(server: ServerProcess) -> dict[int, RawClient]:
    """A connection on each process (the others made meanwhile are closed)."""
    on: dict[int, RawClient] = {}
    for _ in range(40):  # each lands on either process: 40 tries all on one is 2 in a trillion
        client = RawClient(server.host, server.port)
        where = landed(server, client)
        if where in on:
            client.close()
        else:
            on[where] = client
        if len(on) == 2:
            return on
    raise AssertionError("every connection went to the same process")


def join(server: ServerProcess, client: RawClient, name: str) -> RawClient:
    client.send_name(name)
    if "all" not in server.args:
        server.approve(name)
    client.expect(messages.WELCOME)
    return client


def alice_and_bob(processes: Processes) -> tuple[ServerProcess, RawClient, RawClient]:
    """A server that lets everyone in, alice in the room on process 1 and bob on process 2."""
    server = processes("--approve", "all")
    on = one_on_each(server)
    alice, bob = join(server, on[1], "alice"), join(server, on[2], "bob")
    alice.expect("bob joined")
    return server, alice, bob


def node_of(server: ServerProcess, index: int) -> str:
    found = re.search(rf"process {index} \(pid \d+\) serves as node (\S+)", server.log.text())
    assert found
    return found.group(1)


def pid_of(server: ServerProcess, index: int) -> int:
    """The pid of process ``index``, the latest to serve under that number."""
    found = re.findall(rf"process {index} \(pid (\d+)\) (?:serves|takes over)", server.log.text())
    assert found
    return int(found[-1])


def test_people_on_different_processes_talk_and_send_private_messages_both_ways(processes: Processes) -> None:
    server, alice, bob = alice_and_bob(processes)
    alice.send("hello from one")
    bob.expect("hello from one")
    bob.send("hello from two")
    alice.expect("hello from two")
    alice.send("/private bob psst")
    assert messages.PRIVATE_FROM.match(bob.expect(messages.PRIVATE_FROM)) == {"name": "alice", "text": "psst"}
    bob.send("/reply back at you")
    assert messages.PRIVATE_FROM.match(alice.expect(messages.PRIVATE_FROM)) == {
        "name": "bob",
        "text": "back at you",
    }
    server.log.wait_for(rf"\[1\] private message alice -> bob on {re.escape(node_of(server, 2))} ")
    server.log.wait_for(r"\[2\] private message bob -> alice on ")
    assert "psst" not in server.log.text() and "back at you" not in server.log.text()


def test_names_stay_unique_across_processes(processes: Processes) -> None:
    server = processes("--approve", "all")
    on = one_on_each(server)
    alice = join(server, on[1], "Alice")
    spoof = on[2]
    for name in ("alice", "ALICE", "аlice"):  # the last one has a Cyrillic a
        spoof.send_name(name)
        assert messages.NAME_REJECTED.match(spoof.expect(messages.NAME_REJECTED)) == {
            "reason": messages.NAME_TAKEN.format(name=name)
        }
    alice.send("/nick alicia")
    alice.expect(messages.RENAMED)
    wait_until(lambda: "Welcome" in answer(spoof, "alice"), what="the old name to be free on process 2")


def answer(client: RawClient, name: str) -> str:
    client.send_name(name)
    return strip_sgr(client.expect(r"can't be used|Welcome, "))


def test_the_one_console_answers_join_requests_from_either_process(processes: Processes) -> None:
    server = processes()
    on = one_on_each(server)
    on[1].send_name("first")
    server.asked_about("first")  # first in the queue, on process 1
    on[2].send_name("second")
    server.log.wait_for(r"\[2\] waiting second ")
    start = len(server.log.lines)
    server.console("/pending")
    server.log.wait_for(r"waiting \(2\):", start=start)
    server.log.wait_for(r"  first   127\.0\.0\.1:\d+  waiting \d+s", start=start)
    server.log.wait_for(r"  second  127\.0\.0\.1:\d+  waiting \d+s", start=start)
    server.console("/approve second")  # any request, by name, whichever process holds it
    on[2].expect(messages.WELCOME)
    server.console("y")  # the oldest
    assert messages.WELCOME.match(on[1].expect(messages.WELCOME))["name"] == "first"  # type: ignore[index]
    start = len(server.log.lines)
    server.console("/who")
    server.log.wait_for(r"in the room \(2\):", start=start)
    server.log.wait_for(
        rf"  first   127\.0\.0\.1:\d+  on {re.escape(node_of(server, 1))}  connected ", start=start
    )
    server.log.wait_for(
        rf"  second  127\.0\.0\.1:\d+  on {re.escape(node_of(server, 2))}  connected ", start=start
    )
    late = RawClient(server.host, server.port)
    late.send_name("late")
    server.refuse("late")
    late.expect(messages.REFUSED)
    late.expect_closed()


def test_kick_reaches_the_process_that_holds_them(processes: Processes) -> None:
    server, alice, bob = alice_and_bob(processes)
    server.console("/kick bob spamming")
    assert messages.KICKED.match(bob.expect(messages.KICKED)) == {"reason": ": spamming"}
    bob.expect_closed()
    assert messages.KICKED_NOTICE.match(alice.expect(messages.KICKED_NOTICE)) == {"name": "bob", "count": "1"}
    server.log.wait_for(r"\[2\] leave bob \(127\.0\.0\.1:\d+\): kicked by the operator: spamming")
    server.console("/kick nobody")
    server.log.wait_for(r"no one called 'nobody' to kick")


def test_a_process_killed_is_noticed_logged_and_replaced(processes: Processes) -> None:
    server, alice, bob = alice_and_bob(processes)
    dead = pid_of(server, 2)
    os.kill(dead, signal.SIGKILL)
    server.log.wait_for(rf"process 2 \(pid {dead}\) killed by SIGKILL; .*starting a new one")
    bob.expect_closed()  # the kernel closed the connections it held
    server.log.wait_for(r"process 2 \(pid \d+\) takes over as node ")
    assert pid_of(server, 2) != dead
    again = RawClient(server.host, server.port)  # bob comes back under his name at once
    again.send_name("bob")
    again.expect(messages.WELCOME)
    alice.expect("bob joined")  # whoever has seen the notice finds him in /who
    alice.send("/who")
    assert messages.WHO.match(alice.expect(messages.WHO)) == {"count": "2", "names": "alice, bob"}
    again.send("I am back")
    alice.expect("I am back")
    assert "Traceback" not in server.log.text()


def test_sigterm_stops_every_process_and_the_private_redis(processes: Processes) -> None:
    server = processes("--approve", "all")
    alice = server.connect("alice")
    found = re.search(r"through a private redis-server \((\S+)\)", server.log.text())
    assert found
    place = Path(found.group(1)).parent
    pids = [pid_of(server, 1), pid_of(server, 2)]
    assert place.exists()
    assert server.stop() == 0
    alice.expect(messages.SHUTTING_DOWN)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not place.exists()
    server.log.wait_for(r"\[1\] stopped")
    server.log.wait_for(r"\[2\] stopped")


def test_without_redis_processes_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--processes", "2"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": str(tmp_path)},  # no redis-server to be found
    )
    assert result.returncode == 1
    assert (
        "cannot start: --processes 2 shares the room between its processes through Redis: " in result.stdout
    )
    assert "give --redis URL, or install redis-server" in result.stdout


def test_browsers_reach_every_process_and_a_registered_name_is_known_to_all(processes: Processes) -> None:
    from web_harness import WebClient

    server = processes("--web-port", "0")
    browsers: dict[int, tuple[str, WebClient]] = {}
    for attempt in range(40):  # each lands on either process, as terminals do
        name, browser = f"web{attempt}", WebClient(server)
        browser.join(name)
        assert " via the web - let in? [y/n]" in server.asked_about(name)
        where = re.search(rf"\[(\d+)\] waiting {name} ", server.log.wait_for(rf"\] waiting {name} "))
        assert where
        server.console("y")
        browser.expect("Welcome")
        if int(where.group(1)) in browsers:
            browser.close()
        else:
            browsers[int(where.group(1))] = (name, browser)
        if len(browsers) == 2:
            break
    (first, one), (_second, two) = browsers[1], browsers[2]
    one.send("across the processes")
    assert two.expect("Message", "across the processes")["name"] == first
    one.send("/register a long secret")
    one.expect("Notice", "registered")
    server.console("/registered")
    server.log.wait_for(rf"registered names \(1\): {first}$")


def test_a_ctrl_c_at_the_terminal_reaches_the_supervisor_alone(processes: Processes) -> None:
    """As when the server runs in a terminal with its log piped (``Server.py --processes 2 | tee``)."""
    server = processes("--approve", "all")
    alice = server.connect("alice")
    pids = [pid_of(server, 1), pid_of(server, 2)]
    group = os.getpgid(server.proc.pid)
    assert all(os.getpgid(pid) != group for pid in pids)  # else the terminal would signal them too
    assert all(os.getsid(pid) == os.getsid(server.proc.pid) for pid in pids)  # one job, one session
    os.killpg(group, signal.SIGINT)  # what the terminal does on Ctrl-C: the foreground group
    assert server.proc.wait(WAIT) == 0
    alice.expect(messages.SHUTTING_DOWN)
    server.log.wait_for(r"\d\d:\d\d:\d\d SIGINT received")
    for index in (1, 2):
        server.log.wait_for(rf"\[{index}\] SIGTERM received")  # from the supervisor
        server.log.wait_for(rf"\[{index}\] stopped")
    assert "] SIGINT received" not in server.log.text()
