"""Who is in the room on the other servers: a mirror kept from the ``presence`` channel.

Every change to a server's members hash is numbered by one counter in Redis
and published on the ``presence`` channel in the same script (``scripts``:
``change`` for people in and out, ``presence`` for a whole rewrite), so the
bus's listener sees every server's changes in the order Redis made them.
This mirror applies them. On (re)union it starts from a snapshot read after
subscribing, and skips the changes the snapshot already holds.

Why a mirror: asking Redis who is elsewhere meant reading every member of
every other server, on every join, so joining N people cost N² (in Redis,
which runs one script at a time, and in parsing the answers). Now a question
costs one small round trip (``sync``: the counter and the servers alive),
and the caller waits until the mirror has applied every change up to that
count, so it sees at least what Redis held when it asked: someone who has
seen a join notice finds that person here, because the join was published
before its notice. Servers that stopped refreshing their alive key are left
out; a crashed server's alive key expires just before its names do, so no
one is listed twice when a name is taken again.

The answer (``Everyone``) is a view, not a copy: the mirror keeps people in
a list in the order they arrived (which is the order they were let in,
except after a rename or a rewrite, when it is sorted again), and a view is
that list up to where it ended when asked. Someone leaving empties their
slot; the list is compacted into a new one once more than half of it is
empty, and views of the old one keep it. A question then costs one small
object instead of a copy of the whole room, which on every join of a
10,000-person room was a copy of 5,000 pointers, and megabytes of memory
held in fragments. The room merges the view with its own members for the
welcome line without going through everyone.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import overload

from chatroom.bus import Present
from chatroom.cluster.scripts import present

#: A person elsewhere: (server, name key).
Where = tuple[str, str]
#: Empty slots in the mirror's list past which it is compacted (when they are also more than half).
COMPACT_AFTER = 1024


class Everyone(Sequence[Present]):
    """Who was elsewhere when asked, in the order they were let in: a view of the mirror's list.

    ``len`` is how many there were; iterating leaves out those who have left since.
    """

    __slots__ = ("_count", "_end", "_entries")

    def __init__(self, entries: list[Present | None], end: int, count: int) -> None:
        self._entries, self._end, self._count = entries, end, count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Present]:
        return (p for p in itertools.islice(self._entries, self._end) if p is not None)

    @overload
    def __getitem__(self, index: int) -> Present: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Present]: ...
    def __getitem__(self, index: int | slice) -> Present | Sequence[Present]:
        return tuple(self)[index]


class Presence:
    def __init__(self, node: str) -> None:
        self._node = node  # this server: its own changes are not mirrored
        self._cond = threading.Condition()  # guards everything below
        self._seq = 0  # the last numbered change applied (or held by the snapshot)
        self._entries: list[Present | None] = []  # in the order they arrived; None: left
        self._slot: dict[Where, int] = {}  # where each one is in _entries
        self._per_node: Counter[str] = Counter()
        self._in_order = True  # _entries is in the order of ``joined``
        self._latest = 0.0  # the latest ``joined`` in _entries

    # --- the listener's thread ------------------------------------------------------------

    def load(self, seq: int, nodes: Mapping[str, Sequence[tuple[str, bytes]]]) -> None:
        """Start again from a snapshot taken at ``seq`` (every server's key -> presence value)."""
        with self._cond:
            self._entries, self._slot = [], {}
            self._per_node.clear()
            for node, members in nodes.items():
                if node != self._node:
                    self._add_all(node, members)
            self._seq = seq
            self._cond.notify_all()

    def apply(self, data: bytes) -> None:
        """A message from the presence channel: ``[seq, node, 'change'|'reset', [[op, key, value]...]]``."""
        seq, node, kind, items = json.loads(data)
        with self._cond:
            if seq <= self._seq:
                return  # the snapshot holds it already
            if node != self._node:
                if kind == "reset":
                    self._drop(node)
                    self._add_all(node, [(key, value) for key, value in items or ()])
                else:
                    for op, key, value in items or ():
                        if op == "+":
                            self._add(node, key, value)
                        else:
                            self._remove((node, key))
            self._seq = seq
            self._cond.notify_all()

    # --- any thread ------------------------------------------------------------------------

    def wait(self, seq: int, timeout: float) -> bool:
        """Until every change up to ``seq`` is applied; False if that takes longer than ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._seq >= seq, timeout)

    def everyone(self, alive: set[str]) -> Everyone:
        """Everyone on the servers in ``alive``, in the order they were let in."""
        with self._cond:
            for node in [n for n in self._per_node if n not in alive]:
                self._drop(node)
            count = len(self._slot)
            if not self._in_order or len(self._entries) - count > max(count, COMPACT_AFTER):
                self._rebuild()
            return Everyone(self._entries, len(self._entries), count)

    # --- the mirror itself (with the lock held) -------------------------------------------------

    def _add_all(self, node: str, members: Sequence[tuple[str, str | bytes]]) -> None:
        for key, value in members:
            self._add(node, key, value)

    def _add(self, node: str, key: str, value: str | bytes) -> None:
        where = (node, key)
        person = present(node, value)
        if where in self._slot:
            self._entries[self._slot[where]] = None  # a new value moves them, as a rename does
        else:
            self._per_node[node] += 1
        self._slot[where] = len(self._entries)
        self._entries.append(person)
        if person.joined < self._latest:
            self._in_order = False
        else:
            self._latest = person.joined

    def _remove(self, where: Where) -> None:
        slot = self._slot.pop(where, None)
        if slot is not None:
            self._entries[slot] = None
            self._per_node[where[0]] -= 1
            if not self._per_node[where[0]]:
                del self._per_node[where[0]]

    def _drop(self, node: str) -> None:
        for where in [w for w in self._slot if w[0] == node]:
            self._remove(where)

    def _rebuild(self) -> None:
        """A new list, without empty slots and in order; views of the old one keep it."""
        people = [(where, p) for where, slot in self._slot.items() if (p := self._entries[slot]) is not None]
        people.sort(key=lambda entry: entry[1].joined)
        self._entries = [person for _where, person in people]
        self._slot = {where: slot for slot, (where, _person) in enumerate(people)}
        self._in_order = True
        last = self._entries[-1] if self._entries else None
        self._latest = last.joined if last is not None else 0.0
