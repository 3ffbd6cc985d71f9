"""Client.py's side of the conversation with the server: a state machine without I/O.

It is told what happens (a line from the server, read with
``protocol.serverlines``; the server asking for a name; a line the user typed;
the user leaving or pressing Ctrl-C; the connection closing or never
answering) and answers with what to do, in order: ``Show`` a line, ``Send`` a
line, ``Finish``. ``chatroom.client.session`` does the I/O, and calls it from
one thread at a time.

Rules:

* Phases: CONNECTING until the server asks for a name (and again after one is
  sent, until the server answers it), NAMING while the user is to type one,
  PASSWORD while the user is to type a registered name's password, WAITING
  for the operator, IN_ROOM, DONE.
* Passwords are never shown or kept: typed without echo (``hidden``), or read
  from ``--password-file``, which is sent once (a second prompt means it was
  wrong). ``/register`` and ``/password`` typed without one ask for it twice,
  without echo, and send it once both agree.
* The first line must be a chat server's: its greeting, a refusal, or "this
  server speaks TLS". Anything else means HOST:PORT is some other service.
* Lines typed before we are in the room are held, in order (``queued``), and
  sent once we are in; if we never get in, each is shown as not sent.
  ``/ignore`` and ``/unignore`` are carried out here, at once, never sent.
* Leaving before we are in: on a terminal, at once (the user means it);
  scripted, once in, after the held lines (the script meant them to be said).
  Ctrl-C is not ``/leave``: it finishes without a word to the server.
* The first reason to finish wins: a goodbye, then the close that follows it,
  is a goodbye.
* History, between its markers, is old news: mentions are highlighted but
  ring no bell, and names in it say nothing about who is here now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from formatting import layout, shortcodes
from formatting.sanitize import clean, strip_sgr
from protocol import commands, lines, messages, serverlines
from protocol.names import name_key

#: How much of a stranger's first line to quote when saying it is not a chat server.
QUOTE_LENGTH = 60
#: Typed alone, these ask for a password without echo (twice) and send it after themselves.
SECRET_COMMANDS = frozenset({"/register", "/password"})


class Phase(Enum):
    CONNECTING = "connecting"
    NAMING = "naming"
    PASSWORD = "giving the password"
    WAITING = "waiting for the operator"
    IN_ROOM = "in the room"
    DONE = "done"


class ExitCode(IntEnum):
    LEFT = 0
    LOST = 1
    USAGE = 2
    REFUSED = 3
    INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Outcome:
    code: ExitCode
    why: str


@dataclass(frozen=True, slots=True)
class Show:
    """A line for the screen, and what the client noticed about it."""

    text: str
    prefix: int = 0  # characters before the text itself, where wrapped rows line up
    mention: str | None = None  # your name, when someone else's line says it
    alert: bool = False  # worth a bell: a mention or a private message, as it happens


@dataclass(frozen=True, slots=True)
class Send:
    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The conversation is over: hang up, and exit with the outcome."""

    outcome: Outcome


Effect = Show | Send | Finish


