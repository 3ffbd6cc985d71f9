"""Every option and limit of the server: its name, default, flag and help, once."""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

from chatroom.storage import MEMORY
from protocol.framing import DEFAULT_MAX_LINE
from protocol.names import MAX_NAME_LENGTH

DEFAULT_PORT = 5555
LOOPBACK = ("127.0.0.1", "::1")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
N = TypeVar("N", int, float)


def default_db_path(port: int | str = "PORT") -> str:
    """Where history lives unless ``--db`` says otherwise (XDG state directory).

    One file per port: a port is a room, and two rooms on one machine must not
    share their history or their bans. ``--port 0`` picks a free port, a new
    one each time, so such a room is new each time too: it keeps history and
    bans in memory (a file named after the port it got would never be opened
    again, and one shared file would mix every such room).
    """
    if port == 0:
        return MEMORY
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(state, "chatroom", f"history-{port}.sqlite3")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    approve: str = "ask"
    ask_registered: bool = False
    keep_lines: int = 10_000
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
    max_pending_per_ip: int = 4
    max_pending_per_net: int = 8
    max_per_ip: int = 16
    exempt: tuple[str, ...] = LOOPBACK
    keepalive: int = 60
    name_timeout: float = 120.0
    approval_timeout: float = 300.0
    tls_cert: str | None = None
    tls_key: str | None = None
    web_port: int | None = None
    fanout_threads: int = 2
    thread_stack_kib: int = 256
    sndbuf: int = 128 * 1024
    redis: str | None = None
    node: str = ""
    redis_ttl: float = 15.0
    processes: int = 1
    supervised: int = -1  # the fd of the link to the supervisor, in a process it started


def _checked(convert: Callable[[str], N], wants: str, ok: Callable[[N], bool]) -> Callable[[str], N]:
    """An argparse type whose error says what the option wants.

    argparse names a type's failure by the function's name (``invalid
    _count value``); raising ``ArgumentTypeError`` makes it print
    ``argument --history: wants a whole number ..., not 'abc'`` instead.
    """

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants {wants}, not {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"wants {wants}, not {text!r}")
        return value

    return parse


def _count(unit: str) -> Callable[[str], int]:
    return _checked(int, f"a whole number{unit}, 0 or more", lambda n: n >= 0)


def _amount(wants: str, more_than_zero: bool = False) -> Callable[[str], float]:
    return _checked(float, wants, lambda x: math.isfinite(x) and (x > 0 if more_than_zero else x >= 0))


#: A TCP port (also Client.py's ``--port``), so a typo is a usage error rather than a traceback.
port_number = _checked(int, "a port number from 0 to 65535", lambda n: 0 <= n <= 65535)
_seconds = _amount("a number of seconds, 0 or more")
_positive_seconds = _amount("a number of seconds, more than 0", more_than_zero=True)


def _stack_kib(kib: int) -> bool:
    """What ``threading.stack_size`` accepts: 0 (the default) or at least 32 KiB."""
    return kib == 0 or kib >= 32


#: A node's name goes into Redis keys and the claim on each name (``NODE/INCARNATION SERIAL``).
NODE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _node(text: str) -> str:
    if not NODE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"wants 1 to 64 letters, digits, '.', '_', ':' or '-', not {text!r}")
    return text


def _addresses(text: str) -> tuple[str, ...]:
    """``--exempt``: IP addresses separated by commas (none at all is allowed)."""
    found = tuple(ip.strip() for ip in text.split(",") if ip.strip())
    for ip in found:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"wants IP addresses separated by commas (such as 127.0.0.1,::1), not {ip!r}"
            ) from None
    return found


def cores() -> int:
    """The cores this process may run on (``--processes auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _processes(text: str) -> int:
    if text == "auto":
        return cores()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"wants a number of processes, 1 or more, or 'auto', not {text!r}")
    return count


def _redis_url(text: str) -> str:
    if not text.startswith(REDIS_SCHEMES):
        raise argparse.ArgumentTypeError(
            f"wants a Redis URL starting with {', '.join(REDIS_SCHEMES)} (such as "
            f"redis://127.0.0.1:6379/0), not {text!r}"
        )
    return text


def _readable_file(text: str) -> str:
    """A file the server must read at start (the TLS certificate and key): say so before starting."""
    try:
        with open(text, "rb"):
            pass
    except OSError as error:
        raise argparse.ArgumentTypeError(
            f"wants a readable PEM file, but {text!r}: {error.strerror}"
        ) from None
    return text


USAGE = """%(prog)s [--host ADDR] [--port N] [--web-port N] [--approve ask|all|allowlist]
                 [--allow-file PATH] [--history N] [--db PATH] [--tls-cert PEM --tls-key PEM]
                 [--processes N|auto]
                 [--redis URL [--node NAME] [--redis-ttl SECONDS]] [LIMITS] [TUNING]"""

DESCRIPTION = """\
Serve a chat room on TCP. Clients join with Client.py, nc or telnet, and
with --web-port from a browser; each newcomer picks a name and waits until
the operator lets them in at this console (y/n, or /approve NAME). The
console also lists, kicks, bans and announces: type /help. Everything the server does is logged here with a
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
     Redis unreachable, --redis without redis-py, --processes without Redis)
  2  bad options

