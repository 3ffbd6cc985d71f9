"""Getting bytes to readers: per-peer outboxes flushed by a few fan-out threads.

Why this shape
--------------
The design card gives every client a thread that *reads*. Writing is done
elsewhere, by a small fixed number of shard threads (``Fanout``), because:

* A broadcast rendered once becomes one ``bytes`` object handed to every
  reader; nobody's thread is blocked by somebody else's slow socket.
* A shard takes *all* events queued since its last wake-up in one go and
  joins consecutive broadcasts, so under load each reader gets one
  ``send`` for many lines, and posting a line wakes a shard at most once.
* Sends are non-blocking (``MSG_DONTWAIT`` on the reader's blocking socket).
  What the kernel does not take waits in that peer's outbox, flushed when
  the selector says the socket is writable.
* Shards split the peers between them, so one thread's wait for the GIL
  does not hold up every reader (``--fanout-threads``; ``bench/README.md``
  has what each number did).
* Under load a shard that has just taken a big batch waits ``COALESCE``
  before the next one, so readers get fewer, larger sends: cheaper for the
  server and for every client, which wakes up and reads once for many lines.

Readers that fall behind: back-pressure, then cut-off
---------------------------------------------------
A reader that keeps reading must lose nothing, however fast others write;
one that has stopped must cost the others nothing. So:

* A reader whose outbox passes ``Limits.backlog`` while its socket is still
  taking bytes is *behind*: while anyone is behind, ``Pressure`` tells the
  sessions to stop reading from their clients (as flood control does), so
  the writers slow down to the pace of the slowest live reader. Their
  lines wait in the kernel's buffers; nothing is dropped.
* A reader whose socket has taken nothing for ``STALL_GRACE`` is *stalled*
  and holds nobody back any more; after ``Limits.stall`` seconds of that,
  or once its outbox passes ``Limits.most``, it is cut off.
* A shard with more than ``Limits.backlog`` of broadcasts not yet taken
  holds the senders back too, so its queue stays bounded when the shards,
  not the readers, are what is slow.

Renderings
----------
Every member's connection wants the same line in its own form: a terminal
gets UTF-8 lines with SGR codes (``ANSI_LINES``); other kinds of connection
bring their own ``Rendering``. A broadcast carries the lines once
(``Outgoing``) and is encoded once per rendering, not once per reader.

Ownership rules (they make the locking trivial)
-----------------------------------------------
* A peer's reader thread only reads its socket; its shard only writes to it
  and is the only one to close it. No fd is closed while another thread may
  still use it, so an fd number is never reused under anyone's feet.
* Other threads talk to a shard only through ``Shard.post``: its event list
  is the one structure they share, behind one lock.
* Events for one peer are applied in the order they were posted; callers who
  need the same order for every peer (the room) post under their own lock.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from protocol.framing import encode_line

log = logging.getLogger("chat")

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)

#: Under load a shard waits this long after a big batch before taking the next,
#: so each reader gets fewer, larger sends (see the module docstring).
COALESCE = 0.010
#: A batch holding at least this many bytes of broadcasts means load (ten lines or so);
#: at a chatty 200 lines/s a batch holds one line, so nothing is delayed.
BUSY = 1024

#: How long a peer that is leaving gets to take its last lines before close.
LINGER_SECONDS = 2.0
#: A reader whose socket took nothing for this long holds the senders back no more.
STALL_GRACE = 0.25
#: How often a shard looks for readers that stopped taking bytes.
CHECK_EVERY = 0.1
#: The longest a session waits for readers to catch up before it reads anyway.
PRESSURE_WAIT = 1.0


@dataclass(frozen=True)
class Limits:
    """How much output may wait for a reader (see "Readers that fall behind" above)."""

    backlog: int = 128 * 1024  # a live reader this far behind holds the senders back
    most: int = 4 * 1024 * 1024  # more than this waiting: cut off
    stall: float = 10.0  # nothing taken by the socket for this long while output waits: cut off


class Pressure:
    """How many live readers are behind; sessions wait before reading while any is."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.behind = 0

    def wait(self) -> None:
        """Until nobody is behind (or ``PRESSURE_WAIT``: a safety net, never needed to make progress)."""
        if self.behind:  # read without the lock: a hint, checked again under it
            with self._cond:
                self._cond.wait_for(lambda: not self.behind, PRESSURE_WAIT)

    def change(self, delta: int) -> None:
        with self._cond:
            self.behind += delta
            if not self.behind:
                self._cond.notify_all()


