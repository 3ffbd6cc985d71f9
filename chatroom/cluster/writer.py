"""The writer: one thread that sends what this server tells the room, in order, and keeps its names.

Operations are queued by the room (through ``ClusterBus.send``) and sent in
batches, a batch in one round trip on the writer's own connection. Every
third of ``--redis-ttl`` it also refreshes this server's name claims and
keeps its presence alive (``keep``), from maps it keeps itself, so it never
asks the room.

A batch being sent stays "in flight" until Redis has answered; when the
connection fails, ``unsent`` hands the in-flight batch and the queue to the
bus, which delivers their lines here (see ``chatroom.cluster``).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from chatroom.bus import BanChange, Enter, Leave, Op, Registered, SendPrivate
from chatroom.cluster.connection import OwnConnection
from chatroom.cluster.scripts import Command, Scripts, ban_entry, presence_value, registration_value, run

log = logging.getLogger("chat")

#: Most lines one script call appends and publishes (a script blocks Redis while it runs).
BATCH_LINES = 256
#: Most entries and leaves one script call applies and publishes.
BATCH_CHANGES = 256
#: Most names one script call claims or keeps (thousands at once held Redis for milliseconds).
BATCH_CLAIMS = 256


@dataclass(frozen=True, slots=True)
class Line:
    """A public line with this server's sequence number, so the bus can tell which came back."""

    seq: int
    text: str
    remember: bool = True  # kept in the shared history (join and leave notices are not)


@dataclass(frozen=True, slots=True)
class Unclaim:
    """Give a name back, if the claim in Redis is still this one."""

    key: str
    claim: str


Queued = Line | Unclaim | Op


class Health:
    """Is this server in touch with Redis, and what failed since it last was.

    ``up`` changes only with the room's lock held (``ClusterBus.part`` and
    ``rejoin``); any thread may report trouble, and the subscriber's thread
    acts on it. ``epoch`` counts separations, so a failure of a call made
    before the last one is old news.
    """

    def __init__(self) -> None:
        self.up = False
        self.epoch = 0
        self.problem: BaseException | None = None

    def trouble(self, error: BaseException, epoch: int) -> None:
        if epoch == self.epoch and self.problem is None:
            self.problem = error

    @property
    def ready(self) -> bool:
        return self.up and self.problem is None