examples:
  %(prog)s                            ask about everyone, port 5555, local only
  %(prog)s --host 0.0.0.0 --port 4000 reachable from the network
  %(prog)s --approve all --db :memory: a throwaway room for testing
  %(prog)s --web-port 8080            browsers too, at http://127.0.0.1:8080/
  %(prog)s --redis redis://127.0.0.1:6379/0 --port 5556 --node b
                                      a second server in the same room
  %(prog)s --processes auto            a process per core, one room, one console"""


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
    net.add_argument(
        "--tls-cert", type=_readable_file, metavar="PEM", help="serve TLS with this certificate chain"
    )
    net.add_argument("--tls-key", type=_readable_file, metavar="PEM", help="private key for --tls-cert")
    net.add_argument(
        "--web-port",
        type=port_number,
        metavar="N",
        help="also serve the room to browsers (a page and its WebSocket) on this port; 0 picks a free one",
    )

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
    room.add_argument(
        "--history", type=_count(" of lines"), default=d.history, metavar="N", help="lines replayed on join"
    )
    room.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help=f"SQLite file for history and bans (default: {default_db_path()}, "
        f"or {MEMORY} with --port 0: a new room each time keeps nothing)",
    )
    room.add_argument(
        "--ask-registered",
        action="store_true",
        help="ask about registered names too (by default the right password lets them in)",
    )
    room.add_argument(
        "--keep-lines",
        type=_count(" of lines"),
        default=d.keep_lines,
        metavar="N",
        help="public lines kept for /search (and catch-up) besides the --history replayed",
    )
    room.add_argument(
        "--announce-limit",
        type=_count(" of people"),
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
        "several processes or servers, one room (needs redis-py: pip install 'chatroom[cluster]')"
    )
    cluster.add_argument(
        "--processes",
        type=_processes,
        default=d.processes,
        metavar="N|auto",
        help="serve with N processes on one port (auto: one per core), one room and one console; "
        "they share the room through --redis, or a private redis-server started with the server",
    )
    # How the supervisor of --processes starts each process: FD is its end of the link.
    cluster.add_argument(
        "--supervised", type=_count(" (a file descriptor)"), default=d.supervised, help=argparse.SUPPRESS
    )
    cluster.add_argument(
        "--redis",
        type=_redis_url,
        metavar="URL",
        help="share the room with every server using this Redis (redis://HOST:PORT/DB); "
        "history and bans then live there, not in --db",
    )
    cluster.add_argument(
        "--node",
        type=_node,
        metavar="NAME",
        help="this server's name in the room (default: HOSTNAME:PORT); each server needs its own "
        "(with --processes, process I is NAME-I)",
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
    limits.add_argument(
        "--max-line", type=_count(" of bytes"), default=d.max_line, metavar="BYTES", help="line length"
    )
    limits.add_argument(
        "--backlog",
        type=_count(" of bytes"),
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
        type=_count(" of bytes"),
        default=d.max_outbox,
        metavar="BYTES",
        help="unsent output at which a client is cut off, reading or not",
    )
    limits.add_argument(
        "--flood-rate",
        type=_amount("a number of lines a second, 0 or more"),
        default=d.flood_rate,
        metavar="N",
        help="lines/s per client",
    )
    limits.add_argument(
        "--flood-burst",
        type=_count(" of lines"),
        default=d.flood_burst,
        metavar="N",
        help="lines at once before that",
    )
    limits.add_argument(
        "--max-clients",
        type=_count(" of connections"),
        default=d.max_clients,
        metavar="N",
        help="connections",
    )
    limits.add_argument(
        "--max-pending",
        type=_count(" of people"),
        default=d.max_pending,
        metavar="N",
        help="clients waiting to be let in",
    )
    limits.add_argument(
        "--max-pending-per-ip",
        type=_count(" of people"),
        default=d.max_pending_per_ip,
        metavar="N",
        help="of those, from one address (loopback and --exempt too: it is a share, not a count)",
    )
    limits.add_argument(
        "--max-pending-per-net",
        type=_count(" of people"),
        default=d.max_pending_per_net,
        metavar="N",
        help="of those, from one network (a /24 for IPv4, a /64 for IPv6)",
    )
    limits.add_argument(
        "--max-per-ip",
        type=_count(" of connections"),
        default=d.max_per_ip,
        metavar="N",
        help="connections per address",
    )
    limits.add_argument(
        "--exempt",
        type=_addresses,
        default=",".join(d.exempt),
        metavar="IP,IP",
        help="addresses exempt from --max-per-ip and from bans by name",
    )
    limits.add_argument(
        "--max-name",
        type=_count(" of characters"),
        default=d.max_name,
        metavar="N",
        help="characters in a name",
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
        type=_count(" of seconds"),
        default=d.keepalive,
        metavar="SECONDS",
        help="silence before TCP keepalive probes a client; a dead one is dropped after "
        "twice that (idle clients that answer are never dropped)",
    )

    tuning = parser.add_argument_group("tuning")
    tuning.add_argument(
        "--fanout-threads",
        type=_count(" of threads"),
        default=None,
        metavar="N",
        help=f"threads that send (default: {d.fanout_threads}; with --processes, 1 in each process, "
        "since the processes send on every core already)",
    )
    tuning.add_argument(
        "--sndbuf",
        type=_count(" of bytes"),
        default=d.sndbuf,
        metavar="BYTES",
        help="kernel send buffer per client (0 = autotuning, which allows megabytes each)",
    )
    tuning.add_argument(
        "--thread-stack-kib",
        type=_checked(int, "a number of KiB: 32 or more, or 0 for the system's default", _stack_kib),
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
    if args.node and not args.redis and args.processes == 1:
        build_parser().error("--node names this server in a room shared through --redis or --processes")
    values = vars(args)
    values["node"] = values["node"] or ""
    if values["fanout_threads"] is None:
        values["fanout_threads"] = 1 if args.processes > 1 else Settings.fanout_threads
    values["db"] = values["db"] if values["db"] is not None else default_db_path(args.port)
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})
