"""The room: who is connected, who waits for the operator, who is in, what was said.

All of that is one piece of state behind one lock (``Room.lock``). It is held
for bookkeeping and for *posting* to the fan-out, never for socket I/O, so it
is held briefly; holding it while posting is what gives every reader the
same order of lines, and history the order the room saw.

Life of a member: ``NAMING`` (connected, choosing a name) -> ``WAITING``
(name claimed, in the operator's queue) -> ``IN_ROOM`` -> ``GONE``. Every
transition happens here, under the lock, so a kick racing a ``/leave`` or an
approval racing a timeout has exactly one winner.

The room may be shared with other servers. What concerns them goes through
``self.bus`` (``chatroom.bus``): public lines, name claims, who is where,
private messages to people elsewhere, bans. A server on its own has a
``LocalBus``, which is this file's old behaviour; the rules for calling a bus
(what may be called under the lock) are in that module's docstring. Questions
to the rest of the room (``elsewhere``, ``claim``, ``find``) are asked before
taking the lock, so a count in a join notice is the room as it was a moment
before the join.
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from chatroom.access import ADDRESS, NAME, Access, is_address
from chatroom.bus import Bus, Present
from chatroom.config import Settings
from chatroom.delivery import Fanout, Peer
from formatting import lines
from formatting.sanitize import strip_sgr
from protocol import messages
from protocol.commands import Action, Say
from protocol.framing import encode_line
from protocol.messages import Wording
from protocol.names import BadName, check_name, name_key

log = logging.getLogger("chat")

#: Names shown in the welcome line; /who lists everyone.
WELCOME_NAMES = 50
#: Characters of names per /who line.
WHO_LINE_CHARS = 400


class State(enum.Enum):
    NAMING = "naming"
    WAITING = "waiting"
    IN_ROOM = "in room"
    GONE = "gone"


@dataclass(eq=False)
class Member:
    """One connection, from its first byte to its close."""

    peer: Peer
    host: str
    port: int
    name: str = ""
    key: str = ""
    state: State = State.NAMING
    connected_at: float = field(default_factory=time.time)
    joined_at: float = 0.0  # let in (wall clock)
    last_active: float = field(default_factory=time.monotonic)
    reply_to: str = ""  # who sent the last private message here, for /reply

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def who(self) -> str:
        """How the log names this member: by name once it has one."""
        return f"{self.name} ({self.address})" if self.name else self.address

    def tell(self, *rendered: str) -> None:
        self.peer.send(b"".join(encode_line(line) for line in rendered))


_stamped: tuple[int, str] = (0, "")


def stamp() -> str:
    """The time for a line's ``[HH:MM:SS]``; formatted once a second, not once a line."""
    global _stamped
    second = int(time.time())
    if _stamped[0] != second:
        _stamped = (second, time.strftime("%H:%M:%S", time.localtime(second)))
    return _stamped[1]


def clock(at: float) -> str:
    """A wall-clock time as ``HH:MM:SS``, in the server's zone like every stamp."""
    return time.strftime("%H:%M:%S", time.localtime(at))


