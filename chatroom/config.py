"""Every option and limit of the server: its name, default, flag and help, once."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

from protocol.framing import DEFAULT_MAX_LINE
from protocol.names import MAX_NAME_LENGTH

DEFAULT_PORT = 5555
LOOPBACK = ("127.0.0.1", "::1")


def default_db_path() -> str:
    """Where history lives unless ``--db`` says otherwise (XDG state directory)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "chatroom", "history.sqlite3")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    approve: str = "ask"
    allow_file: str | None = None
    history: int = 50
    db: str = ""
    log_chat: bool = True
    max_line: int = DEFAULT_MAX_LINE
    max_name: int = MAX_NAME_LENGTH
    max_outbox: int = 256 * 1024
    flood_rate: float = 4.0
    flood_burst: int = 8
    max_clients: int = 1000
    max_pending: int = 16
    max_per_ip: int = 16
    exempt: tuple[str, ...] = LOOPBACK
    keepalive: int = 60
    name_timeout: float = 120.0
    approval_timeout: float = 300.0
    tls_cert: str | None = None
    tls_key: str | None = None
    fanout_threads: int = 2
    thread_stack_kib: int = 256
    sndbuf: int = 128 * 1024


def _positive(kind: type[int] | type[float]):  # type: ignore[no-untyped-def]
    def convert(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
        return value

    convert.__name__ = kind.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="Server.py",
        description="A chat room for terminals. Every newcomer is let in by the operator "
        "at this console; clients connect with Client.py, nc or telnet.",
        epilog="Exit status: 0 after a clean shutdown (SIGINT, SIGTERM or /quit at the "
        "console), 1 if the server could not start, 2 on bad options.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=d.host, help="address to listen on")
    net.add_argument("--port", type=int, default=d.port, help="TCP port; 0 picks a free one")
    net.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    net.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")

    room = parser.add_argument_group("room")
    room.add_argument(
        "--approve",
        choices=("ask", "all", "allowlist"),
        default=d.approve,
        help="ask the operator about each newcomer not on the allow-list; let all in; "
        "or let in only the allow-list",
    )
    room.add_argument(
        "--allow-file",
        metavar="PATH",
        help="names that join without asking, one per line; /allow NAME appends to it",
    )
    room.add_argument("--history", type=_positive(int), default=d.history, help="lines replayed on join")
    room.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"SQLite file for history ({default_db_path()}); ':memory:' keeps nothing",
    )
    room.add_argument(
        "--no-log-chat",
        dest="log_chat",
        action="store_false",
        help="do not print public messages in the server log",
    )

    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-line", type=_positive(int), default=d.max_line, help="bytes per line")
    limits.add_argument(
        "--max-outbox",
        type=_positive(int),
        default=d.max_outbox,
        help="bytes waiting for a client before it is cut off as not reading",
    )
    limits.add_argument(
        "--flood-rate", type=_positive(float), default=d.flood_rate, help="lines/s per client; 0 = off"
    )
    limits.add_argument("--flood-burst", type=_positive(int), default=d.flood_burst, help="lines at once")
    limits.add_argument("--max-clients", type=_positive(int), default=d.max_clients, help="connections")
    limits.add_argument(
        "--max-pending", type=_positive(int), default=d.max_pending, help="clients waiting for approval"
    )
    limits.add_argument(
        "--max-per-ip", type=_positive(int), default=d.max_per_ip, help="connections per address; 0 = any"
    )
    limits.add_argument(
        "--exempt",
        default=",".join(d.exempt),
        metavar="IPS",
        help="comma-separated addresses exempt from --max-per-ip",
    )
    limits.add_argument(
        "--keepalive",
        type=_positive(int),
        default=d.keepalive,
        help="seconds of silence before TCP keepalive probes a client; a dead one is dropped "
        "after twice that (idle clients that answer are never dropped)",
    )
    limits.add_argument("--max-name", type=_positive(int), default=d.max_name, help="characters in a name")
    limits.add_argument(
        "--name-timeout", type=_positive(float), default=d.name_timeout, help="seconds to give a name"
    )
    limits.add_argument(
        "--approval-timeout",
        type=_positive(float),
        default=d.approval_timeout,
        help="seconds to wait for the operator",
    )

    tuning = parser.add_argument_group("tuning")
    tuning.add_argument(
        "--fanout-threads", type=_positive(int), default=d.fanout_threads, help="threads that send"
    )
    tuning.add_argument(
        "--sndbuf",
        type=_positive(int),
        default=d.sndbuf,
        help="kernel send buffer per client in bytes (0 = kernel autotuning, up to MBs each)",
    )
    tuning.add_argument(
        "--thread-stack-kib",
        type=_positive(int),
        default=d.thread_stack_kib,
        help="stack size of each client thread",
    )
    return parser


def parse_settings(argv: list[str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        build_parser().error("--tls-cert and --tls-key go together")
    values = vars(args)
    values["db"] = values["db"] if values["db"] is not None else default_db_path()
    values["exempt"] = tuple(ip.strip() for ip in values["exempt"].split(",") if ip.strip())
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})
