"""Several servers, one room: the Redis side of ``--redis URL``.

Only imported when ``--redis`` is given, so a server on its own needs no
redis-py. ``ClusterBus`` is the room's bus (see ``chatroom.bus``): the room
hands it what concerns the other servers, and it hands back what they said.

What lives where in Redis (every key and channel starts ``chatroom:DB:``, so
one Redis serves one room per database; pub/sub channels ignore databases,
hence the number in their names too):

``history`` (stream)
    The last ``--history`` public lines, as rendered, trimmed with
    ``XADD MAXLEN ~``. Replayed on join on any server.
``room`` (channel)
    Public lines: messages, actions, announcements, join and leave notices.
    Each server publishes the lines its clients said, rendered once; *every*
    server, the sender's included, delivers them from its subscription. Redis
    runs one command at a time, so every server sees one order, and a
    server's lines leave on one connection from one thread (the writer, in
    the order the room posted them), so each sender's lines keep their order.
    One Lua script appends a batch of lines to ``history`` and publishes them
    with their stream ids in one step, so a line is in history if and only if
    it was sent to the room.
``node:NODE`` (channel)
    Private messages for the people on NODE. Published and forgotten: never
    in a key, never in history, and no server logs their text.
``control`` (channel), ``bans`` (set of ``"KIND VALUE"``)
    Bans for every server; each change is published so the others remove the
    banned person at once.
``name:KEY`` (string, expires)
    A claimed name (``protocol.names.name_key``): ``SET`` only if free (a Lua
    script), holding ``NODE/INCARNATION SERIAL``. The writer refreshes every
    claim of this server every third of ``--redis-ttl``; leaving deletes it
    only if it is still ours. A server that dies loses its names after
    ``--redis-ttl`` seconds.
``members:NODE`` (hash, expires), ``nodes`` (set)
    Who is in the room on each server, for ``/who``, the welcome line and the
    counts in join and leave notices; rewritten with each refresh, so a dead
    server's people vanish after ``--redis-ttl``.

Threads: the *writer* sends what the room queued (lines, private messages,
presence, bans) in batches, one pipeline per batch, and refreshes names and
presence. The *listener* reads the subscription and delivers; it also notices
outages and reconnects. Questions that need an answer (is this name free, who
is elsewhere, where is bob) are asked by the caller's own thread, never under
``Room.lock``; nothing here does network I/O under that lock.

When Redis is unreachable
-------------------------
The first failure anywhere (a dropped subscription, a failed or timed-out
command) makes this server *separate*: the listener stops, lines that were on
their way out are delivered here (once: lines the subscription had already
delivered are recognised by their sequence number), the people here are told
(``messages.SEPARATED``) and the log says so once. Until Redis is back, this
server is a room of its own: lines, notices and history are local, ``/who``
and counts show the people here, names are checked here only, private
messages reach only people here, and bans apply here at once and are kept to
be stored later. The listener tries again with a doubling delay (up to a
third of ``--redis-ttl``). Once connected it *reunites*: subscribes, stores
the bans made meanwhile, claims its names again (a name someone on another
server took meanwhile stays theirs: ours is told ``messages.NAME_LOST`` and
disconnected), rewrites its presence, reloads history from Redis (lines said
here during the outage are not replayed anywhere, and fall out of the replay
here too), tells the people here (``messages.REUNITED``) and logs it.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from chatroom.bus import Present
from chatroom.config import Settings

if TYPE_CHECKING:
    from chatroom.room import Member, Room

log = logging.getLogger("chat")

#: The first wait before trying Redis again; it doubles up to a third of --redis-ttl.
FIRST_RETRY = 0.05
#: How often the listener looks up from an idle subscription (for trouble and shutdown).
TICK = 0.1
#: Most lines one script call appends and publishes (a script blocks Redis while it runs).
BATCH_LINES = 256
#: How long a shutdown waits for queued lines to go out.
CLOSE_GRACE = 2.0

# --- Lua: each script is one atomic step in Redis ------------------------------------

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
-- KEYS[1] this server's members hash, KEYS[2] set of servers.
-- ARGV[1] this server, ARGV[2] expiry (ms), ARGV[3..] field, value, field, value...
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if #ARGV > 2 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[1])
return 0
"""

