#!/usr/bin/env python3
"""Client.py - talk in the chat room from a terminal.

This is the entry point: options, connecting, exit statuses. The parts are
in ``chatroom.client``: ``conversation`` (what the client knows and does, no
I/O), ``link`` (the connection), ``session`` (the two put together),
``terminal`` (the input line and the printing, or plain lines when scripted)
and ``completion`` (Tab).

The wire protocol is plain text (see the README); this program adds the
input line with completion and history, name prompts, colours, highlighted
mentions with a bell, emoji shortcodes, wrapping, and clean exits on top of it.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Iterable

from chatroom.client.conversation import Conversation, ExitCode, Outcome
from chatroom.client.link import Link
from chatroom.client.session import ANSWER_WAIT, Session
from chatroom.client.terminal import (
    CLIENT_HELP,
    KEY_WIDTH,
    KEYS,
    Printer,
    open_history,
    run_plain,
    run_terminal,
    terminal_width,
    use_color,
    write_to,
)
from chatroom.config import DEFAULT_PORT
from chatroom.tls import client_context

EXIT_STATUS = (
    (ExitCode.LEFT, "you left: /leave, /quit, Ctrl-D, or the end of input"),
    (
        ExitCode.LOST,
        f"could not connect, no chat server answered within {ANSWER_WAIT:g} s, the connection was lost, "
        "or the server shut down",
    ),
    (ExitCode.USAGE, "bad options"),
    (
        ExitCode.REFUSED,
        "not let in (refused, timed out, room full, banned, or the name was not accepted "
        "when scripted), or removed by the operator",
    ),
    (ExitCode.INTERRUPTED, "interrupted with Ctrl-C"),
)
#: OpenSSL's verify codes for a certificate made for another name or address.
NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH

DESCRIPTION = """\
Talk in a chat room served by Server.py.

On a terminal, messages appear above an input line that stays put while you
type; Tab completes, the arrow keys recall what you typed, your name in
someone else's message is highlighted and rings the bell, and long lines wrap
with their text lined up after the name. Type /help in the room for the
commands. When standard input is not a terminal, each line read is sent as it
is (the first one is your name unless --name is given), and the end of input
leaves the room, so the client can be scripted."""


def _section(title: str, rows: Iterable[tuple[object, str]], width: int) -> str:
    """A man page's list of terms: ``  TERM    meaning``, the meaning wrapped to 79 columns."""
    entries = [
        textwrap.fill(meaning, 79, initial_indent=f"  {key!s:<{width}}", subsequent_indent=" " * (width + 2))
        for key, meaning in rows
    ]
    return "\n".join([f"{title}:", *entries])


def server_port(text: str) -> int:
    """An argparse type: a port to connect to (0, "any free port", makes sense only to a server)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, not {text}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    epilog = "\n\n".join(
        [
            _section("keys (on a terminal)", KEYS, KEY_WIDTH),
            _section("exit status", ((int(code), meaning) for code, meaning in EXIT_STATUS), 6),
            _section("environment", [("NO_COLOR", "if set, --color auto means never")], KEY_WIDTH),
            "see also:\n  Server.py --help, and README.md for the protocol and markup",
        ]
    )
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default %(default)s)")
    parser.add_argument(
        "--port", type=server_port, default=DEFAULT_PORT, help="server port (default %(default)s)"
    )
    parser.add_argument("--name", help="your name; asked for if not given")
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="the password of a registered name, on the first line of FILE (else asked, without echo)",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--cafile", metavar="PEM", help="trust the server certificate(s) in PEM")
    parser.add_argument(
        "--color",
        metavar="WHEN",
        choices=("auto", "always", "never"),
        default="auto",
        help="colours and styles: auto (only on a terminal, and not with NO_COLOR; the default), "
        "always or never",
    )
    parser.add_argument(
        "--no-bell",
        dest="bell",
        action="store_false",
        help="no terminal bell on mentions and private messages",
    )
    parser.add_argument(
        "--emoji-names",
        action="store_true",
        help="show emoji as their :names:, for terminals without emoji fonts",
    )
    parser.add_argument(
        "--history-file",
        metavar="FILE",
        help="keep the lines you type in FILE, for the arrow keys next time (default: this session only)",
    )
    return parser


def why_not(error: OSError) -> str:
    """A failed connection explained, with the fix when TLS is what failed."""
    reason = getattr(error, "reason", None)
    if reason == "WRONG_VERSION_NUMBER":
        return "the server does not speak TLS: leave out --tls"
    if reason == "CERTIFICATE_VERIFY_FAILED":
        detail = (getattr(error, "verify_message", None) or "certificate not trusted").rstrip(".")
        if getattr(error, "verify_code", None) in NAME_MISMATCH:
            return f"{detail}: connect with --host set to a name the certificate is for"
        return f"{detail}: give the CA certificate that signed the server's with --cafile"
    if isinstance(error, ConnectionRefusedError):
        return "nothing is listening there (is Server.py running, and on that port?)"
    return error.strerror or str(error)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import colorama

        colorama.just_fix_windows_console()
    except ImportError:
        pass
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        history = open_history(args.history_file)
    except OSError as error:
        print(f"Client.py: cannot keep history in {args.history_file}: {error}", file=sys.stderr)
        return ExitCode.USAGE
    password = None
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as given:
                password = given.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            print(f"Client.py: cannot read --password-file {args.password_file}: {error}", file=sys.stderr)
            return ExitCode.USAGE
    name = args.name
    if name is None and not interactive:
        name = sys.stdin.buffer.readline().decode("utf-8", "replace").strip()  # scripted: the first line
        if not name:
            print("Client.py: no name given (use --name or a first line)", file=sys.stderr)
            return ExitCode.USAGE
    server = f"{args.host}:{args.port}"
    conversation = Conversation(
        server,
        name,
        interactive,
        stamp=lambda: time.strftime("%H:%M:%S"),
        client_help=CLIENT_HELP if interactive else (),
        password=password,
    )
    deadline = time.monotonic() + ANSWER_WAIT
    try:
        link = Link.open(args.host, args.port, client_context(args.cafile) if args.tls else None, deadline)
    except TimeoutError:
        conversation.unanswered(ANSWER_WAIT, args.tls)
        return report(conversation.outcome)
    except OSError as error:
        print(f"Client.py: cannot connect to {server}: {why_not(error)}", file=sys.stderr)
        return ExitCode.LOST
    except KeyboardInterrupt:
        conversation.interrupt()
        return report(conversation.outcome)
    session = Session(link, conversation, args.tls, deadline)
    printer = Printer(
        write_to(sys.stdout),
        use_color(args.color),
        bell=interactive and args.bell,
        emoji_names=args.emoji_names,
        columns=terminal_width(sys.stdout.fileno()) if interactive else None,
    )
    try:
        if interactive:
            run_terminal(session, printer, history, emoji_glyphs=not args.emoji_names)
        else:
            run_plain(session, printer, sys.stdin)
    except KeyboardInterrupt:
        session.interrupt()
    finally:
        link.close()
    return report(conversation.outcome)


def report(outcome: Outcome | None) -> int:
    """Say how it ended, on standard error; the exit status. No outcome: the goodbye never came."""
    outcome = outcome or Outcome(ExitCode.LEFT, "you left the room")
    print(f"Client.py: {outcome.why}.", file=sys.stderr)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
