"""FLEETIZE's request limits, enforced exactly, on the simulated clock.

- At most one call per 60 s from one client IP. A call sooner than that answers
  `#1055` and restarts the 60 s from itself: after a violation the client must
  wait 60 s from the violating call, not from its last good one.
- `block_after` violations (default 3) within `block_window_s` (an hour) block the
  token: the violation that reaches the count and every call after it answer
  `#1002`, for good, until `unblock()` (the real service: only support can).
- 100 calls per account (token) per UTC day; the 101st answers `#1056` (an
  invented text; the documentation does not say what happens).

Calls refused with #1055 or #1002 do not use the daily quota (the documentation
does not say; a careful client counts them anyway). Calls with an invalid token
count for nothing.

Unlike the other simulators' rate limits, which run on real time, these run on the
simulated clock: the 60 s spacing and the 100-a-day budget are two halves of one
rule ("on average one call every 15 minutes, never two within a minute"), and a
test or benchmark that runs a week in minutes must see both at the same rate. A
client polling every 15 simulated minutes is then never refused, and one polling
twice within a simulated minute always is, however fast the clock runs.
"""

from __future__ import annotations

from collections import Counter, deque

from bridge.simulator.clock import SimClock
from bridge.simulator.vehicle import DAY_MS

MIN_INTERVAL_S = 60
DAILY_LIMIT = 100
BLOCK_AFTER = 3
BLOCK_WINDOW_S = 3600

THRESHOLD_EXCEEDED = 1055
TOKEN_BLOCKED = 1002
DAILY_LIMIT_REACHED = 1056


class FleetizeQuota:
    def __init__(
        self,
        clock: SimClock,
        *,
        min_interval_s: float = MIN_INTERVAL_S,
        daily_limit: int = DAILY_LIMIT,
        block_after: int = BLOCK_AFTER,
        block_window_s: float = BLOCK_WINDOW_S,
    ) -> None:
        if block_after < 1 or daily_limit < 0 or min_interval_s < 0:
            raise ValueError("block_after >= 1, daily_limit >= 0, min_interval_s >= 0")
        self.clock = clock
        self.min_interval_ms = round(min_interval_s * 1000)
        self.daily_limit = daily_limit
        self.block_after = block_after
        self.block_window_ms = round(block_window_s * 1000)
        self.blocked: set[str] = set()
        #: #1055s served, per token (all time).
        self.violations: Counter[str] = Counter()
        self._last_call_ms: dict[str, int] = {}  # per client IP
        self._recent_violations: dict[str, deque[int]] = {}  # per token
        self._daily: dict[str, tuple[int, int]] = {}  # token -> (UTC day, calls)

    def admit(self, token: str, client: str) -> int | None:
        """Count one call with a valid token; None if it may be answered, else the
        FLEETIZE error number to answer instead."""
        if token in self.blocked:
            return TOKEN_BLOCKED
        now = self.clock.now_ms()
        last = self._last_call_ms.get(client)
        self._last_call_ms[client] = now  # a refused call restarts the counter too
        if last is not None and now - last < self.min_interval_ms:
            recent = self._recent_violations.setdefault(token, deque())
            recent.append(now)
            while recent[0] <= now - self.block_window_ms:
                recent.popleft()
            if len(recent) >= self.block_after:
                self.blocked.add(token)
                return TOKEN_BLOCKED
            self.violations[token] += 1
            return THRESHOLD_EXCEEDED
        day = now // DAY_MS
        counted_day, calls = self._daily.get(token, (day, 0))
        calls = calls + 1 if counted_day == day else 1
        self._daily[token] = (day, calls)
        return DAILY_LIMIT_REACHED if calls > self.daily_limit else None

    def calls_today(self, token: str | None = None) -> int:
        """Calls counted against today's (UTC, simulated) budget: one token's, or all."""
        day = self.clock.now_ms() // DAY_MS
        return sum(
            calls
            for key, (counted_day, calls) in self._daily.items()
            if counted_day == day and (token is None or key == token)
        )

    def is_blocked(self, token: str) -> bool:
        return token in self.blocked

    def unblock(self, token: str | None = None) -> None:
        """What FLEETIZE support does: lift the block (of one token or all)."""
        tokens = set(self.blocked) if token is None else {token}
        for key in tokens:
            self.blocked.discard(key)
            self._recent_violations.pop(key, None)

    def reset(self) -> None:
        """Forget every count, spacing and block."""
        self.blocked.clear()
        self.violations.clear()
        self._last_call_ms.clear()
        self._recent_violations.clear()
        self._daily.clear()