_ELSEWHERE = """
-- KEYS[1] set of servers. ARGV[1] members hash prefix, ARGV[2] this server, ARGV[3] name key prefix.
-- Returns server, member, server, member... for everyone on the other servers whose
-- name that server still holds (a crashed server's list can outlive its names briefly).
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[2] then
    local flat = redis.call('HGETALL', ARGV[1] .. node)
    if #flat == 0 then
      redis.call('SREM', KEYS[1], node)
    end
    for i = 1, #flat, 2 do
      local held = redis.call('GET', ARGV[3] .. flat[i])
      if held and string.sub(held, 1, #node + 1) == node .. '/' then
        out[#out + 1] = node
        out[#out + 1] = flat[i + 1]
      end
    end
  end
end
return out
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

_SCRIPTS = {
    "publish": _PUBLISH,
    "claim": _CLAIM,
    "release": _RELEASE,
    "presence": _PRESENCE,
    "elsewhere": _ELSEWHERE,
    "find": _FIND,
    "ban": _BAN,
}

#: What the writer sends: (kind, ...); see ``ClusterBus._send``.
Op = tuple[Any, ...]
_BAN_OPS = ("ban", "unban")


class ClusterBus:
    """One server's share of a room kept in Redis."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis
        self.settings = settings
        self.node: str | None = None
        self.ttl_ms = max(1, int(settings.redis_ttl * 1000))
        self.refresh = settings.redis_ttl / 3
        self._timeout = min(5.0, max(2.0, self.refresh))  # a command that takes longer is an outage
        self._client = redis.Redis.from_url(
            settings.redis,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),  # we notice outages ourselves, see the docstring
        )
        kwargs = self._client.connection_pool.connection_kwargs
        db = int(kwargs.get("db", 0))
        scheme = settings.redis.partition("://")[0]
        place = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        self.where = f"{scheme}://{place}/{db}"  # without the password
        self._prefix = f"chatroom:{db}:"
        self._id = ""  # NODE/INCARNATION, set by start()
        self._sha: dict[str, str] = {}
        self.room: Room | None = None
        # Guarded by Room.lock (``_up`` may be read anywhere):
        self._up = False
        self._seq = 0  # public lines this server sent (each has the next number)
        self._delivered = 0  # the last of ours the subscription delivered
        self._recent: deque[str] = deque(maxlen=settings.history)
        self._last_id = (0, 0)  # the newest stream id in _recent
        # Guarded by _cond: what the writer is to send, and the claims it keeps fresh.
        self._cond = threading.Condition()
        self._ops: list[Op] = []
        self._in_flight: list[Op] = []
        self._pending_bans: list[tuple[str, str]] = []  # made while apart
        self._claims: dict[str, str] = {}  # name key -> our claim
        self._serial = itertools.count(1)
        # Trouble: set by any thread, handled by the listener.
        self._epoch = 0  # which connection a failure belongs to
        self._problem: BaseException | None = None
        self._apart_since = 0.0
        self._closing = threading.Event()  # the listener stops
        self._stopping = False  # the writer stops once the queue is sent (guarded by _cond)
        self._pubsub: Any = None
        self._conn: Any = None  # the writer's own connection
        self._conn_epoch = 0
        self._listener = threading.Thread(target=self._listen, name="redis-listener", daemon=True)
        self._writer = threading.Thread(target=self._write, name="redis-writer", daemon=True)
        try:
            self._client.ping()
        except RedisError as error:
            raise ConnectionError(f"cannot reach Redis at {self.where}: {error}") from error

    # --- keys --------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    # --- starting and stopping ---------------------------------------------------------------

    def start(self, room: Room, node: str) -> None:
        """Join the room in Redis, or raise ConnectionError (the server then does not start)."""
        self.room, self.node = room, node
        self._id = f"{node}/{secrets.token_hex(4)}"
        self.where += f" as node {node}"
        try:
            self._reunite(first=True)
        except RedisError as error:
            raise ConnectionError(f"cannot join the room in Redis at {self.where}: {error}") from error
        self._listener.start()
        self._writer.start()

    def close(self, farewells: list[str]) -> None:
        """Say goodbye for the people here, give up our names and presence, disconnect."""
        room = self._room()
        self._closing.set()
        self._listener.join(CLOSE_GRACE)  # nothing more is delivered here
        with room.lock:
            self.publish(farewells)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._writer.join(CLOSE_GRACE)
        if self._conn is not None:
            self._conn.disconnect()
        if self._up:
            with self._cond:
                claims = dict(self._claims)
            try:
                pipe = self._client.pipeline(transaction=False)
                for key, claim in claims.items():
                    pipe.evalsha(self._sha["release"], 1, self._key("name", key), claim)
                pipe.delete(self._key("members", self._node()))
                pipe.srem(self._key("nodes"), self._node())
                pipe.execute()
            except RedisError as error:
                log.info("could not tidy up in Redis: %s", error)
        if self._pubsub is not None:
            self._pubsub.close()
        self._client.close()

    # --- the room's calls, under Room.lock: queue, never wait ---------------------------------

    def publish(self, lines: list[str]) -> bool:
        if not self._up:
            self._recent.extend(lines)
            return True  # apart: the room delivers them here
        for line in lines:
            self._seq += 1
            self._queue(("line", self._seq, line))
        return False

    def recent(self) -> list[str]:
        return list(self._recent)

    def enter(self, member: Member) -> None:
        if self._up:
            self._queue(("enter", member.key, _presence(member)))

    def leave(self, member: Member) -> None:
        if self._up:
            self._queue(("leave", member.key))

    def release(self, key: str) -> None:
        with self._cond:
            claim = self._claims.pop(key, None)
        if claim is not None and self._up:
            self._queue(("release", key, claim))

    def private(self, where: Present, key: str, sender: str, line: str) -> None:
        if self._up:
            self._queue(("private", self._key("node", where.node), json.dumps([key, sender, line])))

    def bans(self) -> list[tuple[str, str]]:
        """The bans stored in Redis (asked once, when the room starts)."""
        try:
            return [_ban_entry(raw) for raw in self._client.smembers(self._key("bans"))]
        except RedisError as error:
            raise ConnectionError(f"cannot read bans from Redis at {self.where}: {error}") from error

    def add_ban(self, kind: str, value: str) -> None:
        self._ban("ban", f"{kind} {value}")

    def remove_ban(self, kind: str, value: str) -> None:
        self._ban("unban", f"{kind} {value}")

    def _ban(self, action: str, entry: str) -> None:
        with self._cond:
            if self._up:
                self._ops.append((action, entry))
                self._cond.notify()
            else:
                self._pending_bans.append((action, entry))

    def _queue(self, op: Op) -> None:
        with self._cond:
            self._ops.append(op)
            self._cond.notify()

    # --- the room's questions, without the lock --------------------------------------------

    def claim(self, key: str) -> bool:
        claim = f"{self._id} {next(self._serial)}"
        epoch = self._epoch
        if self._up:
            try:
                lost = self._script("claim", [self._key("name", key)], self._id, self.ttl_ms, "claim", claim)
            except RedisError as error:
                self._trouble(error, epoch)  # apart: the room's own check is all there is
            else:
                if lost:
                    return False
        with self._cond:
            self._claims[key] = claim
        return True

    def elsewhere(self) -> list[Present]:
        epoch = self._epoch
        if not self._up:
            return []
        try:
            return self._ask_elsewhere()
        except RedisError as error:
            self._trouble(error, epoch)
            return []

    def _ask_elsewhere(self) -> list[Present]:
        keys = [self._key("nodes")]
        flat = self._script("elsewhere", keys, self._key("members", ""), self._node(), self._key("name", ""))
        return [_present(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    def find(self, key: str) -> Present | None:
        epoch = self._epoch
        if not self._up:
            return None
        try:
            found = self._script("find", [self._key("name", key)], self._key("members", ""), key)
        except RedisError as error:
            self._trouble(error, epoch)
            return None
        if not found or found[0].decode() == self.node:
            return None
        return _present(found[0], found[1])

    def _script(self, name: str, keys: list[str], *args: object) -> Any:
        return self._client.evalsha(self._sha[name], len(keys), *keys, *args)  # type: ignore[arg-type]

    # --- trouble --------------------------------------------------------------------------

    def _trouble(self, error: BaseException, epoch: int) -> None:
        """Something failed talking to Redis: the listener separates us (unless that is old news)."""
        if epoch == self._epoch and self._problem is None:
            self._problem = error

    # --- the writer: everything queued, in order, and the refresh -------------------------------

    def _write(self) -> None:
        next_refresh = time.monotonic() + self.refresh
        while True:
            with self._cond:
                while True:
                    ready = self._up and self._problem is None
                    if self._stopping and not (ready and self._ops):
                        return
                    wait = next_refresh - time.monotonic()
                    if ready and (self._ops or wait <= 0):
                        break
                    self._cond.wait(max(0.0, wait) if ready else None)
                batch, self._ops = self._ops, []
                self._in_flight = batch
                epoch = self._epoch
            try:
                if batch:
                    self._send(batch)
                if time.monotonic() >= next_refresh and not self._stopping:
                    next_refresh = time.monotonic() + self.refresh
                    self._keep(epoch)
            except Exception as error:  # the batch stays in flight: the separation takes care of it
                if not isinstance(error, RedisError):
                    log.exception("unexpected error sending to Redis")
                self._trouble(error, epoch)
                continue
            with self._cond:
                if self._in_flight is batch:
                    self._in_flight = []

    def _send(self, batch: list[Op]) -> None:
        """One round trip for everything queued (consecutive lines go as one script call).

        On the writer's own connection, commands packed by hand: redis-py's
        pipeline object costs about 130 us of CPU per round trip, this about 40.
        """
        commands: list[tuple[object, ...]] = []
        lines: list[Op] = []

        def flush() -> None:
            for at in range(0, len(lines), BATCH_LINES):
                chunk = lines[at : at + BATCH_LINES]
                keys = (self._key("history"), self._key("room"))
                head = (self.settings.history, self._id, chunk[0][1])
                commands.append(("EVALSHA", self._sha["publish"], 2, *keys, *head, *(op[2] for op in chunk)))
            lines.clear()

        members, nodes = self._key("members", self._node()), self._key("nodes")
        for op in batch:
            kind = op[0]
            if kind == "line":
                lines.append(op)
                continue
            flush()
            if kind == "private":
                commands.append(("PUBLISH", op[1], op[2]))
            elif kind == "enter":
                commands.append(("HSET", members, op[1], op[2]))
                commands.append(("PEXPIRE", members, self.ttl_ms))
                commands.append(("SADD", nodes, self._node()))
            elif kind == "leave":
                commands.append(("HDEL", members, op[1]))
            elif kind == "release":
                commands.append(("EVALSHA", self._sha["release"], 1, self._key("name", op[1]), op[2]))
            elif kind in _BAN_OPS:
                keys = (self._key("bans"), self._key("control"))
                commands.append(("EVALSHA", self._sha["ban"], 2, *keys, self._id, kind, op[1]))
        flush()
        if self._conn is None:
            self._conn = self._client.connection_pool.make_connection()
        if self._conn_epoch != self._epoch:  # separated since: that socket may lead to an old Redis
            self._conn.disconnect()
            self._conn_epoch = self._epoch
        try:
            self._conn.send_packed_command(self._conn.pack_commands(commands))
            for _ in commands:
                self._conn.read_response()
        except BaseException:
            self._conn.disconnect()  # whatever was unread would answer the next batch
            raise

    def _keep(self, epoch: int, mode: str = "keep") -> list[str]:
        """Refresh our claims and rewrite our presence; returns the names someone else holds now."""
        room = self._room()
        with self._cond:
            claims = list(self._claims.items())
        pipe = self._client.pipeline(transaction=False)
        pipe.evalsha(
            self._sha["claim"],
            len(claims),
            *(self._key("name", key) for key, _claim in claims),
            self._id,
            self.ttl_ms,
            mode,
            *(claim for _key, claim in claims),
        )
        present = [value for m in room.members() for value in (m.key, _presence(m))]
        keys = (self._key("members", self._node()), self._key("nodes"))
        pipe.evalsha(self._sha["presence"], 2, *keys, self._node(), self.ttl_ms, *present)
        lost_at, _ = pipe.execute()
        lost = [claims[i - 1] for i in lost_at]
        with self._cond:
            for key, claim in lost:
                if self._claims.get(key) == claim:
                    del self._claims[key]
        if lost and mode == "keep" and epoch == self._epoch:
            room.lose_names([key for key, _claim in lost])
        return [key for key, _claim in lost]

    # --- the listener: deliver what the room said; separate and reunite ---------------------

    def _listen(self) -> None:
        while not self._closing.is_set():
            try:
                self._pump()
            except Exception as error:  # whatever it was, separating and reuniting starts afresh
                if not isinstance(error, RedisError):
                    log.exception("unexpected error reading from Redis")
                self._trouble(error, self._epoch)
            if self._closing.is_set():
                return
            self._separate()
            self._reconnect()

    def _pump(self) -> None:
        channels = {
            self._key("room").encode(): self._on_lines,
            self._key("node", self._node()).encode(): self._on_private,
            self._key("control").encode(): self._on_control,
        }
        while not self._closing.is_set() and self._problem is None:
            message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=TICK)
            if message is not None and message["type"] == "message":
                channels[message["channel"]](message["data"])

    def _on_lines(self, data: bytes) -> None:
        origin, first, entries = json.loads(data)
        room = self._room()
        with room.lock:
            if origin == self._id:
                self._delivered = first + len(entries) - 1
            for entry_id, line in entries:
                stream_id = _stream_id(entry_id)
                if stream_id > self._last_id:  # not already loaded with the history
                    self._recent.append(line)
                    self._last_id = stream_id
            room.deliver_locked([line for _id, line in entries])

    def _on_private(self, data: bytes) -> None:
        key, sender, line = json.loads(data)
        self._room().deliver_private(key, sender, line)

    def _on_control(self, data: bytes) -> None:
        origin, action, entry = json.loads(data)
        if origin != self._id:
            kind, value = _ban_entry(entry)
            self._room().banned_elsewhere(kind, value, action == "ban", origin.rsplit("/", 1)[0])

    def _separate(self) -> None:
        """Redis is gone: from now on this server is a room of its own (see the docstring)."""
        room = self._room()
        with room.lock:
            self._up = False
            self._epoch += 1  # failures of calls made before this are old news
            with self._cond:
                unsent = self._in_flight + self._ops
                self._in_flight, self._ops = [], []
                self._pending_bans += [(op[0], op[1]) for op in unsent if op[0] in _BAN_OPS]
            stranded = [op[2] for op in unsent if op[0] == "line" and op[1] > self._delivered]
            if stranded:
                self._recent.extend(stranded)
                room.deliver_locked(stranded)
            room.separated_locked()
        self._apart_since = time.monotonic()
        log.info(
            "lost Redis at %s (%s): the %d people here are a room of their own until it is back",
            self.where,
            self._problem or "connection closed",
            len(room.members()),
        )
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None

    def _reconnect(self) -> None:
        delay = FIRST_RETRY
        while not self._closing.wait(delay):
            try:
                self._reunite(first=False)
                return
            except Exception as error:
                if not isinstance(error, RedisError):
                    log.exception("unexpected error reconnecting to Redis")
                delay = min(delay * 2, self.refresh)

    def _reunite(self, first: bool) -> None:
        """Subscribe, store what waited, claim names, write presence, load history; then be one room."""
        room = self._room()
        self._problem = None
        pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
        try:
            self._subscribe(pubsub)
            self._sha = {name: self._client.script_load(text) for name, text in _SCRIPTS.items()}
            stored_bans = self._store_bans()
            lost = self._keep(self._epoch, mode="claim")
            elsewhere = len(self._ask_elsewhere())
            entries: Any = []
            if self.settings.history:
                entries = self._client.xrevrange(self._key("history"), count=self.settings.history)
        except BaseException:
            pubsub.close()
            raise
        entries.reverse()
        with room.lock:
            self._recent = deque((e[1][b"line"].decode() for e in entries), maxlen=self.settings.history)
            self._last_id = _stream_id(entries[-1][0].decode()) if entries else (0, 0)
            self._delivered = self._seq
            self._pubsub = pubsub
            self._up = True
            if not first:
                room.reunited_locked(elsewhere)
        with self._cond:
            self._cond.notify_all()
        if not first:
            log.info(
                "Redis at %s is back after %.1fs: one room again (%d here, %d on other servers)",
                self.where,
                time.monotonic() - self._apart_since,
                len(room.members()),
                elsewhere,
            )
        room.lose_names(lost)
        room.adopt_bans(stored_bans)

    def _subscribe(self, pubsub: Any) -> None:
        """Subscribe and wait until Redis confirms, so nothing said from now on is missed."""
        channels = (self._key("room"), self._key("node", self._node()), self._key("control"))
        pubsub.subscribe(*channels)
        for _ in channels:
            message = pubsub.get_message(timeout=self._timeout)
            if message is None or message["type"] != "subscribe":
                raise redis.exceptions.TimeoutError("no confirmation of the subscription")

    def _store_bans(self) -> list[tuple[str, str]]:
        """Store our bans and those made while apart; returns the stored list, the truth from now on."""
        room = self._room()
        with room.lock:
            ours = [f"{kind} {value}" for kind, value in room.access.bans()]
        with self._cond:
            pending, self._pending_bans = self._pending_bans, []
        keys = (self._key("bans"), self._key("control"))
        try:
            pipe = self._client.pipeline(transaction=False)
            if ours:
                pipe.evalsha(self._sha["ban"], 2, *keys, self._id, "ban", *ours)
            for action, entry in pending:
                pipe.evalsha(self._sha["ban"], 2, *keys, self._id, action, entry)
            pipe.smembers(self._key("bans"))
            stored = pipe.execute()[-1]
        except BaseException:
            with self._cond:
                self._pending_bans[:0] = pending
            raise
        return [_ban_entry(raw) for raw in stored]

    # --- small helpers ------------------------------------------------------------------------

    def _room(self) -> Room:
        assert self.room is not None, "start() first"
        return self.room

    def _node(self) -> str:
        assert self.node is not None, "start() first"
        return self.node


def _presence(member: Member) -> str:
    """What the other servers know about someone here."""
    about = {"name": member.name, "address": member.address, "since": member.connected_at}
    return json.dumps({**about, "joined": member.joined_at})


def _present(node: bytes, value: bytes) -> Present:
    about = json.loads(value)
    return Present(about["name"], node.decode(), about["address"], about["since"], about["joined"])


def _ban_entry(raw: bytes | str) -> tuple[str, str]:
    kind, _, value = (raw.decode() if isinstance(raw, bytes) else raw).partition(" ")
    return kind, value


def _stream_id(text: str) -> tuple[int, int]:
    """A stream id as a comparable pair; lines not kept in history have none ((0, 0))."""
    if not text:
        return (0, 0)
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq))
