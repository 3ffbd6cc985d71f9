#!/usr/bin/env python3
"""Server.py - the chat room server.

Starts the listener, the fan-out threads, the room and the operator console,
then waits for SIGINT or SIGTERM to shut down cleanly. The pieces live in
``chatroom/``; ``protocol/`` and ``formatting/`` hold the pure parts.
"""

from __future__ import annotations

import errno
import logging
import resource
import signal
import socket
import ssl
import sys
import threading

from chatroom.access import Access, read_allow_file
from chatroom.bus import Bus, LocalBus
from chatroom.config import Settings, parse_settings
from chatroom.console import Operator, RoomDesk, run_interactive
from chatroom.delivery import Fanout, Limits
from chatroom.listener import ChatServer
from chatroom.logpipe import PipeLog, is_pipe
from chatroom.room import Room
from chatroom.serverlog import ServerLog
from chatroom.storage import Store, StoreError
from chatroom.tls import server_context
from chatroom.web.listener import WebServer

log = logging.getLogger("chat")

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: Seconds a shutdown waits for goodbyes to be flushed before closing anyway.
SHUTDOWN_GRACE = 3.0


def configure_logging() -> ServerLog:
    """The log goes to standard output, through a pipe-safe writer when that is a pipe or socket."""
    # Records need no thread or process names; asking for the thread's would
    # create a threading object for each client thread (see chatroom.listener).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
    if settings.web_port is None:
        return None
    try:
        return WebServer(settings, room, tls)
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
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return (
            f"port {settings.port} on {settings.host} is already in use (another server?): "
            "choose another with --port, or --port 0 for a free one"
        )
    if isinstance(error, socket.gaierror):
        return f"--host {settings.host}: {error.strerror}; it wants an address or a name of this machine"
    if isinstance(error, OSError) and error.errno == errno.EADDRNOTAVAIL:
        return f"--host {settings.host} is not an address of this machine (0.0.0.0 or :: listens on all)"
    if isinstance(error, ssl.SSLError):
        return f"--tls-cert and --tls-key want a PEM certificate chain and its private key ({error})"
    if isinstance(error, OSError) and error.filename is not None and error.filename == settings.allow_file:
        return f"--allow-file {settings.allow_file}: {error.strerror}; it wants a text file, one name a line"
    if isinstance(error, StoreError):
        return f"--db {error}"
    return str(error)


def serve(settings: Settings) -> int:
    # No signal handlers: a handler runs between two bytecodes of the main
    # thread, and if that thread is inside ``stop.wait()`` holding the Event's
    # own lock, ``stop.set()`` in the handler deadlocks. Instead the stop
    # signals stay blocked in every thread (threads inherit the mask, so block
    # before any starts, the log's own included) and one thread takes them with sigwait().
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    server_log = configure_logging()
    files = raise_file_limit()
    threading.stack_size(settings.thread_stack_kib * 1024)
    stop = threading.Event()
    threading.Thread(target=wait_for_signal, args=(stop,), name="signals", daemon=True).start()
    try:
        tls = None
        if settings.tls_cert and settings.tls_key:
            tls = server_context(settings.tls_cert, settings.tls_key)
        bus = make_bus(settings)
        limits = Limits(settings.backlog, settings.max_outbox, settings.stall_timeout)
        fanout = Fanout(settings.fanout_threads, limits)
        access = Access(bus.bans(), read_allow_file(settings.allow_file))
        room = Room(settings, bus, fanout, access, server_log.chat, bus.registrations())
        server = ChatServer(settings, room, tls)
        web = web_front_door(settings, room, tls)
        bus.start(room, settings.node or f"{socket.gethostname()}:{server.server_address[1]}")
    except (OSError, ValueError, StoreError) as error:
        log.error("cannot start: %s", why_not(error, settings))
        return 1

    operator = Operator(RoomDesk(room), stop.set)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    fanout.start()
    threading.Thread(target=server.serve_forever, name="listener", daemon=True).start()
    if web is not None:
        threading.Thread(target=web.serve_forever, name="web", daemon=True).start()
    listening = threading.Event()
    if not interactive:
        # Every thread exists before the "listening" line (tests count them from
        # there), but piped commands are read after it, so their replies follow it.
        def console() -> None:
            listening.wait()
            operator.run_lines(sys.stdin)

        threading.Thread(target=console, name="console", daemon=True).start()
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
    listening.set()
    if interactive:
        run_interactive(operator, stop)
    stop.wait()

    log.info("shutting down")
    for listener in (server, web):
        if listener is not None:
            listener.shutdown()
            listener.server_close()
    bus.close(room.close(), SHUTDOWN_GRACE / 2)
    fanout.stop(SHUTDOWN_GRACE)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve(parse_settings(argv))


if __name__ == "__main__":
    sys.exit(main())
