"""Bytes in, lines out: a line ends at LF, CR LF, CR NUL or a lone CR.

Design rules, in the spirit of h11:

* No I/O. A ``LineReader`` is fed whatever ``recv`` returned and hands back
  events; the caller owns the socket, the thread and the clock.
* Memory is bounded. A line may not grow past ``max_line`` bytes; the rest of
  an overlong line is skipped up to its newline and reported once, so a peer
  that sends megabytes without a newline costs ``max_line`` bytes, never more.
* Decoding never fails. Lines are split on the CR and LF bytes *before*
  decoding, so a multi-byte character split across two ``recv`` calls is
  reassembled, and invalid UTF-8 becomes U+FFFD.
* Every client's Enter key ends a line: nc sends LF, telnet CR LF, telnet in
  character mode CR NUL (RFC 854), a raw terminal a lone CR. The LF or NUL
  after a CR belongs to it, even when it arrives in the next ``recv``.
  Telnet's in-band commands (``IAC ...``, sent for Ctrl-C or option
  negotiation) are removed rather than turned into U+FFFD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENCODING = "utf-8"
NEWLINE = b"\r\n"
DEFAULT_MAX_LINE = 4096

# Telnet (RFC 854): IAC SB ... IAC SE, IAC WILL/WONT/DO/DONT option, IAC command.
# 0xFF never occurs in UTF-8, so there is nothing else it could be.
_TELNET = re.compile(rb"\xff\xfa.*?\xff\xf0|\xff[\xfb-\xfe].|\xff[\xf0-\xff]", re.S)
_AFTER_CR = (0x0A, 0x00)  # CR LF, and telnet's CR NUL


@dataclass(frozen=True, slots=True)
class Line:
    """A complete line, decoded, without its line ending."""

    text: str


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line passed the limit; it is being discarded up to its newline."""

    limit: int


Event = Line | Overlong


class LineReader:
    """Incremental line splitter with a hard per-line limit."""

    __slots__ = ("_after_cr", "_buffer", "_skipping", "max_line")

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be at least 1")
        self.max_line = max_line
        self._buffer = bytearray()
        self._skipping = False
        self._after_cr = False  # the last line ended at a CR that ended the data

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished line (never more than ``max_line``)."""
        return len(self._buffer)

    def partial(self) -> str:
        """The unfinished line so far (a prompt is a line without its newline)."""
        return self._buffer.decode(ENCODING, errors="replace")

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        start = 0
        if self._after_cr and data:
            self._after_cr = False
            start = 1 if data[0] in _AFTER_CR else 0
        # The next LF and the next CR, each searched for again only once passed
        # (-1 when there is none), so a big paste is scanned once, not per line.
        next_lf, next_cr = data.find(b"\n", start), data.find(b"\r", start)
        while True:
            if next_lf < 0 and next_cr < 0:
                self._hold(data, start, events)
                return events
            end = next_lf if next_cr < 0 or 0 <= next_lf < next_cr else next_cr
            if self._skipping:
                self._skipping = False
            elif len(self._buffer) + (end - start) > self.max_line:
                self._buffer.clear()
                events.append(Overlong(self.max_line))
            else:
                self._buffer += data[start:end]
                events.append(self._complete())
            start = end + 1
            if end == next_cr:
                if start == len(data):
                    self._after_cr = True
                elif data[start] in _AFTER_CR:
                    start += 1
                next_cr = data.find(b"\r", start)
            if 0 <= next_lf < start:
                next_lf = data.find(b"\n", start)

    def _hold(self, data: bytes, start: int, events: list[Event]) -> None:
        if self._skipping:
            return
        if len(self._buffer) + (len(data) - start) > self.max_line:
            self._buffer.clear()
            self._skipping = True
            events.append(Overlong(self.max_line))
        else:
            self._buffer += data[start:]

    def _complete(self) -> Line:
        raw = self._buffer
        if b"\xff" in raw:
            raw[:] = _TELNET.sub(b"", raw)
        text = raw.decode(ENCODING, errors="replace")
        raw.clear()
        return Line(text)


def encode_line(text: str) -> bytes:
    """One outgoing line: UTF-8 with CRLF, which both nc and telnet display right."""
    return text.encode(ENCODING) + NEWLINE
