"""Shared fixtures: a real server on port 0 that the test can approve through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from harness import RedisServer, ServerProcess, StartServer, Terminal

# No per-example time limit: a timing threshold in a unit test only measures
# how busy the machine was (CI shares its two cores with the servers under test).
settings.register_profile("chatroom", deadline=None, print_blob=True)
settings.load_profile("chatroom")


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start ``Server.py --port 0 --db :memory: ARGS...``; every one is stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, db: str = ":memory:", **kwargs: object) -> ServerProcess:
        server = ServerProcess("--db", db, *args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """A server that asks the operator (the test) about every newcomer."""
    return start_server()


@pytest.fixture
def open_server(start_server: StartServer) -> ServerProcess:
    """A server that lets everyone in."""
    return start_server("--approve", "all")


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Programs started in pseudo-terminals by the test; each is closed afterwards."""
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()
