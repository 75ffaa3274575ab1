"""One account's polling loop: fetch, publish what changed, persist, wait.

Each account runs in its own task; whatever happens to one (auth revoked, the
provider down, a bug in its mapping) is contained here and never stalls another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from bridge.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
)
from bridge.model import PollPlan, VehicleState, utc_now
from bridge.mqtt.publisher import Publisher
from bridge.providers.base import Provider
from bridge.store import Store

_LOGGER = logging.getLogger(__name__)


class AccountStatus(StrEnum):
    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"  # polls failing, retrying by itself
    STOPPED = "stopped"  # needs a human (credentials refused)


@dataclass(frozen=True, slots=True)
class PollerSettings:
    account: str
    poll_interval: float = 10.0
    vehicle_list_interval: float = 3600.0
    # A vehicle with no report for this long shows as offline.
    offline_after: float = 3600.0
    # Polls failing for this long make the account's vehicles unavailable.
    unavailable_after: float = 600.0
    # Longest wait between retries while the provider fails.
    max_backoff: float = 300.0


@dataclass(slots=True)
class PollerHealth:
    status: AccountStatus = AccountStatus.STARTING
    vehicles: int = 0
    polls: int = 0
    failures: int = 0
    last_success: datetime | None = None
    last_error: str | None = None


@dataclass
class AccountPoller:
    settings: PollerSettings
    provider: Provider
    publisher: Publisher
    store: Store
    now: Callable[[], datetime] = utc_now
    health: PollerHealth = field(default_factory=PollerHealth)
    on_health: Callable[[], None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _polled: asyncio.Condition = field(default_factory=asyncio.Condition)
    _last_list: datetime | None = None
    _failing_since: datetime | None = None

    @property
    def account(self) -> str:
        return self.settings.account

    def restore(self) -> int:
        """Resume from the store; returns the number of vehicles restored."""
        states = self.store.load_states(self.account)
        self.provider.restore(self.store.load_checkpoint(self.account), states)
        self.publisher.seed(self.account, states)
        self.health.vehicles = len(states)
        return len(states)

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

    async def run(self) -> None:
        delay = 0.0
        while True:
            await self._sleep(delay)
            delay = await self.poll_once()
            if self.health.status is AccountStatus.STOPPED:
                return

    async def poll_once(self) -> float:
        """One poll; returns how long to wait before the next."""
        now = self.now()
        plan = PollPlan(
            refresh_vehicles=self._last_list is None
            or (now - self._last_list).total_seconds() >= self.settings.vehicle_list_interval
        )
        try:
            update = await self.provider.poll(plan)
        except ProviderAuthError as err:
            await self._stop(str(err))
            return 0.0
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
        if update.removed:
            await self.publisher.vehicles_removed(self.account, update.removed)
        # Persist after publishing: a crash in between replays, never skips.
        self.store.save_poll(self.account, self.provider.checkpoint(), changed, update.removed)
        await self._succeeded(len(self.publisher.states(self.account)))
        return 0.0 if update.more else self.settings.poll_interval

    def _with_online(self, changed: list[VehicleState], now: datetime) -> list[VehicleState]:
        """Set `online` on the changed vehicles, and re-check every known vehicle:
        one that stopped reporting turns offline without any new data."""
        limit = timedelta(seconds=self.settings.offline_after)
        result: dict[str, VehicleState] = {}
        known = self.publisher.states(self.account)
        for state in changed:
            known[state.vehicle_id] = state
        for vid, state in known.items():
            online = state.last_seen is not None and now - state.last_seen <= limit
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
        self.health.last_success = self.now()
        self.health.last_error = None
        self._failing_since = None
        await self.publisher.set_account_available(self.account, True)
        await self._polled_one()

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
        await self._polled_one()

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
        await self._polled_one()

    async def _polled_one(self) -> None:
        self.health.polls += 1
        if self.on_health is not None:
            self.on_health()
        async with self._polled:
            self._polled.notify_all()

    def _backoff(self) -> float:
        base = self.settings.poll_interval * 2 ** min(self.health.failures, 10)
        return float(min(self.settings.max_backoff, base))

    async def _sleep(self, delay: float) -> None:
        if delay <= 0 and not self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()
