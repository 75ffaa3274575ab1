"""One DataUpdateCoordinator per provider account, paced by the core's planner.

The coordinator polls the provider through the core client, keeps every vehicle's
latest `VehicleState`, fires each alert once, and sets its own next refresh from
`bridge.planner.next_poll` (or the quota engine's "not before"), never from a
fixed interval: with FLEETIZE's 100 calls a day, a fixed interval would spend the
budget on a parked fleet at night.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.device_registry import DeviceEntry
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from bridge.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTokenBlockedError,
    QuotaExhaustedError,
)
from bridge.model import Alert, EngineState, PollPlan, Priority, VehicleState
from bridge.planner import Cadence, next_poll
from bridge.providers.base import Provider
from bridge.quota import Quota

from .const import DOMAIN, ISSUE_TOKEN_BLOCKED, LOGGER
from .store import AccountStore

# The vehicle list (names, plates, additions, removals) is re-read this often.
VEHICLE_LIST_INTERVAL = timedelta(hours=1)
# A vehicle with no report for this long shows as offline.
OFFLINE_AFTER = timedelta(hours=1)
# Alerts older than this when first seen are remembered but do not fire.
ALERT_MAX_AGE = timedelta(hours=1)
# Longest wait between retries while the provider fails.
MAX_BACKOFF = 300.0
ENGINE_RUNNING = frozenset({EngineState.ON, EngineState.IDLE})

# Home Assistant 2024.11 added `config_entry` to the coordinator (and later warns
# when it is not passed); 2024.3 takes it from a context variable instead.
_TAKES_ENTRY = "config_entry" in inspect.signature(DataUpdateCoordinator.__init__).parameters


@dataclass(slots=True)
class Snapshot:
    """The last dashcam still of a vehicle (what the image entity shows)."""

    url: str
    at: datetime


@dataclass(slots=True)
class PollStatus:
    """What the diagnostic sensors show about the account's polling."""

    next_poll: datetime | None = None
    reason: str | None = None
    failures: int = 0
    last_error: str | None = None


