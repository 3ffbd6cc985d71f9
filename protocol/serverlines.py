"""One line from the server in, one small frozen event out: what the line says.

A client reads the server's lines with the same ``protocol.messages``
wordings the server writes them with, so the two cannot drift apart. ``read``
is total: a line it does not recognise is a ``Notice`` (``*** …``) or
``Other``. Timestamps and colour codes are looked past.

A field that must be a name (names never contain spaces) or a count (digits)
is checked, so a line that merely looks like a notice, such as an operator's
announcement reading "x joined (3 in the room)", is not taken for one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from formatting.sanitize import strip_sgr
from protocol import messages
from protocol.messages import Wording

# --- joining ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greeting:
    """The first line of a chat server: it is one."""


@dataclass(frozen=True, slots=True)
class NamePrompt:
    """The server asks for a name (a prompt without a newline, not a line)."""


@dataclass(frozen=True, slots=True)
class PasswordPrompt:
    """The name is registered: the server asks for its password (a prompt, like the name's)."""


@dataclass(frozen=True, slots=True)
class NameRejected:
    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """The name was taken; the operator is asked."""

    name: str


@dataclass(frozen=True, slots=True)
class Welcome:
    """Let in. ``names`` may be the first few only, in a big room (``count`` is all)."""

    name: str
    count: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistoryStart:
    count: int


@dataclass(frozen=True, slots=True)
class HistoryEnd:
    pass


# --- in the room ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    name: str
    count: int


class Departure(Enum):
    LEFT = "left"
    DISCONNECTED = "disconnected"
    REMOVED = "removed by the operator"


@dataclass(frozen=True, slots=True)
class Left:
    name: str
    count: int
    how: Departure


@dataclass(frozen=True, slots=True)
class Renamed:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Message:
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class PrivateFrom:
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class PrivateTo:
    name: str
    text: str


@dataclass(frozen=True, slots=True)
class WhoList:
    """``/who``'s answer; a big room's list goes on in ``WhoMore`` lines."""

    count: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WhoMore:
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HelpEnd:
    """The last line of ``/help``."""


# --- the end ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goodbye:
    """The answer to ``/leave``; the server closes the connection next."""

    name: str


@dataclass(frozen=True, slots=True)
class Kicked:
    reason: str


@dataclass(frozen=True, slots=True)
class ShuttingDown:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    """Not let in (or no longer: a name lost while servers were apart); the connection closes."""

    text: str


@dataclass(frozen=True, slots=True)
class NeedsTls:
    pass


# --- anything else ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    """Some other ``***`` line: an error, an announcement, /whois, …"""

    text: str


@dataclass(frozen=True, slots=True)
class Other:
    """Not a line of this protocol (or not one this client knows)."""

    text: str


Event = (
    Greeting
    | NamePrompt
    | PasswordPrompt
    | NameRejected
    | Waiting
    | Welcome
    | HistoryStart
    | HistoryEnd
    | Joined
    | Left
    | Renamed
    | Message
    | Action
    | PrivateFrom
    | PrivateTo
    | WhoList
    | WhoMore
    | HelpEnd
    | Goodbye
    | Kicked
    | ShuttingDown
    | Refused
    | NeedsTls
    | Notice
    | Other
)

#: The first line a chat server sends: its greeting, or why it will not talk.
FIRST_LINES = (Greeting, Refused, NeedsTls)


def is_name_prompt(partial: str) -> bool:
    """Is the unfinished line the server has sent so far its name prompt?"""
    return partial == messages.NAME_PROMPT


def is_password_prompt(partial: str) -> bool:
    """Is the unfinished line the server has sent so far its password prompt?"""
    return partial == messages.PASSWORD_PROMPT


def _name(text: str) -> str:
    if not text or any(char.isspace() for char in text):
        raise ValueError(f"not a name: {text!r}")
    return text


def _names(text: str) -> tuple[str, ...]:
    """``alice, bob`` (and, in a welcome to a big room, `` and 7 more`` after them).

    In ``/who`` a name may be followed by `` (away: REASON)``; a reason may hold
    commas, so the list is split only outside parentheses.
    """
    listed = text if "(" in text else text.split(" and ")[0]
    entries, depth, start = [], 0, 0
    for at, char in enumerate(listed):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0 and listed.startswith(", ", at):
            entries.append(listed[start:at])
            start = at + 2
    entries.append(listed[start:])
    return tuple(_name(entry.split(" (away", 1)[0]) for entry in entries)


def _count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"not a count: {text!r}")
    return int(text)


