"""What the room's rules decide, for the shell to carry out: small frozen values, no I/O.

``chatroom.rules`` returns a list of these from every transition, in the order
they must happen; ``chatroom.room`` applies them while it still holds the
room's lock (so every reader sees one order), except ``QueueChanged``, which
runs after the lock is released (the console reads the queue back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from chatroom.bus import Op

if TYPE_CHECKING:
    from collections.abc import Sequence


class Connection(Protocol):
    """How the shell reaches one member; the rules only hold it (``chatroom.delivery.Peer``)."""

    def tell(self, lines: Sequence[str]) -> None:
        """Send rendered lines to this member alone, after what was sent before; never waits."""

    def hang_up(self) -> None:
        """Close once what is queued has gone out, so the member's reader wakes up."""

    def attach(self) -> None:
        """From now on this member gets every broadcast."""

    def detach(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Tell:
    """Lines for one member only."""

    conn: Connection
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Lines for everyone in the room on this server."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Remember:
    """Lines for this server's history, replayed to newcomers (through the bus: ``Bus.remember``)."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HangUp:
    conn: Connection


@dataclass(frozen=True, slots=True)
class Attach:
    conn: Connection


@dataclass(frozen=True, slots=True)
class Detach:
    conn: Connection


@dataclass(frozen=True, slots=True)
class ToBus:
    """An operation for the rest of the room (``chatroom.bus``)."""

    op: Op


@dataclass(frozen=True, slots=True)
class Log:
    text: str


@dataclass(frozen=True, slots=True)
class LogChat:
    """Public lines said in the room, for the server's log (unless ``--no-log-chat``)."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AllowListed:
    """A name the operator added to the allow-list, for ``--allow-file``."""

    name: str


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """Who waits for the operator changed: prompt again, redraw the bar."""


Effect = (
    Tell
    | Broadcast
    | Remember
    | HangUp
    | Attach
    | Detach
    | ToBus
    | Log
    | LogChat
    | AllowListed
    | QueueChanged
)