class FleetCoordinator(DataUpdateCoordinator[dict[str, VehicleState]]):
    """Polls one account; `data` maps vehicle id to its latest state."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        provider: Provider,
        quota: Quota,
        store: AccountStore,
        cadence: Cadence,
    ) -> None:
        kwargs: dict[str, Any] = {"config_entry": entry} if _TAKES_ENTRY else {}
        super().__init__(
            hass,
            LOGGER,
            name=f"{DOMAIN} {entry.title}",
            # Replaced after every poll by what the planner decides.
            update_interval=timedelta(seconds=cadence.min_interval),
            **kwargs,
        )
        self.entry = entry
        self.account: str = entry.unique_id or entry.entry_id
        self.provider = provider
        self.quota = quota
        self.store = store
        self.cadence = cadence
        self.status = PollStatus()
        #: Alerts first seen by the last poll, with "stale" (too old to fire).
        self.new_alerts: list[tuple[Alert, bool]] = []
        self.snapshots: dict[str, Snapshot] = {}
        #: The account's own device, registered in async_setup_entry before any
        #: vehicle names it as the device it is reached through.
        self.account_device: DeviceEntry | None = None
        #: Waits between command follow-ups (tests pass one that moves a simulated clock).
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._last_list: datetime | None = None
        self._next_priority = Priority.POLL
        # Calls one poll costs, learned from the quota (the planner needs it).
        self._calls_per_poll = 1.0
        self.data = {}

    def restore(self) -> None:
        """Resume from storage: cursors and the last known vehicles."""
        self.provider.restore(self.store.checkpoint, self.store.states)
        self.data = {s.vehicle_id: s for s in self.store.states}

    async def async_refresh_now(self) -> int:
        """A poll asked for by a user: may spend the quota reserve. Raises
        `QuotaExhaustedError` (naming the budget) rather than exceed it."""
        denial = self.quota.check(self.provider.poll_endpoint, Priority.COMMAND)
        if denial is not None:
            wait = max(0.0, (denial.available_at - self.quota.now()).total_seconds())
            raise QuotaExhaustedError(denial.message(), denial.budget, denial.available_at, wait)
        self._next_priority = Priority.COMMAND
        self._last_list = None  # a user asking to refresh wants new vehicles too
        await self.async_refresh()
        if not self.last_update_success and self.last_exception is not None:
            raise self.last_exception
        return len(self.data)

    def apply(self, vehicle_id: str, **changes: Any) -> None:
        """Show what a command confirmed before the next poll sees it."""
        state = self.data.get(vehicle_id)
        if state is not None:
            self.async_set_updated_data({**self.data, vehicle_id: state.merged(**changes)})

    async def _async_update_data(self) -> dict[str, VehicleState]:
        self.new_alerts = []
        now = self.quota.now()
        priority, self._next_priority = self._next_priority, Priority.POLL
        refresh = self._last_list is None or now - self._last_list >= VEHICLE_LIST_INTERVAL
        plan = PollPlan(refresh_vehicles=refresh, priority=priority, now=now)
        calls_before = self.quota.calls_made
        try:
            update = await self.provider.poll(plan)
        except ProviderTokenBlockedError as err:
            self._raise_blocked_issue()
            raise ConfigEntryAuthFailed(
                str(err), translation_domain=DOMAIN, translation_key="token_blocked"
            ) from err
        except ProviderAuthError as err:
            raise ConfigEntryAuthFailed(
                str(err),
                translation_domain=DOMAIN,
                translation_key="auth_failed",
                translation_placeholders={"error": str(err)},
            ) from err
        except QuotaExhaustedError as err:
            # Not a failure: the quota engine declined to exceed a budget.
            self._plan(err.retry_after, err.args[0])
            return dict(self.data)
        except ProviderRateLimitedError as err:
            self._failed(str(err), err.retry_after)
            raise UpdateFailed(str(err)) from err
        except ProviderError as err:
            self._failed(str(err), None)
            raise UpdateFailed(str(err)) from err
        if refresh:
            self._last_list = now
        states = dict(self.data)
        for state in update.vehicles:
            states[state.vehicle_id] = state
        for vid in update.removed:
            states.pop(vid, None)
            self.snapshots.pop(vid, None)
        states = {vid: _with_online(s, now) for vid, s in states.items()}
        self._fresh_alerts(update.alerts, now)
        self.store.save_poll(self.provider.checkpoint(), states.values())
        spent = self.quota.calls_made - calls_before
        if spent and not refresh:
            self._calls_per_poll = 0.7 * self._calls_per_poll + 0.3 * spent
        self.status.failures, self.status.last_error = 0, None
        ir.async_delete_issue(self.hass, DOMAIN, f"{ISSUE_TOKEN_BLOCKED}_{self.entry.entry_id}")
        if update.more:
            self._plan(1.0, "provider has more data ready")
        else:
            decision = next_poll(
                self.cadence,
                self.quota,
                moving=any(
                    s.moving or s.ignition or s.engine_state in ENGINE_RUNNING
                    for s in states.values()
                ),
                calls_per_poll=self._calls_per_poll,
                endpoint=self.provider.poll_endpoint,
            )
            self._plan(decision.delay, decision.reason)
        return states

    def _fresh_alerts(self, alerts: list[Alert], now: datetime) -> None:
        if not alerts:
            return
        fresh = self.store.claim_alerts(a.alert_id for a in alerts)
        for alert in sorted(alerts, key=lambda a: a.time):
            if alert.alert_id in fresh:
                fresh.discard(alert.alert_id)  # a repeat within the batch: once
                self.new_alerts.append((alert, now - alert.time > ALERT_MAX_AGE))

    def _plan(self, delay: float, reason: str) -> None:
        delay = max(delay, 1.0)
        self.update_interval = timedelta(seconds=delay)
        self.status.next_poll = self.quota.now() + timedelta(seconds=delay)
        self.status.reason = reason

    def _failed(self, message: str, retry_after: float | None) -> None:
        self.status.failures += 1
        self.status.last_error = message
        backoff = self.cadence.interval * 2 ** min(self.status.failures, 10)
        delay = retry_after if retry_after is not None else min(MAX_BACKOFF, backoff)
        self._plan(max(delay, self.cadence.min_interval), f"retrying after: {message}")

    def _raise_blocked_issue(self) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"{ISSUE_TOKEN_BLOCKED}_{self.entry.entry_id}",
            is_fixable=False,
            is_persistent=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=ISSUE_TOKEN_BLOCKED,
            translation_placeholders={"title": self.entry.title},
            learn_more_url="https://github.com/fleet-telematics-bridge/fleet-telematics-bridge/blob/main/docs/home-assistant.md#token-blocked",
        )


def _with_online(state: VehicleState, now: datetime) -> VehicleState:
    online = (
        state.last_seen is not None
        and now - state.last_seen <= OFFLINE_AFTER
        and state.reported_online is not False
    )
    return state if state.online == online else replace(state, online=online)


@dataclass(slots=True)
class FleetRuntime:
    """What a loaded entry holds (`entry.runtime_data`)."""

    coordinator: FleetCoordinator
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def runtime(entry: ConfigEntry) -> FleetRuntime:
    # ConfigEntry.runtime_data is typed from 2024.4 on; on 2024.3 it is a plain attribute.
    data: FleetRuntime = entry.runtime_data  # type: ignore[attr-defined,unused-ignore]
    return data