class Conversation:
    """What the client knows about its conversation, and what it does next."""

    def __init__(
        self,
        server: str,
        name: str | None,
        interactive: bool,
        stamp: Callable[[], str],
        client_help: Sequence[tuple[str, str]] = (),
        password: str | None = None,
    ) -> None:
        """``server`` is HOST:PORT, for messages; ``name`` answers the first name prompt.

        ``stamp`` gives the time for the client's own notices (``12:00:05``).
        ``client_help`` rows, (label, text), are shown below the server's /help.
        ``password`` answers the first password prompt (from ``--password-file``).
        """
        self.server = server
        self.interactive = interactive
        self.phase = Phase.CONNECTING
        self.name = name  # ours: the one we will give, then the one the server says we have
        self.names: set[str] = set()  # who is in the room, as far as we know
        self.ignored: dict[str, str] = {}  # name key -> name, for /ignore
        self.outcome: Outcome | None = None
        self.leaving = False  # /leave was sent: the goodbye is on its way
        self._stamp = stamp
        self._client_help = tuple(client_help)
        self._auto_name = name
        self._answered = False  # the server said something a chat server says
        self._held: list[str] = []
        self._leave_once_in = False
        self._password = password
        self._secret: tuple[str, str | None] | None = None  # (/register or /password, the first entry)
        self._replaying = False
        self._spoke: dict[str, int] = {}  # name -> when it last spoke (a count of lines)
        self._lines = 0

    @property
    def hidden(self) -> bool:
        """Is what the user types now a password (not to be echoed or kept)?"""
        return self.phase is Phase.PASSWORD or self._secret is not None

    @property
    def secret_prompt(self) -> str | None:
        """The prompt while a password is typed for /register or /password."""
        if self._secret is None:
            return None
        return "Password again: " if self._secret[1] is not None else "New password (not shown): "

    @property
    def queued(self) -> tuple[str, ...]:
        """Lines typed before we were let in, waiting to be sent."""
        return tuple(self._held)

    def others(self) -> list[str]:
        """Everyone else in the room, the most recent speakers first, as irssi completes."""
        names = [name for name in self.names if name != self.name]
        return sorted(names, key=lambda name: (-self._spoke.get(name, 0), name.casefold()))

    # --- the server -------------------------------------------------------------

    def hear(self, line: str) -> list[Effect]:
        """A line from the server."""
        if self.phase is Phase.DONE:
            return []
        event = serverlines.read(line)
        if not self._answered:
            if not isinstance(event, serverlines.FIRST_LINES):
                quote = clean(strip_sgr(line))[:QUOTE_LENGTH]
                return self._finish(ExitCode.LOST, f"{self.server} is not a chat server (it said {quote!r})")
            self._answered = True
        shown = Show(line, serverlines.text_start(line))
        match event:
            case serverlines.Message(name=name, text=text) | serverlines.Action(name=name, text=text):
                return self._said(line, name, text, private=False)
            case serverlines.PrivateFrom(name=name, text=text):
                return self._said(line, name, text, private=True)
            case serverlines.Waiting(name=name):
                self.phase, self.name = Phase.WAITING, name
            case serverlines.Welcome():
                return [shown, *self._admitted(event)]
            case serverlines.HistoryStart():
                self._replaying = True
            case serverlines.HistoryEnd():
                self._replaying = False
            case serverlines.Joined(name=name) if not self._replaying:
                self.names.add(name)
            case serverlines.Left(name=name) if not self._replaying:
                self.names.discard(name)
            case serverlines.Renamed(old=old, new=new) if not self._replaying:
                self._renamed(old, new)
            case serverlines.WhoList(names=names):
                self.names = set(names)
            case serverlines.WhoMore(names=names):
                self.names.update(names)
            case serverlines.HelpEnd():
                return [shown, *self._help_rows(line)]
            case serverlines.Goodbye():
                return [shown, *self._finish(ExitCode.LEFT, "you left the room")]
            case serverlines.Kicked():
                return [shown, *self._finish(ExitCode.REFUSED, "removed by the operator")]
            case serverlines.ShuttingDown():
                return [shown, *self._finish(ExitCode.LOST, "the server shut down")]
            case serverlines.NeedsTls():
                return [shown, *self._finish(ExitCode.LOST, "the server speaks TLS: add --tls")]
            case serverlines.Refused():
                why = "removed from the room" if self.phase is Phase.IN_ROOM else "not let in"
                return [shown, *self._finish(ExitCode.REFUSED, why)]
        return [shown]

    def asked_for_name(self) -> list[Effect]:
        """The server's name prompt: answer with the name we were given, or let the user type one."""
        if self.phase is Phase.DONE:
            return []
        self._answered = True
        if self._auto_name is not None:
            name, self._auto_name = self._auto_name, None
            return [Send(name)]
        if not self.interactive:
            return self._finish(ExitCode.REFUSED, "the name was not accepted")
        self.phase = Phase.NAMING
        return []

    def asked_for_password(self) -> list[Effect]:
        """The name is registered: its password, from the file (once), or typed by the user."""
        if self.phase is Phase.DONE:
            return []
        if self._password is not None:
            password, self._password = self._password, ""
            if password:
                return [Send(password)]
            return self._finish(ExitCode.REFUSED, "the password in --password-file was not accepted")
        if not self.interactive:
            why = "the name is registered: give its password with --password-file"
            return self._finish(ExitCode.REFUSED, why)
        self.phase = Phase.PASSWORD
        return []

    def closed(self, lost: bool) -> list[Effect]:
        """The connection ended (``lost``: the network failed, rather than the server closing)."""
        if self.leaving:
            return self._finish(ExitCode.LEFT, "you left the room")
        if lost:
            return self._finish(ExitCode.LOST, "the connection to the server was lost")
        if not self._answered:
            return self._finish(ExitCode.LOST, f"{self.server} closed the connection without a word")
        return self._finish(ExitCode.LOST, "the server closed the connection")

    def unanswered(self, seconds: float, tls: bool) -> list[Effect]:
        """Nothing at all came back within ``seconds``: no chat server is there."""
        hint = "" if tls else " (one that speaks TLS needs --tls)"
        why = f"no chat server answered at {self.server} within {seconds:g} s{hint}"
        return self._finish(ExitCode.LOST, why)

    def send_failed(self) -> list[Effect]:
        return self._finish(ExitCode.LOST, "the connection to the server was lost")

    # --- the user -----------------------------------------------------------------

    def typed(self, text: str) -> list[Effect]:
        """A line the user typed: a name when the server asked for one, else a line for the room."""
        if self.phase is Phase.DONE or self.leaving or self._leave_once_in:
            return []
        if self.phase in (Phase.NAMING, Phase.PASSWORD):
            self.phase = Phase.CONNECTING
            return [Send(text)]
        if self._secret is not None:
            return self._secret_typed(text)
        if self.interactive and self.phase is Phase.IN_ROOM and text.strip().lower() in SECRET_COMMANDS:
            self._secret = (text.strip().lower(), None)
            return []
        local = commands.parse_client(text)
        if local is not None:
            return [self._ignore(local)]
        leave = isinstance(commands.parse(text), commands.Leave)
        if leave and self.phase is not Phase.IN_ROOM:
            return self.leave()
        text = shortcodes.to_emoji(text)
        if self.phase is not Phase.IN_ROOM:
            self._held.append(text)
            return []
        self.leaving = leave
        return [Send(text)]

    def leave(self) -> list[Effect]:
        """Ctrl-D, or the end of scripted input."""
        if self.phase is Phase.DONE or self.leaving:
            return []
        if self.phase is Phase.IN_ROOM:
            self.leaving = True
            return [Send("/leave")]
        if self.interactive:
            return self._finish(ExitCode.LEFT, "you left before you were let in")
        self._leave_once_in = True
        return []

    def not_sent(self, text: str) -> list[Effect]:
        """Text the user had typed, not yet sent, when the conversation ended: shown, not lost."""
        return [self._notice(messages.NOT_SENT(text=line)) for line in text.splitlines() if line.strip()]

    def interrupt(self) -> list[Effect]:
        """Ctrl-C: leave at once, without /leave (the server sees the connection close)."""
        return self._finish(ExitCode.INTERRUPTED, "interrupted")

    # --- the rules ------------------------------------------------------------------

    def _said(self, line: str, name: str, text: str, private: bool) -> list[Effect]:
        """Someone's line: hidden if ignored; for completion order, highlight and bell otherwise."""
        if name_key(name) in self.ignored:
            return []
        self._lines += 1
        self._spoke[name] = self._lines
        me = self.name
        mentioned = me is not None and name.casefold() != me.casefold() and layout.mentions(text, me)
        alert = (mentioned or private) and not self._replaying
        return [Show(line, serverlines.text_start(line), me if mentioned else None, alert)]

    def _secret_typed(self, text: str) -> list[Effect]:
        """A password for /register or /password, typed twice without echo."""
        assert self._secret is not None
        command, first = self._secret
        if not text:
            self._secret = None
            return [self._notice(messages.PASSWORD_NOT_SENT(reason="nothing was typed"))]
        if first is None:
            self._secret = (command, text)
            return []
        self._secret = None
        if text != first:
            return [self._notice(messages.PASSWORD_NOT_SENT(reason="the two did not match"))]
        return [Send(f"{command} {text}")]

    def _admitted(self, welcome: serverlines.Welcome) -> list[Effect]:
        self.phase, self.name = Phase.IN_ROOM, welcome.name
        self.names = set(welcome.names)
        effects: list[Effect] = [Send(text) for text in self._held]
        self._held.clear()
        if self._leave_once_in:
            self.leaving = True
            effects.append(Send("/leave"))
        return effects

    def _renamed(self, old: str, new: str) -> None:
        self.names.discard(old)
        self.names.add(new)
        if old == self.name:
            self.name = new  # /nick: mentions and the prompt follow
        if self.ignored.pop(name_key(old), None) is not None:
            self.ignored[name_key(new)] = new  # a new name hides no one

    def _help_rows(self, help_end: str) -> list[Effect]:
        """This client's own help, below the server's /help and in its layout."""
        stamp = messages.STAMP.match(strip_sgr(help_end))
        shown: list[Effect] = []
        for label, text in self._client_help:
            line = lines.notice(stamp and stamp.group(1), f"{messages.NOTICE} {label}{text}")
            shown.append(Show(line, len(strip_sgr(line)) - len(text)))
        return shown

    def _ignore(self, command: commands.ClientCommand) -> Show:
        """/ignore and /unignore: whose lines this client stops (or starts again) showing."""
        name = command.name
        key = name_key(name)
        if not name:
            notice = messages.IGNORED_LIST(
                count=len(self.ignored), names=", ".join(self.ignored.values()) or "no one"
            )
        elif isinstance(command, commands.Ignore) and self.name is not None and key == name_key(self.name):
            notice = messages.IGNORE_SELF()
        elif isinstance(command, commands.Ignore):
            self.ignored[key] = name
            notice = messages.IGNORING(name=name)
        elif self.ignored.pop(key, None) is not None:
            notice = messages.UNIGNORED(name=name)
        else:
            notice = messages.NOT_IGNORED(name=name)
        return self._notice(notice)

    def _notice(self, text: str) -> Show:
        line = lines.notice(self._stamp(), text)
        return Show(line, serverlines.text_start(line))

    def _finish(self, code: ExitCode, why: str) -> list[Effect]:
        """The first reason to stop wins; later ones (the close after a goodbye) change nothing."""
        if self.outcome is not None:
            return []
        self.outcome = Outcome(code, why)
        self.phase = Phase.DONE
        unsent = self.not_sent("\n".join(self._held))
        self._held.clear()
        return [*unsent, Finish(self.outcome)]
