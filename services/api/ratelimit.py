"""Rate limits of the unauthenticated routes: register, login and refresh.

Three kinds of token bucket (``chatmq.broker.ratelimit.TokenBucket``), kept in memory by each API
process (in a cluster every API copy counts on its own, so a client spread over ``n`` copies by
nginx gets up to ``n`` times the limit):

- per client address: every register, login and refresh request takes a token;
- per username *and* client address: every *failed* login takes a token, and a login for a
  username from an address whose bucket is empty is refused before its password is checked. So
  a stranger guessing a password from one address locks out only that address for that
  username: the owner logging in from elsewhere is not refused;
- per username, a much larger backstop: every failed login takes a token whatever its address,
  so guessing one account's password from many addresses is still bounded (and with that bucket
  empty every login of the username is refused until it refills).

The client address is the TCP peer, or the address a trusted proxy (``trusted_proxies``,
nginx) put in ``X-Forwarded-For`` (uvicorn's ``ProxyHeadersMiddleware`` rewrites it into the
request before the routes see it). Over the limit: 429 ``rate-limited`` with ``Retry-After``.
Each limiter keeps at most ``max_keys`` buckets, dropping the least recently used.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from chatmq.broker.ratelimit import TokenBucket
from chatmq.services.api.errors import ApiError

if TYPE_CHECKING:
    from chatmq.core.settings import Settings

MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """Rates (tokens per second) and bursts of the two limiters (``Settings`` has them as
    ``auth_rate_per_address`` … ``login_burst_per_username``)."""

    rate_per_address: float = 10.0
    burst_per_address: int = 200
    rate_per_username: float = 1.0
    burst_per_username: int = 100
    rate_per_username_address: float = 0.1
    burst_per_username_address: int = 10

    @classmethod
    def of(cls, settings: Settings) -> AuthLimits:
        """The limits ``settings`` name."""
        return cls(settings.auth_rate_per_address, settings.auth_burst_per_address,
                   settings.login_rate_per_username, settings.login_burst_per_username,
                   settings.login_rate_per_username_address, settings.login_burst_per_username_address)


class KeyedBuckets:
    """One ``TokenBucket`` per key, made full on first use; at most ``max_keys`` kept."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate and burst must be positive, max_keys at least 1")
        self._rate, self._burst, self._max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token (0.0: now); takes nothing."""
        return self._bucket(key).wait()

    def take(self, key: str) -> float:
        """Take a token of ``key``: 0.0 when there was one, else the seconds until there is one."""
        bucket = self._bucket(key)
        return 0.0 if bucket.take() else bucket.wait()

    def __len__(self) -> int:
        return len(self._buckets)


def _too_many(wait: float, what: str) -> ApiError:
    seconds = max(1, math.ceil(wait))
    return ApiError(429, f"too many {what}; try again in {seconds} s", headers={"Retry-After": str(seconds)},
                    retry_after=seconds)


class AuthLimiter:
    """The limiters of one API process."""

    def __init__(self, limits: AuthLimits | None = None) -> None:
        lim = limits or AuthLimits()
        self.addresses = KeyedBuckets(lim.rate_per_address, lim.burst_per_address)
        self.usernames = KeyedBuckets(lim.rate_per_username, lim.burst_per_username)
        self.pairs = KeyedBuckets(lim.rate_per_username_address, lim.burst_per_username_address)

    def check_address(self, request: Request) -> None:
        """Take a token for the request's client address; 429 when there is none."""
        wait = self.addresses.take(client_address(request))
        if wait:
            raise _too_many(wait, "requests from this address")

    def check_username(self, username: str, address: str) -> None:
        """429 when ``username`` has had too many failed logins lately from ``address`` (or from
        everywhere together)."""
        wait = max(self.pairs.wait(_pair(username, address)), self.usernames.wait(username.lower()))
        if wait:
            raise _too_many(wait, "failed logins for this username")

    def login_failed(self, username: str, address: str) -> None:
        """Count a failed login (or password confirmation) of ``username`` from ``address``."""
        self.pairs.take(_pair(username, address))
        self.usernames.take(username.lower())


def client_address(request: Request) -> str:
    """The client address the limits count by (``X-Forwarded-For``'s from a trusted proxy)."""
    return request.client.host if request.client else "unknown"


def _pair(username: str, address: str) -> str:
    return f"{address} {username.lower()}"  # usernames hold no spaces