class Transform(Protocol):
    """A layer between room bytes and wire bytes (TLS); see ``chatroom.tls``."""

    def encrypt(self, data: bytes) -> bytes: ...


class Rendering(Protocol):
    """How one kind of connection wants lines the room rendered (text with SGR codes)."""

    def encode(self, lines: Sequence[str]) -> bytes: ...


class AnsiLines:
    """Terminals, nc and telnet: each line as UTF-8 ending CRLF, styles as SGR codes."""

    def encode(self, lines: Sequence[str]) -> bytes:
        return b"".join(encode_line(line) for line in lines)


ANSI_LINES = AnsiLines()


class Outgoing:
    """A broadcast: lines, encoded once for each rendering that asks (first by ``ANSI_LINES``)."""

    __slots__ = ("_encoded", "lines")

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = lines
        self._encoded: dict[Rendering, bytes] = {ANSI_LINES: ANSI_LINES.encode(lines)}

    def encoded(self, rendering: Rendering) -> bytes:
        data = self._encoded.get(rendering)
        if data is None:  # two shards may both get here: they compute the same bytes
            data = self._encoded[rendering] = rendering.encode(self.lines)
        return data


class Peer:
    """The writing side of one connection, and how the room reaches it (``chatroom.effects.Connection``).

    Only its shard touches the mutable parts; the methods are safe from any thread.
    """

    __slots__ = (
        "_behind",
        "_closed",
        "_deadline",
        "_finished",
        "_hung_up",
        "_out",
        "_released",
        "_since",
        "_writing",
        "drop_reason",
        "label",
        "rendering",
        "shard",
        "sock",
        "transform",
    )

    def __init__(self, sock: socket.socket, label: str, rendering: Rendering = ANSI_LINES) -> None:
        self.sock = sock
        self.label = label
        self.rendering = rendering
        self.transform: Transform | None = None
        self.shard: Shard | None = None
        #: Why the shard cut this peer off, for the reader thread to report.
        self.drop_reason: str | None = None
        self._out = bytearray()
        self._writing = False
        self._hung_up = False
        self._released = False
        self._closed = False
        self._finished = False  # its last bytes are queued: nothing more is written
        self._deadline = 0.0
        self._behind = False  # counted in Pressure.behind
        self._since = 0.0  # while output waits: when the socket last took some

    def send(self, data: bytes) -> None:
        """Bytes as they are (a prompt without a newline, say), after what was queued before."""
        self._shard().post(_SEND, self, data)

    def tell(self, lines: Sequence[str]) -> None:
        self.send(self.rendering.encode(lines))

    def send_last(self, data: bytes) -> None:
        """Bytes that end the conversation (a WebSocket's close frame): nothing is written after them.

        A broadcast or a message already on its way from another thread, which
        would otherwise follow them, is dropped instead.
        """
        self._shard().post(_LAST, self, data)

    def attach(self) -> None:
        """From now on this peer gets every broadcast (after what is queued for it)."""
        self._shard().post(_ATTACH, self)

    def detach(self) -> None:
        self._shard().post(_DETACH, self)

    def hang_up(self) -> None:
        """Flush what is queued, then shut the socket down so its reader wakes up."""
        self._shard().post(_HANGUP, self)

    def release(self) -> None:
        """Called once by the reader when it is done: flush, then close."""
        self._shard().post(_RELEASE, self)

    def flush_transform(self) -> None:
        """Send what the transform produced on its own (TLS handshake records)."""
        self._shard().post(_SEND, self, b"")

    def _shard(self) -> Shard:
        assert self.shard is not None, "peer not assigned to a shard"
        return self.shard


@dataclass(frozen=True, slots=True)
class _Kind:
    name: str


_BROADCAST = _Kind("broadcast")
_SEND = _Kind("send")
_LAST = _Kind("last")
_ATTACH = _Kind("attach")
_DETACH = _Kind("detach")
_HANGUP = _Kind("hangup")
_RELEASE = _Kind("release")
_STOP = _Kind("stop")

_Event = tuple[_Kind, object, object]


