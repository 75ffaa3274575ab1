"""Provider budgets, scoped as the providers count them, enforced before every call.

A budget is one published limit: N calls per sliding window, N calls per provider
day, or a minimum spacing between calls, for every call or only for some
endpoints. Every budget has a **scope**, what the provider counts it against:

- the token (Samsara's 150 requests/s, Telemax's and TrackSafe365's limits);
- the account (FLEETIZE's 100 calls a day, Metrotec's conservative default);
- the organisation (Samsara's 200 requests/s for every token of one organisation);
- the egress, the address the calls come from (FLEETIZE's 60 s spacing is per IP).

An account knows its four ledger keys (`Scopes`): accounts whose keys are equal
share that budget's calls, whichever of them made them, in this process (one
`ScopeState` per key in the `QuotaBook`) and across processes (one ledger entry
per key in the `QuotaLedger`). A call is allowed only when every budget that
applies to it allows it, and it is recorded in the ledger *before* it is sent, in
one atomic step with the check (`QuotaLedger.check_and_record`), so neither a
crash nor a second process can make the bridge forget or double-spend a call.

Accounts that share a spacing budget (FLEETIZE accounts behind one address) take
turns: a poll the spacing holds back is given a place in line, and the account
that has waited longest since its last call goes first, so none collides with
another and each gets its share (`QuotaBook`, "turns" below).

Part of the core: standard library only. The daemon keeps the ledger in SQLite
(`bridge.store`), the Home Assistant integration in its own storage, tests and
simulations in memory (`MemoryLedger`).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_EGRESS",
    "Budget",
    "BudgetKind",
    "Call",
    "CallLedger",
    "Counted",
    "Decide",
    "Denial",
    "Hold",
    "LedgerView",
    "MemoryLedger",
    "Priority",
    "Quota",
    "QuotaBook",
    "QuotaLedger",
    "Scope",
    "ScopeState",
    "Scopes",
    "Tally",
    "apply_overrides",
    "count_calls",
    "describe_scope",
    "endpoint_window",
    "fingerprint",
]
from zoneinfo import ZoneInfo

from bridge.errors import QuotaExhaustedError
from bridge.model import Priority, format_time, utc_now

_LOGGER = logging.getLogger(__name__)

#: The egress of an account that names none: one shared address, as most
#: installations have (every FLEETIZE account of the process shares its spacing).
DEFAULT_EGRESS = "default"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The place in a line of an account not yet told a slot: after every slot told.
_NEWCOMER = datetime.max.replace(tzinfo=UTC)


class BudgetKind(enum.StrEnum):
    WINDOW = "window"  # at most `limit` calls in any `period` seconds
    DAILY = "daily"  # at most `limit` calls per provider day
    SPACING = "spacing"  # at least `period` seconds between two calls


# The margin a spacing keeps on top of its period (Budget.gap): 1 % of it,
# at least half a second and at most two.
SPACING_MARGIN_MIN = 0.5
SPACING_MARGIN_MAX = 2.0


class Scope(enum.StrEnum):
    """What a provider counts a budget against."""

    TOKEN = "token"
    ACCOUNT = "account"
    ORGANISATION = "organisation"
    EGRESS = "egress"


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    kind: BudgetKind
    limit: int = 1
    period: float = 0.0
    # Empty: every call of the scope. Otherwise only these endpoints.
    endpoints: frozenset[str] = frozenset()
    # DAILY only: the time zone whose midnight starts the provider's day.
    day_zone: str = "UTC"
    # The share of `limit` kept for commands and refreshes (0..1).
    reserve: float = 0.0
    # Whose calls count: the token's, the account's, the organisation's or the egress's.
    scope: Scope = Scope.TOKEN

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
    def gap(self) -> float:
        """The seconds kept between two calls of a spacing: the period, and a
        margin. The provider measures the spacing between the arrivals of the
        calls, the ledger between the moments they were recorded; the time from
        one to the other varies (a transaction on a busy database, a loaded
        machine), and a call that lands a millisecond early is a #1055."""
        return self.period + min(SPACING_MARGIN_MAX, max(SPACING_MARGIN_MIN, 0.01 * self.period))

    @property
    def horizon(self) -> float:
        """How far back calls matter to this budget, in seconds."""
        if self.kind is BudgetKind.DAILY:
            return 26 * 3600.0  # a day plus the largest zone offset change
        if self.kind is BudgetKind.SPACING:
            return self.gap
        return self.period

    def tally(self, key: str, now: datetime) -> Tally:
        """The question this budget asks the ledger at `now`."""
        if self.kind is BudgetKind.DAILY:
            return Tally(key, self.day_start(now), self.endpoints, latest=0, inclusive=True)
        since = now - timedelta(seconds=self.horizon)
        latest = 1 if self.kind is BudgetKind.SPACING else self.limit
        return Tally(key, since, self.endpoints, latest=latest)


