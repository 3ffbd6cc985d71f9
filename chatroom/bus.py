"""The room's seam to the rest of the room: other servers, and where history and bans are kept.

The room (``chatroom.room``) knows the people connected to *this* server.
What may concern anyone else goes through its bus:

* ``LocalBus`` (here): a server on its own. History and bans in the SQLite
  store (``chatroom.storage``), every name and person local.
* ``chatroom.cluster.ClusterBus``: one room shared by several servers
  through Redis (``--redis``); its docstring says how.

The room hands the bus *operations*, small frozen dataclasses, in the order
it decided them (``send``), and asks it *questions* (``claim``, ``elsewhere``,
``find``). What other servers say comes back through the room's entry points
(``RoomEvents``), which take the room's lock themselves: a bus never holds it.

Calling rules, which keep the room's lock short:

* ``send``, ``remember``, ``recent``, ``part`` and ``rejoin`` are called with
  the room's lock held. They never wait for the network or a disk: work is
  queued for a thread of the bus's own, which keeps the order of the calls.
* ``claim``, ``elsewhere`` and ``find`` wait for an answer from the other
  servers, so they are called *without* the lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatroom.passwords import Registration
from chatroom.storage import SearchUnavailable as SearchUnavailable  # raised by every bus
from chatroom.storage import Store

# --- operations: what the room tells the rest of the room ---------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Public lines for everyone on every server; they come back through ``RoomEvents.lines_arrived``.

    ``remember``: kept in the shared history (conversation is; join and leave notices are not).
    """

    lines: tuple[str, ...]
    remember: bool = True


@dataclass(frozen=True, slots=True)
class Enter:
    """Someone here is in the room now (or under a new name)."""

    key: str
    name: str
    address: str
    since: float  # connected (wall clock)
    joined: float  # let in (wall clock)
    away: str | None = None  # /away, with its reason ("" for none)


@dataclass(frozen=True, slots=True)
class Leave:
    key: str


@dataclass(frozen=True, slots=True)
class Release:
    """A name someone here held is free again."""

    key: str


@dataclass(frozen=True, slots=True)
class SendPrivate:
    """A private message, rendered, for someone on server ``node``."""

    node: str
    key: str
    sender: str
    line: str


@dataclass(frozen=True, slots=True)
class BanChange:
    kind: str
    value: str
    banned: bool


@dataclass(frozen=True, slots=True)
class Registered:
    """A name registered, changed (its password, when its owner last left) or let go (None)."""

    key: str
    registration: Registration | None


Op = Publish | Enter | Leave | Release | SendPrivate | BanChange | Registered


@dataclass(frozen=True, slots=True)
class Present:
    """Someone in the room on another server, as the bus last heard of them."""

    name: str
    node: str
    address: str
    since: float  # connected (wall clock)
    joined: float  # let in (wall clock); the room lists people in this order
    away: str | None = None


class RoomEvents(Protocol):
    """The room's entry points for what arrives from other servers; each takes the room's lock."""

    def lines_arrived(self, rendered: list[str], new: list[str]) -> None:
        """Public lines to deliver here; ``new``: those this server's history does not hold yet."""

    def private_arrived(self, key: str, sender: str, line: str) -> None: ...
    def ban_arrived(self, kind: str, value: str, banned: bool, node: str) -> None: ...
    def names_lost(self, keys: list[str]) -> None: ...
    def bans_stored(self, stored: list[tuple[str, str]]) -> None: ...
    def registration_arrived(self, key: str, registration: Registration | None) -> None: ...
    def bus_lost(self) -> None: ...
    def bus_back(self, elsewhere: int, announce: bool = True) -> None: ...
    def bans(self) -> list[tuple[str, str]]: ...
    def count(self) -> int: ...


class Bus(Protocol):
    #: This server's name among several; None for a server on its own.
    node: str | None
    #: Where history and bans are kept, for the log.
    where: str

    def start(self, room: RoomEvents, node: str) -> None: ...
    def close(self, farewells: Sequence[str], timeout: float) -> None: ...

    # With the room's lock held; never waits.
    def send(self, op: Op) -> None: ...
    def remember(self, lines: Sequence[str]) -> None: ...
    def recent(self) -> list[str]: ...
    def since(self, at: float) -> list[str]: ...
    def part(self) -> list[str]: ...
    def rejoin(self) -> None: ...

    # Without the lock; may wait for an answer.
    def bans(self) -> list[tuple[str, str]]: ...
    def registrations(self) -> dict[str, Registration]: ...
    def search(self, words: Sequence[str], limit: int) -> list[str]:
        """The most recent public lines with every word, oldest first; raises ``SearchUnavailable``."""

    def claim(self, key: str) -> bool: ...
    def elsewhere(self) -> Sequence[Present]:
        """Everyone in the room on the other servers, in the order they were let in."""

    def find(self, key: str) -> Present | None: ...


class LocalBus:
    """A server on its own: history and bans in the store, and no one anywhere else."""

    node: str | None = None

    def __init__(self, store: Store) -> None:
        self.store = store
        self.where = store.path

    def start(self, room: RoomEvents, node: str) -> None:
        """Nothing to join."""

    def close(self, farewells: Sequence[str], timeout: float) -> None:
        """No one elsewhere needs the farewells; what is queued for the store is written out."""
        self.store.close(timeout)

    def send(self, op: Op) -> None:
        if isinstance(op, BanChange):
            self.store.save_ban(op.kind, op.value, op.banned)
        elif isinstance(op, Registered):
            self.store.save_registration(op.key, op.registration)
        # Nobody else to tell about the rest (the room never publishes on its own).

    def remember(self, lines: Sequence[str]) -> None:
        self.store.append(lines)

    def recent(self) -> list[str]:
        return self.store.recent()

    def since(self, at: float) -> list[str]:
        return self.store.since(at)

    def part(self) -> list[str]:
        return []  # never joined

    def rejoin(self) -> None:
        raise AssertionError("a server on its own never joins other servers")

    def bans(self) -> list[tuple[str, str]]:
        return self.store.bans()

    def registrations(self) -> dict[str, Registration]:
        return self.store.registrations()

    def search(self, words: Sequence[str], limit: int) -> list[str]:
        return self.store.search(words, limit)

    def claim(self, key: str) -> bool:
        return True  # the room has checked its own names already

    def elsewhere(self) -> Sequence[Present]:
        return ()

    def find(self, key: str) -> Present | None:
        return None
