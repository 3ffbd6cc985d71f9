"""``Server.py --processes N``: N server processes on one port, one room, one console.

Why processes: at 10,000 clients a line is 10,000 ``send()`` calls, and the
threads of one Python process make them one at a time (each takes the GIL
back). N processes make them on N cores at once. Each is a whole server
(``Server.py`` started with ``--supervised FD``) that listens on the same
port with ``SO_REUSEPORT``, so the kernel spreads new connections among
them, and they share the room through Redis exactly as separate servers do
(``chatroom.cluster``): the ``--redis`` URL given, or a private redis-server
(``chatroom.private_redis``). Process I is node ``NODE-I``.

The supervisor (this module, in the process the operator started) serves
no one itself. It starts the processes, watches them, writes the one log and
runs the one console:

* Each process has one end of a socket pair (``chatroom.supervised`` says
  what travels on it). Its log arrives there as records, and one thread here
  (the *relay*) writes them into this process's log as they come, each line
  prefixed with the process's number, so the log is one, in order.
* Who waits for the operator arrives as each process's queue; ``ProcessesDesk``
  merges them into one queue, oldest first, so ``y``/``n`` answer the oldest
  request whichever process holds it, ``/approve NAME`` the one holding NAME,
  and the prompt and the status bar are the same as on a server on its own.
* The other commands are requests to the processes: ``/kick`` to all of them
  (the one that has the person acts), ``/ban`` and ``/unban`` to all (each
  removes whoever it covers at once; the change reaches other servers
  through Redis), ``/who`` to all (each lists its people with their idle
  time), ``/say`` to one (the room hears it once), ``/allow`` to all (this
  process alone appends to ``--allow-file``).

A process that dies (a crash, ``kill -9``) closes its end of the link; the
relay notices at once, logs it and starts a new one under the same node
name, which frees the names the dead one held (``chatroom.cluster``), so its
people can come back under them at once. They have to come back themselves:
their connections belonged to the dead process and the kernel closed them
with it, so nothing can be said to them any more; ``Client.py`` says the
connection was lost. A process that dies young is restarted after a delay
that doubles (up to ``MAX_RESTART_DELAY``), so a fault at start does not
spin.

Stopping (SIGINT, SIGTERM, ``/quit``): every process is sent SIGTERM and shuts
down as a server on its own does (its people are told), then the private
Redis is stopped. Processes run in process groups of their own, so a Ctrl-C at
the terminal reaches the supervisor only, which stops them in that order; if the
supervisor itself is killed, each process sees its link close and shuts down.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from chatroom.access import append_allow_file
from chatroom.config import Settings
from chatroom.console import Seen, Waiting, not_kicked
from chatroom.rules import Via
from protocol.names import name_key

log = logging.getLogger("chat")

#: How long the processes have to start (import, join the room in Redis, listen).
START_TIMEOUT = 60.0
#: How long a request from the console waits for the processes' answers.
REQUEST_TIMEOUT = 10.0
#: A process that dies within this long of being ready is restarted after a growing delay.
YOUNG = 10.0
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
#: How old the room's count in the console's status bar may be.
COUNT_EVERY = 1.0


def encode(message: Sequence[object]) -> bytes:
    """A message on the link as the line that carries it (``chatroom.supervised`` lists them)."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class StartError(Exception):
    """The processes could not all be started (the message says which and why)."""


@dataclass(frozen=True)
class Queued:
    """Someone waiting for the operator in one of the processes (``console.Waiting``)."""

    process: int
    key: str
    name: str
    address: str
    connected_at: float
    since: float  # began to wait
    via: Via


def how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Forked:
    """A process forked from this one: what the supervisor needs of ``subprocess.Popen``, for it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        # The relay and a stop wait for the same process: one reaps it, both learn how it ended.
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class Worker:
    """One server process and the supervisor's end of its link."""

    index: int
    node: str
    proc: subprocess.Popen[bytes] | Forked
    link: socket.socket
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None
    pid: int = 0
    buffer: bytes = b""
    queue: list[Queued] = field(default_factory=list)
    last_words: str = ""  # its last log line, to say why it could not start
    send_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ready(self) -> bool:
        return self.ready_at is not None


