"""TLS as a transform on bytes, so TLS and plain connections share one code path.

An ``ssl.SSLObject`` over two memory BIOs does the cryptography; the socket
stays an ordinary TCP socket. On the server a reader thread reads it and a
fan-out shard writes it without blocking; in ``Client.py`` a receiving thread
reads while a writer thread writes. OpenSSL objects are not safe for a
reader and a writer at once, so one lock serialises the (short, CPU-only)
calls; no socket I/O ever happens under it.
"""

from __future__ import annotations

import ssl
import threading


def client_context(cafile: str | None) -> ssl.SSLContext:
    """Verifies the server's certificate against ``cafile`` or the system store."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class TlsLayer:
    def __init__(self, context: ssl.SSLContext, server_hostname: str | None = None) -> None:
        """Server side unless ``server_hostname`` names the server being called."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_hostname is None,
            server_hostname=server_hostname,
        )
        self._lock = threading.Lock()

    def handshake(self, data: bytes) -> bool:
        """Feed what arrived; True once the handshake is complete."""
        with self._lock:
            self._incoming.write(data)
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return False
            return True

    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        """Application bytes from wire bytes, and whether the peer said goodbye."""
        chunks: list[bytes] = []
        with self._lock:
            self._incoming.write(data)
            while True:
                try:
                    chunk = self._tls.read(65536)
                except ssl.SSLWantReadError:
                    return b"".join(chunks), False
                except ssl.SSLZeroReturnError:
                    return b"".join(chunks), True
                if not chunk:
                    return b"".join(chunks), True
                chunks.append(chunk)

    def encrypt(self, data: bytes) -> bytes:
        """Wire bytes for ``data``, preceded by any records TLS queued itself."""
        with self._lock:
            if data:
                self._tls.write(data)
            return self._outgoing.read()

    @property
    def has_output(self) -> bool:
        return self._outgoing.pending > 0