class Shard(threading.Thread):
    """One fan-out thread: a selector, the peers it owns, an event list."""

    def __init__(self, index: int, limits: Limits, pressure: Pressure) -> None:
        super().__init__(name=f"fanout-{index}", daemon=True)
        self._limits = limits
        self._pressure = pressure
        self._lock = threading.Lock()  # guards _events, _signalled, _queued, _full and _ended only
        self._events: list[_Event] = []
        self._signalled = False
        self._queued = 0  # broadcast bytes in _events
        self._full = False  # _queued passed Limits.backlog: counted in Pressure.behind
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._members: dict[Peer, None] = {}  # insertion-ordered set
        self._lingering: set[Peer] = set()
        self._writing: set[Peer] = set()  # peers with output waiting
        self._now = time.monotonic()
        self._next_check = 0.0
        self._stopping = False
        self._ended = False

    # --- any thread ---------------------------------------------------------

    def post(self, kind: _Kind, peer: object = None, data: object = None, size: int = 0) -> None:
        with self._lock:
            if self._ended:
                return  # shut down: its sockets are closed already
            self._events.append((kind, peer, data))
            self._queued += size
            if self._queued > self._limits.backlog and not self._full:
                self._full = True
                self._pressure.change(1)
            if self._signalled:
                return
            self._signalled = True
        os.write(self._wake_w, b"\0")

    # --- the shard's own thread ---------------------------------------------

    def run(self) -> None:
        busy_since = 0.0  # when the last big batch was taken
        try:
            while not (self._stopping and not self._lingering):
                for key, _mask in self._selector.select(self._timeout()):
                    if key.data is None:
                        self._drain_wakeups()
                    else:
                        self._flush(key.data)
                if busy_since:
                    time.sleep(max(0.0, busy_since + COALESCE - time.monotonic()))
                events, queued = self._take()
                self._now = now = time.monotonic()
                busy_since = now if queued >= BUSY else 0.0
                self._apply(events)
                self._expire(now)
                if now >= self._next_check:
                    self._next_check = now + CHECK_EVERY
                    self._check(now)
        finally:
            with self._lock:
                self._ended = True
            for peer in list(self._lingering) + list(self._members):
                self._close(peer)
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _take(self) -> tuple[list[_Event], int]:
        """The events posted since the last take, and how many bytes of broadcasts they hold."""
        with self._lock:
            events, self._events = self._events, []
            queued, self._queued = self._queued, 0
            self._signalled = False
            if self._full:
                self._full = False
                self._pressure.change(-1)
        return events, queued

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _apply(self, events: list[_Event]) -> None:
        run: list[Outgoing] = []  # consecutive broadcasts, sent as one blob
        for kind, peer, data in events:
            if kind is _BROADCAST:
                assert isinstance(data, Outgoing)
                run.append(data)
                continue
            if run:
                self._fan_out(run)
                run = []
            if kind is _STOP:
                self._stopping = True
                continue
            assert isinstance(peer, Peer)
            if kind is _SEND or kind is _LAST:
                assert isinstance(data, bytes)
                if not peer._finished:
                    self._write(peer, data)
                if kind is _LAST:
                    peer._finished = True
                    self._members.pop(peer, None)
            elif kind is _ATTACH:
                if not peer._closed and not peer._finished:
                    self._members[peer] = None
            elif kind is _DETACH:
                self._members.pop(peer, None)
            elif kind is _HANGUP:
                peer._hung_up = True
                self._linger(peer)
            elif kind is _RELEASE:
                peer._released = True
                self._members.pop(peer, None)
                self._linger(peer)
        if run:
            self._fan_out(run)

    def _fan_out(self, run: list[Outgoing]) -> None:
        blobs: dict[Rendering, bytes] = {}  # the run, joined once per rendering
        for peer in list(self._members):
            blob = blobs.get(peer.rendering)
            if blob is None:
                blob = blobs[peer.rendering] = b"".join(out.encoded(peer.rendering) for out in run)
            self._write(peer, blob)

    def _write(self, peer: Peer, data: bytes) -> None:
        if peer._closed or peer.drop_reason is not None:
            return
        if peer.transform is not None:
            data = peer.transform.encrypt(data)
        if not data:
            return
        if peer._out:
            peer._out += data
        else:
            try:
                sent = peer.sock.send(data, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._drop(peer, "connection lost")
                return
            if sent == len(data):
                return
            peer._out += memoryview(data)[sent:]
            peer._since = self._now
            self._want_write(peer, True)
        waiting, limits = len(peer._out), self._limits
        if waiting > limits.most:
            self._drop(peer, f"not reading: over {limits.most} bytes waiting")
        elif waiting > limits.backlog and not peer._behind and self._now - peer._since < STALL_GRACE:
            self._set_behind(peer, True)

    def _flush(self, peer: Peer) -> None:
        try:
            sent = peer.sock.send(peer._out, _DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self._drop(peer, "connection lost")
            return
        del peer._out[:sent]
        if sent:
            peer._since = time.monotonic()
        if peer._behind and len(peer._out) <= self._limits.backlog:
            self._set_behind(peer, False)
        if not peer._out:
            self._want_write(peer, False)
            if peer in self._lingering:
                self._linger(peer)

    def _want_write(self, peer: Peer, on: bool) -> None:
        if on and not peer._writing:
            self._selector.register(peer.sock, selectors.EVENT_WRITE, peer)
            self._writing.add(peer)
        elif not on and peer._writing:
            self._selector.unregister(peer.sock)
            self._writing.discard(peer)
        peer._writing = on

    def _set_behind(self, peer: Peer, behind: bool) -> None:
        peer._behind = behind
        self._pressure.change(1 if behind else -1)

    def _check(self, now: float) -> None:
        """Readers whose sockets took nothing lately: they hold nobody back, and in the end are cut off."""
        for peer in [p for p in self._writing if now - p._since > STALL_GRACE]:
            if now - peer._since > self._limits.stall and peer not in self._lingering:
                self._drop(peer, f"not reading: nothing taken for {self._limits.stall:g} s")
            elif peer._behind:
                self._set_behind(peer, False)

    def _drop(self, peer: Peer, reason: str) -> None:
        """Cut a peer off; its reader wakes up, reports ``reason`` and releases it."""
        peer.drop_reason = reason
        peer._out.clear()
        if peer._behind:
            self._set_behind(peer, False)
        self._want_write(peer, False)
        self._members.pop(peer, None)
        self._shutdown(peer)
        if peer._released:
            self._close(peer)

    def _linger(self, peer: Peer) -> None:
        """Finish a hang-up or release once the outbox is empty or time is up."""
        if peer._out and peer.drop_reason is None:
            if peer not in self._lingering:
                peer._deadline = time.monotonic() + LINGER_SECONDS
                self._lingering.add(peer)
                if peer._behind:  # leaving: it holds nobody back
                    self._set_behind(peer, False)
            return
        self._lingering.discard(peer)
        if peer._hung_up:
            self._shutdown(peer)
        if peer._released:
            self._close(peer)

    def _expire(self, now: float) -> None:
        for peer in [p for p in self._lingering if p._deadline <= now]:
            peer._out.clear()
            self._want_write(peer, False)
            self._linger(peer)

    def _timeout(self) -> float | None:
        wait = CHECK_EVERY if self._writing else None
        if self._lingering:
            linger = max(0.0, min(p._deadline for p in self._lingering) - time.monotonic())
            wait = linger if wait is None else min(wait, linger)
        return wait

    @staticmethod
    def _shutdown(peer: Peer) -> None:
        with contextlib.suppress(OSError):
            peer.sock.shutdown(socket.SHUT_RDWR)

    def _close(self, peer: Peer) -> None:
        if peer._closed:
            return
        if peer._behind:
            self._set_behind(peer, False)
        self._want_write(peer, False)
        self._members.pop(peer, None)
        self._lingering.discard(peer)
        peer._closed = True
        peer.sock.close()


class Fanout:
    """The shards together: assigns peers, broadcasts to all of them."""

    def __init__(self, shards: int, limits: Limits | None = None) -> None:
        self.pressure = Pressure()
        self.shards = [Shard(i, limits or Limits(), self.pressure) for i in range(max(1, shards))]
        self._next = itertools.cycle(self.shards)
        self._assign_lock = threading.Lock()  # itertools.cycle is not thread-safe

    def start(self) -> None:
        for shard in self.shards:
            shard.start()

    def add(self, peer: Peer) -> None:
        with self._assign_lock:
            peer.shard = next(self._next)

    def broadcast(self, lines: Sequence[str]) -> None:
        """Lines for every attached peer; callers who need one order for everyone post under one lock."""
        outgoing = Outgoing(lines)
        size = len(outgoing.encoded(ANSI_LINES))
        for shard in self.shards:
            shard.post(_BROADCAST, None, outgoing, size)

    def stop(self, timeout: float) -> None:
        """Let every shard flush (up to the linger time), close its peers and end."""
        for shard in self.shards:
            shard.post(_STOP)
        deadline = time.monotonic() + timeout
        for shard in self.shards:
            shard.join(max(0.0, deadline - time.monotonic()))
