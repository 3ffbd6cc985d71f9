"""A textbook threaded chat server: the shape most socket tutorials teach, as a benchmark peer.

It follows the classic recipe on purpose, without optimisations: ``receive()``
accepts and asks each newcomer for a nickname *in the accept loop*, every client
gets a thread running ``handle()``, and ``broadcast()`` loops over every socket
doing a blocking ``sendall`` from the sender's own thread. So one slow reader
holds up whoever is talking, and joins are served one at a time. The only
departures from the tutorials are the ones needed to be correct: a lock around
the client list, line framing (so the name prefix lands on whole lines), and a
failed send no longer removing the *sender*.

Protocol: the server sends ``NICK``, the client answers with a name, everyone
gets ``NAME joined!`` and the newcomer ``Connected to the server!``; after that
each line a client sends reaches every client (the sender too) as ``<NAME> line``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
from typing import BinaryIO

NICK = b"NICK\n"
CONNECTED = "Connected to the server!"

clients: list[socket.socket] = []
names: list[str] = []
clients_lock = threading.Lock()  # the list is changed by handler threads and read by all


def broadcast(message: bytes) -> None:
    """Send to everyone, one blocking sendall after another, in the caller's thread."""
    with clients_lock:
        targets = list(clients)
    for client in targets:
        with contextlib.suppress(OSError):  # that client's own handle() notices and removes it
            client.sendall(message)


def handle(client: socket.socket, reader: BinaryIO, name: str) -> None:
    """Relay each line from one client until it goes away."""
    try:
        for line in reader:
            broadcast(f"<{name}> ".encode() + line)
    except OSError:
        pass
    finally:
        with clients_lock:
            if client in clients:
                index = clients.index(client)
                del clients[index]
                del names[index]
        client.close()
        broadcast(f"{name} left!\n".encode())


def receive(server: socket.socket) -> None:
    """Accept clients forever, asking each for its nickname before taking the next."""
    while True:
        client, _address = server.accept()
        reader = client.makefile("rb")
        try:
            client.sendall(NICK)
            name = reader.readline().decode("utf-8", "replace").strip()
        except OSError:
            name = ""
        if not name:
            client.close()
            continue
        with clients_lock:
            clients.append(client)
            names.append(name)
        broadcast(f"{name} joined!\n".encode())
        with contextlib.suppress(OSError):
            client.sendall(f"{CONNECTED}\n".encode())
        threading.Thread(target=handle, args=(client, reader, name), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A textbook threaded chat server (benchmark peer).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=55555)
    args = parser.parse_args(argv)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.host, args.port))
    server.listen()
    print(f"listening on {args.host}:{server.getsockname()[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        receive(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
