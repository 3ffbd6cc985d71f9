"""One chat line in, one small frozen command out, from one table of the commands.

``parse`` is total: every string maps to exactly one command, and mistakes
map to ``Invalid`` carrying the message the sender should see. It checks
syntax and colour names only; whether a recipient exists is the room's
business.

``COMMANDS`` is the table both programs read: each command's spellings (a
canonical name and its aliases), what may follow it, and how a line becomes
the command. The server parses with it, and ``Client.py`` completes from it
(``next_argument``), so what Tab offers cannot drift from what the server
accepts. ``CLIENT_COMMANDS`` are the few that ``Client.py`` carries out
itself; the server does not know them (it answers "Unknown command").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from formatting.colors import COLORS, lookup_color
from protocol import messages


@dataclass(frozen=True, slots=True)
class Say:
    text: str
    color: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """``/me waves`` -> ``* alice waves``."""

    text: str


@dataclass(frozen=True, slots=True)
class Private:
    recipient: str
    text: str
    color: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """``/reply text``: a private message to whoever last sent you one (ssh-chat's /reply)."""

    text: str
    color: str | None = None


@dataclass(frozen=True, slots=True)
class Rename:
    """``/nick alicia``: the room checks the name as it checks a first one."""

    name: str


@dataclass(frozen=True, slots=True)
class Whois:
    name: str


@dataclass(frozen=True, slots=True)
class Leave:
    pass


@dataclass(frozen=True, slots=True)
class Who:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Away:
    """``/away [reason]``: others see it in /who and /whois, and get it back for a private message."""

    reason: str


@dataclass(frozen=True, slots=True)
class Back:
    pass


@dataclass(frozen=True, slots=True)
class Search:
    """``/search words``: the most recent public lines holding every word."""

    words: str


@dataclass(frozen=True, slots=True)
class Register:
    """``/register password``: the name you have is yours from now on."""

    password: str


@dataclass(frozen=True, slots=True)
class ChangePassword:
    """``/password new``, for the registered name you joined under."""

    password: str


@dataclass(frozen=True, slots=True)
class Unregister:
    pass


@dataclass(frozen=True, slots=True)
class Empty:
    """A blank line: nothing to send, nothing to complain about."""


@dataclass(frozen=True, slots=True)
class Invalid:
    error: str


Command = (
    Say
    | Action
    | Private
    | Reply
    | Rename
    | Whois
    | Leave
    | Who
    | Help
    | Away
    | Back
    | Search
    | Register
    | ChangePassword
    | Unregister
    | Empty
    | Invalid
)


@dataclass(frozen=True, slots=True)
class Ignore:
    """``/ignore NAME`` in ``Client.py``: hide NAME's lines there; no name lists whom."""

    name: str


@dataclass(frozen=True, slots=True)
class Unignore:
    """``/unignore NAME``: show them again; no name lists whom, as ``/ignore`` does."""

    name: str


ClientCommand = Ignore | Unignore

PRIVATE_USAGE = "/private <name> <text>   (or: DM <name> <text>)"
COLOR_USAGE = "/color <colour> <text>"
ME_USAGE = "/me <action>"
NICK_USAGE = "/nick <new name>"
REPLY_USAGE = "/reply <text>"
WHOIS_USAGE = "/whois <name>"
SEARCH_USAGE = "/search <words>"
REGISTER_USAGE = "/register <password>"
PASSWORD_USAGE = "/password <new password>"


class Arg(Enum):
    """What a word after a command is, so a client knows what to complete there."""

    NAME = "the name of someone in the room"
    NEW_NAME = "a name of your choosing"
    COLOR = "a colour"
    TEXT = "text, to the end of the line"
    #: Private text, which may itself start with ``/color <colour>``.
    PRIVATE_TEXT = "text, or /color <colour> <text>"
    PASSWORD = "a password (Client.py asks for it, without echo, when it is left out)"


C = TypeVar("C", bound=Command | ClientCommand)


@dataclass(frozen=True)
class Spec(Generic[C]):
    """One command: how it is spelled, what follows it, what a line with it means."""

    name: str  # the canonical spelling, as /help shows it
    aliases: tuple[str, ...]
    args: tuple[Arg, ...]
    build: Callable[[str], C]  # from the rest of the line (stripped) to the command
    #: Spelled exactly so (no other case), and a command only when something
    #: follows: ``DM bob hi`` is a private message, ``DM`` alone is just text.
    word: bool = False

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    def spelled(self, word: str, followed: bool) -> bool:
        """Is ``word`` this command (``followed`` by more on the line, or not)?"""
        if self.word:
            return followed and word in self.spellings
        return word.lower() in self.spellings


def _split(text: str) -> tuple[str, str]:
    word, _, rest = text.partition(" ")
    return word, rest.strip()


def _private(rest: str) -> Command:
    recipient, body = _split(rest)
    if not recipient or not body:
        return Invalid(messages.USAGE(usage=PRIVATE_USAGE))
    return _maybe_colored(body, lambda text, color: Private(recipient, text, color))


def _reply(rest: str) -> Command:
    return _maybe_colored(rest, Reply) if rest else Invalid(messages.USAGE(usage=REPLY_USAGE))


def _maybe_colored(body: str, build: Callable[[str, str | None], Command]) -> Command:
    """A private text, which may itself be ``/color <colour> <text>``."""
    word, colored_body = _split(body)
    if COLOR.spelled(word, bool(colored_body)):
        return _colored(colored_body, build)
    return build(body, None)


def _colored(rest: str, build: Callable[[str, str], Command]) -> Command:
    name, body = _split(rest)
    if not name or not body:
        return Invalid(messages.USAGE(usage=COLOR_USAGE))
    color = lookup_color(name)
    if color is None:
        return Invalid(messages.UNKNOWN_COLOR(color=name, colors=color_list()))
    return build(body, color)


def _needs_text(build: Callable[[str], Command], usage: str) -> Callable[[str], Command]:
    return lambda rest: build(rest) if rest else Invalid(messages.USAGE(usage=usage))


def color_list() -> str:
    return ", ".join(COLORS)


PRIVATE = Spec[Command]("/private", ("/msg", "/pm", "/query"), (Arg.NAME, Arg.PRIVATE_TEXT), _private)
DM = Spec[Command]("DM", ("dm",), (Arg.NAME, Arg.PRIVATE_TEXT), _private, word=True)
COLOR = Spec[Command]("/color", ("/colour",), (Arg.COLOR, Arg.TEXT), lambda rest: _colored(rest, Say))
#: Everything the server understands, in the order Tab offers it.
COMMANDS: tuple[Spec[Command], ...] = (
    PRIVATE,
    Spec("/reply", (), (Arg.PRIVATE_TEXT,), _reply),
    COLOR,
    Spec("/me", (), (Arg.TEXT,), _needs_text(Action, ME_USAGE)),
    Spec("/nick", (), (Arg.NEW_NAME,), _needs_text(Rename, NICK_USAGE)),
    Spec("/who", ("/names",), (), lambda _rest: Who()),
    Spec("/whois", (), (Arg.NAME,), _needs_text(Whois, WHOIS_USAGE)),
    Spec("/away", (), (Arg.TEXT,), Away),
    Spec("/back", (), (), lambda _rest: Back()),
    Spec("/search", (), (Arg.TEXT,), _needs_text(Search, SEARCH_USAGE)),
    Spec("/register", (), (Arg.PASSWORD,), _needs_text(Register, REGISTER_USAGE)),
    Spec("/password", (), (Arg.PASSWORD,), _needs_text(ChangePassword, PASSWORD_USAGE)),
    Spec("/unregister", (), (), lambda _rest: Unregister()),
    Spec("/help", ("/?",), (), lambda _rest: Help()),
    Spec("/leave", ("/quit", "/exit", "/part"), (), lambda _rest: Leave()),
    DM,
)
#: Carried out by Client.py itself: the server never sees them (to it they are unknown).
CLIENT_COMMANDS: tuple[Spec[ClientCommand], ...] = (
    Spec("/ignore", (), (Arg.NAME,), Ignore),
    Spec("/unignore", (), (Arg.NAME,), Unignore),
)
AnySpec = Spec[Command] | Spec[ClientCommand]
#: What Client.py completes: the server's commands, then its own.
ALL_COMMANDS: tuple[AnySpec, ...] = (*COMMANDS, *CLIENT_COMMANDS)


def parse(line: str) -> Command:
    """What the server makes of a line."""
    text = line.strip()
    if not text:
        return Empty()
    if text.startswith("//"):
        return Say(text[1:])
    word, rest = _split(text)
    for spec in COMMANDS:
        if spec.spelled(word, bool(rest)):
            return spec.build(rest)
    if word.startswith("/"):
        return Invalid(messages.UNKNOWN_COMMAND(command=word))
    return Say(text)


def parse_client(line: str) -> ClientCommand | None:
    """The command ``Client.py`` carries out itself, or None for a line that goes to the server."""
    word, rest = _split(line.strip())
    for spec in CLIENT_COMMANDS:
        if spec.spelled(word, bool(rest)):
            return spec.build(rest)
    return None


def next_argument(words: Sequence[str]) -> Arg | None:
    """What the word after ``words`` (complete words, the first a command or not) is.

    ``Arg.TEXT`` for ordinary text; None where nothing more is expected
    (``/who``, a name after ``/whois``).
    """
    if not words:
        return Arg.TEXT
    spec = next((s for s in ALL_COMMANDS if s.spelled(words[0], followed=True)), None)
    if spec is None:
        return Arg.TEXT
    expected = list(spec.args)
    for word in words[1:]:
        if not expected:
            return None
        arg = expected.pop(0)
        if arg is Arg.PRIVATE_TEXT:
            expected = [Arg.COLOR, Arg.TEXT] if COLOR.spelled(word, followed=True) else [Arg.TEXT]
        elif arg is Arg.TEXT:
            expected = [Arg.TEXT]
    return expected[0] if expected else None
