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
import sqlite3
import ssl
import sys
import threading

from chatroom.bus import Bus, LocalBus
from chatroom.config import Settings, parse_settings
from chatroom.console import Operator, run_interactive
from chatroom.delivery import Fanout
from chatroom.listener import ChatServer
from chatroom.logpipe import PipeLog, is_pipe
from chatroom.room import Room
from chatroom.storage import Store
from chatroom.tls import server_context

log = logging.getLogger("chat")

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: Seconds a shutdown waits for goodbyes to be flushed before closing anyway.
SHUTDOWN_GRACE = 3.0


class ConsoleHandler(logging.Handler):
    """Log lines to whatever ``sys.stdout`` is now (the console may redirect it above its prompt).

    When standard output is a pipe, lines go through a ``PipeLog``, so a reader
    that stops reading never stops the room (see ``chatroom.logpipe``).
    """

    def __init__(self, pipe: PipeLog | None) -> None:
        super().__init__()
        self.pipe = pipe

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self.pipe is not None:  # never with the interactive console: that needs a terminal
                self.pipe.write(line.encode("utf-8", "backslashreplace"))
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """At exit (``logging.shutdown``): a reader that has stalled gets a few seconds, not forever."""
        if self.pipe is not None:
            self.pipe.flush(SHUTDOWN_GRACE)


def configure_logging() -> None:
    # Records need no thread or process names; asking for the thread's would
    # create a threading object for each client thread (see chatroom.listener).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = ConsoleHandler(PipeLog(sys.stdout.fileno()) if is_pipe(sys.stdout.fileno()) else None)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def raise_file_limit() -> int:
    """Every client is a file descriptor; take all the kernel allows us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def make_bus(settings: Settings) -> Bus:
    """SQLite on our own, or a room shared through Redis; redis-py is imported only for the latter."""
    if not settings.redis:
        return LocalBus(Store(settings.db), settings.history)
    try:
        from chatroom.cluster import ClusterBus
    except ModuleNotFoundError as error:
        if error.name != "redis":
            raise
        raise ValueError(
            "--redis needs redis-py: pip install 'chatroom[cluster]' (or: pip install redis)"
        ) from None
    return ClusterBus(settings)


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
    if isinstance(error, sqlite3.Error) or (isinstance(error, OSError) and error.filename is not None):
        return f"--db {settings.db}: {error}; it wants an SQLite file it can create or open, or :memory:"
    return str(error)


def serve(settings: Settings) -> int:
    # No signal handlers: a handler runs between two bytecodes of the main
    # thread, and if that thread is inside ``stop.wait()`` holding the Event's
    # own lock, ``stop.set()`` in the handler deadlocks. Instead the stop
    # signals stay blocked in every thread (threads inherit the mask, so block
    # before any starts, the log's own included) and one thread takes them with sigwait().
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    configure_logging()
    files = raise_file_limit()
    threading.stack_size(settings.thread_stack_kib * 1024)
    stop = threading.Event()
    threading.Thread(target=wait_for_signal, args=(stop,), name="signals", daemon=True).start()
    try:
        tls = None
        if settings.tls_cert and settings.tls_key:
            tls = server_context(settings.tls_cert, settings.tls_key)
        bus = make_bus(settings)
        fanout = Fanout(settings.fanout_threads)
        room = Room(settings, bus, fanout)
        server = ChatServer(settings, room, tls)
        bus.start(room, settings.node or f"{socket.gethostname()}:{server.server_address[1]}")
    except (OSError, ValueError, sqlite3.Error) as error:
        log.error("cannot start: %s", why_not(error, settings))
        return 1

    operator = Operator(room, stop.set)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    fanout.start()
    threading.Thread(target=server.serve_forever, name="listener", daemon=True).start()
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
    listening.set()
    if interactive:
        run_interactive(operator, stop)
    stop.wait()

    log.info("shutting down")
    server.shutdown()
    server.server_close()
    room.close()  # closes the bus too
    fanout.stop(SHUTDOWN_GRACE)
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    return serve(parse_settings(argv))


if __name__ == "__main__":
    sys.exit(main())