@dataclass
class _Request:
    waiting_for: set[int]  # process indexes
    answers: dict[int, Any] = field(default_factory=dict)
    done: Callable[[dict[int, Any]], None] | None = None


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        program: Path,
        argv: Sequence[str],
        redis_url: str,
        serve: Callable[[Settings], int],
    ) -> None:
        """``program`` and ``argv``: how this server was started, which a process started again is too.

        ``serve``: what a process forked at the start runs (``Server.serve``).
        """
        self.settings = settings
        self.port = 0  # set by fork_all()
        self.web_port: int | None = None  # set by fork_all(), with --web-port
        self._serve = serve
        self._program = program
        self._argv = list(argv)
        self._redis_url = redis_url
        self._workers: dict[int, Worker] = {}  # by index; the live ones
        self._by_link: dict[int, Worker] = {}  # by the link's fd
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Condition()  # guards everything here that the relay shares
        self._requests: dict[int, _Request] = {}
        self._ids = itertools.count(1)
        self._restarts: dict[int, float] = {}  # index -> when to start it again (monotonic)
        self._delay: dict[int, float] = {}  # index -> the next restart delay while it dies young
        self._stopping = False
        self._base = ""  # node names are BASE-1, BASE-2...
        self._failed: dict[int, str] = {}  # index -> why it ended before serving
        self._relay = threading.Thread(target=self._run, name="relay", daemon=True)
        self.on_queue_change: Callable[[], None] = lambda: None

    # --- starting and stopping ---------------------------------------------------------------------

    def fork_all(self, base: str, reserved: socket.socket, web: socket.socket | None) -> None:
        """Fork every process, each to serve as node BASE-I on the ports ``reserved`` and ``web`` hold.

        Call it before this process starts any thread (a fork copies only the
        thread that forks, and any lock another one held stays locked in the
        child). Whatever is imported and frozen by then is shared with the
        processes, copy-on-write, until one of them writes to a page.
        """
        self.port, self._base = reserved.getsockname()[1], base
        self.web_port = web.getsockname()[1] if web is not None else None
        for index in range(1, self.settings.processes + 1):
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                ours.close()
                self._become(index, theirs, [s for s in (reserved, web) if s is not None])
            theirs.close()
            self._add(Worker(index, self._node(index), Forked(pid), ours, pid=pid))

    def _become(self, index: int, link: socket.socket, reserved: list[socket.socket]) -> NoReturn:
        """In a forked child: let go of the supervisor's things and serve; never returns."""
        code = 1
        try:
            for worker in self._workers.values():
                worker.link.close()
            self._selector.close()
            self._wake_r.close()
            self._wake_w.close()
            for sock in reserved:
                sock.close()
            os.setpgid(0, 0)  # a Ctrl-C at the terminal is for the supervisor alone (see _spawn)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)  # its log goes on the link; stderr stays, for a crash
            os.close(devnull)
            code = self._serve(self._settings_for(index, link.fileno()))
        finally:
            os._exit(code)

    def _settings_for(self, index: int, link: int) -> Settings:
        return replace(
            self.settings,
            processes=1,
            port=self.port,
            web_port=self.web_port,
            redis=self._redis_url,
            node=self._node(index),
            supervised=link,
        )

    def _node(self, index: int) -> str:
        return f"{self._base}-{index}"

    def start(self) -> None:
        """Relay what the processes say, and wait until each serves; raises ``StartError``."""
        self._relay.start()
        deadline = time.monotonic() + START_TIMEOUT
        with self._lock:
            while not all(w.ready for w in self._workers.values()):
                dead = [i for i in range(1, self.settings.processes + 1) if i not in self._workers]
                if dead or time.monotonic() > deadline:
                    why = self._failed.get(dead[0], "") if dead else f"not serving within {START_TIMEOUT:g}s"
                    failed = dead[0] if dead else min(i for i, w in self._workers.items() if not w.ready)
                    self._stopping = True
                    raise StartError(f"process {failed} could not start: {why}")
                self._lock.wait(0.1)

    def stop(self, timeout: float) -> None:
        """SIGTERM every process, wait for each to end (their last log lines are relayed), kill stragglers."""
        with self._lock:
            self._stopping = True
            self._restarts.clear()
            workers = list(self._workers.values())
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.info("process %d (pid %d) did not stop in time: killing it", worker.index, worker.pid)
                worker.proc.kill()
                worker.proc.wait()
        self._wake()
        if self._relay.is_alive():
            self._relay.join(2.0)

    def _spawn(self, index: int) -> None:
        """Start a process again, afresh: by now this one has threads, and must not fork."""
        ours, theirs = socket.socketpair()
        settings = self._settings_for(index, theirs.fileno())
        argv = [sys.executable, str(self._program), *self._argv, "--processes", "1", "--port", str(self.port)]
        argv += ["--redis", self._redis_url, "--node", settings.node, "--supervised", str(theirs.fileno())]
        argv += ["--fanout-threads", str(settings.fanout_threads)]
        if self.web_port is not None:
            argv += ["--web-port", str(self.web_port)]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # its log comes on the link; stderr stays ours, for a crash
                pass_fds=[theirs.fileno()],
                # A process group of its own, so a Ctrl-C at the terminal is for the supervisor
                # alone; not a session of its own, which Linux's autogroup would give a share
                # of the CPU of its own, as if each process were another user's job.
                process_group=0,
            )
        finally:
            theirs.close()
        self._add(Worker(index, settings.node, proc, ours, pid=proc.pid))

    def _add(self, worker: Worker) -> None:
        worker.link.settimeout(REQUEST_TIMEOUT)  # sends wait at most this; reads only follow the selector
        with self._lock:
            self._workers[worker.index] = worker
            self._by_link[worker.link.fileno()] = worker
            self._selector.register(worker.link, selectors.EVENT_READ, worker)
        self._wake()

    # --- requests from the console -----------------------------------------------------------------

    def ready(self) -> list[int]:
        with self._lock:
            return sorted(i for i, w in self._workers.items() if w.ready)

    def nodes(self) -> set[str]:
        """The node names of the processes."""
        return {self._node(i) for i in range(1, self.settings.processes + 1)}

    def queue(self) -> list[Queued]:
        with self._lock:
            entries = [q for w in self._workers.values() for q in w.queue]
        return sorted(entries, key=lambda q: q.since)

    def ask(self, what: str, *args: object, to: Sequence[int] | None = None) -> dict[int, Any]:
        """Ask processes (``to``, else every one that is ready); their answers by process, when all came."""
        got: dict[int, Any] = {}
        finished = threading.Event()

        def done(answers: dict[int, Any]) -> None:
            got.update(answers)
            finished.set()

        self.ask_later(done, what, *args, to=to)
        finished.wait(REQUEST_TIMEOUT)
        return got

    def ask_later(
        self,
        done: Callable[[dict[int, Any]], None],
        what: str,
        *args: object,
        to: Sequence[int] | None = None,
    ) -> None:
        """Ask without waiting; ``done`` gets the answers (on the relay's thread, or at once if none)."""
        targets = list(to) if to is not None else self.ready()
        with self._lock:
            request_id = next(self._ids)
            workers = [self._workers[i] for i in targets if i in self._workers and self._workers[i].ready]
            request = _Request({w.index for w in workers}, done=done)
            self._requests[request_id] = request
        for worker in workers:
            try:
                with worker.send_lock:
                    worker.link.sendall(encode(["ask", request_id, what, list(args)]))
            except OSError:
                self._answered(request_id, worker.index, None)  # it is dying: the relay will see
        self._answered(request_id, None, None)

    def _answered(self, request_id: int, index: int | None, answer: Any) -> None:
        with self._lock:
            request = self._requests.get(request_id)
            if request is None:
                return
            if index is not None and index in request.waiting_for:
                request.waiting_for.discard(index)
                request.answers[index] = answer
            if request.waiting_for:
                return
            del self._requests[request_id]
        if request.done is not None:
            request.done(request.answers)

    # --- the relay ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping and not self._workers:
                    return
                now = time.monotonic()
                due = [i for i, at in self._restarts.items() if at <= now]
                for index in due:
                    del self._restarts[index]
                later = min(self._restarts.values(), default=None)
            for index in due:
                self._spawn(index)
            timeout = None if later is None else max(0.0, later - time.monotonic())
            for key, _events in self._selector.select(timeout):
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                    continue
                self._read(key.data)

    def _read(self, worker: Worker) -> None:
        try:
            data = worker.link.recv(1 << 16)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost(worker)
            return
        *lines, worker.buffer = (worker.buffer + data).split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("[%d] %s", worker.index, line.decode("utf-8", "replace"))
                continue
            self._handle(worker, message)

    def _handle(self, worker: Worker, message: list[Any]) -> None:
        kind = message[0]
        if kind == "log":
            _kind, at, text = message
            worker.last_words = text
            record = log.makeRecord(
                log.name, logging.INFO, __file__, 0, "[%d] %s", (worker.index, text), None
            )
            record.created = at
            log.handle(record)
        elif kind == "queue":
            with self._lock:
                worker.queue = [
                    Queued(worker.index, key, name, address, connected, since, Via[via])
                    for key, name, address, connected, since, via in message[1]
                ]
            self.on_queue_change()
        elif kind == "reply":
            self._answered(message[1], worker.index, message[2])
        elif kind == "ready":
            _kind, worker.pid, node = message
            again = worker.index in self._delay or worker.index in self._failed
            with self._lock:
                worker.ready_at = time.monotonic()
                self._lock.notify_all()
            log.info(
                "process %d (pid %d) %s node %s",
                worker.index,
                worker.pid,
                "takes over as" if again else "serves as",
                node,
            )

    def _lost(self, worker: Worker) -> None:
        """Its link closed: the process has ended (or is ending). Start a new one unless stopping."""
        self._selector.unregister(worker.link)
        worker.link.close()
        try:
            returncode = worker.proc.wait(5.0)
        except subprocess.TimeoutExpired:  # closed the link but lives on: it is of no use
            worker.proc.kill()
            returncode = worker.proc.wait()
        with self._lock:
            del self._workers[worker.index]
            self._by_link = {fd: w for fd, w in self._by_link.items() if w is not worker}
            had_queue = bool(worker.queue)
            pending = [rid for rid, r in self._requests.items() if worker.index in r.waiting_for]
            stopping = self._stopping
            self._lock.notify_all()
        for request_id in pending:
            self._answered(request_id, worker.index, None)
        if had_queue:
            self.on_queue_change()
        ended = how_it_ended(returncode)
        if stopping:
            if returncode not in (0, -signal.SIGTERM):
                log.info("process %d (pid %d) %s", worker.index, worker.pid, ended)
            return
        if not worker.ready:
            self._failed[worker.index] = f"{ended}: {worker.last_words or 'no log'}"
        young = worker.ready_at is None or time.monotonic() - worker.ready_at < YOUNG
        delay = self._delay.get(worker.index, FIRST_RESTART_DELAY) if young else 0.0
        self._delay[worker.index] = min(MAX_RESTART_DELAY, max(FIRST_RESTART_DELAY, delay * 2))
        log.warning(
            "process %d (pid %d) %s; the connections it held closed with it (its people can reconnect, "
            "under the same names); starting a new one%s",
            worker.index,
            worker.pid,
            ended,
            f" in {delay:g}s" if delay else "",
        )
        with self._lock:
            self._restarts[worker.index] = time.monotonic() + delay


