"""One chat line in, one small frozen command out.

``parse`` is total: every string maps to exactly one command, and mistakes
map to ``Invalid`` carrying the message the sender should see. It checks
syntax and colour names only; whether a recipient exists is the room's
business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
class Empty:
    """A blank line: nothing to send, nothing to complain about."""


@dataclass(frozen=True, slots=True)
class Invalid:
    error: str


Command = Say | Action | Private | Reply | Rename | Whois | Leave | Who | Help | Empty | Invalid

PRIVATE_USAGE = "/private <name> <text>   (or: DM <name> <text>)"
COLOR_USAGE = "/color <colour> <text>"
ME_USAGE = "/me <action>"
NICK_USAGE = "/nick <new name>"
REPLY_USAGE = "/reply <text>"
WHOIS_USAGE = "/whois <name>"

_PRIVATE = frozenset({"/private", "/msg", "/pm", "/query"})
_LEAVE = frozenset({"/leave", "/quit", "/exit", "/part"})
_DM = frozenset({"DM", "dm"})
_COLOR = frozenset({"/color", "/colour"})


def parse(line: str) -> Command:
    text = line.strip()
    if not text:
        return Empty()
    if text.startswith("//"):
        return Say(text[1:])
    word, rest = _split(text)
    if word in _DM and rest:
        return _private(rest)
    if not word.startswith("/"):
        return Say(text)
    command = word.lower()
    if command in _PRIVATE:
        return _private(rest)
    if command in _LEAVE:
        return Leave()
    if command in _COLOR:
        return _colored(rest, Say)
    if command == "/me":
        return Action(rest) if rest else Invalid(messages.USAGE(usage=ME_USAGE))
    if command == "/reply":
        return _reply(rest)
    if command == "/nick":
        return Rename(rest) if rest else Invalid(messages.USAGE(usage=NICK_USAGE))
    if command == "/whois":
        return Whois(rest) if rest else Invalid(messages.USAGE(usage=WHOIS_USAGE))
    if command in ("/who", "/names"):
        return Who()
    if command in ("/help", "/?"):
        return Help()
    return Invalid(messages.UNKNOWN_COMMAND(command=word))


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
    if word.lower() in _COLOR:
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


def color_list() -> str:
    return ", ".join(COLORS)