class Room:
    def __init__(self, settings: Settings, bus: Bus, fanout: Fanout) -> None:
        self.settings = settings
        self.bus = bus
        self.access = Access(bus, settings.allow_file)
        self.fanout = fanout
        self.lock = threading.Lock()
        self._connections: Counter[str] = Counter()  # by host
        self._everyone: set[Member] = set()  # every connection, named or not
        self._names: dict[str, Member] = {}  # claimed names: waiting or in the room
        self._members: dict[str, Member] = {}  # in the room, by name key
        self._waiting: dict[str, Member] = {}  # the approval queue, oldest first
        #: Called (without the lock) whenever the approval queue changes.
        self.on_queue_change: Callable[[], None] = lambda: None

    # --- counts and lists -----------------------------------------------------

    def _counts(self) -> str:
        connected = len(self._everyone)
        return f"{len(self._members)} in room, {len(self._waiting)} waiting, {connected} connected"

    def members(self) -> list[Member]:
        with self.lock:
            return list(self._members.values())

    def waiting(self) -> list[Member]:
        with self.lock:
            return list(self._waiting.values())

    # --- connecting -----------------------------------------------------------

    def connect(self, member: Member) -> str | None:
        """Count a new connection, or return the refusal to send it."""
        s = self.settings
        with self.lock:
            total = len(self._everyone)
            if self.access.banned(host=member.host):
                refusal = messages.BANNED()
            elif s.max_clients and total >= s.max_clients:
                refusal = messages.ROOM_FULL(limit=s.max_clients)
            elif (
                s.max_per_ip
                and member.host not in s.exempt
                and self._connections[member.host] >= s.max_per_ip
            ):
                refusal = messages.TOO_MANY_FROM_HOST(limit=s.max_per_ip)
            else:
                self._connections[member.host] += 1
                self._everyone.add(member)
                log.info("connect %s (%s)", member.address, self._counts())
                return None
        log.info("refused %s: %s", member.address, refusal)
        return refusal

    def claim(self, member: Member, raw: str) -> str | None:
        """Give ``member`` a name; returns why not if it cannot have it."""
        checked = check_name(raw, self.settings.max_name)
        if isinstance(checked, BadName):
            return checked.reason
        key = name_key(checked)
        with self.lock:
            banned = self.access.banned(key=key)
        # A banned name is named but not held: request() turns it away with
        # that reason, even while its old holder's claim lingers elsewhere.
        reason = None if banned else self._hold_name(member, checked, key)
        if reason is None:
            member.name, member.key = checked, key
        return reason

    def _hold_name(self, member: Member, name: str, key: str) -> str | None:
        """Reserve ``key`` for ``member`` here, then on every server; why not, if it is taken.

        Held here first, so two people on this server cannot both get it while
        the rest of the room is asked (which is done without the lock).
        """
        with self.lock:
            if key in self._names:
                return messages.NAME_TAKEN.format(name=name)
            self._names[key] = member
        if not self.bus.claim(key):  # someone on another server has it
            with self.lock:
                del self._names[key]
            return messages.NAME_TAKEN.format(name=name)
        return None

    def request(self, member: Member) -> None:
        """Put a named member in front of the operator, or straight in, or out."""
        policy = self.settings.approve
        with self.lock:
            banned = self.access.banned(key=member.key)
            listed = self.access.allowed(member.key)
        if banned:
            self.refuse(member, messages.BANNED, "banned name")
        elif policy == "all":
            self.admit(member, "approved (--approve all)")
        elif listed:
            self.admit(member, "approved (allow-list)")
        elif policy == "allowlist":
            self.refuse(member, messages.REFUSED, "not on the allow-list")
        else:
            self._queue(member)

    def _queue(self, member: Member) -> None:
        with self.lock:
            full = self.settings.max_pending and len(self._waiting) >= self.settings.max_pending
            if not full:
                member.state = State.WAITING
                self._waiting[member.key] = member
                member.tell(lines.notice(None, messages.WAITING(name=member.name)))
                log.info("waiting %s (%s)", member.who, self._counts())
        if full:
            self.refuse(member, messages.QUEUE_FULL, "approval queue full")
        else:
            self.on_queue_change()

    # --- the operator's answers -----------------------------------------------

    def admit(self, member: Member, how: str = "approved") -> bool:
        elsewhere = self.bus.elsewhere()
        with self.lock:
            if member.state not in (State.NAMING, State.WAITING):
                return False
            self._waiting.pop(member.key, None)
            member.state = State.IN_ROOM
            member.last_active = time.monotonic()
            member.joined_at = time.time()
            self._members[member.key] = member
            log.info("%s %s", how, member.who)
            self._welcome(member, elsewhere)
            self.fanout.attach(member.peer)
            self.bus.enter(member)
            count = len(self._members) + len(elsewhere)
            if self._announced(count):
                self._public_locked([lines.notice(stamp(), messages.JOINED(name=member.name, count=count))])
            log.info("join %s (%s)", member.who, self._counts())
        self.on_queue_change()
        return True

    def _announced(self, count: int) -> bool:
        """Joins and leaves are news in a room of friends and noise in a crowd.

        Announcing one to N people costs N sends, so announcing every join
        to a crowd costs N squared; past the limit only the log records them.
        """
        limit = self.settings.announce_limit
        return not limit or count <= limit

    def _welcome(self, member: Member, elsewhere: list[Present]) -> None:
        count = len(self._members) + len(elsewhere)
        names = self._roster(elsewhere, WELCOME_NAMES)
        shown = ", ".join(names)
        if count > len(names):
            shown += f" and {count - len(names)} more"
        out = [lines.notice(stamp(), messages.WELCOME(name=member.name, count=count, names=shown))]
        recent = self.bus.recent()
        if recent:
            out.append(lines.notice(stamp(), messages.HISTORY_START(count=len(recent))))
            out.extend(recent)
            out.append(lines.notice(stamp(), messages.HISTORY_END()))
        member.tell(*out)

    def refuse(self, member: Member, wording: Wording, why: str, **fields: object) -> bool:
        """Turn away a member who is not in the room yet."""
        with self.lock:
            if member.state not in (State.NAMING, State.WAITING):
                return False
            self._waiting.pop(member.key, None)
            after_prompt = member.state is State.NAMING  # the cursor is still on "Your name: "
            member.state = State.GONE
            notice = lines.notice(None, wording(**fields))
            member.tell(*(["", notice] if after_prompt else [notice]))
            member.peer.hang_up()
            log.info("refused %s: %s", member.who, why)
        self.on_queue_change()
        return True

    # --- leaving --------------------------------------------------------------

    def depart(self, member: Member, notice: Wording, why: str, farewell: str | None = None) -> bool:
        """Take a member out of the room or the queue; True if this call did it."""
        # Only someone in the room needs the count (read without the lock: a hint).
        elsewhere = len(self.bus.elsewhere()) if member.state is State.IN_ROOM else 0
        with self.lock:
            was = member.state
            if was is State.GONE:
                return False
            member.state = State.GONE
            if farewell is not None:
                member.tell(farewell)
            if was is State.WAITING:
                del self._waiting[member.key]
                log.info("gave up waiting %s: %s (%s)", member.who, why, self._counts())
            elif was is State.IN_ROOM:
                del self._members[member.key]
                self.fanout.detach(member.peer)
                self.bus.leave(member)
                count = len(self._members) + elsewhere
                if self._announced(count + 1):  # the room as it was with them, like their join
                    self._public_locked([lines.notice(stamp(), notice(name=member.name, count=count))])
                log.info("leave %s: %s (%s)", member.who, why, self._counts())
        if was is State.WAITING:
            self.on_queue_change()
        return True

    def kick(self, name: str, reason: str = "") -> Member | None:
        """The operator removes someone from the room or the queue, by name."""
        member = self.find(name)
        return member if member is not None and self.remove(member, reason) else None

    def remove(self, member: Member, reason: str = "") -> bool:
        if member.state is not State.IN_ROOM:
            wording = messages.BANNED if reason == "banned" else messages.REFUSED
            return self.refuse(member, wording, f"refused by the operator ({reason or 'no reason'})")
        said = f": {reason}" if reason else ""
        farewell = lines.error(stamp(), messages.KICKED(reason=said))
        if not self.depart(member, messages.KICKED_NOTICE, f"kicked by the operator{said}", farewell):
            return False
        member.peer.hang_up()
        return True

    def ban(self, target: str) -> list[str]:
        """Ban a name or an address and remove whoever it covers; returns what was done."""
        kind = ADDRESS if is_address(target) else NAME
        with self.lock:
            done = [f"banned {kind} {target}"] if self.access.ban(kind, target) else []
        return done + self._enforce(kind, target)

    def banned_elsewhere(self, kind: str, value: str, banned: bool, node: str) -> None:
        """A ban made or lifted on another server: remember it, and remove whoever it covers here."""
        with self.lock:
            changed = self.access.note(kind, value, banned)
        if not changed:
            return
        log.info("%s %s %s (on %s)", "banned" if banned else "unbanned", kind, value, node)
        if banned:
            for done in self._enforce(kind, value):
                log.info("%s (banned on %s)", done, node)

    def adopt_bans(self, stored: list[tuple[str, str]]) -> None:
        """The room's bans as stored (after servers reunite); bans new here are enforced."""
        with self.lock:
            new = self.access.adopt(stored)
        for kind, value in new:
            for done in self._enforce(kind, value):
                log.info("%s (banned elsewhere while apart)", done)

    def _enforce(self, kind: str, target: str) -> list[str]:
        """Remove whoever a ban covers here; a banned name's address is banned too, unless exempt."""
        done: list[str] = []
        if kind == ADDRESS:
            with self.lock:
                covered = [m for m in self._everyone if m.host == target]
        else:
            member = self.find(target)
            with self.lock:
                covered = [member] if member is not None else []
                for m in covered:
                    if m.host not in self.settings.exempt and self.access.ban(ADDRESS, m.host):
                        done.append(f"banned address {m.host}")
        done += [f"removed {m.who}" for m in covered if self.remove(m, "banned")]
        return done

    def unban(self, target: str) -> list[str]:
        with self.lock:
            return [f"unbanned {kind} {value}" for kind, value in self.access.unban(target)]

    def bans(self) -> list[tuple[str, str]]:
        with self.lock:
            return self.access.bans()

    def allow(self, name: str) -> bool:
        """Put a name on the allow-list; someone waiting under it is let in."""
        with self.lock:
            added = self.access.allow(name)
            waiting = self._waiting.get(name_key(name))
        if waiting is not None:
            self.admit(waiting, "approved (allow-list)")
        return added

    def find(self, name: str) -> Member | None:
        """A member in the room or the queue, by name (any case)."""
        key = name_key(name)
        with self.lock:
            return self._members.get(key) or self._waiting.get(key)

    def disconnect(self, member: Member) -> None:
        """The connection is over: free its name and its place in the counts."""
        with self.lock:
            if member.key and self._names.get(member.key) is member:
                del self._names[member.key]
                self.bus.release(member.key)
            self._everyone.discard(member)
            self._connections[member.host] -= 1
            if self._connections[member.host] <= 0:
                del self._connections[member.host]
            log.info("disconnect %s (%s)", member.who, self._counts())

    # --- renaming -------------------------------------------------------------

    def rename(self, member: Member, raw: str) -> None:
        """/nick: a new name, checked and claimed like a first one, and announced."""
        checked = check_name(raw, self.settings.max_name)
        if isinstance(checked, BadName):
            member.tell(lines.error(stamp(), messages.RENAME_REJECTED(reason=checked.reason)))
            return
        key, old_key, old_name = name_key(checked), member.key, member.name
        with self.lock:
            reason = self._rename_refusal(member, checked, key)
        if reason is None and key != old_key:  # a new name, not a new spelling of this one
            reason = self._hold_name(member, checked, key)
        if reason is not None:
            member.tell(lines.error(stamp(), messages.RENAME_REJECTED(reason=reason)))
            return
        elsewhere = len(self.bus.elsewhere())
        with self.lock:
            if member.state is not State.IN_ROOM:  # left meanwhile; their old name is freed as they go
                if key != old_key:
                    del self._names[key]
                    self.bus.release(key)
                return
            self.bus.leave(member)
            if key != old_key:
                del self._names[old_key]
                self.bus.release(old_key)
                # Rebuilt, not re-added: the room lists people in the order they came in.
                self._members = {(key if k == old_key else k): m for k, m in self._members.items()}
            member.name, member.key = checked, key
            self.bus.enter(member)
            notice = lines.notice(stamp(), messages.RENAMED(old=old_name, new=checked))
            if self._announced(len(self._members) + elsewhere):
                self._public_locked([notice])
            else:
                member.tell(notice)
            log.info("rename %s -> %s (%s)", old_name, checked, member.address)

    def _rename_refusal(self, member: Member, name: str, key: str) -> str | None:
        """Why ``member`` may not take ``name`` now, if so; callers hold the lock."""
        if member.state is not State.IN_ROOM:
            return "you are not in the room"
        if name == member.name:
            return messages.NAME_UNCHANGED
        if self.access.banned(key=key):
            return messages.NAME_BANNED
        if self.settings.approve == "allowlist" and not self.access.allowed(key):
            return messages.NAME_NOT_ALLOWED
        return None

    # --- talking --------------------------------------------------------------

    @staticmethod
    def render(member: Member, said: Say | Action) -> str:
        """A member's public line as everyone will see it (rendered once, here)."""
        if isinstance(said, Action):
            return lines.action(stamp(), member.name, said.text)
        return lines.message(stamp(), member.name, said.text, said.color)

    def speak(self, member: Member, rendered: list[str]) -> None:
        """Lines from ``member`` for the whole room, in one go (a paste arrives together)."""
        with self.lock:
            if member.state is not State.IN_ROOM:
                return
            member.last_active = time.monotonic()
            self._public_locked(rendered)
        if self.settings.log_chat:
            for line in rendered:
                log.info("%s", _unstamped(line))

    def announce(self, text: str) -> None:
        line = lines.notice(stamp(), messages.ANNOUNCEMENT(text=text))
        with self.lock:
            self._public_locked([line])
        log.info("%s", _unstamped(line))

    def _public_locked(self, rendered: list[str]) -> None:
        """Lines for the whole room; callers hold the lock, which fixes the order here."""
        if self.bus.publish(rendered):
            self.deliver_locked(rendered)

    def deliver_locked(self, rendered: list[str]) -> None:
        """Post public lines to everyone in the room on this server; callers hold the lock."""
        self.fanout.broadcast(b"".join(encode_line(line) for line in rendered))

    def private(self, member: Member, recipient: str, text: str, color: str | None = None) -> None:
        key = name_key(recipient)
        with self.lock:
            target = self._members.get(key)
            member.last_active = time.monotonic()
        if key == member.key:
            member.tell(lines.error(stamp(), messages.PM_SELF()))
            return
        elsewhere = self.bus.find(key) if target is None else None
        if target is None and elsewhere is None:
            member.tell(lines.error(stamp(), messages.NO_SUCH_USER(name=recipient)))
            return
        now = stamp()
        line = lines.private(now, messages.PM_FROM(name=member.name), text, color)
        if target is not None:
            target.reply_to = member.name
            target.tell(line)
            name, where = target.name, ""
        else:
            assert elsewhere is not None
            self.bus.private(elsewhere, key, member.name, line)
            name, where = elsewhere.name, f" on {elsewhere.node}"
        member.tell(lines.private(now, messages.PM_TO(name=name), text, color))
        log.info("private message %s -> %s%s (text not logged)", member.name, name, where)

    def deliver_private(self, key: str, sender: str, line: str) -> None:
        """A private message from another server for someone here (who may have left meanwhile)."""
        with self.lock:
            target = self._members.get(key)
        if target is not None:
            target.reply_to = sender
            target.tell(line)
            log.info("private message %s -> %s (text not logged)", sender, target.name)

    def _roster(self, elsewhere: list[Present], most: int | None = None) -> list[str]:
        """The first ``most`` names (all by default) in the order they were let in; callers hold the lock.

        Members are kept in the order they came in, so on a server of its own
        this is a slice; it is called on every join, and a sort of the whole
        room there made joining a 10,000-person room quadratic.
        """
        if not elsewhere:
            return [m.name for m in itertools.islice(self._members.values(), most)]
        here = [(m.joined_at, m.name) for m in self._members.values()]
        there = [(p.joined, p.name) for p in elsewhere]
        return [name for _joined, name in sorted(here + there, key=lambda entry: entry[0])][:most]

    def who(self, member: Member) -> None:
        elsewhere = self.bus.elsewhere()
        with self.lock:
            names = self._roster(elsewhere)
        chunks: list[list[str]] = [[]]
        for name in names:
            if sum(len(n) + 2 for n in chunks[-1]) + len(name) > WHO_LINE_CHARS:
                chunks.append([])
            chunks[-1].append(name)
        now = stamp()
        out = [lines.notice(now, messages.WHO(count=len(names), names=", ".join(chunks[0])))]
        out += [lines.notice(now, messages.WHO_MORE(names=", ".join(chunk))) for chunk in chunks[1:]]
        member.tell(*out)

    def whois(self, member: Member, name: str) -> None:
        """Since when someone is in the room and, on this server, how long they have been quiet."""
        key = name_key(name)
        with self.lock:
            target = self._members.get(key)
            found = (target.name, target.joined_at, time.monotonic() - target.last_active) if target else None
        elsewhere = self.bus.find(key) if found is None else None
        now, wall = stamp(), time.time()
        if found is not None:
            who, joined, idle = found
            line = messages.WHOIS(
                name=who, since=clock(joined), ago=lines.duration(wall - joined), idle=lines.duration(idle)
            )
        elif elsewhere is not None:
            joined = elsewhere.joined
            line = messages.WHOIS_ELSEWHERE(
                name=elsewhere.name, since=clock(joined), ago=lines.duration(wall - joined)
            )
        else:
            member.tell(lines.error(now, messages.NO_SUCH_USER(name=name)))
            return
        member.tell(lines.notice(now, line))

    # --- shutting down ----------------------------------------------------------

    def close(self) -> None:
        """Tell everyone the server is going away and hang up on them; the rest of the room is told."""
        goodbye = lines.notice(stamp(), messages.SHUTTING_DOWN())
        elsewhere = len(self.bus.elsewhere())
        with self.lock:
            everyone = list(self._everyone)
            for member in everyone:
                member.tell(*(["", goodbye] if member.state is State.NAMING else [goodbye]))
                member.state = State.GONE
                member.peer.hang_up()
            leaving = list(self._members.values())
            self._members.clear()
            self._waiting.clear()
        farewells = [
            lines.notice(stamp(), messages.DISCONNECTED(name=m.name, count=elsewhere + len(leaving) - i - 1))
            for i, m in enumerate(leaving)
        ]
        self.bus.close(farewells)

    # --- the cluster's side (chatroom.cluster calls these) ----------------------

    def separated_locked(self) -> None:
        """Redis is gone: tell the people here that only they hear each other for now."""
        self.deliver_locked([lines.notice(stamp(), messages.SEPARATED(count=len(self._members)))])

    def reunited_locked(self, elsewhere: int) -> None:
        """Redis is back: the room is whole again."""
        notice = lines.notice(stamp(), messages.REUNITED(count=len(self._members) + elsewhere))
        self.deliver_locked([notice])

    def lose_names(self, keys: list[str]) -> None:
        """Names someone on another server holds now (taken while we were apart): their holders go."""
        for key in keys:
            with self.lock:
                member = self._names.get(key)
            if member is None:
                continue
            farewell = lines.error(stamp(), messages.NAME_LOST(name=member.name))
            why = "name taken on another server while apart"
            if member.state is State.IN_ROOM:
                if self.depart(member, messages.DISCONNECTED, why, farewell):
                    member.peer.hang_up()
            else:
                self.refuse(member, messages.NAME_LOST, why, name=member.name)


def _unstamped(line: str) -> str:
    """A rendered line as the server log shows it (it has a timestamp of its own)."""
    return strip_sgr(line).split("] ", 1)[-1]
