"""When to poll an account next: spend the budget where it buys fresh positions.

With a daily budget (FLEETIZE: 100 calls a day), polling at a fixed interval
spends as much on a parked fleet at 3 a.m. as on trucks on the road at noon. The
planner spreads what is left of today's budget over what is left of the day,
polls faster than that even spread while vehicles move and slower while the whole
fleet is parked; what a parked fleet did not spend stays in the budget and the
even spread shrinks, so the busy hours get it. It never plans below the
provider's minimum spacing, and the quota engine refuses any call over budget.

Accounts that share a budget share it in the plan too: N accounts behind one
FLEETIZE address each plan at most one call per N spacings (they take turns,
`Quota.min_spacing`), and never within one spacing of a poll another of them
has planned (`Quota.stagger`); N accounts on one daily budget (one token) each
spread a 1/N share of what is left of it.

Part of the core: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.model import Priority
from bridge.quota import Quota


@dataclass(frozen=True, slots=True)
class Cadence:
    """How an account's polls are paced (every number overridable in config)."""

    # The interval when the account has no daily budget (seconds).
    interval: float = 10.0
    # Never closer than this, whatever the budget allows.
    min_interval: float = 5.0
    # Never further apart than this, even for a parked fleet.
    max_interval: float = 3600.0
    # Share of the even spread used while some vehicle moves (< 1 polls faster).
    busy_factor: float = 0.5
    # Multiple of the even spread used while every vehicle is parked.
    idle_factor: float = 3.0
    # Adapt to movement at all; when false a daily budget is spread evenly.
    adaptive: bool = True


@dataclass(frozen=True, slots=True)
class Plan:
    delay: float
    reason: str


def next_poll(
    cadence: Cadence,
    quota: Quota,
    *,
    moving: bool,
    calls_per_poll: float,
    endpoint: str,
) -> Plan:
    """The delay before the next poll, and why (for logs and the quota topic)."""
    floor = max(cadence.min_interval, quota.min_spacing(endpoint))
    left = quota.calls_left_today(Priority.POLL)
    seconds_left = quota.seconds_left_today()
    if left is None or seconds_left is None:
        delay, reason = cadence.interval, "fixed interval"
    elif left < calls_per_poll:
        # Today's polling budget is spent: wait for the provider's new day (the
        # reserve stays for commands and refreshes).
        return Plan(seconds_left + 1.0, "daily budget spent until the provider's day ends")
    else:
        polls_left = max(1.0, left / max(calls_per_poll, 1.0) / quota.daily_sharers())
        even = seconds_left / polls_left
        if not cadence.adaptive:
            delay, reason = even, "daily budget spread evenly"
        elif moving:
            delay, reason = even * cadence.busy_factor, "vehicles moving"
        else:
            delay, reason = even * cadence.idle_factor, "fleet parked"
        delay = min(delay, cadence.max_interval)
    # Whatever else binds (a window, a hold) is the quota engine's to say.
    denial = quota.check(endpoint, Priority.POLL)
    if denial is not None:
        wait = (denial.available_at - quota.now()).total_seconds()
        if wait > delay:
            delay, reason = wait, denial.message()
    delay = max(delay, floor)
    # Not at the moment another account of a shared spacing plans to poll.
    staggered = quota.stagger(endpoint, delay)
    if staggered > delay:
        return Plan(staggered, f"{reason}, staggered after another account's turn")
    return Plan(delay, reason)
