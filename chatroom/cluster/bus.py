"""``ClusterBus``: one server's share of a room kept in Redis (the design is in ``chatroom.cluster``)."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from chatroom.bus import (
    BanChange,
    Enter,
    Leave,
    Op,
    Present,
    Publish,
    Registered,
    Release,
    RoomEvents,
    SearchUnavailable,
)
from chatroom.cluster.asker import Asker
from chatroom.cluster.presence import Presence
from chatroom.cluster.scripts import (
    Command,
    Keys,
    Scripts,
    ban_entry,
    parse_ban_entry,
    parse_find,
    parse_registration,
    parse_snapshot,
    parse_sync,
    registration_value,
    run,
    stream_id,
)
from chatroom.cluster.subscriber import Subscription
from chatroom.cluster.writer import Health, Line, Unclaim, Writer
from chatroom.config import Settings
from chatroom.passwords import Registration
from chatroom.replay import Dated, Replay
from protocol.lines import unstamped_lines

log = logging.getLogger("chat")

T = TypeVar("T")

#: The first wait before trying Redis again; it doubles up to a third of --redis-ttl.
FIRST_RETRY = 0.05
#: Name keys read at a time when freeing what an earlier run of this server left.
VACATE_BATCH = 1000


class ClusterBus:
    def __init__(self, settings: Settings) -> None:
        """Connect to Redis (or raise ``ConnectionError``); the room is joined by ``start``."""
        assert settings.redis
        self.settings = settings
        self.node: str | None = None
        self._refresh = settings.redis_ttl / 3
        self._timeout = min(5.0, max(2.0, self._refresh))  # a command that takes longer is an outage
        self._client = redis.Redis.from_url(
            settings.redis,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),  # we notice outages ourselves, see chatroom.cluster
        )
        kwargs = self._client.connection_pool.connection_kwargs
        db = int(kwargs.get("db", 0))
        scheme = settings.redis.partition("://")[0]
        place = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        self.where = f"{scheme}://{place}/{db}"  # without the password
        self._keys = Keys(f"chatroom:{db}:")
        self._scripts = Scripts(self._keys)
        self._health = Health()
        self._asker = Asker(self._client, self._health, self._timeout)
        self._room: RoomEvents | None = None
        self._presence: Presence | None = None
        self._writer: Writer | None = None
        self._subscription: Subscription | None = None
        self._origin = ""  # NODE/INCARNATION, set by start()
        self._lock = threading.Lock()  # guards what follows
        self._seq = 0  # public lines this server sent (each has the next number)
        self._delivered = 0  # the last of ours the subscription delivered
        #: Lines to replay and catch up on, with when they were said: a newcomer gets the last
        #: ``--history`` of them, a registered name what was said since it left (``since``).
        self._archive = max(settings.history, settings.keep_lines) if settings.history else 0
        self._recent = Replay(settings.history)
        self._last_id = (0, 0)  # the newest stream id in _recent
        self._pending: list[BanChange | Registered] = []  # bans and registrations changed while apart
        self._reloaded: tuple[list[Dated], tuple[int, int]] = ([], (0, 0))  # as _reunite read it
        self._apart_since = 0.0
        self._closing = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="redis-listener", daemon=True)
        try:
            self._client.ping()
        except RedisError as error:
            raise ConnectionError(f"cannot reach Redis at {self.where}: {error}") from error

    # --- starting and stopping ------------------------------------------------------------------

    def start(self, room: RoomEvents, node: str) -> None:
        """Join the room in Redis, or raise ConnectionError (the server then does not start)."""
        self._room, self.node = room, node
        self._origin = f"{node}/{secrets.token_hex(4)}"
        self.where += f" as node {node}"
        self._presence = Presence(node)
        self._writer = Writer(
            self._client,
            self._scripts,
            self._health,
            self._origin,
            node,
            self._archive,
            self.settings.redis_ttl,
            room.names_lost,
        )
        self._asker.start()  # before the room's first questions, asked as it joins
        try:
            self._reunite(first=True)
        except RedisError as error:
            raise ConnectionError(f"cannot join the room in Redis at {self.where}: {error}") from error
        self._listener.start()
        self._writer.start()

    def close(self, farewells: Sequence[str], timeout: float) -> None:
        """Say goodbye for the people here, give up our names and presence, disconnect."""
        writer = self._need(self._writer)
        deadline = time.monotonic() + timeout
        self._closing.set()
        self._listener.join(timeout / 3)  # nothing more is delivered here
        if self._health.up:
            self._publish(farewells)
        writer.stop(max(0.0, deadline - time.monotonic()) / 2)
        self._asker.stop()
        if self._health.up:
            try:
                pipe = self._client.pipeline(transaction=False)
                for key, claim in writer.claims().items():
                    run(pipe, self._scripts.release(key, claim))
                pipe.delete(self._keys.members(self._node()), self._keys.alive(self._node()))
                pipe.srem(self._keys.nodes, self._node())
                pipe.execute()
            except RedisError as error:
                log.info("could not tidy up in Redis: %s", error)
        if self._subscription is not None:
            self._subscription.close()
        self._client.close()

    # --- the room's calls, with its lock held: queue, never wait --------------------------------

    def send(self, op: Op) -> None:
        writer, up = self._need(self._writer), self._health.up
        match op:
            case Publish(lines, remember):
                self._publish(lines, remember)
            case Enter(key):
                writer.entered(op)
            case Leave(key):
                writer.left(key)
            case Release(key):
                claim = writer.unclaimed(key)
                if claim is not None and up:
                    writer.put(Unclaim(key, claim))
                return
            case BanChange() | Registered() if not up:
                with self._lock:
                    self._pending.append(op)
                return
        if up and not isinstance(op, Publish):
            writer.put(op)

    def _publish(self, lines: Sequence[str], remember: bool = True) -> None:
        writer = self._need(self._writer)
        with self._lock:
            for text in lines:
                self._seq += 1
                writer.put(Line(self._seq, text, remember))

    def remember(self, lines: Sequence[str]) -> None:
        now = time.time()
        with self._lock:
            self._recent.extend((now, line) for line in lines)

    def recent(self) -> list[str]:
        with self._lock:
            return self._recent.recent()

    def since(self, at: float) -> list[str]:
        with self._lock:
            return self._recent.since(at)

    def part(self) -> list[str]:
        """Apart from now on; returns the lines that were on their way out and never came back."""
        self._health.up = False
        self._health.epoch += 1  # failures of calls made before this are old news
        unsent = self._need(self._writer).unsent()
        with self._lock:
            self._pending += [op for op in unsent if isinstance(op, BanChange | Registered)]
            return [op.text for op in unsent if isinstance(op, Line) and op.seq > self._delivered]

    def rejoin(self) -> None:
        """One room again, with the history ``_reunite`` read from Redis."""
        with self._lock:
            self._recent = Replay(self.settings.history, self._reloaded[0])
            self._last_id = self._reloaded[1]
            self._delivered = self._seq
        self._health.up = True
        self._need(self._writer).wake()

    # --- questions, without the room's lock ---------------------------------------------------

    def bans(self) -> list[tuple[str, str]]:
        """The bans stored in Redis (asked once, when the room starts)."""
        try:
            return [parse_ban_entry(raw) for raw in self._client.smembers(self._keys.bans)]
        except RedisError as error:
            raise ConnectionError(f"cannot read bans from Redis at {self.where}: {error}") from error

    def registrations(self) -> dict[str, Registration]:
        """The registered names kept in Redis (asked once, when the room starts)."""
        try:
            stored: Any = self._client.hgetall(self._keys.registered)
        except RedisError as error:
            raise ConnectionError(
                f"cannot read registered names from Redis at {self.where}: {error}"
            ) from error
        found = {key.decode(): parse_registration(value) for key, value in stored.items()}
        return {key: registration for key, registration in found.items() if registration is not None}

    def search(self, words: Sequence[str], limit: int) -> list[str]:
        """A bounded scan of the shared history (the last ``--keep-lines``), newest first."""
        wanted = [word.casefold() for word in words]
        try:
            entries: Any = (
                self._client.xrevrange(self._keys.history, count=self._archive) if self._archive else []
            )
        except RedisError as error:
            raise SearchUnavailable(f"Redis did not answer ({error})") from error
        found: list[str] = []
        lines = [entry[1][b"line"].decode() for entry in entries]
        for line, text in zip(lines, unstamped_lines(lines) if lines else [], strict=True):
            folded = text.casefold()
            if all(word in folded for word in wanted):
                found.append(line)
                if len(found) == limit:
                    break
        return found[::-1]

    def claim(self, key: str) -> bool:
        writer = self._need(self._writer)
        claim, epoch = writer.new_claim(), self._health.epoch
        if self._health.up:
            try:
                lost = self._ask(self._scripts.claim(self._origin, self._ttl_ms, "claim", [(key, claim)]))
            except RedisError as error:
                self._health.trouble(error, epoch)  # apart: the room's own check is all there is
            else:
                if lost:
                    return False
        writer.claimed(key, claim)
        return True

    def elsewhere(self) -> Sequence[Present]:
        """From the mirror, once it holds every change Redis had when asked (see ``presence``)."""
        epoch = self._health.epoch
        if not self._health.up:
            return ()
        presence = self._need(self._presence)
        # The listener applies the changes; it cannot wait for itself (a room entry point
        # it called may ask), and before it runs, joining has just loaded the mirror.
        # (By ident: ``current_thread()`` would give every client's thread a Thread object.)
        wait = self._listener.is_alive() and threading.get_ident() != self._listener.ident

        def settle(answer: Any) -> Sequence[Present]:
            seq, alive = parse_sync(answer)
            if wait:
                presence.wait(seq, self._timeout)  # late only if the listener is stuck: then what it has
            return presence.everyone(alive)

        try:
            everyone: Sequence[Present] = self._ask(self._scripts.sync(), settle)
        except RedisError as error:
            self._health.trouble(error, epoch)
            return ()
        return everyone

    def find(self, key: str) -> Present | None:
        epoch = self._health.epoch
        if not self._health.up:
            return None
        try:
            found: Present | None = self._ask(self._scripts.find(key), parse_find)
        except RedisError as error:
            self._health.trouble(error, epoch)
            return None
        return None if found is None or found.node == self.node else found

    def _ask(self, command: Command, then: Callable[[Any], Any] | None = None) -> Any:
        return self._asker.ask(command, then)

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.settings.redis_ttl * 1000))

    # --- the listener: deliver what the room said; separate and reunite ------------------------

    def _listen(self) -> None:
        while not self._closing.is_set():
            try:
                self._need(self._subscription).pump(self._running)
            except Exception as error:  # whatever it was, separating and reuniting starts afresh
                if not isinstance(error, RedisError):
                    log.exception("unexpected error reading from Redis")
                self._health.trouble(error, self._health.epoch)
            if self._closing.is_set():
                return
            self._separate()
            self._reconnect()

    def _running(self) -> bool:
        return not self._closing.is_set() and self._health.problem is None

    def _on_lines(self, data: bytes) -> None:
        origin, first, entries = json.loads(data)
        new: list[str] = []
        with self._lock:
            if origin == self._origin:
                self._delivered = first + len(entries) - 1
            for entry_id, line in entries:
                at = stream_id(entry_id)
                if at > self._last_id:  # kept in history, and not already loaded with it
                    new.append(line)
                    self._last_id = at
        self._events().lines_arrived([line for _id, line in entries], new)

    def _on_private(self, data: bytes) -> None:
        key, sender, line = json.loads(data)
        self._events().private_arrived(key, sender, line)

    def _on_control(self, data: bytes) -> None:
        origin, action, *about = json.loads(data)
        if origin == self._origin:
            return
        if action == "reg":
            key, value = about
            self._events().registration_arrived(key, parse_registration(value))
        else:
            kind, value = parse_ban_entry(about[0])
            self._events().ban_arrived(kind, value, action == "ban", origin.rsplit("/", 1)[0])

    def _separate(self) -> None:
        """Redis is gone: from now on this server is a room of its own (see chatroom.cluster)."""
        room = self._events()
        room.bus_lost()  # calls part()
        self._apart_since = time.monotonic()
        log.info(
            "lost Redis at %s (%s): the %d people here are a room of their own until it is back",
            self.where,
            self._health.problem or "connection closed",
            room.count(),
        )
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    def _reconnect(self) -> None:
        delay = FIRST_RETRY
        while not self._closing.wait(delay):
            try:
                self._reunite(first=False)
                return
            except Exception as error:
                if not isinstance(error, RedisError):
                    log.exception("unexpected error reconnecting to Redis")
                delay = min(delay * 2, self._refresh)

    def _reunite(self, first: bool) -> None:
        """Subscribe, store what waited, claim names, write presence, load history; then be one room."""
        room, writer = self._events(), self._need(self._writer)
        self._health.problem = None
        presence = self._need(self._presence)
        channels = {
            self._keys.room: self._on_lines,
            self._keys.node(self._node()): self._on_private,
            self._keys.control: self._on_control,
            self._keys.presence: presence.apply,
        }
        subscription = Subscription(self._client, channels, self._timeout)
        try:
            self._scripts.load(self._client)
            if first:
                self._vacate()
            stored_bans = self._store_bans()
            lost = writer.keep(self._health.epoch, mode="claim")
            seq, everyone = parse_snapshot(run(self._client, self._scripts.snapshot()))
            presence.load(seq, everyone)
            elsewhere = sum(len(members) for node, members in everyone.items() if node != self.node)
            entries: Any = []
            if self._recent.size:
                entries = self._client.xrevrange(self._keys.history, count=self._recent.size)
        except BaseException:
            subscription.close()
            raise
        entries.reverse()
        reloaded = [(stream_id(entry[0].decode())[0] / 1000, entry[1][b"line"].decode()) for entry in entries]
        self._reloaded = (reloaded, stream_id(entries[-1][0].decode()) if entries else (0, 0))
        self._subscription = subscription
        room.bus_back(elsewhere, announce=not first)  # calls rejoin()
        if not first:
            log.info(
                "Redis at %s is back after %.1fs: one room again (%d here, %d on other servers)",
                self.where,
                time.monotonic() - self._apart_since,
                room.count(),
                elsewhere,
            )
        room.names_lost(lost)
        room.bans_stored(stored_bans)

    def _vacate(self) -> None:
        """Free the names an earlier run under this node's name left (it crashed, or was killed).

        Its presence goes with the rewrite that follows; its names would
        otherwise stay taken until they expire, so its people could not come
        back under them at once.
        """
        freed = 0
        batch: list[str] = []
        for key in self._client.scan_iter(match=self._keys.name("*"), count=VACATE_BATCH):
            batch.append(key.decode())
            if len(batch) == VACATE_BATCH:
                freed += run(self._client, self._scripts.vacate(self._node(), self._origin, batch))
                batch = []
        if batch:
            freed += run(self._client, self._scripts.vacate(self._node(), self._origin, batch))
        if freed:
            log.info("freed %d names an earlier run of node %s still held", freed, self._node())

    def _store_bans(self) -> list[tuple[str, str]]:
        """Store our bans, and bans and registrations changed while apart; returns the stored bans."""
        ours = [ban_entry(kind, value) for kind, value in self._events().bans()]
        with self._lock:
            pending, self._pending = self._pending, []
        try:
            pipe = self._client.pipeline(transaction=False)
            if ours:
                run(pipe, self._scripts.ban(self._origin, True, ours))
            for op in pending:
                if isinstance(op, BanChange):
                    run(pipe, self._scripts.ban(self._origin, op.banned, [ban_entry(op.kind, op.value)]))
                elif (value := registration_value(op.registration)) is None:
                    pipe.hdel(self._keys.registered, op.key)
                else:
                    pipe.hset(self._keys.registered, op.key, value)
            pipe.smembers(self._keys.bans)
            stored = pipe.execute()[-1]
        except BaseException:
            with self._lock:
                self._pending[:0] = pending
            raise
        return [parse_ban_entry(raw) for raw in stored]

    # --- small helpers -------------------------------------------------------------------------

    def _events(self) -> RoomEvents:
        return self._need(self._room)

    def _node(self) -> str:
        return self._need(self.node)

    @staticmethod
    def _need(value: T | None) -> T:
        assert value is not None, "start() first"
        return value
