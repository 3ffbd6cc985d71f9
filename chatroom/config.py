"""Every option and limit of the server: its name, default, flag and help, once."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from protocol.framing import DEFAULT_MAX_LINE
from protocol.names import MAX_NAME_LENGTH

DEFAULT_PORT = 5555
LOOPBACK = ("127.0.0.1", "::1")


def default_db_path(port: int | str = "PORT") -> str:
    """Where history lives unless ``--db`` says otherwise (XDG state directory).

    One file per port: a port is a room, and two rooms on one machine must not
    share their history or their bans.
    """
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "chatroom", f"history-{port}.sqlite3")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    approve: str = "ask"
    allow_file: str | None = None
    history: int = 50
    announce_limit: int = 100
    db: str = ""
    log_chat: bool = True
    max_line: int = DEFAULT_MAX_LINE
    max_name: int = MAX_NAME_LENGTH
    max_outbox: int = 4 * 1024 * 1024
    backlog: int = 128 * 1024
    stall_timeout: float = 10.0
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
    redis: str | None = None
    node: str = ""
    redis_ttl: float = 15.0


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, so a typo is a usage error rather than a traceback."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, not {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


#: A node's name goes into Redis keys and the claim on each name (``NODE/INCARNATION SERIAL``).
NODE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _node(text: str) -> str:
    if not NODE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"use 1 to 64 letters, digits, '.', '_', ':' or '-', not {text!r}")
    return text


USAGE = """%(prog)s [--host ADDR] [--port N] [--approve ask|all|allowlist] [--allow-file PATH]
                 [--history N] [--db PATH] [--tls-cert PEM --tls-key PEM]
                 [--redis URL [--node NAME] [--redis-ttl SECONDS]] [LIMITS] [TUNING]"""

DESCRIPTION = """\
Serve a chat room on TCP. Clients join with Client.py, nc or telnet; each
newcomer picks a name and waits until the operator lets them in at this
console (y/n, or /approve NAME). The console also lists, kicks, bans and
announces: type /help. Everything the server does is logged here with a
timestamp; private messages are never logged, stored or replayed."""

EPILOG = """\
signals:
  SIGINT, SIGTERM   tell every client, flush, close and exit 0

files:
  history and bans  --db PATH (SQLite, WAL); ':memory:' keeps nothing;
                    with --redis they are kept in Redis instead
  allow-list        --allow-file PATH, one name per line, '#' comments

exit status:
  0  clean shutdown (signal, /quit, or Ctrl-C at the console)
  1  could not start (port in use, bad certificate, unreadable database,
     Redis unreachable, --redis without redis-py)
  2  bad options

