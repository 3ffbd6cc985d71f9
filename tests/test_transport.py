"""The reading side both programs share, in-process over socket pairs, plain and with TLS."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import trustme

from chatroom.tls import TlsLayer, client_context, server_context
from chatroom.transport import Disconnected, LineStream
from harness import WAIT
from protocol.framing import Event, Line, LineReader, Overlong


def plain_pair() -> tuple[LineStream, socket.socket]:
    ours, theirs = socket.socketpair()
    return LineStream(ours, LineReader(16), lambda: None, "peer"), theirs


def test_lines_arrive_whole_however_they_were_split() -> None:
    stream, theirs = plain_pair()
    theirs.sendall(b"hel")
    assert stream.events(time.monotonic() + WAIT) == []
    theirs.sendall("lo\r\nwörld\n".encode())
    assert stream.events(time.monotonic() + WAIT) == [Line("hello"), Line("wörld")]


def test_an_overlong_line_is_reported_not_kept() -> None:
    stream, theirs = plain_pair()
    theirs.sendall(b"x" * 40 + b"\nok\n")
    assert stream.events(time.monotonic() + WAIT) == [Overlong(16), Line("ok")]


def test_a_deadline_passes_and_the_end_is_disconnected() -> None:
    stream, theirs = plain_pair()
    with pytest.raises(TimeoutError):
        stream.events(time.monotonic() + 0.01)
    theirs.close()
    with pytest.raises(Disconnected, match="closed by peer") as gone:
        stream.events(None)
    assert not gone.value.lost


def test_tls_both_ends_through_the_same_stream() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("chat.test")
    server_sock, client_sock = socket.socketpair()
    with cert.cert_chain_pems[0].tempfile() as chain, cert.private_key_pem.tempfile() as key:
        server_tls = TlsLayer(server_context(chain, key))
    with ca.cert_pem.tempfile() as cafile:
        client_tls = TlsLayer(client_context(cafile), server_hostname="chat.test")
    server = LineStream(
        server_sock, LineReader(100), lambda: server_sock.sendall(server_tls.encrypt(b"")), "client"
    )
    client = LineStream(
        client_sock, LineReader(100), lambda: client_sock.sendall(client_tls.encrypt(b"")), "server"
    )
    deadline = time.monotonic() + WAIT
    handshake = threading.Thread(target=client.handshake, args=(client_tls, b"", deadline))
    handshake.start()
    server.handshake(server_tls, server.recv(deadline), deadline)
    handshake.join(WAIT)
    client_sock.sendall(client_tls.encrypt(b"secret line\n"))
    assert next_lines(server, deadline) == [Line("secret line")]
    server_sock.sendall(server_tls.encrypt(b"reply\n"))
    assert next_lines(client, deadline) == [Line("reply")]


def next_lines(stream: LineStream, deadline: float) -> list[Event]:
    """The next read that completes lines (TLS records of its own, like session tickets, complete none)."""
    while not (events := stream.events(deadline)):
        pass
    return events
