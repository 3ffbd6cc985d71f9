"""Client.py end to end: scripted through pipes, and interactive in a pseudo-terminal."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    PYTHON,
    ROOT,
    WAIT,
    ServerProcess,
    StartServer,
    Terminal,
    TerminalClient,
    client_process,
    pyte_color,
    wait_until,
)
from protocol import messages


def run_script(server: ServerProcess, name: str, script: str, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    proc = client_process(server.port, "--name", name, *args, env=env)
    out, err = proc.communicate(script.encode(), timeout=WAIT)
    return proc.returncode, out.decode(), err.decode()


def test_scripted_client_talks_and_leaves_at_end_of_input(open_server: ServerProcess) -> None:
    watcher = open_server.connect("watcher")
    code, out, err = run_script(open_server, "bot", "hello from a script\n/private watcher psst\n")
    assert code == 0, err
    assert "Welcome, bot!" in out and "<bot> hello from a script" in out and "[PM to watcher] psst" in out
    assert "\x1b[" not in out  # not a terminal: no colour codes
    assert "you left the room" in err
    watcher.expect("<bot> hello from a script")
    watcher.expect(messages.PRIVATE_FROM)
    watcher.expect(messages.LEFT)


def test_name_can_be_the_first_line_of_input(open_server: ServerProcess) -> None:
    proc = client_process(open_server.port)
    out, _ = proc.communicate(b"scripted\nhi\n", timeout=WAIT)
    assert proc.returncode == 0 and "<scripted> hi" in out.decode()


def test_lines_typed_before_approval_wait_for_it(server: ServerProcess) -> None:
    alice = server.connect("alice")
    proc = client_process(server.port, "--name", "patient")
    assert proc.stdin is not None
    proc.stdin.write(b"typed while waiting\n")
    proc.stdin.close()
    server.approve("patient")
    alice.expect("<patient> typed while waiting")
    assert proc.wait(WAIT) == 0


def test_refused_client_exits_3_saying_why(server: ServerProcess) -> None:
    proc = client_process(server.port, "--name", "unwelcome")
    server.refuse("unwelcome")
    _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 3 and "not let in" in err.decode()


def test_taken_name_in_a_script_exits_3(open_server: ServerProcess) -> None:
    _alice = open_server.connect("alice")
    code, out, err = run_script(open_server, "alice", "hi\n")
    assert code == 3 and "That name can't be used" in out and "name was not accepted" in err


def test_what_is_typed_when_the_server_goes_away_is_shown_as_not_sent(
    open_server: ServerProcess, terminals: list[Terminal]
) -> None:
    term = TerminalClient(open_server.port, "--name", "typist")
    terminals.append(term)
    term.wait_prompt("typist>")
    term.type("half a thou")
    term.wait_prompt("typist> half a thou")
    open_server.stop()
    assert term.wait_exit() == 1
    term.wait_screen(
        r"shutting down\. Bye\.\n(.*\n)*.*\*\*\* Not sent: half a thou\nClient\.py: the server shut down\."
    )


def test_server_going_away_exits_1(open_server: ServerProcess) -> None:
    proc = client_process(open_server.port, "--name", "stayer")
    open_server.log.wait_for("join stayer")
    open_server.stop()
    _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1 and "shut down" in err.decode()


def test_cannot_connect_exits_1() -> None:
    proc = client_process(1, "--name", "x")
    _out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1 and "cannot connect" in err.decode()


def test_terminal_shows_colour_and_markup(open_server: ServerProcess, terminals: list[Terminal]) -> None:
    term = TerminalClient(open_server.port, "--name", "viewer")
    terminals.append(term)
    term.wait_screen(r"Welcome, viewer!")
    alice = open_server.connect("alice")
    alice.send("/color magenta **bold** __it__ ~~gone~~ plain")
    term.wait_screen(r"<alice> bold it gone plain")
    magenta = pyte_color("magenta")
    assert all(c.bold and c.fg == magenta for c in term.cells("bold"))
    assert all(c.italics for c in term.cells(" it ")[1:3])
    assert all(c.strikethrough for c in term.cells("gone"))
    assert all(not c.bold and c.fg == magenta for c in term.cells("plain"))


def test_no_color_strips_styles(open_server: ServerProcess, terminals: list[Terminal]) -> None:
    term = TerminalClient(open_server.port, "--name", "mono", env={"NO_COLOR": "1"})
    terminals.append(term)
    term.wait_screen(r"Welcome, mono!")
    open_server.connect("alice").send("**loud**")
    term.wait_screen(r"<alice> loud")
    assert not any(c.bold for c in term.cells("loud"))


def test_typing_survives_incoming_messages(open_server: ServerProcess, terminals: list[Terminal]) -> None:
    term = TerminalClient(open_server.port, "--name", "typist")
    terminals.append(term)
    term.wait_screen(r"Welcome, typist!")
    term.wait_prompt("typist>")
    alice = open_server.connect("alice")
    term.type("half a thou")
    term.wait_screen(r"typist> half a thou")
    for i in range(5):
        alice.send(f"interruption {i}")
    term.wait_screen(r"interruption 4")
    term.wait_prompt("typist> half a thou")  # the input line is redrawn just after the lines print
    assert term.cursor_line().endswith("typist> half a thou")
    term.type("ght\r")
    alice.expect("<typist> half a thought")


def test_interactive_name_prompt_asks_again(open_server: ServerProcess, terminals: list[Terminal]) -> None:
    _taken = open_server.connect("taken")
    term = TerminalClient(open_server.port)
    terminals.append(term)
    term.wait_prompt("Your name:")
    term.type("taken\r")
    term.wait_screen(r"'taken' is already taken")
    term.wait_prompt("Your name:")
    term.type("fresh\r")
    term.wait_screen(r"Welcome, fresh!")


def test_ctrl_d_leaves_cleanly(open_server: ServerProcess, terminals: list[Terminal]) -> None:
    watcher = open_server.connect("watcher")
    term = TerminalClient(open_server.port, "--name", "quitter")
    terminals.append(term)
    term.wait_screen(r"Welcome, quitter!")
    term.wait_prompt("quitter>")
    term.type("\x04")
    assert term.wait_exit() == 0
    watcher.expect(messages.LEFT)
    term.wait_screen(r"\*\*\* Goodbye, quitter\.")


def test_ctrl_c_leaves_at_once_not_with_leave(open_server: ServerProcess, terminals: list[Terminal]) -> None:
    watcher = open_server.connect("watcher")
    term = TerminalClient(open_server.port, "--name", "breaker")
    terminals.append(term)
    term.wait_screen(r"Welcome, breaker!")
    term.wait_prompt("breaker>")
    term.type("\x03")
    assert term.wait_exit() == 130
    watcher.expect(messages.LEFT)
    left = open_server.log.wait_for(r"leave breaker ")
    assert "closed by client" in left and "/leave" not in left


def test_slash_leave_shows_the_goodbye_exits_0(open_server: ServerProcess, terminals: list[Terminal]) -> None:
    term = TerminalClient(open_server.port, "--name", "leaver")
    terminals.append(term)
    term.wait_screen(r"Welcome, leaver!")
    term.wait_prompt("leaver>")
    term.type("/leave\r")
    assert term.wait_exit() == 0
    term.wait_screen(r"\*\*\* Goodbye, leaver\.\n(.*\n)*Client\.py: you left the room\.")


# --- the shell after the client ----------------------------------------------------


class LateTerminal(TerminalClient):
    """A terminal that answers queries late, as one at the far end of a slow ssh link does:
    here, only once the client has gone."""

    late: list[str]

    def __init__(self, port: int, *args: str) -> None:
        self.late = []
        super().__init__(port, *args)

    def answer(self, data: str) -> None:
        self.late.append(data)


@pytest.fixture
def shell_end(terminals: list[Terminal]) -> Iterator[list[int]]:
    """File descriptors of terminals' own ends, held open as a shell would after the client exits."""
    opened: list[int] = []
    yield opened
    for fd in opened:
        os.close(fd)