class Writer(threading.Thread):
    def __init__(
        self,
        client: Any,
        scripts: Scripts,
        health: Health,
        origin: str,
        node: str,
        archive: int,
        ttl: float,
        names_lost: Callable[[list[str]], None],
    ) -> None:
        super().__init__(name="redis-writer", daemon=True)
        self._client = client
        self._scripts = scripts
        self._keys = scripts.keys
        self._health = health
        self._origin = origin  # NODE/INCARNATION
        self._node = node
        self._archive = archive  # lines the shared history keeps
        self._ttl_ms = max(1, int(ttl * 1000))
        self._refresh = ttl / 3
        self._names_lost = names_lost
        self._serial = itertools.count(1)
        self._cond = threading.Condition()  # guards everything below
        self._queue: list[Queued] = []
        self._in_flight: list[Queued] = []
        self._claims: dict[str, str] = {}  # name key -> our claim on it
        self._present: dict[str, str] = {}  # name key -> presence_value, for everyone in the room here
        self._stopping = False
        self._connection = OwnConnection(client)

    # --- any thread ------------------------------------------------------------------------

    def put(self, item: Queued) -> None:
        with self._cond:
            self._queue.append(item)
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def new_claim(self) -> str:
        return f"{self._origin} {next(self._serial)}"

    def claimed(self, key: str, claim: str) -> None:
        with self._cond:
            self._claims[key] = claim

    def unclaimed(self, key: str) -> str | None:
        """Forget our claim on ``key``; the claim, to give back in Redis, if there was one."""
        with self._cond:
            return self._claims.pop(key, None)

    def claims(self) -> dict[str, str]:
        with self._cond:
            return dict(self._claims)

    def entered(self, op: Enter) -> None:
        with self._cond:
            self._present[op.key] = presence_value(op.name, op.address, op.since, op.joined, op.away)

    def left(self, key: str) -> None:
        with self._cond:
            self._present.pop(key, None)

    def unsent(self) -> list[Queued]:
        """What was queued or in flight, taken away (the connection failed)."""
        with self._cond:
            unsent, self._in_flight, self._queue = self._in_flight + self._queue, [], []
        return unsent

    def stop(self, timeout: float) -> None:
        """Send what is queued (while Redis answers), then end; waits at most ``timeout``."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self.is_alive():
            self.join(timeout)
        self._connection.close()

    # --- refreshing -------------------------------------------------------------------------

    def keep(self, epoch: int, mode: str = "keep") -> list[str]:
        """Refresh our claims and our presence; returns the names someone else holds now.

        ``mode`` 'claim' (joining, or after an outage) rewrites our presence and
        may take over claims of ours from before; 'keep' (every third of the
        TTL) only keeps our presence alive, rewriting it if it had expired.
        Presence and the alive key go first, so they expire before the names do
        (see ``chatroom.cluster.presence``). Lost names found by the periodic
        refresh are reported to the room.
        """
        with self._cond:
            claims = list(self._claims.items())
            present = dict(self._present)
        pipe = self._client.pipeline(transaction=False)
        if mode == "claim":
            run(pipe, self._scripts.presence(self._node, self._ttl_ms, present))
        else:
            run(pipe, self._scripts.keep(self._node, self._ttl_ms))
        run(pipe, self._scripts.claim(self._origin, self._ttl_ms, mode, claims[:BATCH_CLAIMS]))
        kept, lost_at = pipe.execute()
        if mode == "keep" and not kept and present:
            run(self._client, self._scripts.presence(self._node, self._ttl_ms, present))
        # The rest a batch a round trip: Redis serves the room's lines between them,
        # and this thread lets go of the interpreter while it waits.
        for at in range(BATCH_CLAIMS, len(claims), BATCH_CLAIMS):
            chunk = claims[at : at + BATCH_CLAIMS]
            lost_at += [
                at + i
                for i in run(self._client, self._scripts.claim(self._origin, self._ttl_ms, mode, chunk))
            ]
        lost = [claims[i - 1] for i in lost_at]
        with self._cond:
            for key, claim in lost:
                if self._claims.get(key) == claim:
                    del self._claims[key]
        keys = [key for key, _claim in lost]
        if keys and mode == "keep" and epoch == self._health.epoch:
            self._names_lost(keys)
        return keys

    # --- the thread ---------------------------------------------------------------------------

    def run(self) -> None:
        next_refresh = time.monotonic() + self._refresh
        while True:
            with self._cond:
                while True:
                    ready = self._health.ready
                    if self._stopping and not (ready and self._queue):
                        return
                    wait = next_refresh - time.monotonic()
                    if ready and (self._queue or wait <= 0):
                        break
                    self._cond.wait(max(0.0, wait) if ready else None)
                batch, self._queue = self._queue, []
                self._in_flight = batch
                epoch = self._health.epoch
            try:
                if batch:
                    self._send(batch)
                if time.monotonic() >= next_refresh and not self._stopping:
                    next_refresh = time.monotonic() + self._refresh
                    self.keep(epoch)
            except Exception as error:  # the batch stays in flight: the separation takes care of it
                if not isinstance(error, RedisError):
                    log.exception("unexpected error sending to Redis")
                self._health.trouble(error, epoch)
                continue
            with self._cond:
                if self._in_flight is batch:
                    self._in_flight = []

    def _send(self, batch: list[Queued]) -> None:
        """One round trip for everything queued (consecutive lines go as one script call)."""
        for answer in self._connection.round_trip(list(self._commands(batch)), self._health.epoch):
            if isinstance(answer, ResponseError):
                raise answer

    def _commands(self, batch: list[Queued]) -> Iterator[Command]:
        """The Redis commands for a batch: runs of lines as script calls, runs of people entering
        and leaving as one presence change each, the rest one by one."""
        for run_of, group in itertools.groupby(batch, key=_run_of):
            items = list(group)
            if run_of in (_KEPT, _NOT_KEPT):
                lines = [item for item in items if isinstance(item, Line)]
                keep = self._archive if run_of is _KEPT else 0
                for at in range(0, len(lines), BATCH_LINES):
                    chunk = lines[at : at + BATCH_LINES]
                    yield self._scripts.publish(keep, self._origin, chunk[0].seq, [x.text for x in chunk])
            elif run_of is _PRESENCE:
                changes = [_change(item) for item in items if isinstance(item, Enter | Leave)]
                for at in range(0, len(changes), BATCH_CHANGES):
                    yield self._scripts.change(self._node, self._ttl_ms, changes[at : at + BATCH_CHANGES])
            else:
                for item in items:
                    yield from self._command(item)

    def _command(self, item: Queued) -> Iterator[Command]:
        match item:
            case SendPrivate(node, key, sender, line):
                yield ("PUBLISH", self._keys.node(node), json.dumps([key, sender, line]))
            case Unclaim(key, claim):
                yield self._scripts.release(key, claim)
            case BanChange(kind, value, banned):
                yield self._scripts.ban(self._origin, banned, [ban_entry(kind, value)])
            case Registered(key, registration):
                stored = registration_value(registration)
                if stored is None:
                    yield ("HDEL", self._keys.registered, key)
                else:
                    yield ("HSET", self._keys.registered, key, stored)
                yield ("PUBLISH", self._keys.control, json.dumps([self._origin, "reg", key, stored]))


_KEPT, _NOT_KEPT, _PRESENCE = "lines kept in history", "lines not kept", "presence"


def _run_of(item: Queued) -> str | None:
    """What a run of consecutive items that go out together is made of; None: each goes alone."""
    if isinstance(item, Line):
        return _KEPT if item.remember else _NOT_KEPT
    if isinstance(item, Enter | Leave):
        return _PRESENCE
    return None


def _change(item: Enter | Leave) -> tuple[str, str, str]:
    """A presence change for the ``change`` script: in (with what others see) or out."""
    if isinstance(item, Leave):
        return ("-", item.key, "")
    return ("+", item.key, presence_value(item.name, item.address, item.since, item.joined, item.away))
