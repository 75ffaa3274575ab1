"""Provider budgets, enforced before every call, remembered across restarts.

A budget is one published limit: N calls per sliding window, N calls per provider
day, or a minimum spacing between calls, for every call of an account (per token)
or only for some endpoints. A call is allowed only when every budget that applies
to it allows it, and it is written to the ledger *before* it is sent, so a crash,
a restart or two restarts in a minute cannot make the bridge forget a call it made.

Part of the core: standard library only. The daemon persists the ledger in SQLite
(`bridge.store`), the Home Assistant integration in its own storage, tests and
simulations in memory.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = [
    "Budget",
    "BudgetKind",
    "Call",
    "CallLedger",
    "Denial",
    "Hold",
    "MemoryLedger",
    "Priority",
    "Quota",
    "apply_overrides",
    "endpoint_window",
]
from zoneinfo import ZoneInfo

from bridge.errors import QuotaExhaustedError
from bridge.model import Priority, format_time, utc_now


class BudgetKind(enum.StrEnum):
    WINDOW = "window"  # at most `limit` calls in any `period` seconds
    DAILY = "daily"  # at most `limit` calls per provider day
    SPACING = "spacing"  # at least `period` seconds between two calls


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    kind: BudgetKind
    limit: int = 1
    period: float = 0.0
    # Empty: every call of the account (the token's budget). Otherwise only these.
    endpoints: frozenset[str] = frozenset()
    # DAILY only: the time zone whose midnight starts the provider's day.
    day_zone: str = "UTC"
    # The share of `limit` kept for commands and refreshes (0..1).
    reserve: float = 0.0

    def applies(self, endpoint: str) -> bool:
        return not self.endpoints or endpoint in self.endpoints

    def limit_for(self, priority: Priority) -> int:
        if self.kind is BudgetKind.SPACING or priority is Priority.COMMAND:
            return self.limit
        # Keep at least one call for polling, whatever the reserve.
        return max(1, self.limit - math.ceil(self.limit * self.reserve))

    def describe(self) -> str:
        scope = f" on {', '.join(sorted(self.endpoints))}" if self.endpoints else ""
        if self.kind is BudgetKind.DAILY:
            return f"{self.name} ({self.limit} calls per day{scope})"
        if self.kind is BudgetKind.WINDOW:
            return f"{self.name} ({self.limit} calls per {self.period:g} s{scope})"
        return f"{self.name} (one call per {self.period:g} s{scope})"

    def day_start(self, now: datetime) -> datetime:
        local = now.astimezone(ZoneInfo(self.day_zone))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight.astimezone(UTC)

    def next_day_start(self, now: datetime) -> datetime:
        local = now.astimezone(ZoneInfo(self.day_zone))
        tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        # Re-attach the zone: across a DST change the offset of midnight differs.
        return tomorrow.replace(tzinfo=ZoneInfo(self.day_zone)).astimezone(UTC)

    @property
    def horizon(self) -> float:
        """How far back calls matter to this budget, in seconds."""
        if self.kind is BudgetKind.DAILY:
            return 26 * 3600.0  # a day plus the largest zone offset change
        return self.period


def endpoint_window(endpoint: str, limit: int, period: float) -> Budget:
    """A sliding window on one endpoint, named after it: most per-endpoint limits."""
    return Budget(
        endpoint, BudgetKind.WINDOW, limit=limit, period=period, endpoints=frozenset({endpoint})
    )


@dataclass(frozen=True, slots=True)
class Call:
    endpoint: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Hold:
    """No call at all before `until` (Retry-After, FLEETIZE #1055)."""

    until: datetime
    reason: str


class CallLedger(Protocol):
    """Where an account's calls and holds are persisted."""

    def load_calls(self, account: str, since: datetime) -> list[Call]: ...

    def record_call(self, account: str, call: Call) -> None: ...

    def prune_calls(self, account: str, before: datetime) -> None: ...

    def load_hold(self, account: str) -> Hold | None: ...

    def save_hold(self, account: str, hold: Hold | None) -> None: ...


@dataclass
class MemoryLedger:
    """A ledger that lives as long as the process (tests, simulations)."""

    calls: dict[str, list[Call]] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)

    def load_calls(self, account: str, since: datetime) -> list[Call]:
        return [c for c in self.calls.get(account, []) if c.at >= since]

    def record_call(self, account: str, call: Call) -> None:
        self.calls.setdefault(account, []).append(call)

    def prune_calls(self, account: str, before: datetime) -> None:
        self.calls[account] = [c for c in self.calls.get(account, []) if c.at >= before]

    def load_hold(self, account: str) -> Hold | None:
        return self.holds.get(account)

    def save_hold(self, account: str, hold: Hold | None) -> None:
        if hold is None:
            self.holds.pop(account, None)
        else:
            self.holds[account] = hold


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a call may not be made now, and when it may."""

    budget: str
    available_at: datetime

    def message(self) -> str:
        return f"{self.budget} is used up until {format_time(self.available_at)}"


class Quota:
    """The budgets of one account, with their ledger."""

    def __init__(
        self,
        account: str,
        budgets: Iterable[Budget],
        ledger: CallLedger,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.account = account
        self.budgets = tuple(budgets)
        self._ledger = ledger
        self._now = now
        self._horizon = timedelta(seconds=max((b.horizon for b in self.budgets), default=0.0))
        current = now()
        self._calls: deque[Call] = deque(
            sorted(ledger.load_calls(account, current - self._horizon), key=lambda c: c.at)
        )
        self._hold = ledger.load_hold(account)
        #: Calls made through this object (the poller learns a poll's cost from it).
        self.calls_made = 0

    def now(self) -> datetime:
        return self._now()

    # --- decisions -----------------------------------------------------------
    def check(self, endpoint: str, priority: Priority = Priority.POLL) -> Denial | None:
        """None when a call to `endpoint` may go now, else the binding denial."""
        now = self._now()
        denials = []
        if self._hold is not None and self._hold.until > now:
            denials.append(Denial(f"hold ({self._hold.reason})", self._hold.until))
        for budget in self.budgets:
            if budget.applies(endpoint):
                denial = self._check_budget(budget, endpoint, priority, now)
                if denial is not None:
                    denials.append(denial)
        if not denials:
            return None
        return max(denials, key=lambda d: d.available_at)

    def acquire(self, endpoint: str, priority: Priority = Priority.POLL) -> None:
        """Record a call about to be made, or raise `QuotaExhaustedError`."""
        denial = self.check(endpoint, priority)
        if denial is not None:
            wait = max(0.0, (denial.available_at - self._now()).total_seconds())
            raise QuotaExhaustedError(denial.message(), denial.budget, denial.available_at, wait)
        call = Call(endpoint, self._now())
        # Write-ahead: persisted before the request leaves, so it counts even if
        # the process dies while the request is in flight.
        self._ledger.record_call(self.account, call)
        self._calls.append(call)
        self.calls_made += 1
        self._prune(call.at)

    def available(self, endpoint: str, priority: Priority = Priority.POLL) -> int:
        """How many calls to `endpoint` could be made right now, back to back."""
        now = self._now()
        if self._hold is not None and self._hold.until > now:
            return 0
        room: int | None = None
        for budget in self.budgets:
            if not budget.applies(endpoint):
                continue
            used = len(self._calls_of(budget, now))
            if budget.kind is BudgetKind.SPACING:
                free = 0 if used else 1
            else:
                free = max(0, budget.limit_for(priority) - used)
            room = free if room is None else min(room, free)
        return 10**9 if room is None else room

    def hold(self, seconds: float, reason: str) -> None:
        """Make no call for `seconds` (the provider asked us to wait)."""
        until = self._now() + timedelta(seconds=max(0.0, seconds))
        if self._hold is None or until > self._hold.until:
            self._hold = Hold(until, reason)
            self._ledger.save_hold(self.account, self._hold)

    # --- what the planner and the dashboards need ------------------------------
    def daily_budget(self) -> Budget | None:
        daily = [b for b in self.budgets if b.kind is BudgetKind.DAILY and not b.endpoints]
        return min(daily, key=lambda b: b.limit, default=None)

    def calls_left_today(self, priority: Priority = Priority.POLL) -> int | None:
        budget = self.daily_budget()
        if budget is None:
            return None
        used = len(self._calls_of(budget, self._now()))
        return max(0, budget.limit_for(priority) - used)

    def seconds_left_today(self) -> float | None:
        budget = self.daily_budget()
        if budget is None:
            return None
        now = self._now()
        return (budget.next_day_start(now) - now).total_seconds()

    def min_spacing(self, endpoint: str) -> float:
        return max(
            (
                b.period
                for b in self.budgets
                if b.kind is BudgetKind.SPACING and b.applies(endpoint)
            ),
            default=0.0,
        )

    def usage(self) -> dict[str, Any]:
        """Each budget's use, for `fleet/<account>/quota` and diagnostics."""
        now = self._now()
        result: dict[str, Any] = {}
        for budget in self.budgets:
            calls = self._calls_of(budget, now)
            entry: dict[str, Any] = {
                "kind": budget.kind.value,
                "used": len(calls),
                "limit": budget.limit,
                "reserve": budget.limit - budget.limit_for(Priority.POLL),
            }
            if budget.endpoints:
                entry["endpoints"] = sorted(budget.endpoints)
            if budget.kind is BudgetKind.DAILY:
                entry["resets_at"] = format_time(budget.next_day_start(now))
            elif calls:
                entry["resets_at"] = format_time(calls[0].at + timedelta(seconds=budget.period))
            else:
                entry["resets_at"] = None
            if budget.kind is not BudgetKind.DAILY:
                entry["period_s"] = budget.period
            result[budget.name] = entry
        if self._hold is not None and self._hold.until > now:
            result["hold"] = {"until": format_time(self._hold.until), "reason": self._hold.reason}
        return result

    # --- internals -----------------------------------------------------------
    def _calls_of(self, budget: Budget, now: datetime) -> list[Call]:
        """The calls that count against `budget` at `now`, oldest first."""
        if budget.kind is BudgetKind.DAILY:
            day_start = budget.day_start(now)
            return [c for c in self._calls if c.at >= day_start and budget.applies(c.endpoint)]
        since = now - timedelta(seconds=budget.period)
        return [c for c in self._calls if c.at > since and budget.applies(c.endpoint)]

    def _check_budget(
        self, budget: Budget, endpoint: str, priority: Priority, now: datetime
    ) -> Denial | None:
        calls = self._calls_of(budget, now)
        if budget.kind is BudgetKind.SPACING:
            if not calls:
                return None
            return Denial(budget.describe(), calls[-1].at + timedelta(seconds=budget.period))
        limit = budget.limit_for(priority)
        if len(calls) < limit:
            return None
        if budget.kind is BudgetKind.DAILY:
            return Denial(budget.describe(), budget.next_day_start(now))
        # The window frees up when enough of its oldest calls have aged out.
        oldest_to_expire = calls[len(calls) - limit]
        return Denial(budget.describe(), oldest_to_expire.at + timedelta(seconds=budget.period))

    def _prune(self, now: datetime) -> None:
        cutoff = now - self._horizon
        pruned = False
        while self._calls and self._calls[0].at < cutoff:
            self._calls.popleft()
            pruned = True
        if pruned:
            self._ledger.prune_calls(self.account, cutoff)


def apply_overrides(
    defaults: Iterable[Budget],
    overrides: dict[str, dict[str, Any]],
    *,
    reserve: float | None = None,
    day_zone: str | None = None,
) -> tuple[Budget, ...]:
    """A provider's default budgets with the user's corrections applied.

    `overrides` maps a budget name to the fields to change (`limit`, `period`,
    `kind`, `endpoints`, `day_zone`); a name that is not a default adds a budget
    (then `kind` is required). `reserve` and `day_zone` apply to every budget."""
    budgets = {b.name: b for b in defaults}
    for name, fields in overrides.items():
        changes = dict(fields)
        if "kind" in changes:
            changes["kind"] = BudgetKind(changes["kind"])
        if "endpoints" in changes:
            changes["endpoints"] = frozenset(changes["endpoints"])
        if name in budgets:
            budgets[name] = replace(budgets[name], **changes)
        else:
            budgets[name] = Budget(name=name, **changes)
    result = []
    for budget in budgets.values():
        if reserve is not None:
            budget = replace(budget, reserve=reserve)
        if day_zone is not None and budget.kind is BudgetKind.DAILY:
            budget = replace(budget, day_zone=day_zone)
        result.append(budget)
    return tuple(result)
