"""Passwords of registered names: kept only as a salted, slow hash (stdlib ``hashlib.scrypt``).

A stored secret reads ``scrypt$N$R$P$SALT$HASH`` (salt and hash in base64),
so its cost can be raised later without breaking old ones. The cost here:
N = 2**15, r = 8, p = 1, a 16-byte salt, a 32-byte hash: about 32 MiB of
memory and tens of milliseconds of CPU per guess, for anyone who gets the
database as for the server. Hashing runs in the caller's thread, never under
the room's lock; ``_GATE`` lets two run at once, so many logins together
cannot take 32 MiB each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass

N, R, P = 2**15, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEMORY = 64 * 1024 * 1024
#: What a password may be (characters): long enough to matter, short enough to hash cheaply.
MIN_LENGTH = 6
MAX_LENGTH = 256

_GATE = threading.BoundedSemaphore(2)


@dataclass(frozen=True, slots=True)
class Registration:
    """A registered name: as it was registered, its hashed password, and when its owner last left."""

    name: str
    secret: str
    seen: float = 0.0  # wall clock; 0: not since it was registered


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _GATE:
        return hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=MAX_MEMORY
        )


def make_secret(password: str) -> str:
    """What is stored for ``password``: never the password, nor anything that gives it back."""
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P)
    return "$".join(["scrypt", str(N), str(R), str(P), _b64(salt), _b64(digest)])


def check(password: str, secret: str) -> bool:
    """Does ``password`` match the stored ``secret``? (False for anything malformed.)"""
    try:
        kind, n, r, p, salt, digest = secret.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