def open_tty_of(term: Terminal) -> int:
    """Open the pseudo-terminal the program runs in, as the shell that started it has it open."""
    link = f"/proc/{term.child.pid}/fd/0"
    wait_until(lambda: os.readlink(link).startswith("/dev/pts/"), what="the client's terminal")
    return os.open(os.readlink(link), os.O_RDWR | os.O_NOCTTY)


def next_line_read(fd: int) -> bytes:
    """The next line a shell reading this terminal gets (the terminal is in line mode again)."""
    got = b""
    deadline = time.monotonic() + WAIT
    while not got.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no line for the shell; got {got!r}"
        got += os.read(fd, 1024)
    return got


def test_nothing_is_left_for_the_shell_when_the_terminal_answers_late(
    open_server: ServerProcess, terminals: list[Terminal], shell_end: list[int]
) -> None:
    term = LateTerminal(open_server.port, "--name", "leaver")
    terminals.append(term)
    shell_end.append(shell := open_tty_of(term))
    term.wait_prompt("leaver>")
    term.type("/leave\r")
    wait_until(lambda: not term.child.isalive(), what="the client to exit")
    # Whatever the client asked the terminal, the answers come now, then the user types on.
    os.write(term.child.child_fd, "".join(term.late).encode() + b"echo next\n")
    assert next_line_read(shell) == b"echo next\n"


