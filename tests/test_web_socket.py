"""The web front door without a browser: the real Server.py, its page over HTTP, its WebSocket with wsproto.

Everything a browser would meet, checked on the wire: the files and their
headers, the Origin rule, the same room and rules as a TCP client (the
operator, the limits, flood and line length), and a browser that stops reading.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
import trustme
from web_harness import WebClient, body_text, web_address
from wsproto.events import CloseConnection
from wsproto.frame_protocol import FrameProtocol

from harness import PYTHON, ROOT, WAIT, RedisServer, ServerProcess, StartServer
from protocol import messages
from protocol.commands import COMMANDS


def web_server(start_server: StartServer, *args: str) -> ServerProcess:
    return start_server("--web-port", "0", *args)


def get(server: ServerProcess, path: str, method: str = "GET", headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None) -> http.client.HTTPResponse:  # fmt: skip
    scheme, host, port = web_address(server)
    connection = (
        http.client.HTTPSConnection(host, port, context=context, timeout=WAIT)
        if scheme == "https"
        else http.client.HTTPConnection(host, port, timeout=WAIT)
    )
    connection.request(method, path, headers=headers or {})
    return connection.getresponse()


# --- the page --------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_strict_policy(start_server: StartServer) -> None:
    server = web_server(start_server, "--approve", "all")
    page = get(server, "/")
    assert page.status == 200
    assert page.getheader("Content-Type") == "text/html; charset=utf-8"
    html = page.read().decode()
    assert '<script src="/chat.js"' in html and "<script>" not in html  # no inline script
    policy = page.getheader("Content-Security-Policy") or ""
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert page.getheader("X-Content-Type-Options") == "nosniff"
    files = {"/chat.js": "text/javascript", "/chat.css": "text/css", "/favicon.svg": "image/svg"}
    for path, kind in files.items():
        reply = get(server, path)
        assert reply.status == 200 and (reply.getheader("Content-Type") or "").startswith(kind), path
        assert reply.read(), path
    head = get(server, "/", "HEAD")
    assert head.status == 200 and head.read() == b""
    assert get(server, "/etc/passwd").status == 404
    assert get(server, "/", "POST").status == 405
    assert get(server, "/chat").status == 426  # the WebSocket's path, asked for as a page


def test_the_server_names_the_page_on_its_own_host_right_after_listening(start_server: StartServer) -> None:
    server = web_server(start_server)
    scheme, host, port = web_address(server)
    assert (scheme, host) == ("http", server.host) and port != server.port
    lines = server.log.text().splitlines()
    listening = next(i for i, line in enumerate(lines) if "listening on" in line)
    assert "web page at http://" in lines[listening + 1]


def test_without_the_flag_there_is_no_web_side(start_server: StartServer) -> None:
    server = start_server()
    assert "web page" not in server.log.text()
    assert server.proc.poll() is None


@pytest.mark.parametrize(
    "more",
    [
        (),
        pytest.param(
            ("--processes", "2"),
            marks=pytest.mark.skipif(
                shutil.which("redis-server") is None, reason="redis-server is not installed"
            ),
        ),
    ],
    ids=["one process", "two processes"],
)
def test_a_web_port_in_use_is_named_and_the_server_does_not_start(more: tuple[str, ...]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [PYTHON, str(ROOT / "Server.py"), "--port", "0", "--db", ":memory:"]
        done = subprocess.run(
            [*command, "--web-port", str(port), *more],
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 1
    assert f"cannot start: --web-port {port} on 127.0.0.1 is already in use" in done.stdout


# --- the Origin rule -------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", None, "null"])
def test_the_websocket_refuses_any_origin_but_the_pages_own(
    start_server: StartServer, origin: str | None
) -> None:
    server = web_server(start_server, "--approve", "all")
    client = WebClient(server, origin=origin)
    assert client.status == 403
    assert b"Only the chat's own page may connect here." in client.refusal
    assert client.lines == []
    server.log.wait_for("refused web connection .*(Origin|no Origin)")
    assert "connect 127.0.0.1" not in server.log.text()  # never reached the room
    own = WebClient(server)
    assert own.status == 101


def test_another_port_of_the_same_host_is_another_origin(start_server: StartServer) -> None:
    server = web_server(start_server)
    _scheme, host, port = web_address(server)
    assert WebClient(server, origin=f"http://{host}:{port + 1}").status == 403
    assert WebClient(server, origin=f"https://{host}:{port}").status == 403


# --- the same room ------------------------------------------------------------------------------


def test_a_browser_joins_through_the_operator_and_talks_with_a_terminal(start_server: StartServer) -> None:
    server = web_server(start_server)
    first = WebClient(server)
    hello = first.expect_hello()
    assert [c["name"] for c in hello["commands"]] == [spec.name for spec in COMMANDS]
    assert first.expect("Greeting")
    first.join("webby")
    request = server.asked_about("webby")
    assert " via the web - let in? [y/n]" in request
    assert first.expect("Waiting")["name"] == "webby"
    server.console("y")
    welcome = first.expect("Welcome")
    assert welcome["names"] == ["webby"] and welcome["at"]
    terminal = server.connect("tess")
    assert first.expect("Joined", "tess")["name"] == "tess"
    terminal.send("hello **web**")
    said = first.expect("Message", "hello web")
    assert said["name"] == "tess" and ["web", "b", None] in said["body"]
    first.send("and hello __terminal__ :thumbs_up:")
    line = terminal.expect("<webby>")
    assert messages.MESSAGE.match(line) == {"name": "webby", "text": "and hello terminal 👍"}
    assert "\x1b[0;3mterminal" in line  # the italic reaches the terminal as SGR


def test_a_refusal_reaches_the_browser_and_closes(start_server: StartServer) -> None:
    server = web_server(start_server)
    client = WebClient(server)
    client.join("stranger")
    server.refuse("stranger")
    refused = client.expect("Refused")
    assert body_text(refused) == messages.REFUSED().removeprefix("*** ")
    client.expect_closed()
    assert client.close_code == 1000


def test_the_same_name_rules_and_limits_apply(start_server: StartServer) -> None:
    server = web_server(start_server, "--approve", "all", "--max-clients", "2", "--max-line", "100")
    first = WebClient(server)
    first.join("server")  # reserved
    assert "reserved" in first.expect("NameRejected")["reason"]
    first.join("ada")
    first.expect("Welcome")
    terminal = server.connect("ada2")
    third = WebClient(server)
    assert third.expect("Refused")["kind"] == "Refused"
    assert "The room is full (2 people)" in body_text(third.lines[-1])
    third.expect_closed()
    # A message longer than --max-line is reported and skipped; the connection stays.
    first.send("x" * 5000)
    assert body_text(first.expect("Notice", "longer than 100 bytes"))
    first.send("still here")
    assert messages.MESSAGE.match(terminal.expect("<ada>")) == {"name": "ada", "text": "still here"}


def test_a_huge_frame_is_skipped_as_it_streams_in(start_server: StartServer) -> None:
    """A frame says how long it is up front; the server never holds it whole, and the line is refused."""
    server = web_server(start_server, "--approve", "all")
    client = WebClient(server)
    client.join("big")
    client.expect("Welcome")
    frames = FrameProtocol(client=True, extensions=[])
    payload = "y" * (8 * 1024 * 1024)
    client.send_frames(bytes(frames.send_data(payload)))
    client.expect("Notice", messages.LINE_TOO_LONG(limit=4096).removeprefix("*** "), timeout=30)
    client.send("after the flood")
    client.expect("Message", "after the flood")


def test_several_lines_in_one_message_are_several_lines(start_server: StartServer) -> None:
    server = web_server(start_server, "--approve", "all")
    client = WebClient(server)
    client.join("paster")
    client.expect("Welcome")
    client.send("one\ntwo\r\n/me three")
    assert client.expect("Message", "one") and client.expect("Message", "two")
    assert client.expect("Action", "three")["name"] == "paster"


def test_private_messages_reach_only_their_recipient(start_server: StartServer) -> None:
    server = web_server(start_server, "--approve", "all")
    alice, bob = WebClient(server), WebClient(server)
    alice.join("alice")
    alice.expect("Welcome")
    bob.join("bob")
    bob.expect("Welcome")
    carol = server.connect("carol")
    carol.send("/private alice the secret word")
    assert alice.expect("PrivateFrom", "the secret word")["name"] == "carol"
    carol.send("public again")
    bob.expect("Message", "public again")
    alice.send("/reply thanks")
    carol.expect(r"\[PM from alice\] thanks")
    assert all("secret" not in body_text(line) for line in bob.lines)


def test_a_ping_is_answered(start_server: StartServer) -> None:
    server = web_server(start_server, "--approve", "all")
    client = WebClient(server)
    client.ping(b"are you there")
    client.wait(lambda: client.pongs == [b"are you there"], "the pong")


def test_a_browser_that_closes_leaves_the_room(start_server: StartServer) -> None:
    server = web_server(start_server, "--approve", "all")
    client = WebClient(server)
    client.join("brief")
    client.expect("Welcome")
    watcher = server.connect("watcher")
    client.sock.sendall(client.ws.send(CloseConnection(code=1001)))
    client.expect_closed()
    assert client.close_code == 1001
    watcher.expect(messages.LEFT)
    server.log.wait_for(r"disconnect brief .*\(1 in room, 0 waiting, 1 connected\)")


# --- a browser that stops reading ------------------------------------------------------------------


def test_a_browser_that_never_reads_is_cut_off_and_nobody_else_waits(start_server: StartServer) -> None:
    server = web_server(start_server, "--approve", "all", "--flood-rate", "0", "--max-outbox", "65536")
    stalled = WebClient(server, rcvbuf=4096)
    stalled.join("stalled")
    stalled.expect("Welcome")  # ...and from now on it never reads again
    sender, reader = server.connect("sender"), server.connect("reader")
    threading.Thread(target=lambda: all(iter(lambda: sender.sock.recv(65536), b"")), daemon=True).start()
    lines, filler = 600, "x" * 900
    for start in range(0, lines, 50):
        sender.sock.sendall("".join(f"payload-{i} {filler}\n" for i in range(start, start + 50)).encode())
        reader.expect(f"payload-{start + 49} ")
    server.log.wait_for(r"leave stalled .*not reading: over 65536 bytes waiting")
    reader.send("/who")
    assert "stalled" not in reader.expect(messages.WHO)


# --- TLS -----------------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[trustme.CA, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return ca, cert_path, key_path


def test_with_tls_the_page_is_https_and_the_socket_wss(
    start_server: StartServer, certificate: tuple[trustme.CA, Path, Path]
) -> None:
    ca, cert, key = certificate
    server = web_server(start_server, "--approve", "all", "--tls-cert", str(cert), "--tls-key", str(key))
    scheme, host, port = web_address(server)
    assert scheme == "https"
    context = ssl.create_default_context()
    ca.configure_trust(context)
    assert get(server, "/", context=context).status == 200
    client = WebClient(server, context=context)
    assert client.status == 101
    client.join("secure")
    client.expect("Welcome")
    # Plain http:// on the TLS port is sent to https://.
    plain = http.client.HTTPConnection(host, port, timeout=WAIT)
    plain.request("GET", "/")
    moved = plain.getresponse()
    assert moved.status == 301 and moved.getheader("Location") == f"https://{host}:{port}/"
    assert WebClient(server, origin=f"http://{host}:{port}", context=context).status == 403


# --- several servers, one room ----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_a_browser_on_one_server_talks_with_a_terminal_on_another(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    shared = ("--approve", "all", "--redis", redis_server.url, "--redis-ttl", "5")
    a = web_server(start_server, *shared, "--node", "a")
    b = start_server(*shared, "--node", "b")
    browser = WebClient(a)
    browser.join("webster")
    browser.expect("Welcome")
    terminal = b.connect("termina")
    browser.expect("Joined", "termina")
    terminal.send("hello across")
    assert browser.expect("Message", "hello across")["name"] == "termina"
    browser.send("/private termina from the browser")
    terminal.expect(r"\[PM from webster\] from the browser")
    browser.send("/who")
    assert browser.expect("WhoList")["names"] == ["webster", "termina"]


def test_an_http_request_too_big_or_too_slow_is_closed(start_server: StartServer) -> None:
    server = web_server(start_server)
    assert get(server, "/", headers={"X-Padding": "p" * 20_000}).status == 431
    _scheme, host, port = web_address(server)
    with socket.create_connection((host, port), timeout=WAIT) as idle:  # says nothing at all
        idle.settimeout(WAIT + 15)
        assert idle.recv(100) == b""  # closed by the server (after 10 s), not by this test
