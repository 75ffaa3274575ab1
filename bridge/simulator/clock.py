"""Simulated UTC time for the provider simulators.

The simulated world runs on this clock, never on the wall clock, so that tests can
freeze it (`speed=0`) and move it by hand, and demos can run a day in minutes.
Time is kept in whole milliseconds: the simulation schedules events by adding
intervals, and integer arithmetic keeps "three pings in 30 minutes" exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """An aware datetime as whole milliseconds since the Unix epoch."""
    if value.tzinfo is None:
        raise ValueError("the simulator works in aware UTC datetimes")
    return (value - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class SimClock:
    """UTC time that runs `speed` simulated seconds per real second.

    `speed=0` freezes it; `advance()` jumps forward in any case. Real time is read
    from an injectable monotonic source, so a wall-clock change cannot move it.
    """

    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._monotonic = monotonic
        self._base_ms = to_ms(start if start is not None else datetime.now(UTC))
        self._real_mark = monotonic()
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value < 0:
            raise ValueError("speed must be >= 0")
        # Rebase first so that the time already elapsed keeps its old rate.
        self._base_ms = self.now_ms()
        self._real_mark = self._monotonic()
        self._speed = float(value)

    def now_ms(self) -> int:
        if not self._speed:
            return self._base_ms
        elapsed = self._monotonic() - self._real_mark
        return self._base_ms + int(elapsed * self._speed * 1000)

    def now(self) -> datetime:
        return from_ms(self.now_ms())

    def advance(self, seconds: float) -> None:
        """Jump forward; the simulated world catches up when next asked."""
        if seconds < 0:
            raise ValueError("the simulated clock never goes back")
        self._base_ms += round(seconds * 1000)
