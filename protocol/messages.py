"""The wording of everything the server says, in one place.

Each message is a ``Wording``: the server formats it, and ``Client.py``, the
tests and the README recognise it with ``Wording.match`` built from the same
template, so the text can change without anything drifting out of step.

Lines a member sees in the room start with a ``[HH:MM:SS]`` timestamp (see
``protocol.lines``); ``match`` looks past it and past colour codes.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from formatting.sanitize import strip_sgr

NOTICE = "***"
#: The timestamp that starts every line in the room; group 1 is the time.
STAMP = re.compile(r"^\[(\d\d:\d\d(?::\d\d)?)\] ")


@dataclass(frozen=True)
class Wording:
    template: str
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts: list[str] = []
        for literal, name, _spec, _conv in string.Formatter().parse(self.template):
            parts.append(re.escape(literal))
            if name is not None:
                parts.append(f"(?P<{name}>.*?)")
        object.__setattr__(self, "_pattern", re.compile("".join(parts) + r"\Z", re.S))

    def __call__(self, **fields: object) -> str:
        return self.template.format(**fields)

    def match(self, line: str) -> dict[str, str] | None:
        """The fields of ``line`` if it is this message (styles and stamp ignored)."""
        found = self._pattern.match(STAMP.sub("", strip_sgr(line)))
        return found.groupdict() if found else None

    def matches(self, line: str) -> bool:
        return self.match(line) is not None


# --- joining --------------------------------------------------------------

GREETING = Wording(NOTICE + " Welcome to the chat room.")
NAME_PROMPT = "Your name: "
NAME_REJECTED = Wording(NOTICE + " That name can't be used: {reason}.")
NAME_TIMEOUT = Wording(NOTICE + " No name was given in time. Bye.")
WAITING = Wording(NOTICE + " Hello {name}. Waiting for the operator to let you in...")
NOT_YET = Wording(NOTICE + " Please wait: you can chat once the operator lets you in.")
WELCOME = Wording(NOTICE + " Welcome, {name}! In the room ({count}): {names}. Type /help for commands.")
HISTORY_START = Wording(NOTICE + " Recent messages ({count}):")
HISTORY_END = Wording(NOTICE + " End of history.")
# A registered name comes back: instead of the recent messages, what was said since it left.
CATCH_UP_START = Wording(NOTICE + " What you missed since {since} ({count}):")
CATCH_UP_END = Wording(NOTICE + " End of what you missed.")
NOTHING_MISSED = Wording(NOTICE + " Nothing was said since you left at {since}.")

# Registered names: after the name, a password (the prompt, like the name's, has no newline).
PASSWORD_PROMPT = "Password: "
PASSWORD_WRONG = Wording(NOTICE + " Wrong password for {name}.")

# Refusals: the connection is closed right after one of these.
REFUSED = Wording(NOTICE + " The operator did not let you in. Bye.")
APPROVAL_TIMEOUT = Wording(NOTICE + " The operator did not answer in time. Bye.")
ROOM_FULL = Wording(NOTICE + " The room is full ({limit} people). Try again later.")
QUEUE_FULL = Wording(NOTICE + " Too many people are waiting to join. Try again later.")
QUEUE_SHARE_FULL = Wording(
    NOTICE + " Too many people from your {where} are waiting to join ({limit}). Try again later."
)
TOO_MANY_FROM_HOST = Wording(NOTICE + " Too many connections from your address ({limit}).")
BANNED = Wording(NOTICE + " You are banned from this room.")
PASSWORD_REFUSED = Wording(NOTICE + " Too many wrong passwords for {name}. Bye.")
NEEDS_TLS = Wording(NOTICE + " This server speaks TLS: connect with Client.py --tls (nc and telnet cannot).")
NAME_LOST = Wording(
    NOTICE + " While the servers were apart, someone on another one took the name {name}. "
    "Please join again under another name."
)
REFUSALS = (
    REFUSED,
    APPROVAL_TIMEOUT,
    ROOM_FULL,
    QUEUE_FULL,
    QUEUE_SHARE_FULL,
    TOO_MANY_FROM_HOST,
    BANNED,
    PASSWORD_REFUSED,
    NAME_TIMEOUT,
    NAME_LOST,
)

# --- name rules (reasons for NAME_REJECTED) -------------------------------

NAME_EMPTY = "it is empty"
NAME_TOO_LONG = "it is longer than {limit} characters"
NAME_HAS_SPACE = "it contains a space"
NAME_HAS_CONTROL = "it contains control characters"
NAME_HAS_INVISIBLE = "it contains invisible characters"
NAME_BLANK = "it would show as blank"
NAME_TOO_MANY_MARKS = "a character in it has more than {limit} combining marks"
NAME_BAD_CHARACTER = "only letters, digits, '_', '-' and '.' are allowed, starting with a letter or digit"
NAME_RESERVED = "'{name}' is reserved"
NAME_TAKEN = "'{name}' is already taken"

# --- in the room ----------------------------------------------------------

JOINED = Wording(NOTICE + " {name} joined ({count} in the room)")
LEFT = Wording(NOTICE + " {name} left ({count} in the room)")
DISCONNECTED = Wording(NOTICE + " {name} disconnected ({count} in the room)")
KICKED_NOTICE = Wording(NOTICE + " {name} was removed by the operator ({count} in the room)")
RENAMED = Wording(NOTICE + " {old} is now known as {new}")
ANNOUNCEMENT = Wording(NOTICE + " Operator: {text}")
WHO = Wording(NOTICE + " In the room ({count}): {names}")
WHO_MORE = Wording(NOTICE + " ... {names}")
WHOIS = Wording(NOTICE + " {name}: in the room since {since} ({ago} ago), idle {idle}")
WHOIS_ELSEWHERE = Wording(NOTICE + " {name}: in the room since {since} ({ago} ago), on another server")
#: After a name in /who's list, for someone away (a /whois says ``IS_AWAY`` on a line of its own).
AWAY_MARK = " (away{reason})"
AWAY_REASON = ": {reason}"
# Several servers, one room (--redis): the servers lost and found each other again.
SEPARATED = Wording(
    NOTICE + " This server lost touch with the others: for now only the {count} people here hear you."
)
REUNITED = Wording(NOTICE + " Back in touch with the other servers ({count} in the room).")

SPEAKER = Wording("<{name}>")
ACTOR = Wording("* {name}")
PM_FROM = Wording("[PM from {name}]")
PM_TO = Wording("[PM to {name}]")
# Whole lines as a reader sees them (protocol.lines puts label and text together).
MESSAGE = Wording(SPEAKER.template + " {text}")
ACTION = Wording(ACTOR.template + " {text}")
PRIVATE_FROM = Wording(PM_FROM.template + " {text}")
PRIVATE_TO = Wording(PM_TO.template + " {text}")
#: Any notice: the server speaking, not a person.
NOTICE_TEXT = Wording(NOTICE + " {text}")

# Presence and registered names: answers to the one who asked.
AWAY = Wording(NOTICE + " You are away{reason}. /back when you are back.")
BACK = Wording(NOTICE + " Welcome back: you are no longer away.")
IS_AWAY = Wording(NOTICE + " {name} is away{reason}.")
REGISTERED = Wording(
    NOTICE
    + " {name} is registered to you: to join under it, give its password when asked (/password changes it)."
)
PASSWORD_CHANGED = Wording(NOTICE + " The password of {name} is changed.")
UNREGISTERED = Wording(NOTICE + " {name} is no longer registered: anyone may take it.")
REGISTER_REJECTED = Wording(NOTICE + " That did not work: {reason}.")
ALREADY_REGISTERED = "{name} is registered already; /password changes its password"
NOT_YOURS = "{name} is not registered to you (join under it with its password first)"
PASSWORD_TOO_SHORT = "a password needs at least {limit} characters"
PASSWORD_TOO_LONG = "a password may have at most {limit} characters"
NAME_REGISTERED = "that name is registered to someone"
# /search: public lines only; private messages are never stored, so never found.
SEARCH_START = Wording(NOTICE + " Lines with {words} ({count}, the most recent last):")
SEARCH_END = Wording(NOTICE + " End of the search.")
SEARCH_NOTHING = Wording(NOTICE + " No public line has {words}.")
SEARCH_UNAVAILABLE = Wording(NOTICE + " Search is not available right now: {reason}.")

# --- errors, to the sender only -------------------------------------------

UNKNOWN_COMMAND = Wording(NOTICE + " Unknown command {command}. Type /help for the list.")
UNKNOWN_COLOR = Wording(NOTICE + " Unknown colour '{color}'. Colours: {colors}.")
NO_SUCH_USER = Wording(NOTICE + " No one called '{name}' is in the room.")
PM_SELF = Wording(NOTICE + " That is you: private messages go to someone else.")
NO_ONE_TO_REPLY = Wording(NOTICE + " No one has sent you a private message yet.")
# Not NAME_REJECTED: that one means "choose again" at the name prompt.
RENAME_REJECTED = Wording(NOTICE + " You can't be called that: {reason}.")
NAME_BANNED = "that name is banned"
NAME_NOT_ALLOWED = "that name is not on the allow-list"
NAME_UNCHANGED = "it is your name already"
USAGE = Wording(NOTICE + " Usage: {usage}")
LINE_TOO_LONG = Wording(NOTICE + " That line was longer than {limit} bytes and was not sent.")

# --- leaving --------------------------------------------------------------

GOODBYE = Wording(NOTICE + " Goodbye, {name}.")
KICKED = Wording(NOTICE + " You were removed by the operator{reason}.")
SHUTTING_DOWN = Wording(NOTICE + " The server is shutting down. Bye.")

# --- Client.py's own notices (what it says itself, without the server) ----

IGNORING = Wording(NOTICE + " Ignoring {name}: their messages are hidden here (/unignore to see them again).")
UNIGNORED = Wording(NOTICE + " No longer ignoring {name}.")
NOT_IGNORED = Wording(NOTICE + " You are not ignoring {name}.")
IGNORED_LIST = Wording(NOTICE + " Ignored ({count}): {names}")
IGNORE_SELF = Wording(NOTICE + " You cannot ignore yourself.")
# A line typed before the operator let you in, when you will not get in after all.
NOT_SENT = Wording(NOTICE + " Not sent: {text}")
PASSWORD_NOT_SENT = Wording(NOTICE + " No password was sent: {reason}.")

#: The last line of the /help reply, so a client knows the list is complete.
HELP_END = Wording(NOTICE + " Start a line with // to send text beginning with /.")
HELP = (
    NOTICE + " Commands:",
    NOTICE + "   /private <name> <text>   private message (also: DM <name> <text>, /msg)",
    NOTICE + "   /reply <text>            private message to whoever last sent you one",
    NOTICE + "   /color <colour> <text>   coloured message; /private <name> /color <colour> <text>",
    NOTICE + "   /me <action>             * you do something",
    NOTICE + "   /nick <new name>         change your name",
    NOTICE + "   /who                     who is in the room",
    NOTICE + "   /whois <name>            since when someone is here, and how long idle",
    NOTICE + "   /away [reason], /back    say you are away (others see it in /who), and back",
    NOTICE + "   /search <words>          the most recent public lines with those words",
    NOTICE + "   /register <password>     keep your name: only you can use it from now on",
    NOTICE + "   /password <new>          change its password; /unregister lets it go",
    NOTICE + "   /leave                   leave the room (also /quit)",
    NOTICE + "   /help                    this list",
    NOTICE + " Markup: **bold** __italic__ ~~strike~~, nestable; \\** writes ** literally.",
    NOTICE + " Colours: {colors}.",
    HELP_END.template,
)
