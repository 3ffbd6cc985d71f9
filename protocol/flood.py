"""Flood control as arithmetic: a token bucket that says how long to wait.

The caller passes the time in and sleeps for what ``delay`` returns, so
excess lines are *delayed*, never dropped: a pasted block arrives whole and in
order, just not faster than ``rate`` lines per second after the first
``burst``. A rate of 0 turns the limit off.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = now

    def delay(self, now: float) -> float:
        """Take one token; seconds to wait before the line may go (0 = at once)."""
        if self.rate <= 0:
            return 0.0
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate
