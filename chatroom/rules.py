"""The room's rules: a state machine without I/O, in the manner of h11.

``RoomRules`` holds who is connected, who waits for the operator, who is in
the room and which names are held, and owns every transition: connecting,
naming, the operator's answers, talking, private messages, renaming,
kicking, banning, leaving, and what arrives from other servers. Each
transition takes what happened (with the time, as ``Now``, and whatever the
other servers answered) and returns the effects to carry out
(``chatroom.effects``): tell one member, broadcast, hang up, hand the bus an
operation, log. It never touches a socket, a clock, a disk, a thread or a
lock.

The shell (``chatroom.room``) holds the one lock around every call and
applies the effects in order before releasing it; questions to other servers
(is a name free, who is elsewhere, where is bob) are asked *before* a step,
without the lock, and passed in. So a count in a join notice is the room as
it was a moment before the join.

Life of a member: ``NAMING`` (connected, choosing a name) -> ``WAITING`` (in
the operator's queue) -> ``IN_ROOM`` -> ``GONE``. A transition checks the
state it starts from, so a kick racing a ``/leave``, or an approval racing a
timeout, has exactly one winner; the loser's call returns no effects.

Public lines either go straight to the people here and into this server's
history (``Broadcast``), or, while the room is shared with other servers
(``shared``), to the bus (``Publish``), which hands them back in the order
the whole room sees them (``lines_arrived``).

A transition is a method whose arguments are the command (the members'
own commands are ``protocol.commands`` values); it returns the effects, and
a few also return what the operator is told (``ban``) or what the step
decided (``hold``). Methods that only read (``secret``, ``admits_at_once``,
``rename_refusal``) answer questions the shell asks before a step.
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter

from chatroom.access import ADDRESS, NAME, Access, is_address
from chatroom.bus import BanChange, Enter, Leave, Present, Publish, Registered, Release, SendPrivate
from chatroom.config import Settings
from chatroom.effects import (
    AllowListed,
    Attach,
    Broadcast,
    Connection,
    Detach,
    Effect,
    HangUp,
    Log,
    LogChat,
    QueueChanged,
    Remember,
    Tell,
    ToBus,
)
from chatroom.passwords import MAX_LENGTH, MIN_LENGTH, Registration
from protocol import commands, lines, messages
from protocol.commands import Action, Say
from protocol.messages import Wording
from protocol.names import BadName, check_name, name_key

#: Names shown in the welcome line; /who lists everyone.
WELCOME_NAMES = 50
#: Characters of names per /who line.
WHO_LINE_CHARS = 400


def _reason(reason: str) -> str:
    return messages.AWAY_REASON.format(reason=reason) if reason else ""


def _away_mark(away: str | None) -> str:
    """`` (away: lunch)`` after a name in /who's list; nothing for someone here."""
    return "" if away is None else messages.AWAY_MARK.format(reason=_reason(away))