class ProcessesDesk:
    """The console's desk over every process (``chatroom.console.Desk``)."""

    def __init__(self, supervisor: Supervisor, settings: Settings) -> None:
        self._supervisor = supervisor
        self._settings = settings
        self.approve = settings.approve
        self.on_queue_change: Callable[[], None] = lambda: None
        supervisor.on_queue_change = lambda: self.on_queue_change()
        self._count = 0
        self._counted = 0.0  # when _count was asked for (monotonic)

    def waiting(self) -> list[Queued]:
        return self._supervisor.queue()

    def find_waiting(self, name: str) -> Queued | None:
        key = name_key(name)
        return next((q for q in self.waiting() if q.key == key), None)

    def answer(self, who: Waiting, yes: bool) -> None:
        assert isinstance(who, Queued), "an entry of waiting()"
        self._supervisor.ask("answer", who.key, yes, to=[who.process])

    def in_room(self) -> int:
        """The room's count as last heard (asked again, without waiting, once it is a second old)."""
        now = time.monotonic()
        if now - self._counted > COUNT_EVERY:
            self._counted = now
            ready = self._supervisor.ready()
            if ready:
                self._supervisor.ask_later(self._counted_now, "count", to=ready[:1])
        return self._count

    def _counted_now(self, answers: dict[int, Any]) -> None:
        for count in answers.values():
            if count is not None:
                self._count = count

    def names(self) -> list[str]:
        return [name for names in self._supervisor.ask("names").values() for name in names or ()]

    def who(self) -> list[Seen]:
        ready = self._supervisor.ready()
        answers = self._supervisor.ask("who", False, to=ready[1:])
        answers.update(self._supervisor.ask("who", True, to=ready[:1]))  # one also lists the other servers
        ours = self._supervisor.nodes()
        seen: dict[tuple[str | None, str], Seen] = {}
        for rows in answers.values():
            for row in rows or ():
                person = Seen(*row)
                if person.idle is None and person.node in ours:
                    continue  # one of ours, listed by its own process with its idle time
                seen[(person.node, person.name)] = person
        return list(seen.values())

    def kick(self, name: str, reason: str) -> str | None:
        answers = [a for a in self._supervisor.ask("kick", name, reason).values() if a]
        if any(a[0] == "kicked" for a in answers):
            return None
        ours = self._supervisor.nodes()
        elsewhere = [a[1] for a in answers if a[0] == "elsewhere" and a[1] not in ours]
        return not_kicked(name, elsewhere[0] if elsewhere else None)

    def _everyone_did(self, what: str, target: str) -> list[str]:
        done: dict[str, None] = {}  # each line once, in the order the processes said them
        for _index, lines in sorted(self._supervisor.ask(what, target).items()):
            for line in lines or ():
                done.setdefault(line)
        return list(done)

    def ban(self, target: str) -> list[str]:
        return self._everyone_did("ban", target)

    def unban(self, target: str) -> list[str]:
        return self._everyone_did("unban", target)

    def bans(self) -> list[tuple[str, str]]:
        answers = self._supervisor.ask("bans", to=self._supervisor.ready()[:1])
        return [(kind, value) for bans in answers.values() for kind, value in bans or ()]

    def allow(self, name: str) -> bool:
        added = any(self._supervisor.ask("allow", name).values())
        if added and self._settings.allow_file:
            append_allow_file(self._settings.allow_file, name)
        return added

    def announce(self, text: str) -> None:
        self._supervisor.ask("announce", text, to=self._supervisor.ready()[:1])

    def registered(self) -> list[str]:
        """Asked of one process: the names are kept in Redis, for every process alike."""
        answers = self._supervisor.ask("registered", to=self._supervisor.ready()[:1])
        return [name for names in answers.values() for name in names or ()]

    def unregister(self, name: str) -> list[str]:
        """Done by one process; the others hear of it through Redis, as other servers do."""
        answers = self._supervisor.ask("unregister", name, to=self._supervisor.ready()[:1])
        return [line for lines in answers.values() for line in lines or ()]


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind the port (without listening) so it stays ours while processes come and go; raises OSError.

    With ``SO_REUSEPORT`` on every socket, the processes bind it too; a
    socket that does not listen is never handed a connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