def endpoint_window(endpoint: str, limit: int, period: float) -> Budget:
    """A sliding window on one endpoint, named after it: most per-endpoint limits."""
    return Budget(
        endpoint, BudgetKind.WINDOW, limit=limit, period=period, endpoints=frozenset({endpoint})
    )


def fingerprint(*parts: str) -> str:
    """A short one-way name for a credential: equal for equal credentials, and
    never the credential (it may appear in a ledger key, a log line, a topic)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Scopes:
    """An account's ledger key for each scope.

    Keys are `<provider>:<scope>:<name>`: `fleetize:egress:default`,
    `samsara:token:<fingerprint>`, `samsara:org:<organisation>`. Two accounts
    with equal keys share the budgets of that scope."""

    token: str
    account: str
    organisation: str
    egress: str

    @classmethod
    def of(
        cls,
        provider: str,
        credential: str,
        *,
        egress: str = DEFAULT_EGRESS,
        organisation: str | None = None,
    ) -> Scopes:
        """The keys of a provider account known by `credential` (its token or API
        key; Metrotec's username): the provider counts an account and a token by
        the credential, so two configured accounts with one token are one.

        Without an organisation, each token is its own (the provider would count
        more together; `organisation:` in the config says which tokens belong)."""
        secret = fingerprint(provider, credential)
        return cls(
            token=f"{provider}:token:{secret}",
            account=f"{provider}:account:{secret}",
            organisation=(
                f"{provider}:org:{organisation}" if organisation else f"{provider}:org:~{secret}"
            ),
            egress=f"{provider}:egress:{egress}",
        )

    @classmethod
    def alone(cls, account: str) -> Scopes:
        """One account that shares nothing (tests, simulations, old callers)."""
        key = f"local:{account}"
        return cls(token=key, account=key, organisation=key, egress=key)

    def key(self, scope: Scope) -> str:
        if scope is Scope.TOKEN:
            return self.token
        if scope is Scope.ACCOUNT:
            return self.account
        if scope is Scope.ORGANISATION:
            return self.organisation
        return self.egress

    def all_keys(self) -> tuple[str, ...]:
        """The distinct keys, in scope order."""
        return tuple(dict.fromkeys(self.key(scope) for scope in Scope))


def describe_scope(key: str) -> str:
    """A ledger key in words, for messages: never a fingerprint."""
    parts = key.split(":", 2)
    if len(parts) == 3 and parts[1] == "egress":
        return f"egress '{parts[2]}'"
    if len(parts) == 3 and parts[1] == "org" and not parts[2].startswith("~"):
        return f"organisation '{parts[2]}'"
    if len(parts) == 3 and parts[1] in ("token", "account", "org"):
        return {"token": "token", "account": "account", "org": "token's organisation"}[parts[1]]
    return "account"


@dataclass(frozen=True, slots=True)
class Call:
    endpoint: str
    at: datetime
    # The bridge account that made it (who has waited longest, for turns).
    account: str = ""


@dataclass(frozen=True, slots=True)
class Hold:
    """No call at all before `until` (Retry-After, FLEETIZE #1055)."""

    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Tally:
    """One question to the ledger: how many calls of scope `scope` since `since`
    (to the endpoints, when any are named), and the `latest` newest of them."""

    scope: str
    since: datetime
    endpoints: frozenset[str] = frozenset()
    latest: int = 0
    # DAILY counts from midnight on (>=); windows count what is younger (>).
    inclusive: bool = False

    def counts(self, call: Call) -> bool:
        if self.endpoints and call.endpoint not in self.endpoints:
            return False
        return call.at >= self.since if self.inclusive else call.at > self.since


@dataclass(frozen=True, slots=True)
class Counted:
    count: int
    latest: tuple[Call, ...] = ()  # newest first


@dataclass(frozen=True, slots=True)
class LedgerView:
    """What the ledger holds, as a decision needs it: each tally's answer, and
    the holds of the scopes asked about."""

    counts: Mapping[Tally, Counted]
    holds: Mapping[str, Hold]


#: Decides on a view of the ledger: None allows the call, a Denial refuses it.
Decide = Callable[[LedgerView], "Denial | None"]


class QuotaLedger(Protocol):
    """Where calls and holds are kept, by scope key; shared by every account
    (and, with a shared backend, every process) that spends from a scope.

    `check_and_record` is the one write on the path of a call: a backend runs it
    atomically (SQLite: one IMMEDIATE transaction; a server database: one
    transaction locking the scopes' rows), so that two spenders of one scope can
    never both be allowed the last call."""

    async def recent(self, scope: str, since: datetime) -> list[Call]:
        """Calls of a scope at or after `since`, oldest first (to warm a cache)."""
        ...

    async def holds(self, scopes: Collection[str]) -> dict[str, Hold]: ...

    async def check_and_record(
        self,
        call: Call,
        scopes: Collection[str],
        held: Collection[str],
        tallies: Collection[Tally],
        decide: Decide,
    ) -> Denial | None:
        """Atomically: answer the tallies and read the holds of the scopes in
        `held`, ask `decide`, and when it allows, record `call` under every one
        of `scopes`. Returns `decide`'s answer."""
        ...

    async def save_hold(self, scope: str, hold: Hold) -> None:
        """Hold a scope until `hold.until` (a later hold already kept stays)."""
        ...

    async def prune(self, scope: str, before: datetime) -> None:
        """Forget a scope's calls older than `before`."""
        ...

    async def adopt(self, account: str, scopes: Collection[str]) -> None:
        """Calls and a hold an older ledger kept per account (before scopes)
        count from now on under `scopes`; a ledger that never had any does nothing."""
        ...


@runtime_checkable
class Restamping(Protocol):
    """A ledger that can move a recorded call to a later time (the moment its
    answer came): a spacing then counts from when the provider surely had the
    request, not from when it was recorded, before it left."""

    async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
        """`call`, recorded under `scopes`, counts from `at` on (later, never earlier)."""
        ...


#: The name the Home Assistant integration's flows still use.
CallLedger = QuotaLedger


@dataclass
class MemoryLedger:
    """A ledger that lives as long as the process (tests, simulations)."""

    calls: dict[str, list[Call]] = field(default_factory=dict)
    hold_of: dict[str, Hold] = field(default_factory=dict)

    async def recent(self, scope: str, since: datetime) -> list[Call]:
        return [c for c in self.calls.get(scope, []) if c.at >= since]

    async def holds(self, scopes: Collection[str]) -> dict[str, Hold]:
        return {s: self.hold_of[s] for s in scopes if s in self.hold_of}

    async def check_and_record(
        self,
        call: Call,
        scopes: Collection[str],
        held: Collection[str],
        tallies: Collection[Tally],
        decide: Decide,
    ) -> Denial | None:
        # No await between reading and writing: atomic within the event loop.
        view = LedgerView(
            {t: count_calls(self.calls.get(t.scope, ()), t) for t in tallies},
            {s: self.hold_of[s] for s in held if s in self.hold_of},
        )
        denial = decide(view)
        if denial is None:
            for scope in scopes:
                self.calls.setdefault(scope, []).append(call)
        return denial

    async def save_hold(self, scope: str, hold: Hold) -> None:
        kept = self.hold_of.get(scope)
        if kept is None or hold.until > kept.until:
            self.hold_of[scope] = hold

    async def prune(self, scope: str, before: datetime) -> None:
        self.calls[scope] = [c for c in self.calls.get(scope, []) if c.at >= before]

    async def adopt(self, account: str, scopes: Collection[str]) -> None:
        return None

    async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
        for scope in scopes:
            moved = _restamped(self.calls.get(scope, []), call, at)
            if moved is not None:
                self.calls[scope] = moved


def _restamped(calls: Collection[Call], call: Call, at: datetime) -> list[Call] | None:
    """`calls` (oldest first) with `call` counting from `at`, still oldest
    first; None when `call` is not among them. (The ledger's and the book's
    view of a scope move a call alike.)"""
    if call not in calls:
        return None
    kept = list(calls)
    kept.remove(call)
    return sorted([*kept, replace(call, at=at)], key=_at)


def count_calls(calls: Iterable[Call], tally: Tally) -> Counted:
    """A tally answered from calls held in memory (oldest first)."""
    matching = [c for c in calls if tally.counts(c)]
    latest = tuple(reversed(matching[-tally.latest :])) if tally.latest else ()
    return Counted(len(matching), latest)


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a call may not be made now, and when it may."""

    budget: str
    available_at: datetime

    def message(self) -> str:
        return f"{self.budget} is used up until {format_time(self.available_at)}"


# --- the process's view of a ledger ----------------------------------------------------


@dataclass
class ScopeState:
    """One scope as this process knows it: its recent calls and hold, who spends
    from it, and whose turn it is on its spacing."""

    key: str
    calls: deque[Call] = field(default_factory=deque)
    hold: Hold | None = None
    # How far back `calls` was read from the ledger (None: not yet).
    loaded_since: datetime | None = None
    pruned_at: datetime | None = None
    members: dict[str, Quota] = field(default_factory=dict)
    # Accounts the spacing held back, with the time each was told to come back.
    turns: dict[str, datetime] = field(default_factory=dict)
    # Calls of this process recorded on this scope and not yet answered.
    in_flight: set[Call] = field(default_factory=set)
    # When each account plans its next poll (the planner staggers them).
    planned: dict[str, datetime] = field(default_factory=dict)

    def last_call_of(self, account: str) -> datetime:
        for call in reversed(self.calls):
            if call.account == account:
                return call.at
        return _EPOCH


class QuotaBook:
    """One ledger as this process sees it: every scope's recent calls and hold
    in memory (what `Quota.check` and the dashboards read), shared by every
    account's `Quota` that spends from it, and the turns on shared spacings.

    The ledger stays the truth: `Quota.acquire` decides on the ledger's own
    answers, inside its atomic `check_and_record`."""

    #: How long an account told to come back at a time keeps its place in line
    #: after that time (a poller wakes within milliseconds; Home Assistant's
    #: scheduler within a second).
    TURN_GRACE = timedelta(seconds=5)

    def __init__(self, ledger: QuotaLedger) -> None:
        self.ledger = ledger
        self._scopes: dict[str, ScopeState] = {}

    def quota(
        self,
        account: str,
        budgets: Iterable[Budget],
        scopes: Scopes | None = None,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> Quota:
        return Quota(account, budgets, self, scopes=scopes, now=now)

    def move(self, call: Call, at: datetime, keys: Iterable[str]) -> None:
        """`call` counts from `at` in this book's view of `keys` (see
        `Quota.completed`), kept oldest first."""
        for key in keys:
            state = self.state(key)
            moved = _restamped(state.calls, call, at)
            if moved is not None:
                state.calls = deque(moved)

    def state(self, key: str) -> ScopeState:
        state = self._scopes.get(key)
        if state is None:
            state = self._scopes[key] = ScopeState(key)
        return state

    def sharers(self, key: str, kind: BudgetKind | None = None) -> list[str]:
        """The accounts of this process that spend from scope `key` (through a
        budget of `kind`, when given), sorted."""
        state = self._scopes.get(key)
        if state is None:
            return []
        return sorted(
            name
            for name, quota in state.members.items()
            if kind is None
            or any(b.kind is kind and quota.scopes.key(b.scope) == key for b in quota.budgets)
        )

    def _join(self, quota: Quota) -> None:
        for key in quota.scopes.all_keys():
            self.state(key).members[quota.account] = quota

    def relabel(self, moved: Mapping[Call, Call]) -> None:
        """Calls recorded under a provisional account name carry the real one."""
        for state in self._scopes.values():
            if any(call in moved for call in state.calls):
                state.calls = deque(moved.get(call, call) for call in state.calls)

    def forget(self, account: str) -> None:
        """An account that spends no more (removed): it leaves every scope."""
        for state in self._scopes.values():
            state.members.pop(account, None)
            state.turns.pop(account, None)
            state.planned.pop(account, None)

    def leave(self, quota: Quota) -> None:
        """The account stops spending (removed, reloaded): its turns go too."""
        for key in quota.scopes.all_keys():
            state = self.state(key)
            if state.members.get(quota.account) is quota:
                del state.members[quota.account]
            state.turns.pop(quota.account, None)
            state.planned.pop(quota.account, None)


class Quota:
    """The budgets of one account, over the shared scopes of a `QuotaBook`."""

    def __init__(
        self,
        account: str,
        budgets: Iterable[Budget],
        ledger: QuotaLedger | QuotaBook,
        *,
        scopes: Scopes | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.account = account
        self.budgets = tuple(budgets)
        self.scopes = scopes or Scopes.alone(account)
        self.book = ledger if isinstance(ledger, QuotaBook) else QuotaBook(ledger)
        self._now = now
        # The scopes a call is recorded under: those some budget counts in.
        self._record_keys = tuple(dict.fromkeys(self.scopes.key(b.scope) for b in self.budgets))
        self._horizons = {
            key: timedelta(
                seconds=max(
                    (b.horizon for b in self.budgets if self.scopes.key(b.scope) == key),
                    default=0.0,
                )
            )
            for key in self.scopes.all_keys()
        }
        self._loaded = False
        self.book._join(self)
        #: Calls made through this object (the poller learns a poll's cost from it).
        self.calls_made = 0

    def now(self) -> datetime:
        return self._now()

    @property
    def ledger(self) -> QuotaLedger:
        return self.book.ledger

    async def load(self) -> None:
        """Read this account's scopes from the ledger (once; later calls of
        other accounts on the same scopes arrive through the shared book)."""
        if self._loaded:
            return
        await self.ledger.adopt(self.account, self._record_keys)
        now = self._now()
        keys = self.scopes.all_keys()
        holds = await self.ledger.holds(keys)
        for key in keys:
            state = self.book.state(key)
            since = now - self._horizons[key]
            if state.loaded_since is None or since < state.loaded_since:
                calls = await self.ledger.recent(key, since)
                known = set(state.calls)
                merged = sorted([*state.calls, *(c for c in calls if c not in known)], key=_at)
                state.calls = deque(merged)
                state.loaded_since = since
            hold = holds.get(key)
            if hold is not None and (state.hold is None or hold.until > state.hold.until):
                state.hold = hold
        self._loaded = True

    # --- decisions -----------------------------------------------------------
    def check(self, endpoint: str, priority: Priority = Priority.POLL) -> Denial | None:
        """None when a call to `endpoint` may go now, else the binding denial
        (from what this process knows; `acquire` asks the ledger itself)."""
        now = self._now()
        return self._decide(self._cached_view(endpoint, now), endpoint, priority, now, False)

    async def acquire(self, endpoint: str, priority: Priority = Priority.POLL) -> Call:
        """Record a call about to be made, or raise `QuotaExhaustedError`.

        Write-ahead: the call is in the ledger before the request leaves, so it
        counts even if the process dies while the request is in flight. Hand
        the call back to `completed` once the provider answered."""
        await self.load()
        now = self._now()
        call = Call(endpoint, now, self.account)
        tallies = self._tallies(endpoint, now)

        def decide(view: LedgerView) -> Denial | None:
            return self._decide(view, endpoint, priority, now, True)

        denial = await self.ledger.check_and_record(
            call, self._record_keys, self.scopes.all_keys(), tallies, decide
        )
        if denial is not None:
            wait = max(0.0, (denial.available_at - now).total_seconds())
            raise QuotaExhaustedError(denial.message(), denial.budget, denial.available_at, wait)
        for key in self._record_keys:
            state = self.book.state(key)
            state.calls.append(call)
            state.turns.pop(self.account, None)
        self.calls_made += 1
        await self._prune(now)
        return call

    def sending(self, call: Call) -> None:
        """`call` is under way: no other call on a spacing it is recorded under
        goes until it is answered (`completed`), since only then is it sure that
        the provider has it."""
        for key in self._record_keys:
            self.book.state(key).in_flight.add(call)

    async def completed(self, call: Call) -> None:
        """The provider has answered `call` (or it was given up): a spacing
        counts from now. The provider measures between the arrivals of two
        requests, and the ledger recorded this one before it left; what came
        in between (a busy event loop, a wait for the store's lock, a slow
        connection) would otherwise shorten the spacing the provider sees, and a
        FLEETIZE call that lands a moment early is a #1055. Never raises: a
        restamp that fails leaves the earlier stamp."""
        for key in self._record_keys:
            self.book.state(key).in_flight.discard(call)
        now = self._now()
        if now <= call.at:
            return
        if not any(b.kind is BudgetKind.SPACING and b.applies(call.endpoint) for b in self.budgets):
            return
        # Every scope it was recorded under, so that it stays one call (a
        # window or a day only counts it a moment longer: never less safe).
        keys = list(self._record_keys)
        self.book.move(call, now, keys)
        if isinstance(self.ledger, Restamping):
            try:
                await self.ledger.restamp(call, keys, now)
            except Exception as err:  # the call is done either way; the stamp stays
                _LOGGER.warning(
                    "%s: could not move a call's time in the ledger (%s)",
                    self.account,
                    type(err).__name__,
                )

    def available(self, endpoint: str, priority: Priority = Priority.POLL) -> int:
        """How many calls to `endpoint` could be made right now, back to back."""
        now = self._now()
        if self._held(now) is not None:
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

    async def hold(self, seconds: float, reason: str, scope: Scope = Scope.TOKEN) -> None:
        """Make no call for `seconds` (the provider asked us to wait), for every
        account of `scope` (FLEETIZE's #1055 holds the egress, a 429 the token)."""
        until = self._now() + timedelta(seconds=max(0.0, seconds))
        key = self.scopes.key(scope)
        state = self.book.state(key)
        if state.hold is None or until > state.hold.until:
            state.hold = Hold(until, reason)
            await self.ledger.save_hold(key, state.hold)

    def close(self) -> None:
        """This account stops spending: it leaves its scopes' lines."""
        self.book.leave(self)

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

    def daily_sharers(self) -> int:
        """How many accounts of this process spend from the daily budget's scope
        (two accounts with one FLEETIZE token share its 100 calls)."""
        budget = self.daily_budget()
        if budget is None:
            return 1
        return max(1, len(self.book.sharers(self.scopes.key(budget.scope), BudgetKind.DAILY)))

    def min_spacing(self, endpoint: str) -> float:
        """The shortest interval between this account's own calls: a spacing
        shared by N accounts gives each one call in N (they take turns)."""
        return max(
            (
                b.gap * max(1, len(self.shared_with(b)))
                for b in self.budgets
                if b.kind is BudgetKind.SPACING and b.applies(endpoint)
            ),
            default=0.0,
        )

    def stagger(self, endpoint: str, delay: float) -> float:
        """`delay` moved past the polls the other accounts of a shared spacing
        have planned, so that no two plans fall within one spacing; recorded as
        this account's plan. Later, never earlier: a poll that comes late only
        waits, one that comes early would be refused."""
        now = self._now()
        when = planned_at = now + timedelta(seconds=delay)
        for budget in self.budgets:
            if budget.kind is not BudgetKind.SPACING or not budget.applies(endpoint):
                continue
            if len(self.shared_with(budget)) < 2:
                continue
            state = self.book.state(self.scopes.key(budget.scope))
            period = timedelta(seconds=budget.gap)
            others = sorted(
                planned
                for name, planned in state.planned.items()
                if name != self.account and planned + QuotaBook.TURN_GRACE >= now
            )
            for planned in others:
                if planned - period < when < planned + period:
                    when = planned + period
            state.planned[self.account] = when
        if when == planned_at:
            return delay  # not moved (and not rounded to microseconds either)
        return (when - now).total_seconds()

    def shared_with(self, budget: Budget) -> list[str]:
        """The accounts of this process that spend from `budget`'s scope with a
        budget of its kind (this one included)."""
        return self.book.sharers(self.scopes.key(budget.scope), budget.kind)

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
                "scope": budget.scope.value,
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
            shared = self.shared_with(budget)
            if len(shared) > 1:
                entry["shared_with"] = [name for name in shared if name != self.account]
            result[budget.name] = entry
        hold = self._held(now)
        if hold is not None:
            result["hold"] = {"until": format_time(hold.until), "reason": hold.reason}
        return result

    # --- internals -----------------------------------------------------------
    def _tallies(self, endpoint: str, now: datetime) -> list[Tally]:
        return [b.tally(self.scopes.key(b.scope), now) for b in self.budgets if b.applies(endpoint)]

    def _cached_view(self, endpoint: str, now: datetime) -> LedgerView:
        counts = {
            t: count_calls(self.book.state(t.scope).calls, t) for t in self._tallies(endpoint, now)
        }
        holds = {}
        for key in self.scopes.all_keys():
            hold = self.book.state(key).hold
            if hold is not None:
                holds[key] = hold
        return LedgerView(counts, holds)

    def _held(self, now: datetime) -> Hold | None:
        holds = [self.book.state(k).hold for k in self.scopes.all_keys()]
        active = [h for h in holds if h is not None and h.until > now]
        return max(active, key=lambda h: h.until, default=None)

    def _decide(
        self,
        view: LedgerView,
        endpoint: str,
        priority: Priority,
        now: datetime,
        take_turn: bool,
    ) -> Denial | None:
        """The binding denial of a call at `now` on `view`, or None. With
        `take_turn`, a poll held back by a shared spacing keeps a place in line."""
        denials = [
            Denial(f"hold ({hold.reason})", hold.until)
            for hold in view.holds.values()
            if hold.until > now
        ]
        for budget in self.budgets:
            if not budget.applies(endpoint):
                continue
            key = self.scopes.key(budget.scope)
            counted = view.counts[budget.tally(key, now)]
            denial = self._check_budget(budget, counted, priority, now)
            if budget.kind is BudgetKind.SPACING and self.book.state(key).in_flight:
                # Another call on this spacing is still under way: when it
                # arrived is not known until it is answered, and the spacing
                # counts from then (`completed`), a full spacing at the least.
                waiting = Denial(
                    f"{budget.describe()}: a call under way",
                    now + timedelta(seconds=budget.gap),
                )
                if denial is None or denial.available_at < waiting.available_at:
                    denial = waiting
            if budget.kind is BudgetKind.SPACING and priority is Priority.POLL:
                denial = self._turn(budget, key, counted, now, denial, take_turn) or denial
            if denial is not None:
                denials.append(denial)
        if not denials:
            return None
        return max(denials, key=lambda d: d.available_at)

    def _check_budget(
        self, budget: Budget, counted: Counted, priority: Priority, now: datetime
    ) -> Denial | None:
        if budget.kind is BudgetKind.SPACING:
            if not counted.count:
                return None
            return Denial(budget.describe(), counted.latest[0].at + timedelta(seconds=budget.gap))
        limit = budget.limit_for(priority)
        if counted.count < limit:
            return None
        if budget.kind is BudgetKind.DAILY:
            return Denial(budget.describe(), budget.next_day_start(now))
        # The window frees up when enough of its newest calls have aged out.
        oldest_to_expire = counted.latest[min(limit, len(counted.latest)) - 1]
        return Denial(budget.describe(), oldest_to_expire.at + timedelta(seconds=budget.period))

    def _turn(
        self,
        budget: Budget,
        key: str,
        counted: Counted,
        now: datetime,
        spacing: Denial | None,
        take_turn: bool,
    ) -> Denial | None:
        """Turns on a spacing several accounts share: a poll goes when the
        spacing is free *and* no account that has waited longer is in line;
        otherwise it is told its own time, one spacing after each account
        before it, so that none of them ever meet.

        Commands and refreshes skip the line (they never wait behind polls;
        the polls they pass are told a later time, never a colliding one)."""
        state = self.book.state(key)
        if len(self.shared_with(budget)) < 2:
            return None
        period = timedelta(seconds=budget.gap)
        free_at = spacing.available_at if spacing is not None else now
        # An account that did not come back in time has given its place up.
        waiting = {
            name: told
            for name, told in state.turns.items()
            if name == self.account or told + QuotaBook.TURN_GRACE >= now
        }
        # A newcomer joins the back of those with as old a last call: the others
        # were told their slots before now. (Sorting it by `now`, earlier than
        # any slot told, put two accounts refused in one instant both first,
        # told the same slot.)
        waiting.setdefault(self.account, _NEWCOMER)
        # Longest waiting first: the oldest last call on this scope goes first.
        line = sorted(waiting, key=lambda name: (state.last_call_of(name), waiting[name], name))
        place = line.index(self.account)
        if place == 0 and spacing is None:
            return None
        start = max(free_at, now)
        slot = start + period * place
        if take_turn:
            for dropped in set(state.turns) - set(waiting):
                del state.turns[dropped]
            state.turns[self.account] = slot
        sharers = len(self.shared_with(budget))
        shared = f"{budget.describe()}, shared by {sharers} accounts on {describe_scope(key)}"
        if place == 0:
            return Denial(f"{shared}: next in line", slot)
        return Denial(f"{shared}: {_ordinal(place + 1)} in line", slot)

    def _calls_of(self, budget: Budget, now: datetime) -> list[Call]:
        """The calls that count against `budget` at `now`, oldest first."""
        tally = budget.tally(self.scopes.key(budget.scope), now)
        return [c for c in self.book.state(tally.scope).calls if tally.counts(c)]

    async def _prune(self, now: datetime) -> None:
        for key in self._record_keys:
            state = self.book.state(key)
            horizon = max(
                (q._horizons.get(key, timedelta(0)) for q in state.members.values()),
                default=self._horizons[key],
            )
            cutoff = now - horizon
            while state.calls and state.calls[0].at < cutoff:
                state.calls.popleft()
            # The ledger is pruned at most once a minute: one more write per call
            # would double the cost of a busy token's calls.
            if state.pruned_at is None or now - state.pruned_at >= timedelta(minutes=1):
                state.pruned_at = now
                await self.ledger.prune(key, cutoff)


def _at(call: Call) -> datetime:
    return call.at


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def apply_overrides(
    defaults: Iterable[Budget],
    overrides: dict[str, dict[str, Any]],
    *,
    reserve: float | None = None,
    day_zone: str | None = None,
) -> tuple[Budget, ...]:
    """A provider's default budgets with the user's corrections applied.

    `overrides` maps a budget name to the fields to change (`limit`, `period`,
    `kind`, `endpoints`, `day_zone`, `scope`); a name that is not a default adds
    a budget (then `kind` is required). `reserve` and `day_zone` apply to every
    budget."""
    budgets = {b.name: b for b in defaults}
    for name, fields in overrides.items():
        changes = dict(fields)
        if "kind" in changes:
            changes["kind"] = BudgetKind(changes["kind"])
        if "endpoints" in changes:
            changes["endpoints"] = frozenset(changes["endpoints"])
        if "scope" in changes:
            changes["scope"] = Scope(changes["scope"])
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