def network_of(host: str) -> str:
    """The network an address is counted in for its share of the queue: its /24, or its /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class State(enum.Enum):
    NAMING = "naming"
    WAITING = "waiting"
    IN_ROOM = "in room"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Now:
    """The time of a step: the wall clock for stamps, the monotonic one for idle times."""

    wall: float
    mono: float

    @property
    def stamp(self) -> str:
        return lines.stamp(self.wall)


class Via(enum.Enum):
    """The kind of connection a member came through (the operator is told when it is not a terminal's)."""

    TCP = "a line connection"
    WEB = "the web"


@dataclass(eq=False)
class Member:
    """One connection, from its first byte to its close."""

    conn: Connection
    host: str
    port: int
    connected_at: float  # wall clock
    last_active: float  # monotonic
    via: Via = Via.TCP
    name: str = ""
    key: str = ""
    state: State = State.NAMING
    joined_at: float = 0.0  # let in (wall clock)
    reply_to: str = ""  # who sent the last private message here, for /reply
    away: str | None = None  # /away: its reason ("" for none); None while here
    owner: bool = False  # joined under a registered name with its password (or registered it)
    address: str = field(init=False)

    def __post_init__(self) -> None:
        self.address = lines.address(self.host, self.port)

    @property
    def who(self) -> str:
        """How the log names this member: by name once it has one."""
        return f"{self.name} ({self.address})" if self.name else self.address


@dataclass(frozen=True, slots=True)
class Hold:
    """A name held here for a member while the other servers are asked (``RoomRules.hold``)."""

    name: str
    key: str
    claim: bool  # False: banned, so named but not held (``request`` turns it away)
    registered: bool = False  # the name is registered: its password comes next


#: Wrong passwords from one address are answered this much later, doubling each time...
FIRST_PASSWORD_DELAY = 1.0
#: ...up to this; an address's count is forgotten after an hour without a wrong one.
LAST_PASSWORD_DELAY = 30.0
FORGET_FAILURES = 3600.0


def password_problem(password: str) -> str | None:
    """Why ``password`` will not do for a registered name, if it will not."""
    if len(password) < MIN_LENGTH:
        return messages.PASSWORD_TOO_SHORT.format(limit=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        return messages.PASSWORD_TOO_LONG.format(limit=MAX_LENGTH)
    return None


class RoomRules:
    def __init__(
        self, settings: Settings, access: Access, registered: dict[str, Registration] | None = None
    ) -> None:
        self.settings = settings
        self.access = access
        #: Registered names, by name key: nobody else may use them, even while their owner is away.
        self.registered: dict[str, Registration] = dict(registered or {})
        self._failures: dict[str, tuple[int, float]] = {}  # by host: wrong passwords, and when the last was
        #: The room is shared with other servers right now (public lines go through the bus).
        self.shared = False
        self._connections: Counter[str] = Counter()  # by host
        self._everyone: set[Member] = set()  # every connection, named or not
        self._names: dict[str, Member] = {}  # claimed names: waiting or in the room
        self._members: dict[str, Member] = {}  # in the room, by name key, in the order they came in
        self._waiting: dict[str, Member] = {}  # the approval queue, oldest first

    # --- reading ------------------------------------------------------------------------

    def members(self) -> list[Member]:
        return list(self._members.values())

    def waiting(self) -> list[Member]:
        return list(self._waiting.values())

    def find(self, name: str) -> Member | None:
        """A member in the room or the queue, by name (any case)."""
        key = name_key(name)
        return self._members.get(key) or self._waiting.get(key)

    def is_here(self, name: str) -> bool:
        """Someone of that name is in the room on this server."""
        return name_key(name) in self._members

    def counts(self) -> str:
        connected = len(self._everyone)
        return f"{len(self._members)} in room, {len(self._waiting)} waiting, {connected} connected"

    def _announced(self, count: int) -> bool:
        """Joins and leaves are news in a room of friends and noise in a crowd.

        Announcing one to N people costs N sends, so announcing every join
        to a crowd costs N squared; past the limit only the log records them.
        """
        limit = self.settings.announce_limit
        return not limit or count <= limit

    def _public(self, rendered: Sequence[str], remember: bool = True) -> list[Effect]:
        """Lines for the whole room: here, or through the other servers when shared.

        ``remember``: kept in history (for newcomers, catch-up and search). Notices of
        people coming and going are not: history is the conversation.
        """
        batch = tuple(rendered)
        if self.shared:
            return [ToBus(Publish(batch, remember))]
        return [Remember(batch), Broadcast(batch)] if remember else [Broadcast(batch)]

    # --- connecting -----------------------------------------------------------------------

    def connect(self, member: Member) -> list[Effect]:
        """Count a new connection, or turn it away (then the member is ``GONE``)."""
        s = self.settings
        if self.access.banned(host=member.host):
            refusal = messages.BANNED()
        elif s.max_clients and len(self._everyone) >= s.max_clients:
            refusal = messages.ROOM_FULL(limit=s.max_clients)
        elif s.max_per_ip and member.host not in s.exempt and self._connections[member.host] >= s.max_per_ip:
            refusal = messages.TOO_MANY_FROM_HOST(limit=s.max_per_ip)
        else:
            self._connections[member.host] += 1
            self._everyone.add(member)
            return [Log(f"connect {member.address} ({self.counts()})")]
        member.state = State.GONE
        return [
            Log(f"refused {member.address}: {refusal}"),
            Tell(member.conn, (lines.notice(None, refusal),)),
        ]

    def hold(self, member: Member, raw: str) -> Hold | str:
        """Check a name and hold it here for ``member``; why not, if it cannot have it.

        Held here first, so two people on this server cannot both get it while
        the other servers are asked (``claim``). A banned name is named but not
        held: ``request`` turns it away with that reason, even while its old
        holder's claim lingers elsewhere.
        """
        checked = check_name(raw, self.settings.max_name)
        if isinstance(checked, BadName):
            return checked.reason
        key = name_key(checked)
        if self.access.banned(key=key):
            return Hold(checked, key, claim=False)
        if key in self._names and not (self._names[key] is member and key == member.key):
            return messages.NAME_TAKEN.format(name=checked)
        self._names[key] = member
        return Hold(checked, key, claim=True, registered=key in self.registered)

    # --- registered names: the password after the name ----------------------------------

    def secret(self, key: str) -> str | None:
        """The hashed password of a registered name (checked by the shell, outside the lock)."""
        registration = self.registered.get(key)
        return registration.secret if registration else None

    def password_right(self, member: Member) -> list[Effect]:
        member.owner = True
        return [Log(f"password accepted for {member.who}")]

    def password_wrong(self, member: Member, now: Now, tries: int) -> tuple[float, list[Effect]]:
        """A wrong password: how long to wait before answering (per address, growing), and what to say."""
        count, last = self._failures.get(member.host, (0, 0.0))
        if now.mono - last > FORGET_FAILURES:
            count = 0
        count += 1
        self._failures[member.host] = (count, now.mono)
        delay = min(FIRST_PASSWORD_DELAY * 2 ** (count - 1), LAST_PASSWORD_DELAY)
        told = lines.error(None, messages.PASSWORD_WRONG(name=member.name))
        logged = f"wrong password for {member.who} (try {tries}; {count} from this address lately)"
        return delay, [Log(logged), Tell(member.conn, (told,))]

    def unhold(self, member: Member, hold: Hold) -> None:
        """Another server has the name: let go of it here."""
        if self._names.get(hold.key) is member and hold.key != member.key:
            del self._names[hold.key]

    def named(self, member: Member, hold: Hold) -> None:
        """A first name, held here and on every server."""
        member.name, member.key = hold.name, hold.key

    def admits_at_once(self, member: Member) -> bool:
        """Does ``request`` let this member in without asking (so the shell asks who is elsewhere)?"""
        registered = member.owner and not self.settings.ask_registered
        return self.settings.approve == "all" or self.access.allowed(member.key) or registered

    def missed_since(self, member: Member) -> float | None:
        """Since when a registered name has been away (for its catch-up), if it has been here before."""
        registration = self.registered.get(member.key) if member.owner else None
        return registration.seen if registration is not None and registration.seen else None

    def request(
        self,
        member: Member,
        now: Now,
        elsewhere: Sequence[Present],
        recent: Sequence[str],
        missed: Sequence[str] | None = None,
    ) -> list[Effect]:
        """A named member: in front of the operator, or straight in, or out."""
        if self.access.banned(key=member.key):
            return self.refuse(member, messages.BANNED, "banned name")
        if self.settings.approve == "all":
            return self.admit(member, now, elsewhere, recent, "approved (--approve all)", missed)
        if member.owner and not self.settings.ask_registered:
            return self.admit(member, now, elsewhere, recent, "approved (registered name)", missed)
        if self.access.allowed(member.key):
            return self.admit(member, now, elsewhere, recent, "approved (allow-list)", missed)
        if self.settings.approve == "allowlist":
            return self.refuse(member, messages.REFUSED, "not on the allow-list")
        return self._queue(member)

    def _queue(self, member: Member) -> list[Effect]:
        full = self._queue_full(member)
        if full is not None:
            return full
        member.state = State.WAITING
        self._waiting[member.key] = member
        return [
            Tell(member.conn, (lines.notice(None, messages.WAITING(name=member.name)),)),
            Log(f"waiting {member.who} ({self.counts()})"),
            QueueChanged(),
        ]

    def _queue_full(self, member: Member) -> list[Effect] | None:
        """The refusal if the queue, or this member's address's or network's share of it, is full.

        A share keeps one address (or one network) from filling the queue so that
        nobody else can be asked; it applies to exempt addresses too.
        """
        s = self.settings
        if s.max_pending and len(self._waiting) >= s.max_pending:
            return self.refuse(member, messages.QUEUE_FULL, "approval queue full")
        network = network_of(member.host)
        same_ip = sum(m.host == member.host for m in self._waiting.values())
        same_net = sum(network_of(m.host) == network for m in self._waiting.values())
        for limit, count, where, which in (
            (s.max_pending_per_ip, same_ip, "address", member.host),
            (s.max_pending_per_net, same_net, "network", network),
        ):
            if limit and count >= limit:
                why = f"approval queue: {count} waiting from {which}"
                return self.refuse(member, messages.QUEUE_SHARE_FULL, why, where=where, limit=limit)
        return None

    # --- the operator's answers ---------------------------------------------------------

    def admit(
        self,
        member: Member,
        now: Now,
        elsewhere: Sequence[Present],
        recent: Sequence[str],
        how: str = "approved",
        missed: Sequence[str] | None = None,
    ) -> list[Effect]:
        """Let a member in; ``missed``: what a registered name missed, replayed instead of ``recent``."""
        if member.state not in (State.NAMING, State.WAITING):
            return []
        self._waiting.pop(member.key, None)
        member.state = State.IN_ROOM
        member.last_active = now.mono
        member.joined_at = now.wall
        self._members[member.key] = member
        count = len(self._members) + len(elsewhere)
        effects: list[Effect] = [
            Log(f"{how} {member.who}"),
            Tell(member.conn, tuple(self._welcome(member, now, elsewhere, recent, missed))),
            Attach(member.conn),
            ToBus(self._presence(member)),
        ]
        if self._announced(count):
            joined = lines.notice(now.stamp, messages.JOINED(name=member.name, count=count))
            effects += self._public([joined], remember=False)
        effects += [Log(f"join {member.who} ({self.counts()})"), QueueChanged()]
        return effects

    @staticmethod
    def _presence(member: Member) -> Enter:
        """What the other servers know of someone here."""
        return Enter(
            member.key, member.name, member.address, member.connected_at, member.joined_at, member.away
        )

    def _welcome(
        self,
        member: Member,
        now: Now,
        elsewhere: Sequence[Present],
        recent: Sequence[str],
        missed: Sequence[str] | None,
    ) -> list[str]:
        count = len(self._members) + len(elsewhere)
        names = self.roster(elsewhere, WELCOME_NAMES)
        shown = ", ".join(names)
        if count > len(names):
            shown += f" and {count - len(names)} more"
        out = [lines.notice(now.stamp, messages.WELCOME(name=member.name, count=count, names=shown))]
        since = self.missed_since(member)
        if missed is not None and since is not None:
            left = lines.stamp(since)
            if not missed:
                return [*out, lines.notice(now.stamp, messages.NOTHING_MISSED(since=left))]
            out.append(lines.notice(now.stamp, messages.CATCH_UP_START(since=left, count=len(missed))))
            out.extend(missed)
            out.append(lines.notice(now.stamp, messages.CATCH_UP_END()))
        elif recent:
            out.append(lines.notice(now.stamp, messages.HISTORY_START(count=len(recent))))
            out.extend(recent)
            out.append(lines.notice(now.stamp, messages.HISTORY_END()))
        return out

    def refuse(self, member: Member, wording: Wording, why: str, **fields: object) -> list[Effect]:
        """Turn away a member who is not in the room yet."""
        if member.state not in (State.NAMING, State.WAITING):
            return []
        self._waiting.pop(member.key, None)
        after_prompt = member.state is State.NAMING  # the cursor is still on "Your name: "
        member.state = State.GONE
        notice = lines.notice(None, wording(**fields))
        return [
            Tell(member.conn, ("", notice) if after_prompt else (notice,)),
            HangUp(member.conn),
            Log(f"refused {member.who}: {why}"),
            QueueChanged(),
        ]

    # --- leaving ----------------------------------------------------------------------------

    def depart(
        self, member: Member, now: Now, elsewhere: int, notice: Wording, why: str, farewell: str | None = None
    ) -> list[Effect]:
        """Take a member out of the room or the queue; no effects if someone else already did."""
        was = member.state
        if was is State.GONE:
            return []
        member.state = State.GONE
        effects: list[Effect] = [Tell(member.conn, (farewell,))] if farewell is not None else []
        if was is State.WAITING:
            del self._waiting[member.key]
            effects += [Log(f"gave up waiting {member.who}: {why} ({self.counts()})"), QueueChanged()]
        elif was is State.IN_ROOM:
            del self._members[member.key]
            effects += [Detach(member.conn), ToBus(Leave(member.key))]
            effects += self._seen(member, now)
            count = len(self._members) + elsewhere
            if self._announced(count + 1):  # the room as it was with them, like their join
                left = lines.notice(now.stamp, notice(name=member.name, count=count))
                effects += self._public([left], remember=False)
            effects.append(Log(f"leave {member.who}: {why} ({self.counts()})"))
        return effects

    def _seen(self, member: Member, now: Now) -> list[Effect]:
        """A registered name leaves: when, so that it can catch up on what it missed next time."""
        registration = self.registered.get(member.key) if member.owner else None
        if registration is None:
            return []
        self.registered[member.key] = registration = replace(registration, seen=now.wall)
        return [ToBus(Registered(member.key, registration))]

    def disconnect(self, member: Member) -> list[Effect]:
        """The connection is over: free its name and its place in the counts."""
        effects: list[Effect] = []
        if member.key and self._names.get(member.key) is member:
            del self._names[member.key]
            effects.append(ToBus(Release(member.key)))
        self._everyone.discard(member)
        self._connections[member.host] -= 1
        if self._connections[member.host] <= 0:
            del self._connections[member.host]
        effects.append(Log(f"disconnect {member.who} ({self.counts()})"))
        return effects

    def remove(self, member: Member, now: Now, elsewhere: int, reason: str = "") -> list[Effect]:
        """The operator removes someone from the room (kicked) or the queue (refused)."""
        if member.state is not State.IN_ROOM:
            wording = messages.BANNED if reason == "banned" else messages.REFUSED
            return self.refuse(member, wording, f"refused by the operator ({reason or 'no reason'})")
        said = f": {reason}" if reason else ""
        farewell = lines.error(now.stamp, messages.KICKED(reason=said))
        effects = self.depart(
            member, now, elsewhere, messages.KICKED_NOTICE, f"kicked by the operator{said}", farewell
        )
        return [*effects, HangUp(member.conn)] if effects else []

    # --- bans and the allow-list ------------------------------------------------------------

    def ban(self, target: str, now: Now, elsewhere: int) -> tuple[list[str], list[Effect]]:
        """Ban a name or an address and remove whoever it covers; returns what was done, for the operator."""
        kind = ADDRESS if is_address(target) else NAME
        entry = self.access.ban(kind, target)
        done = [f"banned {kind} {target}"] if entry else []
        effects: list[Effect] = [ToBus(BanChange(*entry, banned=True))] if entry else []
        more, enforced = self._enforce(kind, target, now, elsewhere)
        return done + more, effects + enforced

    def unban(self, target: str) -> tuple[list[str], list[Effect]]:
        lifted = self.access.unban(target)
        return (
            [f"unbanned {kind} {value}" for kind, value in lifted],
            [ToBus(BanChange(kind, value, banned=False)) for kind, value in lifted],
        )

    def ban_arrived(
        self, kind: str, value: str, banned: bool, node: str, now: Now, elsewhere: int
    ) -> list[Effect]:
        """A ban made or lifted on another server: remember it, and remove whoever it covers here."""
        if not self.access.note(kind, value, banned):
            return []
        effects: list[Effect] = [Log(f"{'banned' if banned else 'unbanned'} {kind} {value} (on {node})")]
        if banned:
            done, enforced = self._enforce(kind, value, now, elsewhere)
            effects += enforced + [Log(f"{what} (banned on {node})") for what in done]
        return effects

    def bans_stored(self, stored: Iterable[tuple[str, str]], now: Now, elsewhere: int) -> list[Effect]:
        """The room's bans as stored (after servers reunite); bans new here are enforced."""
        effects: list[Effect] = []
        for kind, value in self.access.adopt(stored):
            done, enforced = self._enforce(kind, value, now, elsewhere)
            effects += enforced + [Log(f"{what} (banned elsewhere while apart)") for what in done]
        return effects

    def _enforce(self, kind: str, target: str, now: Now, elsewhere: int) -> tuple[list[str], list[Effect]]:
        """Remove whoever a ban covers here; a banned name's address is banned too, unless exempt."""
        done: list[str] = []
        effects: list[Effect] = []
        if kind == ADDRESS:
            covered = [m for m in self._everyone if m.host == target]
        else:
            member = self.find(target)
            covered = [member] if member is not None else []
            for m in covered:
                entry = None if m.host in self.settings.exempt else self.access.ban(ADDRESS, m.host)
                if entry:
                    done.append(f"banned address {m.host}")
                    effects.append(ToBus(BanChange(*entry, banned=True)))
        for m in covered:
            removed = self.remove(m, now, elsewhere, "banned")
            if removed:
                done.append(f"removed {m.who}")
                effects += removed
        return done, effects

    def allow(self, name: str) -> tuple[bool, list[Effect], Member | None]:
        """Put a name on the allow-list; returns whether it is new, and who waits under it (to admit)."""
        added = self.access.allow(name)
        return added, [AllowListed(name)] if added else [], self._waiting.get(name_key(name))

    # --- renaming -----------------------------------------------------------------------------

    def rename_refusal(self, member: Member, name: str) -> str | None:
        """Why ``member`` may not be called ``name`` now (before it is held), if so."""
        checked = check_name(name, self.settings.max_name)
        if isinstance(checked, BadName):
            return checked.reason
        key = name_key(checked)
        if member.state is not State.IN_ROOM:
            return "you are not in the room"
        if checked == member.name:
            return messages.NAME_UNCHANGED
        if self.access.banned(key=key):
            return messages.NAME_BANNED
        if self.settings.approve == "allowlist" and not self.access.allowed(key):
            return messages.NAME_NOT_ALLOWED
        if key in self.registered and key != member.key:
            return messages.NAME_REGISTERED
        return None

    def rejected_rename(self, member: Member, now: Now, reason: str) -> list[Effect]:
        return [Tell(member.conn, (lines.error(now.stamp, messages.RENAME_REJECTED(reason=reason)),))]

    def renamed(self, member: Member, hold: Hold, now: Now, elsewhere: int) -> list[Effect]:
        """/nick: the new name is held here and on every server; announce it."""
        key, old_key, old_name = hold.key, member.key, member.name
        if member.state is not State.IN_ROOM:  # left meanwhile; their old name is freed as they go
            if key != old_key and self._names.get(key) is member:
                del self._names[key]
                return [ToBus(Release(key))]
            return []
        effects: list[Effect] = [ToBus(Leave(old_key))]
        if key != old_key:
            effects += self._seen(member, now)
            member.owner = False  # a registered name stays its owner's; the new one is not registered
            del self._names[old_key]
            effects.append(ToBus(Release(old_key)))
            # Rebuilt, not re-added: the room lists people in the order they came in.
            self._members = {(key if k == old_key else k): m for k, m in self._members.items()}
        member.name, member.key = hold.name, key
        effects.append(ToBus(self._presence(member)))
        notice = lines.notice(now.stamp, messages.RENAMED(old=old_name, new=hold.name))
        if self._announced(len(self._members) + elsewhere):
            effects += self._public([notice], remember=False)
        else:
            effects.append(Tell(member.conn, (notice,)))
        effects.append(Log(f"rename {old_name} -> {hold.name} ({member.address})"))
        return effects

    # --- talking --------------------------------------------------------------------------------

    @staticmethod
    def render(name: str, said: Say | Action, stamp: str) -> str:
        """A member's public line as everyone will see it (rendered once, here)."""
        if isinstance(said, Action):
            return lines.action(stamp, name, said.text)
        return lines.message(stamp, name, said.text, said.color)

    def speak(self, member: Member, rendered: Sequence[str], now: Now) -> list[Effect]:
        """Lines from ``member`` for the whole room, in one go (a paste arrives together)."""
        if member.state is not State.IN_ROOM:
            return []
        member.last_active = now.mono
        batch = tuple(rendered)
        effects = self._public(batch)
        if self.settings.log_chat:
            effects.append(LogChat(batch))
        return effects

    def announce(self, text: str, now: Now) -> list[Effect]:
        line = lines.notice(now.stamp, messages.ANNOUNCEMENT(text=text))
        return [*self._public([line]), Log(lines.unstamped(line))]

    def obey(self, member: Member, command: commands.Command, now: Now) -> list[Effect]:
        """Commands that concern only the member who typed them (the shell handles the rest)."""
        if isinstance(command, commands.Help):
            colors = commands.color_list()
            return [
                Tell(
                    member.conn,
                    tuple(lines.notice(now.stamp, t.format(colors=colors)) for t in messages.HELP),
                )
            ]
        if isinstance(command, commands.Invalid):
            return [Tell(member.conn, (lines.error(now.stamp, command.error),))]
        if isinstance(command, commands.Reply) and not member.reply_to:
            return [Tell(member.conn, (lines.error(now.stamp, messages.NO_ONE_TO_REPLY()),))]
        return []

    def leave(self, member: Member, now: Now, elsewhere: int) -> list[Effect]:
        """/leave: a goodbye to the member, a notice to the room."""
        farewell = lines.notice(now.stamp, messages.GOODBYE(name=member.name))
        return self.depart(member, now, elsewhere, messages.LEFT, "left with /leave", farewell)

    def private(
        self, member: Member, recipient: str, text: str, color: str | None, now: Now, found: Present | None
    ) -> list[Effect]:
        """A private message to someone here or, ``found`` by the bus, on another server."""
        key = name_key(recipient)
        target = self._members.get(key)
        member.last_active = now.mono
        if key == member.key:
            return [Tell(member.conn, (lines.error(now.stamp, messages.PM_SELF()),))]
        if target is None and found is None:
            return [Tell(member.conn, (lines.error(now.stamp, messages.NO_SUCH_USER(name=recipient)),))]
        line = lines.private(now.stamp, messages.PM_FROM(name=member.name), text, color)
        effects: list[Effect]
        if target is not None:
            target.reply_to = member.name
            effects = [Tell(target.conn, (line,))]
            name, where = target.name, ""
        else:
            assert found is not None
            effects = [ToBus(SendPrivate(found.node, key, member.name, line))]
            name, where = found.name, f" on {found.node}"
        echo = lines.private(now.stamp, messages.PM_TO(name=name), text, color)
        told = [echo]
        away = target.away if target is not None else found.away if found is not None else None
        if away is not None:
            told.append(lines.notice(now.stamp, messages.IS_AWAY(name=name, reason=_reason(away))))
        effects += [
            Tell(member.conn, tuple(told)),
            Log(f"private message {member.name} -> {name}{where} (text not logged)"),
        ]
        return effects

    def private_arrived(self, key: str, sender: str, line: str) -> list[Effect]:
        """A private message from another server for someone here (who may have left meanwhile)."""
        target = self._members.get(key)
        if target is None:
            return []
        target.reply_to = sender
        return [
            Tell(target.conn, (line,)),
            Log(f"private message {sender} -> {target.name} (text not logged)"),
        ]

    def roster(self, elsewhere: Sequence[Present], most: int | None = None) -> list[str]:
        """The first ``most`` names (all by default) in the order they were let in.

        Members here are kept in the order they came in, and the bus gives
        ``elsewhere`` in that order too, so this merges the two and stops at
        ``most``. It is computed on every join: a sort of the whole room there
        made joining a 10,000-person room quadratic.
        """
        return [name for name, _away in self._roster(elsewhere, most)]

    def _roster(self, elsewhere: Sequence[Present], most: int | None = None) -> list[tuple[str, str | None]]:
        """``roster`` with each person's /away (None: here)."""
        here = ((m.joined_at, m.name, m.away) for m in self._members.values())
        there = ((p.joined, p.name, p.away) for p in elsewhere)
        merged = heapq.merge(here, there, key=itemgetter(0))
        return [(name, away) for _joined, name, away in itertools.islice(merged, most)]

    def who(self, member: Member, now: Now, elsewhere: Sequence[Present]) -> list[Effect]:
        names = [name + _away_mark(away) for name, away in self._roster(elsewhere)]
        chunks: list[list[str]] = [[]]
        for name in names:
            if sum(len(n) + 2 for n in chunks[-1]) + len(name) > WHO_LINE_CHARS:
                chunks.append([])
            chunks[-1].append(name)
        out = [lines.notice(now.stamp, messages.WHO(count=len(names), names=", ".join(chunks[0])))]
        out += [lines.notice(now.stamp, messages.WHO_MORE(names=", ".join(chunk))) for chunk in chunks[1:]]
        return [Tell(member.conn, tuple(out))]

    def whois(self, member: Member, name: str, now: Now, found: Present | None) -> list[Effect]:
        """Since when someone is in the room and, on this server, how long they have been quiet."""
        target = self._members.get(name_key(name))
        if target is not None:
            joined = target.joined_at
            line = messages.WHOIS(
                name=target.name,
                since=lines.stamp(joined),
                ago=lines.duration(now.wall - joined),
                idle=lines.duration(now.mono - target.last_active),
            )
            who, away = target.name, target.away
        elif found is not None:
            line = messages.WHOIS_ELSEWHERE(
                name=found.name, since=lines.stamp(found.joined), ago=lines.duration(now.wall - found.joined)
            )
            who, away = found.name, found.away
        else:
            return [Tell(member.conn, (lines.error(now.stamp, messages.NO_SUCH_USER(name=name)),))]
        out = [lines.notice(now.stamp, line)]
        if away is not None:
            out.append(lines.notice(now.stamp, messages.IS_AWAY(name=who, reason=_reason(away))))
        return [Tell(member.conn, tuple(out))]

    # --- presence and registered names ------------------------------------------------------

    def away(self, member: Member, reason: str, now: Now) -> list[Effect]:
        member.away = reason
        member.last_active = now.mono
        told = lines.notice(now.stamp, messages.AWAY(reason=_reason(reason)))
        return [Tell(member.conn, (told,)), ToBus(self._presence(member)), Log(f"away {member.who}")]

    def back(self, member: Member, now: Now) -> list[Effect]:
        member.away = None
        member.last_active = now.mono
        told = lines.notice(now.stamp, messages.BACK())
        return [Tell(member.conn, (told,)), ToBus(self._presence(member)), Log(f"back {member.who}")]

    def register_refusal(self, member: Member, password: str) -> str | None:
        """Why ``member`` may not register its name now (checked before the password is hashed)."""
        if member.key in self.registered:
            registered = self.registered[member.key].name
            wording = messages.ALREADY_REGISTERED if member.owner else messages.NOT_YOURS
            return wording.format(name=registered)
        return password_problem(password)

    def register(self, member: Member, secret: str, now: Now) -> list[Effect]:
        """/register: the member's name is theirs from now on (``secret``: the hashed password)."""
        if member.state is not State.IN_ROOM or member.key in self.registered:
            return []
        member.owner = True
        registration = Registration(member.name, secret)
        return self._registration(member, registration, messages.REGISTERED, "registered", now)

    def password_refusal(self, member: Member, password: str) -> str | None:
        """Why ``member`` may not change its password now (checked before the new one is hashed)."""
        if not member.owner or member.key not in self.registered:
            return messages.NOT_YOURS.format(name=member.name)
        return password_problem(password)

    def change_password(self, member: Member, secret: str, now: Now) -> list[Effect]:
        registration = self.registered.get(member.key)
        if registration is None or not member.owner:
            return []
        changed = replace(registration, secret=secret)
        return self._registration(member, changed, messages.PASSWORD_CHANGED, "password changed for", now)

    def unregister(self, member: Member, now: Now) -> list[Effect]:
        if not member.owner or member.key not in self.registered:
            return self.rejected_registration(member, now, messages.NOT_YOURS.format(name=member.name))
        member.owner = False
        return self._registration(member, None, messages.UNREGISTERED, "unregistered", now)

    def _registration(
        self, member: Member, registration: Registration | None, told: Wording, logged: str, now: Now
    ) -> list[Effect]:
        """A member's own name registered, changed or let go: kept, told, stored, logged."""
        if registration is None:
            del self.registered[member.key]
        else:
            self.registered[member.key] = registration
        return [
            Tell(member.conn, (lines.notice(now.stamp, told(name=member.name)),)),
            ToBus(Registered(member.key, registration)),
            Log(f"{logged} {member.who}"),
        ]

    def rejected_registration(self, member: Member, now: Now, reason: str) -> list[Effect]:
        return [Tell(member.conn, (lines.error(now.stamp, messages.REGISTER_REJECTED(reason=reason)),))]

    def unregister_name(self, name: str) -> tuple[list[str], list[Effect]]:
        """The operator lets a registered name go (its owner, if here, stays, under a name like any other)."""
        key = name_key(name)
        registration = self.registered.pop(key, None)
        if registration is None:
            return [], []
        owner = self._members.get(key) or self._waiting.get(key)
        if owner is not None:
            owner.owner = False
        return [f"unregistered {registration.name}"], [ToBus(Registered(key, None))]

    def registration_arrived(self, key: str, registration: Registration | None) -> list[Effect]:
        """A name registered, changed or let go on another server."""
        if registration is None:
            if self.registered.pop(key, None) is None:
                return []
            holder = self._names.get(key)
            if holder is not None:
                holder.owner = False
            return [Log(f"unregistered {key} (on another server)")]
        known = key in self.registered
        self.registered[key] = registration
        return [] if known else [Log(f"registered {registration.name} (on another server)")]

    def searched(self, member: Member, words: str, found: Sequence[str] | str, now: Now) -> list[Effect]:
        """The answer to /search: the lines found, or (a string) why searching failed."""
        quoted = "'" + words + "'"
        if isinstance(found, str):
            out = [lines.error(now.stamp, messages.SEARCH_UNAVAILABLE(reason=found))]
        elif not found:
            out = [lines.notice(now.stamp, messages.SEARCH_NOTHING(words=quoted))]
        else:
            out = [
                lines.notice(now.stamp, messages.SEARCH_START(words=quoted, count=len(found))),
                *found,
                lines.notice(now.stamp, messages.SEARCH_END()),
            ]
        return [Tell(member.conn, tuple(out))]

    # --- the other servers ----------------------------------------------------------------------

    def lines_arrived(self, rendered: Sequence[str], new: Sequence[str]) -> list[Effect]:
        """Public lines in the order the whole room sees them; ``new``: those not in history here yet."""
        return [Remember(tuple(new)), Broadcast(tuple(rendered))] if new else [Broadcast(tuple(rendered))]

    def separated(self, stranded: Sequence[str], now: Now) -> list[Effect]:
        """The other servers are out of reach: the people here are a room of their own for now.

        ``stranded``: lines that were on their way out and never came back; the
        people here get them (once), and this server's history keeps them.
        """
        self.shared = False
        effects: list[Effect] = [Remember(tuple(stranded)), Broadcast(tuple(stranded))] if stranded else []
        notice = lines.notice(now.stamp, messages.SEPARATED(count=len(self._members)))
        return [*effects, Broadcast((notice,))]

    def reunited(self, elsewhere: int, now: Now, announce: bool = True) -> list[Effect]:
        """In touch with the other servers (again): one room."""
        self.shared = True
        if not announce:
            return []
        notice = lines.notice(now.stamp, messages.REUNITED(count=len(self._members) + elsewhere))
        return [Broadcast((notice,))]

    def names_lost(self, keys: Iterable[str], now: Now, elsewhere: int) -> list[Effect]:
        """Names someone on another server holds now (taken while we were apart): their holders go."""
        effects: list[Effect] = []
        why = "name taken on another server while apart"
        for key in keys:
            member = self._names.get(key)
            if member is None:
                continue
            if member.state is State.IN_ROOM:
                farewell = lines.error(now.stamp, messages.NAME_LOST(name=member.name))
                departed = self.depart(member, now, elsewhere, messages.DISCONNECTED, why, farewell)
                effects += [*departed, HangUp(member.conn)] if departed else []
            else:
                effects += self.refuse(member, messages.NAME_LOST, why, name=member.name)
        return effects

    # --- shutting down ----------------------------------------------------------------------------

    def close(self, now: Now, elsewhere: int) -> tuple[list[str], list[Effect]]:
        """Tell everyone the server is going away and hang up; returns the farewells for the other servers."""
        goodbye = lines.notice(now.stamp, messages.SHUTTING_DOWN())
        effects: list[Effect] = []
        for member in self._everyone:
            effects += [Tell(member.conn, ("", goodbye) if member.state is State.NAMING else (goodbye,))]
            effects.append(HangUp(member.conn))
            member.state = State.GONE
        leaving = list(self._members.values())
        self._members.clear()
        self._waiting.clear()
        farewells = [
            lines.notice(
                now.stamp, messages.DISCONNECTED(name=m.name, count=elsewhere + len(leaving) - i - 1)
            )
            for i, m in enumerate(leaving)
        ]
        return farewells, effects
