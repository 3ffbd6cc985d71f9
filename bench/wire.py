"""The generator's side of the wire: what a benchmark line carries and how arrivals are counted.

Every line a sender writes starts with a fixed-width token::

    B|SSSSSS|QQQQQQQQQ|TTTTTTTTTTTTTTTTTTT|CCCC|xxxx...

the sender's id, a sequence number, the send time from ``time.monotonic_ns()``
(CLOCK_MONOTONIC is one clock for every process on Linux, so a reader in another
worker process can subtract) and check digits over the three. A server that
splices lines together (ncat relays reads, not lines) can assemble something
token-shaped from two lines; the check digits reject it, so it can neither count
as a delivery nor, with a forged sequence number, hide later lines as duplicates.
Each server wraps the line its own way (``[12:00:00] <c1> …`` with colour codes,
``<user5> …``, ``<c1> …``) but none touches the token, so readers look for the
token only, wherever it sits.

Counting is exact. A reader keeps, per sender, the highest sequence number seen:
a token at or below it is a duplicate, anything above it a new delivery. Loss is
then "expected minus delivered", worked out by the runner, which knows how many
lines were sent. Fixed widths let a large chunk be parsed by numpy in one pass,
which keeps a Python generator ahead of the servers at large sizes; small chunks
take a plain regex path with identical results (``tests/test_bench_smoke.py``
checks that the two agree).

Browsers (``Server.py --web-port``) get the same lines as JSON in WebSocket
frames; the token sits in the text untouched (JSON escapes none of its
characters), so ``WebMessages`` only has to take the frames apart, and the
messages are counted like lines.
"""

from __future__ import annotations

import json
import re

import numpy as np
from numpy.typing import NDArray
from wsproto import ConnectionType, WSConnection
from wsproto.events import RejectConnection, Request, TextMessage

from bench.textbook_server import CONNECTED, NICK
from protocol import messages

# --- the token --------------------------------------------------------------------

SENDER_DIGITS, SEQ_DIGITS, TIME_DIGITS, CHECK_DIGITS = 6, 9, 19, 4
_SENDER_AT, _SEQ_AT, _TIME_AT, _CHECK_AT = 2, 9, 19, 39
_BARS = (1, 8, 18, 38, 43)
TOKEN_LEN = 44
TOKEN = re.compile(rb"B\|(\d{6})\|(\d{9})\|(\d{19})\|(\d{4})\|")
MARK = b"B|"
_CHECK_MOD = 9973  # a prime below 10**4: a spliced token passes by chance 1 time in 9973


def check(sender: int, seq: int, t_ns: int) -> int:
    return (sender * 7919 + seq * 104_729 + t_ns) % _CHECK_MOD


def make_line(sender: int, seq: int, t_ns: int, size: int) -> bytes:
    """One benchmark line of ``size`` bytes of text (token, then padding), newline included."""
    head = b"B|%06d|%09d|%019d|%04d|" % (sender, seq, t_ns, check(sender, seq, t_ns))
    return head + b"x" * (size - len(head)) + b"\n"


# --- latency histogram --------------------------------------------------------------
# Log-linear buckets of microseconds: exact below 64 us, then 32 buckets per power of
# two (at most 3 % off). Small, mergeable across workers, and enough for p50/p99.

SUB_BITS = 5
HIST_BUCKETS = 2048


def bucket(us: int) -> int:
    shift = max(0, us.bit_length() - (SUB_BITS + 1))
    return min(HIST_BUCKETS - 1, (shift << SUB_BITS) + (us >> shift))


def buckets(us: NDArray[np.int64]) -> NDArray[np.int64]:
    """``bucket`` for an array (``frexp`` gives the bit length exactly below 2**53)."""
    bits = np.frexp(us.astype(np.float64))[1].astype(np.int64)
    shift = np.maximum(bits - (SUB_BITS + 1), 0)
    return np.minimum((shift << SUB_BITS) + (us >> shift), HIST_BUCKETS - 1)


def bucket_value(index: int) -> float:
    """The middle of a bucket, in microseconds."""
    shift = max(0, (index >> SUB_BITS) - 1)
    low = (index - (shift << SUB_BITS)) << shift
    return low + ((1 << shift) - 1) / 2


def percentile(hist: list[int], q: float) -> float | None:
    """The q-th percentile (0-100) of a histogram, in microseconds; None if it is empty."""
    total = sum(hist)
    if not total:
        return None
    rank = max(1, int(np.ceil(total * q / 100)))
    seen = 0
    for index, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return bucket_value(index)
    return bucket_value(len(hist) - 1)


# --- counting -----------------------------------------------------------------------

#: Below this many tokens in a chunk the regex path is cheaper than numpy's setup.
SMALL_CHUNK = 16
#: Width of one slot of the delivery timeline.
SLOT_NS = 100_000_000
_B, _BAR = ord("B"), ord("|")
_POWERS = {width: 10 ** np.arange(width - 1, -1, -1, dtype=np.int64) for width in (4, 6, 9, 19)}
_DIGIT_OFFSETS = np.concatenate(
    [
        np.arange(_SENDER_AT, _SENDER_AT + SENDER_DIGITS),
        np.arange(_SEQ_AT, _SEQ_AT + SEQ_DIGITS),
        np.arange(_TIME_AT, _TIME_AT + TIME_DIGITS),
        np.arange(_CHECK_AT, _CHECK_AT + CHECK_DIGITS),
    ]
)


