"""Who may not come in (bans) and who comes in without asking (the allow-list).

A ban names either a person (by name key, so case and look-alikes do not
dodge it) or an address. ``Access`` is the rules' view of both, plain sets
without I/O; the shell stores bans through the bus (SQLite, or Redis shared
by every server) and appends to the allow-list file.

The allow-list is a plain file of names, one per line, that the operator can
edit by hand; ``/allow`` appends to it. An allow-listed *name* is a
convenience, not authentication: anyone may type that name, so use it on
networks you trust, or together with TLS and a firewall.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterable

from protocol.names import name_key

NAME = "name"
ADDRESS = "address"


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Access:
    def __init__(self, bans: Iterable[tuple[str, str]] = (), allowed: Iterable[str] = ()) -> None:
        self._banned = set(bans)
        self._allowed = {name_key(name) for name in allowed}

    # --- bans ----------------------------------------------------------------------

    def banned(self, host: str = "", key: str = "") -> bool:
        return (ADDRESS, host) in self._banned or (NAME, key) in self._banned

    def ban(self, kind: str, value: str) -> tuple[str, str] | None:
        """Add a ban; the entry as stored, or None if it was there already."""
        entry = (kind, self._normal(kind, value))
        if entry in self._banned:
            return None
        self._banned.add(entry)
        return entry

    def unban(self, target: str) -> list[tuple[str, str]]:
        """Lift every ban ``target`` names (an address, or a name); returns what was lifted."""
        kind = ADDRESS if is_address(target) else NAME
        entry = (kind, self._normal(kind, target))
        if entry not in self._banned:
            return []
        self._banned.discard(entry)
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
        """Put ``name`` on the allow-list; False if it was there."""
        key = name_key(name)
        if key in self._allowed:
            return False
        self._allowed.add(key)
        return True


# --- the allow-list file (the shell reads it at start and appends to it) ---------------


def read_allow_file(path: str | None) -> list[str]:
    """The names in an allow-list file (``#`` starts a comment); none if there is no file."""
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as lines:
        return [name for line in lines if (name := line.split("#")[0].strip())]


def append_allow_file(path: str, name: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(name + "\n")
