"""Where the room lives in Redis (``Keys``) and the Lua scripts that change it (``Scripts``).

Every key and channel starts ``chatroom:DB:``, so one Redis serves one room
per database (pub/sub channels ignore databases, hence the number in their
names too). What each holds is in the docstring of ``chatroom.cluster``.

Each script is one atomic step in Redis. Its text says what ``KEYS`` and
``ARGV`` hold, and the one Python method that calls it builds them, so the
argument positions are written down once, next to each other. A method
returns a ``Command`` (the words of an ``EVALSHA``), which the caller runs at
once or packs into a pipeline; the ``parse_*`` functions read the answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chatroom.bus import Present
from chatroom.passwords import Registration

#: The words of one Redis command.
Command = tuple[object, ...]


@dataclass(frozen=True)
class Keys:
    prefix: str  # "chatroom:DB:"

    @property
    def history(self) -> str:
        return self.prefix + "history"

    @property
    def room(self) -> str:
        return self.prefix + "room"

    @property
    def control(self) -> str:
        return self.prefix + "control"

    @property
    def bans(self) -> str:
        return self.prefix + "bans"

    @property
    def nodes(self) -> str:
        return self.prefix + "nodes"

    @property
    def registered(self) -> str:
        """Registered names: name key -> ``registration_value``."""
        return self.prefix + "registered"

    @property
    def presence(self) -> str:
        """The channel on which every change to a members hash is told, numbered."""
        return self.prefix + "presence"

    @property
    def presence_seq(self) -> str:
        return self.prefix + "presence:seq"

    def node(self, node: str) -> str:
        """The channel of private messages for the people on ``node``."""
        return self.prefix + "node:" + node

    def name(self, key: str) -> str:
        return self.prefix + "name:" + key

    def members(self, node: str) -> str:
        return self.prefix + "members:" + node

    def alive(self, node: str) -> str:
        """Exists while ``node`` refreshes it: the servers in the room."""
        return self.prefix + "alive:" + node


_PUBLISH = """
-- KEYS[1] history stream, KEYS[2] room channel.
-- ARGV[1] lines kept, ARGV[2] sender's id, ARGV[3] sequence number of the first line, ARGV[4..] lines.
local keep = tonumber(ARGV[1])
local entries = {}
for i = 4, #ARGV do
  local id = ''
  if keep > 0 then
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', keep, '*', 'line', ARGV[i])
  end
  entries[#entries + 1] = {id, ARGV[i]}
end
redis.call('PUBLISH', KEYS[2], cjson.encode({ARGV[2], tonumber(ARGV[3]), entries}))
return #entries
"""

_CLAIM = """
-- KEYS: name keys. ARGV[1] this server's id, ARGV[2] expiry (ms),
-- ARGV[3] 'claim' (may take over an older claim of this server's) or 'keep', ARGV[4..] a claim per key.
-- Returns the positions of the keys someone else holds.
local mine = ARGV[1] .. ' '
local lost = {}
for i, key in ipairs(KEYS) do
  local claim = ARGV[i + 3]
  local held = redis.call('GET', key)
  local ours = held and string.sub(held, 1, #mine) == mine
  if held == claim then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif not held or (ours and ARGV[3] == 'claim') then
    redis.call('SET', key, claim, 'PX', ARGV[2])
  elseif not ours then
    lost[#lost + 1] = i
  end
end
return lost
"""

_RELEASE = """
-- KEYS[1] a name key, ARGV[1] our claim: delete it only if it is still ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_PRESENCE = """
-- KEYS[1] this server's members hash, KEYS[2] set of servers, KEYS[3] presence counter,
-- KEYS[4] presence channel, KEYS[5] this server's alive key.
-- ARGV[1] this server, ARGV[2] expiry (ms), ARGV[3..] field, value, field, value...
-- Rewrites the whole hash and tells every server ('reset'), so their mirrors start again from it.
redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
local members = {}
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  members[#members + 1] = {ARGV[i], ARGV[i + 1]}
end
if #ARGV > 2 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], cjson.encode({seq, ARGV[1], 'reset', members}))
return seq
"""

_CHANGE = """
-- KEYS[1..4] as for the presence script. ARGV[1] this server, ARGV[2] expiry (ms),
-- ARGV[3..] changes in order: '+', field, value (in the room) or '-', field, '' (gone).
-- Changes the hash and tells every server, numbered, in one step.
local changes = {}
for i = 3, #ARGV, 3 do
  if ARGV[i] == '+' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HDEL', KEYS[1], ARGV[i + 1])
  end
  changes[#changes + 1] = {ARGV[i], ARGV[i + 1], ARGV[i + 2]}
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', KEYS[4], cjson.encode({seq, ARGV[1], 'change', changes}))
return seq
"""

_KEEP = """
-- KEYS[1] this server's members hash, KEYS[2] set of servers, KEYS[3] its alive key.
-- ARGV[1] this server, ARGV[2] expiry (ms).
-- This server is alive for another expiry; its hash too, unless it was gone (then it is rewritten).
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

_SYNC = """
-- KEYS[1] set of servers, KEYS[2] presence counter. ARGV[1] alive key prefix.
-- Returns the counter and the servers alive: those that refreshed within the expiry.
-- Each refreshes its alive key just before its names, so a server that died is
-- left out before a name it held can be taken again.
local out = {tonumber(redis.call('GET', KEYS[2]) or '0')}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. node) == 1 then
    out[#out + 1] = node
  else
    redis.call('SREM', KEYS[1], node)
  end
end
return out
"""

_SNAPSHOT = """
-- KEYS[1] set of servers, KEYS[2] presence counter. ARGV[1] members hash prefix.
-- Returns the counter, then server, {field, value, ...} for every server: everyone, at that count.
local out = {tonumber(redis.call('GET', KEYS[2]) or '0')}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = node
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. node)
end
return out
"""

_VACATE = """
-- KEYS: name keys. ARGV[1] a server's name, ARGV[2] its id now (NODE/INCARNATION).
-- Frees the names an earlier run of that server left behind; returns how many.
local earlier = ARGV[1] .. '/'
local now = ARGV[2] .. ' '
local freed = 0
for _, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and string.sub(held, 1, #earlier) == earlier and string.sub(held, 1, #now) ~= now then
    redis.call('DEL', key)
    freed = freed + 1
  end
end
return freed
"""

_FIND = """
-- KEYS[1] a name key. ARGV[1] members hash prefix, ARGV[2] the name's key.
-- Returns {server, member} if that name is in the room somewhere.
local held = redis.call('GET', KEYS[1])
if not held then return false end
local node = string.match(held, '^(.*)/[^/ ]* %d+$')
if not node then return false end
local member = redis.call('HGET', ARGV[1] .. node, ARGV[2])
if not member then return false end
return {node, member}
"""

_BAN = """
-- KEYS[1] set of bans, KEYS[2] control channel.
-- ARGV[1] this server's id, ARGV[2] 'ban' or 'unban', ARGV[3..] 'KIND VALUE' entries.
-- Each change is published, so the other servers apply it at once.
for i = 3, #ARGV do
  local changed
  if ARGV[2] == 'ban' then
    changed = redis.call('SADD', KEYS[1], ARGV[i])
  else
    changed = redis.call('SREM', KEYS[1], ARGV[i])
  end
  if changed == 1 then
    redis.call('PUBLISH', KEYS[2], cjson.encode({ARGV[1], ARGV[2], ARGV[i]}))
  end
end
return 0
"""

_TEXTS = {
    "publish": _PUBLISH,
    "claim": _CLAIM,
    "release": _RELEASE,
    "presence": _PRESENCE,
    "change": _CHANGE,
    "keep": _KEEP,
    "sync": _SYNC,
    "snapshot": _SNAPSHOT,
    "vacate": _VACATE,
    "find": _FIND,
    "ban": _BAN,
}


class Scripts:
    """The scripts as loaded into one Redis, each behind a method that knows its arguments."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self._sha: dict[str, str] = {}

    def load(self, client: Any) -> None:
        """Load (again, after a Redis restart forgot them) every script."""
        self._sha = {name: client.script_load(text) for name, text in _TEXTS.items()}

    def _eval(self, name: str, keys: Sequence[str], *args: object) -> Command:
        return ("EVALSHA", self._sha[name], len(keys), *keys, *args)

    def publish(self, keep: int, origin: str, first: int, lines: Sequence[str]) -> Command:
        """Append ``lines`` to history (about ``keep`` kept) and publish them with their ids, in one step."""
        return self._eval("publish", (self.keys.history, self.keys.room), keep, origin, first, *lines)

    def claim(self, origin: str, ttl_ms: int, mode: str, claims: Sequence[tuple[str, str]]) -> Command:
        """Claim (``mode`` 'claim') or refresh ('keep') names; answers the 1-based positions lost."""
        names = [self.keys.name(key) for key, _claim in claims]
        return self._eval("claim", names, origin, ttl_ms, mode, *(claim for _key, claim in claims))

    def release(self, key: str, claim: str) -> Command:
        return self._eval("release", (self.keys.name(key),), claim)

    def presence(self, node: str, ttl_ms: int, members: Mapping[str, str]) -> Command:
        """Rewrite who is in the room on ``node`` (name key -> ``presence_value``), and say so to all."""
        flat = [value for pair in members.items() for value in pair]
        return self._eval("presence", self._presence_keys(node), node, ttl_ms, *flat)

    def change(self, node: str, ttl_ms: int, changes: Sequence[tuple[str, str, str]]) -> Command:
        """People in (``+``, key, value) and out (``-``, key, ``""``) on ``node``, in order, told to all."""
        flat = [part for change in changes for part in change]
        return self._eval("change", self._presence_keys(node), node, ttl_ms, *flat)

    def keep(self, node: str, ttl_ms: int) -> Command:
        """Keep ``node`` and its presence alive; answers 0 if its presence had expired (then rewrite it)."""
        return self._eval(
            "keep", (self.keys.members(node), self.keys.nodes, self.keys.alive(node)), node, ttl_ms
        )

    def sync(self) -> Command:
        """The presence counter and the servers alive: read with ``parse_sync``."""
        return self._eval("sync", (self.keys.nodes, self.keys.presence_seq), self.keys.alive(""))

    def snapshot(self) -> Command:
        """Everyone on every server, with the presence counter: read with ``parse_snapshot``."""
        return self._eval("snapshot", (self.keys.nodes, self.keys.presence_seq), self.keys.members(""))

    def vacate(self, node: str, origin: str, keys: Sequence[str]) -> Command:
        """Free the names among ``keys`` (full Redis keys) that an earlier run of ``node`` still holds."""
        return self._eval("vacate", keys, node, origin)

    def _presence_keys(self, node: str) -> tuple[str, ...]:
        keys = self.keys
        return (keys.members(node), keys.nodes, keys.presence_seq, keys.presence, keys.alive(node))

    def find(self, key: str) -> Command:
        """Where someone of that name key is in the room: read with ``parse_find``."""
        return self._eval("find", (self.keys.name(key),), self.keys.members(""), key)

    def ban(self, origin: str, banned: bool, entries: Sequence[str]) -> Command:
        """Store ban changes (``ban_entry`` strings) and tell every server of those that changed."""
        action = "ban" if banned else "unban"
        return self._eval("ban", (self.keys.bans, self.keys.control), origin, action, *entries)


def run(target: Any, command: Command) -> Any:
    """Run a command on a client (the answer) or queue it on a pipeline."""
    return target.execute_command(*command)


def presence_value(name: str, address: str, since: float, joined: float, away: str | None) -> str:
    """What the other servers know about someone here."""
    return json.dumps({"name": name, "address": address, "since": since, "joined": joined, "away": away})


def present(node: str, value: bytes | str) -> Present:
    """Someone on ``node``, from their ``presence_value``."""
    about = json.loads(value)
    return Present(about["name"], node, about["address"], about["since"], about["joined"], about.get("away"))


def registration_value(registration: Registration | None) -> str | None:
    if registration is None:
        return None
    return json.dumps({"name": registration.name, "secret": registration.secret, "seen": registration.seen})


def parse_registration(value: bytes | str | None) -> Registration | None:
    if value is None:
        return None
    about = json.loads(value)
    return Registration(about["name"], about["secret"], about["seen"])


def parse_find(found: Sequence[bytes] | None) -> Present | None:
    return present(found[0].decode(), found[1]) if found else None


def parse_sync(answer: Sequence[Any]) -> tuple[int, set[str]]:
    """The presence counter, and the servers whose presence is alive."""
    return int(answer[0]), {node.decode() for node in answer[1:]}


def parse_snapshot(answer: Sequence[Any]) -> tuple[int, dict[str, list[tuple[str, bytes]]]]:
    """The presence counter, and each server's (name key, presence value) pairs."""
    nodes: dict[str, list[tuple[str, bytes]]] = {}
    for i in range(1, len(answer), 2):
        flat = answer[i + 1]
        nodes[answer[i].decode()] = [(flat[j].decode(), flat[j + 1]) for j in range(0, len(flat), 2)]
    return int(answer[0]), nodes


def ban_entry(kind: str, value: str) -> str:
    return f"{kind} {value}"


def parse_ban_entry(raw: bytes | str) -> tuple[str, str]:
    kind, _, value = (raw.decode() if isinstance(raw, bytes) else raw).partition(" ")
    return kind, value


def stream_id(text: str) -> tuple[int, int]:
    """A stream id as a comparable pair; lines not kept in history have none ((0, 0))."""
    if not text:
        return (0, 0)
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq))