_Fields = dict[str, str]


def _refused(wording: Wording) -> Callable[[_Fields], Event]:
    """A refusal, with its whole text (what the server said, without the ``***``)."""
    return lambda fields: Refused(wording(**fields).removeprefix(messages.NOTICE).strip())


# In order: the first wording that matches, with fields that check out, says what a line is.
_RULES: tuple[tuple[Wording, Callable[[_Fields], Event]], ...] = (
    (messages.MESSAGE, lambda f: Message(_name(f["name"]), f["text"])),
    (messages.ACTION, lambda f: Action(_name(f["name"]), f["text"])),
    (messages.PRIVATE_FROM, lambda f: PrivateFrom(_name(f["name"]), f["text"])),
    (messages.PRIVATE_TO, lambda f: PrivateTo(_name(f["name"]), f["text"])),
    (messages.JOINED, lambda f: Joined(_name(f["name"]), _count(f["count"]))),
    (messages.LEFT, lambda f: Left(_name(f["name"]), _count(f["count"]), Departure.LEFT)),
    (messages.DISCONNECTED, lambda f: Left(_name(f["name"]), _count(f["count"]), Departure.DISCONNECTED)),
    (messages.KICKED_NOTICE, lambda f: Left(_name(f["name"]), _count(f["count"]), Departure.REMOVED)),
    (messages.RENAMED, lambda f: Renamed(_name(f["old"]), _name(f["new"]))),
    (messages.WHO, lambda f: WhoList(_count(f["count"]), _names(f["names"]))),
    (messages.WHO_MORE, lambda f: WhoMore(_names(f["names"]))),
    (messages.GREETING, lambda _f: Greeting()),
    (messages.NAME_REJECTED, lambda f: NameRejected(f["reason"])),
    (messages.WAITING, lambda f: Waiting(_name(f["name"]))),
    (
        messages.WELCOME,
        lambda f: Welcome(_name(f["name"]), _count(f["count"]), _names(f["names"])),
    ),
    (messages.HISTORY_START, lambda f: HistoryStart(_count(f["count"]))),
    (messages.HISTORY_END, lambda _f: HistoryEnd()),
    (messages.HELP_END, lambda _f: HelpEnd()),
    (messages.GOODBYE, lambda f: Goodbye(_name(f["name"]))),
    (messages.KICKED, lambda f: Kicked(f["reason"])),
    (messages.SHUTTING_DOWN, lambda _f: ShuttingDown()),
    (messages.NEEDS_TLS, lambda _f: NeedsTls()),
    *((refusal, _refused(refusal)) for refusal in messages.REFUSALS),
    (messages.NOTICE_TEXT, lambda f: Notice(f["text"])),
)


def read(line: str) -> Event:
    """What ``line`` (as received: stamp, styles and all) says."""
    for wording, build in _RULES:
        fields = wording.match(line)
        if fields is None:
            continue
        try:
            return build(fields)
        except ValueError:
            continue
    return Other(strip_sgr(line))


#: Lines whose text, after a label, is what was said: wrapped rows line up after the label.
_LABELLED = (
    messages.MESSAGE,
    messages.ACTION,
    messages.PRIVATE_FROM,
    messages.PRIVATE_TO,
    messages.NOTICE_TEXT,
)


def text_start(line: str) -> int:
    """How many characters of ``line`` come before its text: ``[12:00:00] <alice> ``; 0 if none."""
    for wording in _LABELLED:
        if fields := wording.match(line):
            return len(strip_sgr(line)) - len(fields["text"])
    return 0
