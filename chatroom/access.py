"""Who may not come in (bans) and who comes in without asking (the allow-list).

Bans are kept in the store, so they outlive restarts; a ban names either a
person (by name key, so case and look-alikes do not dodge it) or an address.
The allow-list is a plain file of names, one per line, that the operator can
edit by hand; ``/allow`` appends to it. An allow-listed *name* is a
convenience, not authentication: anyone may type that name, so use it on
networks you trust, or together with TLS and a firewall.

Bans are written through a ``BanStore``: the SQLite store for a server on its
own, or the cluster bus, which keeps them in Redis and tells the other
servers (``note`` is how their bans arrive here).

Not thread-safe on its own: the room calls it under its lock.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterable
from typing import Protocol

from protocol.names import name_key

NAME = "name"
ADDRESS = "address"


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class BanStore(Protocol):
    def bans(self) -> list[tuple[str, str]]: ...
    def add_ban(self, kind: str, value: str) -> None: ...
    def remove_ban(self, kind: str, value: str) -> None: ...


class Access:
    def __init__(self, store: BanStore, allow_file: str | None) -> None:
        self._store = store
        self._banned = {(kind, value) for kind, value in store.bans()}
        self.allow_file = allow_file
        self._allowed: set[str] = set()
        if allow_file and os.path.exists(allow_file):
            with open(allow_file, encoding="utf-8") as lines:
                self._allowed = {name_key(n) for line in lines if (n := line.split("#")[0].strip())}

    # --- bans ----------------------------------------------------------------------

    def banned(self, host: str = "", key: str = "") -> bool:
        return (ADDRESS, host) in self._banned or (NAME, key) in self._banned

    def ban(self, kind: str, value: str) -> bool:
        """Add a ban; False if it was already there."""
        value = self._normal(kind, value)
        if (kind, value) in self._banned:
            return False
        self._banned.add((kind, value))
        self._store.add_ban(kind, value)
        return True

    def unban(self, target: str) -> list[tuple[str, str]]:
        """Lift every ban ``target`` names (an address, or a name); returns what was lifted."""
        kind = ADDRESS if is_address(target) else NAME
        entry = (kind, self._normal(kind, target))
        if entry not in self._banned:
            return []
        self._banned.discard(entry)
        self._store.remove_ban(*entry)
        return [entry]

    def bans(self) -> list[tuple[str, str]]:
        return sorted(self._banned)

    def note(self, kind: str, value: str, banned: bool) -> bool:
        """A ban made or lifted elsewhere (already stored): remember it; False if nothing changed."""
        entry = (kind, self._normal(kind, value))
        if (entry in self._banned) == banned:
            return False
        if banned:
            self._banned.add(entry)
        else:
            self._banned.discard(entry)
        return True

    def adopt(self, bans: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Take the stored list as the truth (after a reconnect); returns the bans new here."""
        adopted = set()
        for kind, value in bans:
            with contextlib.suppress(ValueError):  # not one of ours: skip it rather than fail
                adopted.add((kind, self._normal(kind, value)))
        new = sorted(adopted - self._banned)
        self._banned = adopted
        return new

    @staticmethod
    def _normal(kind: str, value: str) -> str:
        return str(ipaddress.ip_address(value)) if kind == ADDRESS else name_key(value)

    # --- the allow-list -------------------------------------------------------------

    def allowed(self, key: str) -> bool:
        return key in self._allowed

    def allow(self, name: str) -> bool:
        """Put ``name`` on the allow-list (and in the file); False if it was there."""
        key = name_key(name)
        if key in self._allowed:
            return False
        self._allowed.add(key)
        if self.allow_file:
            with open(self.allow_file, "a", encoding="utf-8") as out:
                out.write(name + "\n")
        return True
