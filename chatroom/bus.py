"""The room's one seam to the rest of the room: where public lines, names, presence and bans go.

A ``Room`` knows the people connected to *this* server. Everything that may
concern people on other servers goes through its bus:

* ``LocalBus`` (here) is the room on its own, exactly as it always was:
  history and bans in SQLite, every name and person local, nobody elsewhere.
* ``chatroom.cluster.ClusterBus`` shares one room between several servers
  through Redis (``--redis``); its docstring describes how.

The calling rules keep the room's one-lock rule intact:

* ``publish``, ``recent``, ``enter``, ``leave``, ``release`` and the ban
  methods are called with ``Room.lock`` held (``private`` may be). They must
  not wait for the network: a remote bus queues the work for a thread of its
  own, which keeps the order in which they were called.
* ``claim``, ``elsewhere`` and ``find`` ask the rest of the room a question
  and wait for the answer, so they are called *without* the lock.
* ``publish`` returns True when the caller is to deliver the line to this
  server's readers now (a lone server, or a cluster server cut off from
  Redis); False means the line comes back through the room's
  ``deliver_locked`` in the order the whole room sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chatroom.storage import Store

if TYPE_CHECKING:
    from chatroom.room import Member, Room


@dataclass(frozen=True)
class Present:
    """Someone in the room on another server, as the bus last heard of them."""

    name: str
    node: str
    address: str
    since: float  # connected (wall clock)
    joined: float  # let in (wall clock); the room lists people in this order


class Bus(Protocol):
    #: This server's name among several; None for a server on its own.
    node: str | None
    #: Where history and bans are kept, for the log.
    where: str

    def start(self, room: Room, node: str) -> None: ...
    def close(self, farewells: list[str]) -> None: ...

    # Called with Room.lock held (private: may be); never waits for the network.
    def publish(self, lines: list[str]) -> bool: ...
    def recent(self) -> list[str]: ...
    def enter(self, member: Member) -> None: ...
    def leave(self, member: Member) -> None: ...
    def release(self, key: str) -> None: ...
    def private(self, where: Present, key: str, sender: str, line: str) -> None: ...
    def bans(self) -> list[tuple[str, str]]: ...
    def add_ban(self, kind: str, value: str) -> None: ...
    def remove_ban(self, kind: str, value: str) -> None: ...

    # Called without the lock; may wait for an answer.
    def claim(self, key: str) -> bool: ...
    def elsewhere(self) -> list[Present]: ...
    def find(self, key: str) -> Present | None: ...


class LocalBus:
    """A server on its own: history and bans in SQLite, and no one anywhere else."""

    node: str | None = None

    def __init__(self, store: Store, grace: float) -> None:
        """``grace``: how long closing waits for the store to write what is waiting."""
        self.store = store
        self.where = store.path
        self._grace = grace

    def start(self, room: Room, node: str) -> None:
        """Nothing to join."""

    def close(self, farewells: list[str]) -> None:
        """No one elsewhere needs the farewells; the store writes what waits, within the grace."""
        self.store.close(self._grace)

    def publish(self, lines: list[str]) -> bool:
        self.store.append(lines)  # written behind the room (see chatroom.storage)
        return True

    def recent(self) -> list[str]:
        return self.store.recent()

    def enter(self, member: Member) -> None:
        pass

    def leave(self, member: Member) -> None:
        pass

    def release(self, key: str) -> None:
        pass

    def private(self, where: Present, key: str, sender: str, line: str) -> None:
        raise AssertionError("no one is elsewhere")  # find() never finds anyone

    def bans(self) -> list[tuple[str, str]]:
        return self.store.bans()

    def add_ban(self, kind: str, value: str) -> None:
        self.store.save_ban(kind, value, True)

    def remove_ban(self, kind: str, value: str) -> None:
        self.store.save_ban(kind, value, False)

    def claim(self, key: str) -> bool:
        return True  # the room has checked its own names already

    def elsewhere(self) -> list[Present]:
        return []

    def find(self, key: str) -> Present | None:
        return None