class Reader:
    """One receiving client's counters."""

    __slots__ = ("cid", "delivered", "last")

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.delivered = 0
        self.last: dict[int, int] = {}  # sender -> highest sequence number seen


class Tally:
    """Deliveries, duplicates and latency for all the readers of one worker process."""

    def __init__(self) -> None:
        self.delivered = 0
        self.duplicates = 0
        self.own = 0  # a sender's own lines echoed back (ours does that); not counted
        self.garbled = 0  # token-shaped text whose check digits are wrong: a spliced line
        self.hist = np.zeros(HIST_BUCKETS, np.int64)
        self.max_us = 0
        self.first_ns = 0
        self.last_ns = 0
        self.start_ns = 0
        #: New deliveries per SLOT_NS from ``start_ns`` on (when a server stops, this shows when).
        self.timeline: list[int] = []

    def start(self, start_ns: int) -> None:
        self.start_ns = start_ns

    def feed(self, reader: Reader, lines: bytes, now_ns: int, timed: bool = True) -> None:
        """Count the tokens in ``lines`` (complete lines only) received by ``reader`` at ``now_ns``.

        ``timed``: ``now_ns`` is when the lines arrived, so their latency counts. A
        reader that reads in batches passes False: it is counted, not timed.
        """
        count = lines.count(MARK)
        if not count:
            return
        new = (
            self._feed_small(reader, lines, now_ns, timed)
            if count <= SMALL_CHUNK
            else self._feed_numpy(reader, lines, now_ns, timed)
        )
        if new:
            reader.delivered += new
            self.delivered += new
            self.first_ns = self.first_ns or now_ns
            self.last_ns = now_ns
            if self.start_ns:
                slot = max(0, now_ns - self.start_ns) // SLOT_NS
                if slot >= len(self.timeline):
                    self.timeline.extend([0] * (slot + 1 - len(self.timeline)))
                self.timeline[slot] += new

    def _feed_small(self, reader: Reader, lines: bytes, now_ns: int, timed: bool) -> int:
        new = 0
        last = reader.last
        for sender_raw, seq_raw, sent_raw, check_raw in TOKEN.findall(lines):
            sender, seq, sent = int(sender_raw), int(seq_raw), int(sent_raw)
            if check(sender, seq, sent) != int(check_raw):
                self.garbled += 1
                continue
            if sender == reader.cid:
                self.own += 1
                continue
            if seq <= last.get(sender, -1):
                self.duplicates += 1
                continue
            last[sender] = seq
            new += 1
            if not timed:
                continue
            us = max(0, (now_ns - sent) // 1000)
            self.hist[bucket(us)] += 1
            self.max_us = max(self.max_us, us)
        return new

    def _feed_numpy(self, reader: Reader, lines: bytes, now_ns: int, timed: bool) -> int:
        data = np.frombuffer(lines, np.uint8)
        if len(data) < TOKEN_LEN:
            return 0
        starts = np.flatnonzero(data[: len(data) - TOKEN_LEN + 1] == _B)
        for offset in _BARS:
            starts = starts[data[starts + offset] == _BAR]
        if not len(starts):
            return 0
        # The same test as the regex: every digit position must hold a digit.
        digits = data[starts[:, None] + _DIGIT_OFFSETS].astype(np.int64) - ord("0")
        valid = ((digits >= 0) & (digits <= 9)).all(axis=1)
        if not valid.all():
            digits = digits[valid]
        if not len(digits):
            return 0
        senders = digits[:, :SENDER_DIGITS] @ _POWERS[SENDER_DIGITS]
        seqs = digits[:, SENDER_DIGITS : SENDER_DIGITS + SEQ_DIGITS] @ _POWERS[SEQ_DIGITS]
        at = SENDER_DIGITS + SEQ_DIGITS
        sent = digits[:, at : at + TIME_DIGITS] @ _POWERS[TIME_DIGITS]
        checks = digits[:, at + TIME_DIGITS :] @ _POWERS[CHECK_DIGITS]
        sound = (senders * 7919 + seqs * 104_729 + sent) % _CHECK_MOD == checks
        if not sound.all():
            self.garbled += int((~sound).sum())
            senders, seqs, sent = senders[sound], seqs[sound], sent[sound]
        mine = senders == reader.cid
        if mine.any():
            self.own += int(mine.sum())
            keep = ~mine
            senders, seqs, sent = senders[keep], seqs[keep], sent[keep]
        fresh = np.zeros(len(seqs), bool)
        for sender in np.unique(senders).tolist():
            where = np.flatnonzero(senders == sender)
            seq = seqs[where]
            last = reader.last.get(sender, -1)
            running = np.maximum.accumulate(np.maximum(seq, last))
            before = np.empty_like(running)
            before[0] = last
            before[1:] = running[:-1]
            fresh[where[seq > before]] = True
            reader.last[sender] = int(running[-1])
        new = int(fresh.sum())
        self.duplicates += len(seqs) - new
        if new and timed:
            us = np.maximum((now_ns - sent[fresh]) // 1000, 0)
            self.hist += np.bincount(buckets(us), minlength=HIST_BUCKETS)[:HIST_BUCKETS]
            self.max_us = max(self.max_us, int(us.max()))
        return new


# --- how each server talks ------------------------------------------------------------

DIALECTS = ("ours", "ncat", "textbook")
_SGR = re.compile(rb"\x1b\[[0-9;]*m")
_NCAT_PREFIX = re.compile(rb"<user\d+> ")
_NCAT_ANNOUNCE = b"<announce> "


def strip_sgr(data: bytes) -> bytes:
    return _SGR.sub(b"", data)


def clean_ncat(lines: bytes) -> tuple[bytes, int]:
    """Remove ncat's ``<userN> `` prefixes; also count those it put in the middle of a line.

    ncat prefixes each *read* it relays, not each line, so under load a prefix can
    land inside a line (and most lines get none). The text itself is intact once
    the prefixes are gone; the count says how many lines a person would see garbled.
    """
    if b"<user" not in lines:
        return lines, 0
    mangled = 0
    for found in _NCAT_PREFIX.finditer(lines):
        at = found.start()
        skip = len(_NCAT_ANNOUNCE)
        announced = at >= skip and lines.startswith(_NCAT_ANNOUNCE, at - skip)
        if at and lines[at - 1] != 0x0A and not announced:
            mangled += 1
    return _NCAT_PREFIX.sub(b"", lines), mangled


class Handshake:
    """Gets one connection into the room. ``feed`` returns (bytes to send, leftover once in)."""

    def __init__(self, dialect: str, name: str) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}")
        self.dialect = dialect
        self.name = name
        self.buffer = b""
        self.named = dialect == "ncat"  # ncat asks nothing

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        self.buffer += data
        if self.dialect == "ours":
            self.buffer = strip_sgr(self.buffer)
        reply = b""
        if not self.named:
            ask = messages.NAME_PROMPT.encode() if self.dialect == "ours" else NICK
            at = self.buffer.find(ask)
            if at < 0:
                return b"", None
            self.named = True
            reply = self.name.encode() + b"\n"
            self.buffer = self.buffer[at + len(ask) :]
        start = 0
        while (end := self.buffer.find(b"\n", start)) >= 0:
            line = self.buffer[start:end].decode("utf-8", "replace").rstrip("\r")
            start = end + 1
            if self._joined(line):
                leftover, self.buffer = self.buffer[start:], b""
                return reply, leftover
        self.buffer = self.buffer[start:]
        return reply, None

    def _joined(self, line: str) -> bool:
        if self.dialect == "ours":
            fields = messages.WELCOME.match(line)
            return fields is not None and fields["name"] == self.name
        if self.dialect == "textbook":
            return line == CONNECTED
        return line.startswith("<announce> ") and " is connected as <user" in line


# --- browsers: the web front door's WebSocket -------------------------------------------------


class WebMessages:
    """Complete text messages from a WebSocket (wsproto client side), as they come in."""

    def __init__(self, ws: WSConnection) -> None:
        self.ws = ws
        self._partial: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        self.ws.receive_data(data)
        out: list[str] = []
        for event in self.ws.events():
            if isinstance(event, RejectConnection):
                raise ConnectionError(f"WebSocket refused with {event.status_code}")
            if isinstance(event, TextMessage):
                self._partial.append(event.data)
                if event.message_finished:
                    out.append("".join(self._partial))
                    self._partial = []
        return out


class WebHandshake:
    """Gets a browser's connection into the room: the upgrade, the name, then wait for the welcome.

    ``opening`` is what to send first; ``feed`` returns (bytes to send, the
    messages after the welcome once in, else None).
    """

    def __init__(self, host: str, port: int, name: str) -> None:
        self.name = name
        self.ws = WSConnection(ConnectionType.CLIENT)
        origin = f"http://{host}:{port}".encode()
        self.opening = self.ws.send(
            Request(host=f"{host}:{port}", target="/chat", extra_headers=[(b"Origin", origin)])
        )
        self.messages = WebMessages(self.ws)

    def feed(self, data: bytes) -> tuple[bytes, list[str] | None]:
        reply = b""
        texts = self.messages.feed(data)
        for index, text in enumerate(texts):
            record = json.loads(text)
            if "prompt" in record:
                reply += self.ws.send(TextMessage(data=self.name))
            for line in record.get("lines", []):
                if line["kind"] == "Welcome" and line["name"] == self.name:
                    return reply, texts[index + 1 :]
                if line["kind"] in ("Refused", "NameRejected"):
                    raise ConnectionError("".join(run[0] for run in line["body"]))
        return reply, None