# --- bad options, and ports with no chat server ----------------------------------------


def test_port_0_is_a_usage_error() -> None:
    for port in ("0", "65536", "http"):
        result = subprocess.run(
            [PYTHON, str(ROOT / "Client.py"), "--port", port], capture_output=True, text=True, timeout=WAIT
        )
        assert result.returncode == 2
        assert f"argument --port: must be a port from 1 to 65535, not {port}" in result.stderr


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port where something listens and never says a word (``ncat -l``, a stuck service)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[int]:
    """``python3 -m http.server``: it waits for a request, so it says nothing first."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [PYTHON, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
        except OSError:
            return False
        return True

    wait_until(listening, what="the web server")
    yield port
    proc.terminate()
    proc.wait(WAIT)


@pytest.mark.parametrize("listener", ["silent_port", "web_server"])
def test_no_chat_server_answering_is_said_and_ends_the_client(
    listener: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue(listener)
    proc = client_process(port, "--name", "lost")
    _out, err = proc.communicate(b"hello?\n", timeout=WAIT)
    assert proc.returncode == 1
    assert f"no chat server answered at 127.0.0.1:{port} within 5 s" in err.decode()


def test_no_chat_server_answering_on_a_terminal(silent_port: int, terminals: list[Terminal]) -> None:
    term = TerminalClient(silent_port, "--name", "lost")
    terminals.append(term)
    assert term.wait_exit() == 1
    term.wait_screen(rf"no chat server answered at 127\.0\.0\.1:{silent_port}")


def test_another_service_is_not_a_chat_server() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        proc = client_process(listener.getsockname()[1], "--name", "lost")
        conn, _ = listener.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        _out, err = proc.communicate(timeout=WAIT)
        conn.close()
    assert proc.returncode == 1 and "is not a chat server (it said 'SSH-2.0-OpenSSH_9.6')" in err.decode()


def test_a_certificate_for_another_name_says_which_option_fixes_it(
    start_server: StartServer, tmp_path: Path
) -> None:
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("localhost")  # not for 127.0.0.1, which the client dials by default
    cert, key, trusted = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(trusted))
    server = start_server("--approve", "all", "--tls-cert", str(cert), "--tls-key", str(key))
    proc = client_process(server.port, "--name", "bob", "--tls", "--cafile", str(trusted))
    _out, err = proc.communicate(b"", timeout=WAIT)
    assert proc.returncode == 1
    assert "certificate is not valid for '127.0.0.1': connect with --host set to a name" in err.decode()
    proc = client_process(
        server.port, "--host", "localhost", "--name", "bob", "--tls", "--cafile", str(trusted)
    )
    out, err = proc.communicate(b"", timeout=WAIT)
    assert proc.returncode == 0 and "Welcome, bob!" in out.decode(), err


# --- waiting for the operator ------------------------------------------------------------


def test_a_line_typed_while_waiting_shows_as_queued_until_sent(
    server: ServerProcess, terminals: list[Terminal]
) -> None:
    alice = server.connect("alice")
    term = TerminalClient(server.port, "--name", "patient")
    terminals.append(term)
    term.wait_prompt("(waiting for the operator)")
    term.type("typed while waiting\r")
    term.wait_screen(r"\(queued\) typed while waiting\n\(waiting for the operator\)")
    assert all(c.italics for c in term.cells("typed while waiting"))
    server.approve("patient")
    alice.expect("<patient> typed while waiting")
    term.wait_screen(r"<patient> typed while waiting")
    wait_until(lambda: "(queued)" not in term.display(), what="the queued line to go")


def test_leaving_while_waiting_leaves_at_once_saying_what_was_not_sent(
    server: ServerProcess, terminals: list[Terminal]
) -> None:
    term = TerminalClient(server.port, "--name", "impatient")
    terminals.append(term)
    term.wait_prompt("(waiting for the operator)")
    term.type("anyone?\r")
    term.wait_screen(r"\(queued\) anyone\?")
    term.type("\x04")
    assert term.wait_exit() == 0
    term.wait_screen(r"Not sent: anyone\?\n(.*\n)*Client\.py: you left before you were let in\.")
    server.log.wait_for(r"gave up waiting impatient .*closed by client")


# --- odd input ----------------------------------------------------------------------------


def test_input_that_is_not_utf8_is_sent_repaired(open_server: ServerProcess) -> None:
    watcher = open_server.connect("watcher")
    proc = client_process(open_server.port, "--name", "latin")
    _out, err = proc.communicate(b"caf\xe9 au lait\n", timeout=WAIT)
    assert proc.returncode == 0, err
    assert messages.MESSAGE.match(watcher.expect(messages.MESSAGE)) == {
        "name": "latin",
        "text": "caf\ufffd au lait",
    }
