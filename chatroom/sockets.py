"""Socket options both programs set: dead-peer detection that never drops a quiet peer."""

from __future__ import annotations

import contextlib
import socket

KEEPALIVE_PROBES = 4


def keepalive_options(idle: int) -> list[tuple[int, str, int]]:
    """TCP keepalive: after ``idle`` quiet seconds, probe every quarter of that.

    A peer that is merely quiet answers the probes and stays forever; one that
    vanished (a dropped network, a crashed machine) misses ``KEEPALIVE_PROBES``
    of them and the connection fails. ``TCP_USER_TIMEOUT`` gives data that is
    never acknowledged the same deadline (on Linux it also governs the
    keepalive verdict).
    """
    idle = max(1, idle)
    interval = max(1, idle // 4)
    return [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", idle),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", interval),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", KEEPALIVE_PROBES),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", (idle + interval * KEEPALIVE_PROBES) * 1000),
    ]


def set_options(sock: socket.socket, options: list[tuple[int, str, int]]) -> None:
    """Set what this platform has; never raises (the peer may already be gone)."""
    for level, name, value in options:
        if hasattr(socket, name):
            with contextlib.suppress(OSError):
                sock.setsockopt(level, getattr(socket, name), value)
