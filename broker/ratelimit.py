"""A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

from __future__ import annotations

import time


class TokenBucket:
    """``take()`` is True while the caller is within its rate; ``wait()`` says how long until it is."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic() if now is None else now

    def _refill(self, now: float | None) -> None:
        now = time.monotonic() if now is None else now
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def take(self, now: float | None = None) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self, now: float | None = None) -> float:
        """Seconds until ``take()`` would succeed (0.0: it would now); takes nothing."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate

    def full(self, now: float | None = None) -> bool:
        """Whether the bucket has its whole burst saved up (an idle caller: its state may be dropped)."""
        self._refill(now)
        return self._tokens >= self._burst
