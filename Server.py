#!/usr/bin/env python3
"""Server.py - the chat room server.

Starts the listener, the fan-out threads, the room and the operator console,
then waits for SIGINT or SIGTERM to shut down cleanly. The pieces live in
``chatroom/``; ``protocol/`` and ``formatting/`` hold the pure parts.

With ``--processes N`` this process becomes the supervisor of N such
servers, one room and one console (``chatroom.supervisor``); it imports none
of the room, which lives in the processes it starts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import signal
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from chatroom.bus import Bus
from chatroom.config import Settings, parse_settings
from chatroom.logpipe import PipeLog, is_pipe
from chatroom.serverlog import ServerLog
from chatroom.storage import StoreError
from protocol.lines import address

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator

    from chatroom.console import Operator
    from chatroom.private_redis import PrivateRedis
    from chatroom.room import Room
    from chatroom.web.listener import WebServer

log = logging.getLogger("chat")

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: Seconds a shutdown waits for goodbyes to be flushed before closing anyway.
SHUTDOWN_GRACE = 3.0
#: Seconds the supervisor gives its processes to shut down before killing them.
PROCESSES_GRACE = 4 * SHUTDOWN_GRACE
#: What ``serve`` imports, which the supervisor of --processes imports before it forks them.
SERVER_MODULES = (
    "chatroom.access",
    "chatroom.cluster",
    "chatroom.console",
    "chatroom.delivery",
    "chatroom.listener",
    "chatroom.room",
    "chatroom.supervised",
    "chatroom.tls",
    "chatroom.web.listener",
)


def configure_logging(server_log: ServerLog | None = None) -> ServerLog:
    """The log goes to standard output, through a pipe-safe writer when that is a pipe or socket.

    ``server_log``: another destination (a supervised process's link).
    """
    # Records need no thread or process names; asking for the thread's would
    # create a threading object for each client thread (see chatroom.listener).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if server_log is None:
        server_log = ServerLog(
            PipeLog(sys.stdout.fileno()) if is_pipe(sys.stdout.fileno()) else None, SHUTDOWN_GRACE
        )
    log.addHandler(server_log.handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return server_log


def raise_file_limit() -> int:
    """Every client is a file descriptor; take all the kernel allows us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def make_bus(settings: Settings) -> Bus:
    """SQLite on our own, or a room shared through Redis; redis-py is imported only for the latter."""
    from chatroom.bus import LocalBus
    from chatroom.storage import Store

    if not settings.redis:
        return LocalBus(Store(settings.db, settings.history, log.warning, settings.keep_lines))
    try:
        from chatroom.cluster import ClusterBus
    except ModuleNotFoundError as error:
        if error.name != "redis":
            raise
        raise ValueError(
            "--redis needs redis-py: pip install 'chatroom[cluster]' (or: pip install redis)"
        ) from None
    return ClusterBus(settings)


def web_front_door(settings: Settings, room: Room, tls: ssl.SSLContext | None) -> WebServer | None:
    """The page and its WebSocket on ``--web-port``, if asked for."""
    from chatroom.web.listener import WebServer

    if settings.web_port is None:
        return None
    with web_port_named(settings):
        return WebServer(settings, room, tls)


@contextlib.contextmanager
def web_port_named(settings: Settings) -> Iterator[None]:
    """A web port already in use is reported as --web-port's (``why_not`` takes it for --port's)."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        raise ValueError(
            f"--web-port {settings.web_port} on {settings.host} is already in use: "
            "choose another, or 0 for a free one"
        ) from None


def wait_for_signal(stop: threading.Event) -> None:
    signum = signal.sigwait(STOP_SIGNALS)
    log.info("%s received", signal.Signals(signum).name)
    stop.set()


def why_not(error: Exception, settings: Settings) -> str:
    """Why the server could not start, with the way out when there is an obvious one."""
    ssl = sys.modules.get("ssl")
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return (
            f"port {settings.port} on {settings.host} is already in use (another server?): "
            "choose another with --port, or --port 0 for a free one"
        )
    if isinstance(error, socket.gaierror):
        return f"--host {settings.host}: {error.strerror}; it wants an address or a name of this machine"
    if isinstance(error, OSError) and error.errno == errno.EADDRNOTAVAIL:
        return f"--host {settings.host} is not an address of this machine (0.0.0.0 or :: listens on all)"
    if ssl is not None and isinstance(error, ssl.SSLError):
        return f"--tls-cert and --tls-key want a PEM certificate chain and its private key ({error})"
    if isinstance(error, OSError) and error.filename is not None and error.filename == settings.allow_file:
        return f"--allow-file {settings.allow_file}: {error.strerror}; it wants a text file, one name a line"
    if isinstance(error, StoreError):
        return f"--db {error}"
    return str(error)


def run_console(operator: Operator, stop: threading.Event, announce: Callable[[], None]) -> None:
    """The operator's console, on the terminal or reading piped commands; ``announce`` logs the start.

    Every thread exists before the "listening" line (tests count them from
    there), but piped commands are read after it, so their replies follow it.
    """
    from chatroom.console import run_interactive

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    listening = threading.Event()
    if not interactive:

        def console() -> None:
            listening.wait()
            operator.run_lines(sys.stdin)

        threading.Thread(target=console, name="console", daemon=True).start()
    announce()
    listening.set()
    if interactive:
        run_interactive(operator, stop)


def serve(settings: Settings) -> int:
    """One server: this process serves the room (on its own, or as one of ``--processes``)."""
    from chatroom.access import Access, read_allow_file
    from chatroom.console import Operator, RoomDesk
    from chatroom.delivery import Fanout, Limits
    from chatroom.listener import ChatServer
    from chatroom.room import Room
    from chatroom.supervised import RelayedLog, SupervisorLink
    from chatroom.tls import server_context

    # No signal handlers: a handler runs between two bytecodes of the main
    # thread, and if that thread is inside ``stop.wait()`` holding the Event's
    # own lock, ``stop.set()`` in the handler deadlocks. Instead the stop
    # signals stay blocked in every thread (threads inherit the mask, so block
    # before any starts, the log's own included) and one thread takes them with sigwait().
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    supervised = settings.supervised >= 0
    relay = RelayedLog(settings.supervised, SHUTDOWN_GRACE) if supervised else None
    server_log = configure_logging(relay)
    files = raise_file_limit()
    threading.stack_size(settings.thread_stack_kib * 1024)
    stop = threading.Event()
    threading.Thread(target=wait_for_signal, args=(stop,), name="signals", daemon=True).start()
    link = SupervisorLink(settings.supervised, relay, stop.set) if relay is not None else None
    try:
        tls = None
        if settings.tls_cert and settings.tls_key:
            tls = server_context(settings.tls_cert, settings.tls_key)
        bus = make_bus(settings)
        limits = Limits(settings.backlog, settings.max_outbox, settings.stall_timeout)
        fanout = Fanout(settings.fanout_threads, limits)
        access = Access(bus.bans(), read_allow_file(settings.allow_file))
        # Under a supervisor, it alone appends to the allow-list, once for every process.
        room_settings = replace(settings, allow_file=None) if supervised else settings
        room = Room(room_settings, bus, fanout, access, server_log.chat, bus.registrations())
        if link is not None:
            link.serve(room)
        server = ChatServer(settings, room, tls)
        web = web_front_door(settings, room, tls)
        bus.start(room, settings.node or f"{socket.gethostname()}:{server.server_address[1]}")
    except (OSError, ValueError, StoreError) as error:
        log.error("cannot start: %s", why_not(error, settings))
        server_log.flush()  # a process forked by a supervisor ends without the exit handlers
        return 1

    fanout.start()
    threading.Thread(target=server.serve_forever, name="listener", daemon=True).start()
    if web is not None:
        threading.Thread(target=web.serve_forever, name="web", daemon=True).start()
    if link is not None:
        link.ready(bus.node or "")
    else:

        def announce() -> None:
            log.info(
                "listening on %s (%s, approve: %s, history: %d lines in %s, file limit %d)",
                server.address,
                "TLS" if tls else "plain TCP",
                settings.approve,
                settings.history,
                bus.where,
                files,
            )
            if web is not None:
                log.info("web page at %s (and the room over its WebSocket)", web.url)

        run_console(Operator(RoomDesk(room), stop.set), stop, announce)
    stop.wait()

    log.info("shutting down")
    for listener in (server, web):
        if listener is not None:
            listener.shutdown()
            listener.server_close()
    bus.close(room.close(), SHUTDOWN_GRACE / 2)
    fanout.stop(SHUTDOWN_GRACE)
    log.info("stopped")
    server_log.flush()
    return 0


def room_redis(settings: Settings) -> tuple[str, str, PrivateRedis | None]:
    """The Redis the processes share: URL, how the log names it, the private one if started.

    Raises ValueError, saying why, when there is none.
    """
    import importlib.util

    from chatroom import private_redis

    if importlib.util.find_spec("redis") is None:
        raise ValueError(
            "--processes needs redis-py: pip install 'chatroom[cluster]' (or: pip install redis)"
        )
    if settings.redis:
        return settings.redis, f"Redis at {settings.redis}", None
    program = private_redis.available()
    if program is None:
        raise ValueError(
            f"--processes {settings.processes} shares the room between its processes through Redis: "
            "give --redis URL, or install redis-server (Debian: apt-get install redis-server) "
            "and the server starts a private one"
        )
    try:
        redis = private_redis.PrivateRedis(program)
    except OSError as error:
        raise ValueError(f"could not start a private redis-server: {error}") from None
    return redis.url, f"a private redis-server ({redis.socket})", redis


def supervise(settings: Settings, argv: list[str]) -> int:
    """``--processes N``: start N servers on one port, one room, and run the one console for all."""
    import gc
    import importlib

    from chatroom.console import Operator
    from chatroom.supervisor import ProcessesDesk, StartError, Supervisor, reserve_port

    # Until the processes are forked this process runs no thread (see Supervisor.fork_all),
    # so what goes wrong meanwhile is logged once the log, which has a thread, exists.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    redis: PrivateRedis | None = None
    reserved: socket.socket | None = None
    web: socket.socket | None = None
    supervisor: Supervisor | None = None
    problem = ""
    try:
        redis_url, where, redis = room_redis(settings)
        reserved = reserve_port(settings.host, settings.port)
        if settings.web_port is not None:
            with web_port_named(settings):
                web = reserve_port(settings.host, settings.web_port)
        # What every process imports, imported once here and frozen (the collector never
        # touches it again), so the processes share it until they write to it.
        for module in SERVER_MODULES:
            importlib.import_module(module)
        gc.freeze()
        port = reserved.getsockname()[1]
        supervisor = Supervisor(settings, Path(__file__).resolve(), argv, redis_url, serve)
        supervisor.fork_all(settings.node or f"{socket.gethostname()}:{port}", reserved, web)
    except (OSError, ValueError) as error:
        problem = why_not(error, settings)
    configure_logging()
    stop = threading.Event()
    threading.Thread(target=wait_for_signal, args=(stop,), name="signals", daemon=True).start()
    if supervisor is not None:
        try:
            supervisor.start()
        except StartError as error:
            problem = str(error)
            supervisor.stop(PROCESSES_GRACE)
    if problem or supervisor is None or reserved is None:
        log.error("cannot start: %s", problem)
        for sock in (reserved, web):
            if sock is not None:
                sock.close()
        if redis is not None:
            redis.stop()
        return 1

    listening = address(*reserved.getsockname()[:2])

    def announce() -> None:
        log.info(
            "listening on %s (%d processes sharing the room through %s; %s, approve: %s, history: %d lines)",
            listening,
            settings.processes,
            where,
            "TLS" if settings.tls_cert else "plain TCP",
            settings.approve,
            settings.history,
        )
        if web is not None:
            scheme = "https" if settings.tls_cert else "http"
            log.info(
                "web page at %s://%s/ (and the room over its WebSocket)",
                scheme,
                address(*web.getsockname()[:2]),
            )

    try:
        run_console(Operator(ProcessesDesk(supervisor, settings), stop.set), stop, announce)
        stop.wait()
        log.info("shutting down %d processes", settings.processes)
    finally:  # whatever happened here, the processes and the private Redis go too
        supervisor.stop(PROCESSES_GRACE)
        for sock in (reserved, web):
            if sock is not None:
                sock.close()
        if redis is not None:
            redis.stop()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = parse_settings(argv)
    return supervise(settings, argv) if settings.processes > 1 else serve(settings)


if __name__ == "__main__":
    sys.exit(main())
