"""TrackSafe365's API keys: environments by prefix, permission scopes, plans, and
the per-key rate limits of each plan.

- `ts365_live_` keys work on production only, `ts365_test_` keys on the sandbox
  only, `ts365_rk_` (restricted) keys on production only, with the scopes they
  were given. A key on the other environment is refused (401) like an unknown one.
- Plans (requests per minute, per day): Sandbox 60 / 10,000, Starter 300 / 100,000,
  Growth 1,000 / 500,000, Enterprise custom (here 10,000 / unlimited). Sandbox keys
  are on the Sandbox plan; production keys on the plan they are given (Starter
  by default).

The minute is a sliding window on real (monotonic, injectable) time, like every
other simulator's rate limits; the day is the UTC day of the simulated clock, so
that a simulated week spends seven daily budgets. A refused request counts for
neither.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bridge.simulator.clock import SimClock
from bridge.simulator.traffic import SlidingWindowLimiter
from bridge.simulator.vehicle import DAY_MS

SCOPES = ("fleet:read", "fleet:write", "drivers:read", "drivers:write", "safety:read",
          "media:read", "analytics:read", "webhooks:admin")  # fmt: skip
PRODUCTION, SANDBOX = "production", "sandbox"
LIVE_PREFIX, TEST_PREFIX, RESTRICTED_PREFIX = "ts365_live_", "ts365_test_", "ts365_rk_"
ENVIRONMENTS = {LIVE_PREFIX: PRODUCTION, TEST_PREFIX: SANDBOX, RESTRICTED_PREFIX: PRODUCTION}
DEFAULT_LIVE_KEY = "ts365_live_demo"
DEFAULT_TEST_KEY = "ts365_test_demo"
DEFAULT_RESTRICTED_KEY = "ts365_rk_demo"
MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    per_minute: int
    per_day: int | None  # None: unlimited


PLANS = {
    "sandbox": Plan("Sandbox", 60, 10_000),
    "starter": Plan("Starter", 300, 100_000),
    "growth": Plan("Growth", 1_000, 500_000),
    "enterprise": Plan("Enterprise", 10_000, None),
}


def environment_of(key: str) -> str | None:
    """The environment a key's prefix is for (None: not a TrackSafe365 key)."""
    for prefix, environment in ENVIRONMENTS.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return environment
    return None


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    scopes: frozenset[str]
    plan: Plan

    @property
    def environment(self) -> str:
        environment = environment_of(self.key)
        assert environment is not None  # checked by make_key
        return environment


def make_key(key: str, scopes: Iterable[str] = SCOPES, plan: str = "starter") -> ApiKey:
    """A key with its scopes; sandbox keys are always on the Sandbox plan."""
    environment = environment_of(key)
    if environment is None:
        raise ValueError(f"not a TrackSafe365 key prefix: {key!r}")
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes: {sorted(unknown)}")
    chosen = PLANS["sandbox"] if environment == SANDBOX else PLANS[plan.lower()]
    return ApiKey(key, frozenset(scopes), chosen)


def default_keys(plan: str = "starter") -> list[ApiKey]:
    """The demo keys: sandbox and live with every scope, restricted with fleet:read."""
    return [
        make_key(DEFAULT_TEST_KEY),
        make_key(DEFAULT_LIVE_KEY, plan=plan),
        make_key(DEFAULT_RESTRICTED_KEY, ("fleet:read",), plan=plan),
    ]


class KeyLimits:
    """Each key's plan: requests per sliding minute and per UTC day."""

    def __init__(self, clock: SimClock, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self._minutes: dict[int, SlidingWindowLimiter] = {}  # by requests per minute
        self._days: dict[str, tuple[int, int]] = {}  # key -> (UTC day, requests)

    def admit(self, key: ApiKey) -> tuple[str, int] | None:
        """Count one request; None if allowed, else ("minute" | "day", whole
        seconds to wait: real ones for the minute, simulated ones for the day)."""
        minute = self._minute(key.plan.per_minute)
        wait = minute.wait(key.key)
        if wait is not None:
            return "minute", max(1, math.ceil(wait))
        now = self.clock.now_ms()
        day = now // DAY_MS
        counted_day, used = self._days.get(key.key, (day, 0))
        used = used if counted_day == day else 0
        if key.plan.per_day is not None and used >= key.plan.per_day:
            return "day", max(1, math.ceil(((day + 1) * DAY_MS - now) / 1000))
        minute.record(key.key)
        self._days[key.key] = (day, used + 1)
        return None

    def used_today(self, key: ApiKey) -> int:
        day, used = self._days.get(key.key, (-1, 0))
        return used if day == self.clock.now_ms() // DAY_MS else 0

    def reset(self) -> None:
        for limiter in self._minutes.values():
            limiter.reset()
        self._days.clear()

    def _minute(self, limit: int) -> SlidingWindowLimiter:
        limiter = self._minutes.get(limit)
        if limiter is None:
            limiter = SlidingWindowLimiter(limit, MINUTE_S, clock=self.monotonic)
            self._minutes[limit] = limiter
        return limiter
