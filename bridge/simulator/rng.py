"""A tiny deterministic random source, one per simulated vehicle.

Each vehicle owns its stream, so its life depends only on the seed and its own
events, not on how often (or in which order) the world is asked to catch up.
SplitMix64 keeps that state in one int, where `random.Random` costs kilobytes per
vehicle, which matters at 10,000 vehicles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_T = TypeVar("_T")


class Rng:
    __slots__ = ("_state",)

    def __init__(self, *keys: int) -> None:
        state = 0x2545F4914F6CDD1D
        for key in keys:
            state = _mix((state ^ (key & _MASK)) * _GOLDEN & _MASK)
        self._state = state

    def random(self) -> float:
        """Uniform in [0, 1)."""
        self._state = (self._state + _GOLDEN) & _MASK
        return (_mix(self._state) >> 11) * (1.0 / (1 << 53))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high], both ends included."""
        return low + int(self.random() * (high - low + 1))

    def choice(self, items: Sequence[_T]) -> _T:
        return items[int(self.random() * len(items))]


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)
