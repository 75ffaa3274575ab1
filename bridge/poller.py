"""One account's polling loop: fetch, publish what changed, persist, wait.

Each account runs in its own task; whatever happens to one (auth revoked, the
provider down, a bug in its mapping) is contained here and never stalls another.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bridge.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    QuotaExhaustedError,
)
from bridge.model import Alert, EngineState, PollPlan, Priority, VehicleState, format_time, utc_now
from bridge.mqtt.publisher import Publisher, encode
from bridge.planner import Cadence, next_poll
from bridge.providers.base import Provider
from bridge.quota import Quota
from bridge.store import (
    AlertClaim,
    BridgeStore,
    LeaseLostError,
    StoreError,
    StoreUnavailableError,
)

# How soon a poll is tried again while the store cannot be reached.
STORE_RETRY = 5.0

_LOGGER = logging.getLogger(__name__)

ENGINE_RUNNING = frozenset({EngineState.ON, EngineState.IDLE})


class AccountStatus(StrEnum):
    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"  # polls failing, retrying by itself
    STOPPED = "stopped"  # needs a human (credentials refused)


@dataclass(frozen=True, slots=True)
class PollerSettings:
    account: str
    vehicle_list_interval: float = 3600.0
    # A vehicle with no report for this long shows as offline.
    offline_after: float = 3600.0
    # Polls failing for this long make the account's vehicles unavailable.
    unavailable_after: float = 600.0
    # No fresh data for this long (failures, 429s, quota waits, a hung provider)
    # makes the account's vehicles unavailable until the next good poll. None:
    # three planned poll intervals, and never less than `unavailable_after`.
    staleness: float | None = None
    # Longest wait between retries while the provider fails.
    max_backoff: float = 300.0
    # Alerts older than this when first seen are published as stale.
    alert_max_age: float = 3600.0
    alert_retention_days: int = 30


@dataclass(slots=True)
class PollerHealth:
    status: AccountStatus = AccountStatus.STARTING
    vehicles: int = 0
    polls: int = 0
    failures: int = 0
    last_error: str | None = None
    next_poll: datetime | None = None
    # Why the next poll is when it is (planner reason or the binding budget).
    plan_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshResult:
    changed: int
    vehicles: int


@dataclass
class AccountPoller:
    settings: PollerSettings
    provider: Provider
    publisher: Publisher
    store: BridgeStore
    quota: Quota
    cadence: Cadence = field(default_factory=Cadence)
    now: Callable[[], datetime] = utc_now
    health: PollerHealth = field(default_factory=PollerHealth)
    on_health: Callable[[AccountPoller], None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _polled: asyncio.Condition = field(default_factory=asyncio.Condition)
    _last_list: datetime | None = None
    _failing_since: datetime | None = None
    _next_priority: Priority = Priority.POLL
    _last_changed: int = 0
    # Calls one poll costs, learned from the quota ledger (the planner needs it).
    _calls_per_poll: float = 1.0
    _pruned_at: datetime | None = None
    # When the account's data was last refreshed (a good poll), or the poller
    # started; and the longest wait planned since, for the default staleness.
    _refreshed_at: datetime | None = None
    _planned_delay: float = 0.0
    _stale: bool = False
    # Polls, webhooks and reconnections all flush alerts: one at a time, so an
    # alert is never sent twice by two of them at once.
    _alerts_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Why the last poll did not go (a budget said no), for a refresh waiting on it.
    _declined: QuotaExhaustedError | None = None

    @property
    def account(self) -> str:
        return self.settings.account

    async def restore(self) -> int:
        """Resume from the store (and the quota from its ledger); returns the
        number of vehicles restored."""
        await self.quota.load()
        states = await self.store.load_states(self.account)
        self.provider.restore(await self.store.load_checkpoint(self.account), states)
        self.publisher.seed(self.account, states)
        self.health.vehicles = len(states)
        return len(states)

    async def deliver_alerts(self, alerts: list[Alert]) -> int:
        """Publish alerts not seen before, from a poll or a webhook; returns how
        many were new.

        The claim in the store makes each alert id published once, across polls,
        restarts and a webhook delivering what a poll also finds; the claim keeps
        the alert until the broker has taken it, so an outage loses none."""
        fresh: set[str] = set()
        if alerts:
            claims = [
                AlertClaim(
                    alert.alert_id,
                    self.publisher.alert_topic(self.account, alert.vehicle_id),
                    encode(alert.to_json()).decode(),
                    alert.time.timestamp(),
                )
                for alert in alerts
            ]
            fresh = await self.store.claim_alerts(self.account, claims)
        await self.flush_alerts()
        now = self.now()
        if self._pruned_at is None or now - self._pruned_at > timedelta(hours=1):
            await self.store.prune_alerts(now - timedelta(days=self.settings.alert_retention_days))
            self._pruned_at = now
        return len(fresh)

    async def flush_alerts(self) -> int:
        """Publish every claimed alert the broker has not taken yet, oldest
        first (after a poll, and on each connection); returns how many went.

        An alert is stale when it is published long after it happened: first
        seen late, or held through a broker outage."""
        async with self._alerts_lock:
            pending = await self.store.alerts_undelivered(self.account)
            if not pending:
                return 0
            now = self.now().timestamp()
            alerts: list[tuple[str, Any]] = []
            for claim in pending:
                data = json.loads(claim.payload)
                data["stale"] = now - claim.time > self.settings.alert_max_age
                alerts.append((claim.topic, data))
            if not await self.publisher.publish_alerts(self.account, alerts):
                return 0
            await self.store.alerts_delivered(self.account, [claim.alert_id for claim in pending])
            return len(pending)

    async def apply(self, vehicle_id: str, **changes: object) -> None:
        """Show a change a command confirmed, before the next poll sees it."""
        state = self.publisher.states(self.account).get(vehicle_id)
        if state is None:
            return
        changed = state.merged(**changes)
        await self.publisher.vehicles_changed(self.account, [changed])
        await self.store.save_poll(self.account, self.provider.checkpoint(), [changed])

    def request_poll(self, *, refresh_vehicles: bool = False) -> None:
        """Poll now instead of at the end of the current wait (optionally re-reading
        the vehicle list too)."""
        if refresh_vehicles:
            self._last_list = None
        self._wake.set()

    async def wait_polls(self, count: int, timeout: float = 30.0) -> None:
        """Wait until `count` polls (successful or not) have completed in total."""
        async with asyncio.timeout(timeout), self._polled:
            await self._polled.wait_for(lambda: self.health.polls >= count)

    async def refresh(self, timeout: float = 120.0) -> RefreshResult:
        """Poll now on behalf of a user, spending the reserve if need be.

        Raises `QuotaExhaustedError` naming the budget (and when it frees up)
        instead of ever calling past it, and `ProviderError` if the poll fails."""
        if self.health.status is AccountStatus.STOPPED:
            raise ProviderAuthError(f"account stopped: {self.health.last_error}")
        denial = self.quota.check(self.provider.poll_endpoint, Priority.COMMAND)
        if denial is not None:
            wait = max(0.0, (denial.available_at - self.now()).total_seconds())
            raise QuotaExhaustedError(denial.message(), denial.budget, denial.available_at, wait)
        target = self.health.polls + 1
        self._next_priority = Priority.COMMAND
        self._wake.set()
        await self.wait_polls(target, timeout)
        if self._declined is not None:
            # The ledger said no after all (another account's turn, a call of
            # another process): never a call past it, and the user hears when.
            raise self._declined
        if self.health.last_error is not None and self.health.status is not AccountStatus.OK:
            raise ProviderError(self.health.last_error)
        return RefreshResult(self._last_changed, self.health.vehicles)

    async def run(self) -> None:
        delay = 0.0
        while True:
            await self._wait(delay)
            delay = await self.poll_once()
            if self.health.status is AccountStatus.STOPPED:
                return

    # --- staleness -------------------------------------------------------------
    @property
    def stale(self) -> bool:
        """True while the account's vehicles show as unavailable for stale data."""
        return self._stale

    def staleness_limit(self) -> float:
        """Seconds without fresh data after which the vehicles are unavailable."""
        if self.settings.staleness is not None:
            return self.settings.staleness
        return max(self.settings.unavailable_after, 3 * self._planned_delay)

    def seconds_until_stale(self) -> float | None:
        """None when already stale (nothing to check until fresh data arrives)."""
        if self._stale:
            return None
        if self._refreshed_at is None:
            self._refreshed_at = self.now()
        age = (self.now() - self._refreshed_at).total_seconds()
        return self.staleness_limit() - age

    async def check_stale(self) -> bool:
        """Mark the vehicles unavailable once the data is older than the staleness
        limit; returns whether it is. Fresh data (`_succeeded`) undoes it."""
        until = self.seconds_until_stale()
        if until is not None and until < 0:
            self._stale = True
            _LOGGER.warning(
                "%s: no fresh data for %.0fs (staleness %.0fs): its vehicles show as "
                "unavailable until polling works again (%s)",
                self.account,
                self.staleness_limit() - until,
                self.staleness_limit(),
                self.health.last_error or self.health.plan_reason or "no answer yet",
            )
            await self.publisher.set_account_available(self.account, False)
        return self._stale

    async def _wait(self, delay: float) -> None:
        """Sleep until the next poll (or a wake-up), checking staleness meanwhile."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while True:
            remaining = end - loop.time()
            until_stale = self.seconds_until_stale()
            if until_stale is None or until_stale >= remaining:
                await self._sleep(remaining)
                return
            if await self._sleep(max(until_stale, 0.0) + 0.05):
                return
            await self.check_stale()

    async def poll_once(self) -> float:
        """One poll; returns how long to wait before the next."""
        try:
            delay = await self._poll()
        except StoreUnavailableError as err:
            # No call can be recorded, so none is made; what was polled but not
            # saved is polled again from the saved cursor (nothing lost).
            await self._failed(f"store unreachable, no calls until it is back: {err}")
            delay = STORE_RETRY
        await self.check_stale()
        self.health.next_poll = (
            None
            if self.health.status is AccountStatus.STOPPED
            else self.now() + timedelta(seconds=delay)
        )
        await self._polled_one()
        return delay

    async def _poll(self) -> float:
        now = self.now()
        priority, self._next_priority = self._next_priority, Priority.POLL
        plan = PollPlan(
            refresh_vehicles=self._last_list is None
            or (now - self._last_list).total_seconds() >= self.settings.vehicle_list_interval,
            priority=priority,
            now=now,
        )
        calls_before = self.quota.calls_made
        self._declined = None
        try:
            update = await self.provider.poll(plan)
        except ProviderAuthError as err:
            await self._stop(str(err))
            return 0.0
        except (StoreError, LeaseLostError):
            # The daemon stops (polling on without a ledger could break a quota),
            # waits for the store, or hands the account to its new holder.
            raise
        except QuotaExhaustedError as err:
            # Not a failure: the bridge itself declined to exceed a budget.
            self._declined = err
            self.health.plan_reason = err.args[0]
            _LOGGER.info("%s: waiting %.0fs for quota: %s", self.account, err.retry_after, err)
            return max(err.retry_after, 1.0)
        except ProviderRateLimitedError as err:
            await self._failed(str(err))
            return max(err.retry_after, 1.0)
        except ProviderError as err:
            await self._failed(str(err))
            return self._backoff()
        except Exception as err:  # a bug in one provider must not stop the others
            _LOGGER.exception("%s: unexpected error while polling", self.account)
            await self._failed(f"internal error: {type(err).__name__}")
            return self._backoff()
        if plan.refresh_vehicles:
            self._last_list = now
        changed = self._with_online(update.vehicles, now)
        await self.publisher.vehicles_changed(self.account, changed)
        await self.deliver_alerts(update.alerts)
        if update.removed:
            await self.publisher.vehicles_removed(self.account, update.removed)
        # Persist after publishing: a crash in between replays, never skips.
        await self.store.save_poll(
            self.account, self.provider.checkpoint(), changed, update.removed
        )
        self._last_changed = len(changed)
        spent = self.quota.calls_made - calls_before
        if spent and not plan.refresh_vehicles:
            self._calls_per_poll = 0.7 * self._calls_per_poll + 0.3 * spent
        await self._succeeded(len(self.publisher.states(self.account)))
        if update.more:
            return 0.0
        states = self.publisher.states(self.account).values()
        decision = next_poll(
            self.cadence,
            self.quota,
            # Moving, or about to: some providers only say "ignition" (FLEETIZE).
            moving=any(s.moving or s.ignition or s.engine_state in ENGINE_RUNNING for s in states),
            calls_per_poll=self._calls_per_poll,
            endpoint=self.provider.poll_endpoint,
        )
        self.health.plan_reason = decision.reason
        self._planned_delay = decision.delay
        return decision.delay

    def _with_online(self, changed: list[VehicleState], now: datetime) -> list[VehicleState]:
        """Set `online` on the changed vehicles, and re-check every known vehicle:
        one that stopped reporting turns offline without any new data."""
        limit = timedelta(seconds=self.settings.offline_after)
        result: dict[str, VehicleState] = {}
        known = self.publisher.states(self.account)
        for state in changed:
            known[state.vehicle_id] = state
        for vid, state in known.items():
            online = (
                state.last_seen is not None
                and now - state.last_seen <= limit
                and state.reported_online is not False
            )
            if state.online != online:
                result[vid] = replace(state, online=online)
        for state in changed:
            result.setdefault(state.vehicle_id, known[state.vehicle_id])
        return list(result.values())

    # --- health --------------------------------------------------------------
    async def _succeeded(self, vehicles: int) -> None:
        if self.health.failures:
            _LOGGER.info("%s: polling works again", self.account)
        self.health.status = AccountStatus.OK
        self.health.vehicles = vehicles
        self.health.failures = 0
        self.health.last_error = None
        self._failing_since = None
        self._refreshed_at = self.now()
        if self._stale:
            _LOGGER.info("%s: fresh data again; its vehicles are available", self.account)
            self._stale = False
        await self.publisher.set_account_available(self.account, True)

    async def _failed(self, message: str) -> None:
        now = self.now()
        if self.health.failures == 0:
            _LOGGER.warning("%s: poll failed, retrying: %s", self.account, message)
            self._failing_since = now
        else:
            _LOGGER.debug("%s: poll failed again: %s", self.account, message)
        self.health.failures += 1
        self.health.last_error = message
        self.health.status = AccountStatus.DEGRADED
        if (
            self._failing_since is not None
            and (now - self._failing_since).total_seconds() >= self.settings.unavailable_after
        ):
            await self.publisher.set_account_available(self.account, False)

    async def _stop(self, message: str) -> None:
        _LOGGER.error(
            "%s: %s. Polling of this account is stopped: check its credentials in the "
            "config, then restart fleet-bridge. Other accounts keep running.",
            self.account,
            message,
        )
        self.health.status = AccountStatus.STOPPED
        self.health.last_error = message
        await self.publisher.set_account_available(self.account, False)

    async def _polled_one(self) -> None:
        self.health.polls += 1
        self._notify()
        async with self._polled:
            self._polled.notify_all()

    def _notify(self) -> None:
        if self.on_health is not None:
            self.on_health(self)

    def quota_report(self) -> dict[str, object]:
        """The payload of `fleet/<account>/quota`."""
        return {
            "available": self.health.status is not AccountStatus.STOPPED,
            "budgets": self.quota.usage(),
            "calls_left_today": self.quota.calls_left_today(Priority.POLL),
            "next_poll": format_time(self.health.next_poll),
            "reason": self.health.plan_reason,
        }

    def _backoff(self) -> float:
        base = self.cadence.interval * 2 ** min(self.health.failures, 10)
        return float(min(self.settings.max_backoff, max(base, self.cadence.min_interval)))

    async def _sleep(self, delay: float) -> bool:
        """Wait `delay` seconds or until woken; returns whether it was woken."""
        if delay <= 0 and not self._wake.is_set():
            return False
        woken = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
                woken = True
        self._wake.clear()
        return woken
