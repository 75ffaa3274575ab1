"""What every provider simulator does to the requests it receives, apart from
answering them: count them, throttle them, and fail them on purpose.

Rate limits run on real (monotonic) time, never on simulated time: a quota is about
how hard the client hits the server, and a frozen simulated clock must not freeze
it. The time source is injectable so that tests are exact.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


class SlidingWindowLimiter:
    """At most `limit` requests per key within any `window_s` seconds."""

    def __init__(
        self,
        limit: int,
        window_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def acquire(self, key: str) -> float | None:
        """Count one request; None if allowed, else the seconds until one would be.

        Refused requests are not counted, so a client that waits as told gets in.
        """
        wait = self.wait(key)
        if wait is None:
            self.record(key)
        return wait

    def wait(self, key: str) -> float | None:
        """Like `acquire` but without counting: None if a request would be allowed,
        else the seconds until one would be. For several windows that must all
        allow a request before any of them counts it."""
        now = self.clock()
        seen = self._window(key, now)
        if len(seen) >= self.limit:
            return seen[0] + self.window_s - now
        return None

    def record(self, key: str) -> None:
        """Count one request, allowed or not (see `wait`)."""
        now = self.clock()
        self._window(key, now).append(now)

    def remaining(self, key: str) -> int:
        """Requests still allowed right now."""
        return max(0, self.limit - len(self._window(key, self.clock())))

    def reset_in(self, key: str) -> float:
        """Seconds until the oldest counted request leaves the window (0 if none)."""
        now = self.clock()
        seen = self._window(key, now)
        return seen[0] + self.window_s - now if seen else 0.0

    def reset(self) -> None:
        self._seen.clear()

    def _window(self, key: str, now: float) -> deque[float]:
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        return seen


@dataclass(frozen=True, slots=True)
class Fault:
    status: int
    retry_after: float | None = None
    body: str | None = None


@dataclass(slots=True)
class FaultQueue:
    """Failures to serve instead of the next requests, in order."""

    _queue: deque[list[Any]] = field(default_factory=deque)

    def add(self, fault: Fault, count: int = 1) -> None:
        if count > 0:
            self._queue.append([fault, count])

    def take(self) -> Fault | None:
        if not self._queue:
            return None
        entry = self._queue[0]
        entry[1] -= 1
        if entry[1] <= 0:
            self._queue.popleft()
        fault: Fault = entry[0]
        return fault

    @property
    def pending(self) -> int:
        return sum(count for _, count in self._queue)

    def clear(self) -> None:
        self._queue.clear()


@dataclass(slots=True)
class RequestCounters:
    """Requests received, by path, by status served and by token."""

    by_path: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    by_token: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_path.values())

    @property
    def rate_limited(self) -> int:
        """429s served, whether from the limiter or an injected fault."""
        return self.by_status[429]

    def reset(self) -> None:
        self.by_path.clear()
        self.by_status.clear()
        self.by_token.clear()

    async def count(self, path: str, answer: Awaitable[web.StreamResponse]) -> web.StreamResponse:
        """Count one request by path, and by the status it was answered with."""
        self.by_path[path or "/"] += 1
        try:
            response = await answer
        except web.HTTPException as exc:
            self.by_status[exc.status] += 1
            raise
        self.by_status[response.status] += 1
        return response

    def to_json(self) -> dict[str, Any]:
        # Tokens stay out: this is served over HTTP.
        return {
            "requests": self.total,
            "by_path": dict(self.by_path),
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "rate_limited": self.rate_limited,
        }
