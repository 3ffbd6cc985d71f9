"""What a newcomer is replayed, and what a registered name missed: the last lines, with their times.

One of these sits in front of wherever history is kept (``chatroom.storage``
for a server on its own, ``chatroom.cluster`` in Redis), so the room's
questions are answered from memory, never from a disk or the network. Not
thread-safe: its owner guards it with its own lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

#: Lines kept with their times for catch-up: the most a registered name is replayed.
CATCH_UP = 500

#: A line as kept: when it was said (wall clock), and the line as rendered.
Dated = tuple[float, str]


class Replay:
    def __init__(self, keep: int, lines: Iterable[Dated] = ()) -> None:
        """``keep``: lines replayed to a newcomer; 0 keeps nothing (``--history 0``)."""
        self.keep = keep
        self.size = max(keep, CATCH_UP) if keep else 0
        self._lines: deque[Dated] = deque(lines, maxlen=self.size)

    def extend(self, lines: Iterable[Dated]) -> None:
        self._lines.extend(lines)

    def dated(self) -> list[Dated]:
        return list(self._lines)

    def recent(self) -> list[str]:
        """The last ``keep`` lines, oldest first."""
        return [line for _at, line in list(self._lines)[-self.keep :]] if self.keep else []

    def since(self, at: float) -> list[str]:
        """The lines said after ``at``, at most ``CATCH_UP`` of them."""
        return [line for said, line in self._lines if said > at]
