"""One account's memory in Home Assistant's storage: the quota ledger and more.

The core's quota engine writes every call to a ledger before the call leaves
(`bridge.quota.CallLedger`); the daemon keeps that ledger in SQLite, the
integration here, in `.storage/fleet_telematics.<account>`, together with the
provider's cursors (checkpoint), the last vehicle states and the ids of alerts
already fired, so that a Home Assistant restart neither spends a quota twice nor
fires an alert again.

Writes are coalesced (`async_delay_save`): Home Assistant writes pending data on
shutdown, and `async_flush` writes it at once (unload, and after the config
flow's validation call, which the first poll must see).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.storage import Store

from bridge.model import VehicleState, parse_time
from bridge.quota import Call, Hold, MemoryLedger

from .const import DOMAIN, STORAGE_KEY, STORAGE_VERSION

# Seconds within which writes are coalesced into one.
SAVE_DELAY = 2.0
# Alert ids remembered (a provider re-reports events for up to a day or so).
MAX_ALERT_IDS = 2000


class AccountStore:
    """The persisted state of one provider account (a `CallLedger` too)."""

    def __init__(self, hass: HomeAssistant, account: str) -> None:
        self.account = account
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, STORAGE_KEY.format(account), private=True
        )
        self._calls: list[Call] = []
        self._hold: Hold | None = None
        self.checkpoint: dict[str, str] = {}
        self.states: list[VehicleState] = []
        self._alerts: dict[str, None] = {}  # insertion-ordered set

    async def async_load(self) -> None:
        data = await self._store.async_load() or {}
        calls = []
        for endpoint, at in data.get("calls", []):
            when = parse_time(at)
            if isinstance(endpoint, str) and when is not None:
                calls.append(Call(endpoint, when))
        self._calls = calls
        hold = data.get("hold")
        until = parse_time(hold.get("until")) if isinstance(hold, dict) else None
        self._hold = Hold(until, str(hold.get("reason", ""))) if until and hold else None
        self.checkpoint = {str(k): str(v) for k, v in (data.get("checkpoint") or {}).items()}
        self.states = []
        for item in data.get("states", []):
            try:
                self.states.append(VehicleState.from_json(item))
            except (KeyError, TypeError, ValueError):
                continue  # one unreadable vehicle is polled afresh
        self._alerts = dict.fromkeys(str(a) for a in data.get("alerts", []))

    # --- CallLedger -------------------------------------------------------------
    def load_calls(self, account: str, since: datetime) -> list[Call]:
        return [c for c in self._calls if c.at >= since]

    def record_call(self, account: str, call: Call) -> None:
        self._calls.append(call)
        self._schedule_save()

    def prune_calls(self, account: str, before: datetime) -> None:
        self._calls = [c for c in self._calls if c.at >= before]
        self._schedule_save()

    def load_hold(self, account: str) -> Hold | None:
        return self._hold

    def save_hold(self, account: str, hold: Hold | None) -> None:
        self._hold = hold
        self._schedule_save()

    # --- the rest of the account's memory -------------------------------------------
    def adopt_calls(self, calls: Iterable[Call]) -> None:
        """Count calls made before the account had a store (the flow's validation)."""
        self._calls.extend(calls)
        self._schedule_save()

    def save_poll(self, checkpoint: dict[str, str], states: Iterable[VehicleState]) -> None:
        self.checkpoint = dict(checkpoint)
        self.states = list(states)
        self._schedule_save()

    def claim_alerts(self, ids: Iterable[str]) -> set[str]:
        """The ids not seen before, now remembered."""
        fresh = {i for i in ids if i not in self._alerts}
        if fresh:
            self._alerts.update(dict.fromkeys(sorted(fresh)))
            while len(self._alerts) > MAX_ALERT_IDS:
                del self._alerts[next(iter(self._alerts))]
            self._schedule_save()
        return fresh

    async def async_flush(self) -> None:
        await self._store.async_save(self._data())

    async def async_remove(self) -> None:
        await self._store.async_remove()

    @callback
    def _schedule_save(self) -> None:
        self._store.async_delay_save(self._data, SAVE_DELAY)

    def _data(self) -> dict[str, Any]:
        return {
            "calls": [[c.endpoint, c.at.isoformat()] for c in self._calls],
            "hold": (
                {"until": self._hold.until.isoformat(), "reason": self._hold.reason}
                if self._hold
                else None
            ),
            "checkpoint": self.checkpoint,
            "states": [s.to_json() for s in self.states],
            "alerts": list(self._alerts),
        }


async def async_get_store(hass: HomeAssistant, account: str) -> AccountStore:
    """The one store of an account (the coordinator and the flows share it:
    two `Store` objects on one key would overwrite each other's writes)."""
    stores: dict[str, AccountStore] = hass.data.setdefault(f"{DOMAIN}_stores", {})
    store = stores.get(account)
    if store is None:
        store = AccountStore(hass, account)
        await store.async_load()
        stores[account] = store
    return store


def validation_ledger(hass: HomeAssistant) -> MemoryLedger:
    """Calls made by config flows before the account is known, by credentials
    fingerprint: a second attempt in the same minute still sees the first."""
    ledger: MemoryLedger = hass.data.setdefault(f"{DOMAIN}_validation", MemoryLedger())
    return ledger