examples:
  %(prog)s                            ask about everyone, port 5555, local only
  %(prog)s --host 0.0.0.0 --port 4000 reachable from the network
  %(prog)s --approve all --db :memory: a throwaway room for testing
  %(prog)s --redis redis://127.0.0.1:6379/0 --port 5556 --node b
                                      a second server in the same room"""


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=d.host, metavar="ADDR", help="address to listen on")
    net.add_argument(
        "--port", type=port_number, default=d.port, metavar="N", help="TCP port; 0 picks a free one"
    )
    net.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    net.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")

    room = parser.add_argument_group("room")
    room.add_argument(
        "--approve",
        choices=("ask", "all", "allowlist"),
        default=d.approve,
        metavar="ask|all|allowlist",
        help="ask about each newcomer not on the allow-list; let everyone in; or let in only the allow-list",
    )
    room.add_argument(
        "--allow-file",
        metavar="PATH",
        help="names that join without asking, one per line; /allow NAME appends to it",
    )
    room.add_argument("--history", type=_count, default=d.history, metavar="N", help="lines replayed on join")
    room.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"SQLite file for history and bans (default: {default_db_path()})",
    )
    room.add_argument(
        "--announce-limit",
        type=_count,
        default=d.announce_limit,
        metavar="N",
        help="announce joins and leaves to the room while it has at most N people "
        "(the log records them all); 0 = always",
    )
    room.add_argument(
        "--no-log-chat",
        dest="log_chat",
        action="store_false",
        help="do not print public messages in the log",
    )

    cluster = parser.add_argument_group(
        "several servers, one room (needs redis-py: pip install 'chatroom[cluster]')"
    )
    cluster.add_argument(
        "--redis",
        metavar="URL",
        help="share the room with every server using this Redis (redis://HOST:PORT/DB); "
        "history and bans then live there, not in --db",
    )
    cluster.add_argument(
        "--node",
        type=_node,
        metavar="NAME",
        help="this server's name in the room (default: HOSTNAME:PORT); each server needs its own",
    )
    cluster.add_argument(
        "--redis-ttl",
        type=_positive_seconds,
        default=d.redis_ttl,
        metavar="SECONDS",
        help="a crashed server's names and people vanish after this; refreshed every third of it, "
        "which is also the longest wait between attempts to reach Redis again",
    )

    limits = parser.add_argument_group("limits (0 turns a count off)")
    limits.add_argument("--max-line", type=_count, default=d.max_line, metavar="BYTES", help="line length")
    limits.add_argument(
        "--backlog",
        type=_count,
        default=d.backlog,
        metavar="BYTES",
        help="unsent output at which a client that is still reading holds the senders back",
    )
    limits.add_argument(
        "--stall-timeout",
        type=_positive_seconds,
        default=d.stall_timeout,
        metavar="SECONDS",
        help="a client whose connection takes nothing for this long while output waits is cut off",
    )
    limits.add_argument(
        "--max-outbox",
        type=_count,
        default=d.max_outbox,
        metavar="BYTES",
        help="unsent output at which a client is cut off, reading or not",
    )
    limits.add_argument(
        "--flood-rate", type=_seconds, default=d.flood_rate, metavar="N", help="lines/s per client"
    )
    limits.add_argument(
        "--flood-burst", type=_count, default=d.flood_burst, metavar="N", help="lines at once before that"
    )
    limits.add_argument("--max-clients", type=_count, default=d.max_clients, metavar="N", help="connections")
    limits.add_argument(
        "--max-pending", type=_count, default=d.max_pending, metavar="N", help="clients waiting to be let in"
    )
    limits.add_argument(
        "--max-per-ip", type=_count, default=d.max_per_ip, metavar="N", help="connections per address"
    )
    limits.add_argument(
        "--exempt",
        default=",".join(d.exempt),
        metavar="IP,IP",
        help="addresses exempt from --max-per-ip and from bans by name",
    )
    limits.add_argument(
        "--max-name", type=_count, default=d.max_name, metavar="N", help="characters in a name"
    )
    limits.add_argument(
        "--name-timeout", type=_seconds, default=d.name_timeout, metavar="SECONDS", help="time to give a name"
    )
    limits.add_argument(
        "--approval-timeout",
        type=_seconds,
        default=d.approval_timeout,
        metavar="SECONDS",
        help="time the operator has to answer",
    )
    limits.add_argument(
        "--keepalive",
        type=_count,
        default=d.keepalive,
        metavar="SECONDS",
        help="silence before TCP keepalive probes a client; a dead one is dropped after "
        "twice that (idle clients that answer are never dropped)",
    )

    tuning = parser.add_argument_group("tuning")
    tuning.add_argument(
        "--fanout-threads", type=_count, default=d.fanout_threads, metavar="N", help="threads that send"
    )
    tuning.add_argument(
        "--sndbuf",
        type=_count,
        default=d.sndbuf,
        metavar="BYTES",
        help="kernel send buffer per client (0 = autotuning, which allows megabytes each)",
    )
    tuning.add_argument(
        "--thread-stack-kib",
        type=_count,
        default=d.thread_stack_kib,
        metavar="KIB",
        help="stack size of each client thread",
    )
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-made paragraphs; show a default where there is a real one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        shown = action.default not in (None, argparse.SUPPRESS) and not isinstance(action.default, bool)
        return f"{action.help} (default: %(default)s)" if shown else action.help


def parse_settings(argv: list[str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        build_parser().error("--tls-cert and --tls-key go together")
    if args.node and not args.redis:
        build_parser().error("--node names this server in a room shared through --redis")
    values = vars(args)
    values["node"] = values["node"] or ""
    values["db"] = values["db"] if values["db"] is not None else default_db_path(args.port)
    values["exempt"] = tuple(ip.strip() for ip in values["exempt"].split(",") if ip.strip())
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})
