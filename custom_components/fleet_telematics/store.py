"""What the integration keeps in Home Assistant's storage.

- `HassLedger`: the quota ledger of the whole Home Assistant (`bridge.quota.
  QuotaLedger`), in `.storage/fleet_telematics.quota`, keyed by scope as the
  providers count: two FLEETIZE entries are behind one address, so they share one
  60 s spacing (and take turns); two entries with one token share its budgets. A
  call is saved before it leaves (the ledger's write-ahead), so a Home Assistant
  restart never spends a quota twice. Its `book` is the one in-memory view every
  entry's quota spends through.
- `AccountStore`: one account's cursors (checkpoint), last vehicle states and the
  ids of alerts already fired, in `.storage/fleet_telematics.<account>`; it
  answers for the account's quota too, by handing on to the shared ledger.

Account writes are coalesced (`async_delay_save`): Home Assistant writes pending
data on shutdown, and `async_flush` writes it at once (unload, and after the
config flow's validation call, which the first poll must see).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.storage import Store

from bridge.model import VehicleState, parse_time
from bridge.quota import (
    Call,
    Decide,
    Denial,
    Hold,
    MemoryLedger,
    QuotaBook,
    Tally,
)

from .const import DOMAIN, STORAGE_KEY, STORAGE_VERSION

# Seconds within which writes are coalesced into one.
SAVE_DELAY = 2.0
# Alert ids remembered (a provider re-reports events for up to a day or so).
MAX_ALERT_IDS = 2000
# The shared ledger's storage key (`.storage/fleet_telematics.quota`).
LEDGER_KEY = f"{DOMAIN}.quota"
LEDGER_VERSION = 1


class HassLedger(MemoryLedger):
    """The quota ledger of one Home Assistant: calls and holds by scope key, kept
    in memory as `MemoryLedger` keeps them, loaded from storage on first use and
    saved before a call leaves."""

    def __init__(self, hass: HomeAssistant) -> None:
        super().__init__()
        self.hass = hass
        self._store: Store[dict[str, Any]] = Store(hass, LEDGER_VERSION, LEDGER_KEY, private=True)
        self._loaded = False
        self._lock = asyncio.Lock()
        #: Every entry's quota spends through this one view (bridge.quota.QuotaBook).
        self.book = QuotaBook(self)

    async def async_load(self) -> None:
        async with self._lock:
            if self._loaded:
                return
            data = await self._store.async_load() or {}
            for scope, rows in (data.get("calls") or {}).items():
                calls = [_call(row) for row in rows if isinstance(row, list)]
                self.calls[str(scope)] = sorted((c for c in calls if c), key=_at)
            for scope, hold in (data.get("holds") or {}).items():
                until = parse_time(hold.get("until")) if isinstance(hold, dict) else None
                if until is not None:
                    self.hold_of[str(scope)] = Hold(until, str(hold.get("reason", "")))
            self._loaded = True

    # --- bridge.quota.QuotaLedger, on MemoryLedger's, once loaded ---------------------
    async def recent(self, scope: str, since: datetime) -> list[Call]:
        await self.async_load()
        return await super().recent(scope, since)

    async def holds(self, scopes: Collection[str]) -> dict[str, Hold]:
        await self.async_load()
        return await super().holds(scopes)

    async def check_and_record(
        self,
        call: Call,
        scopes: Collection[str],
        held: Collection[str],
        tallies: Collection[Tally],
        decide: Decide,
    ) -> Denial | None:
        await self.async_load()
        # MemoryLedger decides and records without an await in between: atomic
        # in the loop.
        denial = await super().check_and_record(call, scopes, held, tallies, decide)
        if denial is None:
            # Write-ahead: on disk before the request leaves.
            await self.async_flush()
        return denial

    async def save_hold(self, scope: str, hold: Hold) -> None:
        await self.async_load()
        kept = self.hold_of.get(scope)
        await super().save_hold(scope, hold)
        if self.hold_of.get(scope) is not kept:
            await self.async_flush()

    async def prune(self, scope: str, before: datetime) -> None:
        await self.async_load()
        await super().prune(scope, before)
        self._store.async_delay_save(self._data, SAVE_DELAY)

    async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
        await self.async_load()
        await super().restamp(call, scopes, at)
        self._store.async_delay_save(self._data, SAVE_DELAY)

    async def adopt(self, account: str, scopes: Collection[str]) -> None:
        """Calls and a hold an older version kept in the account's own storage
        count under the account's scopes from now on."""
        await self.async_load()
        stores: dict[str, AccountStore] = self.hass.data.get(f"{DOMAIN}_stores", {})
        store = stores.get(account)
        if store is None or not (store.legacy_calls or store.legacy_hold) or not scopes:
            return
        for scope in scopes:
            known = set(self.calls.get(scope, []))
            fresh = [c for c in store.legacy_calls if c not in known]
            self.calls[scope] = sorted([*self.calls.get(scope, []), *fresh], key=_at)
            if store.legacy_hold is not None:
                kept = self.hold_of.get(scope)
                if kept is None or store.legacy_hold.until > kept.until:
                    self.hold_of[scope] = store.legacy_hold
        await self.async_flush()
        store.forget_legacy()

    # --- what the config flow asks ----------------------------------------------------
    def load_calls(self, account: str, since: datetime) -> list[Call]:
        """The calls `account` made (whatever scopes hold them), oldest first."""
        found = {c for calls in self.calls.values() for c in calls if c.account == account}
        return sorted((c for c in found if c.at >= since), key=_at)

    def relabel(self, calls: Iterable[Call], account: str) -> None:
        """Calls made under a provisional name (the flow's credentials
        fingerprint) belong to `account`, now that it is known."""
        moved = {c: replace(c, account=account) for c in calls}
        if not moved:
            return
        for scope, kept in self.calls.items():
            self.calls[scope] = [moved.get(c, c) for c in kept]
        self.book.relabel(moved)
        self._store.async_delay_save(self._data, SAVE_DELAY)

    async def async_flush(self) -> None:
        await self._store.async_save(self._data())

    def _data(self) -> dict[str, Any]:
        return {
            "calls": {
                scope: [[c.endpoint, c.at.isoformat(), c.account] for c in calls]
                for scope, calls in self.calls.items()
                if calls
            },
            "holds": {
                scope: {"until": hold.until.isoformat(), "reason": hold.reason}
                for scope, hold in self.hold_of.items()
            },
        }


def _call(row: list[Any]) -> Call | None:
    if len(row) < 2 or not isinstance(row[0], str):
        return None
    when = parse_time(row[1])
    if when is None:
        return None
    return Call(row[0], when, str(row[2]) if len(row) > 2 else "")


def _at(call: Call) -> datetime:
    return call.at


def shared_ledger(hass: HomeAssistant) -> HassLedger:
    """The one ledger of this Home Assistant (loaded on first use)."""
    ledger = hass.data.get(f"{DOMAIN}_ledger")
    if not isinstance(ledger, HassLedger):
        ledger = hass.data[f"{DOMAIN}_ledger"] = HassLedger(hass)
    return ledger


class AccountStore:
    """The persisted state of one provider account; a `QuotaLedger` too, by
    handing every quota question on to the Home Assistant's shared ledger."""

    def __init__(self, hass: HomeAssistant, account: str) -> None:
        self.account = account
        self.ledger = shared_ledger(hass)
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, STORAGE_KEY.format(account), private=True
        )
        self.checkpoint: dict[str, str] = {}
        self.states: list[VehicleState] = []
        self._alerts: dict[str, None] = {}  # insertion-ordered set
        #: What an older version kept here (calls, a hold), until the ledger adopts it.
        self.legacy_calls: list[Call] = []
        self.legacy_hold: Hold | None = None

    @property
    def book(self) -> QuotaBook:
        return self.ledger.book

    async def async_load(self) -> None:
        data = await self._store.async_load() or {}
        calls = []
        for endpoint, at in data.get("calls", []):
            when = parse_time(at)
            if isinstance(endpoint, str) and when is not None:
                calls.append(Call(endpoint, when, self.account))
        self.legacy_calls = calls
        hold = data.get("hold")
        until = parse_time(hold.get("until")) if isinstance(hold, dict) else None
        self.legacy_hold = Hold(until, str(hold.get("reason", ""))) if until and hold else None
        self.checkpoint = {str(k): str(v) for k, v in (data.get("checkpoint") or {}).items()}
        self.states = []
        for item in data.get("states", []):
            try:
                self.states.append(VehicleState.from_json(item))
            except (KeyError, TypeError, ValueError):
                continue  # one unreadable vehicle is polled afresh
        self._alerts = dict.fromkeys(str(a) for a in data.get("alerts", []))

    def forget_legacy(self) -> None:
        self.legacy_calls, self.legacy_hold = [], None
        self._schedule_save()

    # --- bridge.quota.QuotaLedger, on the shared ledger --------------------------------
    async def recent(self, scope: str, since: datetime) -> list[Call]:
        return await self.ledger.recent(scope, since)

    async def holds(self, scopes: Collection[str]) -> dict[str, Hold]:
        return await self.ledger.holds(scopes)

    async def check_and_record(
        self,
        call: Call,
        scopes: Collection[str],
        held: Collection[str],
        tallies: Collection[Tally],
        decide: Decide,
    ) -> Denial | None:
        return await self.ledger.check_and_record(call, scopes, held, tallies, decide)

    async def save_hold(self, scope: str, hold: Hold) -> None:
        await self.ledger.save_hold(scope, hold)

    async def prune(self, scope: str, before: datetime) -> None:
        await self.ledger.prune(scope, before)

    async def adopt(self, account: str, scopes: Collection[str]) -> None:
        await self.ledger.adopt(account, scopes)

    async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
        await self.ledger.restamp(call, scopes, at)

    def load_calls(self, account: str, since: datetime) -> list[Call]:
        """The calls the account made, whichever of its scopes hold them (and
        what an older version kept here, until the ledger adopts it)."""
        calls = set(self.ledger.load_calls(account, since))
        calls |= {c for c in self.legacy_calls if c.at >= since}
        return sorted(calls, key=_at)

    def adopt_calls(self, calls: Iterable[Call]) -> None:
        """Calls of the flow's validation are the account's: the ledger holds
        them under the account's scopes already; they now carry its name."""
        self.ledger.relabel(calls, self.account)

    # --- the rest of the account's memory -------------------------------------------
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
        await self.ledger.async_flush()

    async def async_remove(self) -> None:
        """The account is gone: its cursors and states go; the calls it made stay
        in the shared ledger (its token's and address's budgets still count them),
        and it leaves every scope's line."""
        await self._store.async_remove()
        self.book.forget(self.account)

    @callback
    def _schedule_save(self) -> None:
        self._store.async_delay_save(self._data, SAVE_DELAY)

    def _data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "states": [s.to_json() for s in self.states],
            "alerts": list(self._alerts),
        }
        if self.legacy_calls or self.legacy_hold:
            # Not adopted yet (the account has not polled since the upgrade).
            data["calls"] = [[c.endpoint, c.at.isoformat()] for c in self.legacy_calls]
            data["hold"] = (
                {"until": self.legacy_hold.until.isoformat(), "reason": self.legacy_hold.reason}
                if self.legacy_hold
                else None
            )
        return data


async def async_get_store(hass: HomeAssistant, account: str) -> AccountStore:
    """The one store of an account (the coordinator and the flows share it:
    two `Store` objects on one key would overwrite each other's writes)."""
    stores: dict[str, AccountStore] = hass.data.setdefault(f"{DOMAIN}_stores", {})
    store = stores.get(account)
    if store is None:
        store = AccountStore(hass, account)
        await store.async_load()
        stores[account] = store
    await store.ledger.async_load()
    return store


class ValidationLedger:
    """The shared ledger as a config flow spends from it: calls are recorded in
    the one ledger (a second attempt within FLEETIZE's minute sees the first,
    across restarts too, and so does every running entry), but the flow's
    short-lived quota is not one of the accounts that take turns."""

    def __init__(self, ledger: HassLedger) -> None:
        self._ledger = ledger
        self.book = QuotaBook(self)

    async def recent(self, scope: str, since: datetime) -> list[Call]:
        return await self._ledger.recent(scope, since)

    async def holds(self, scopes: Collection[str]) -> dict[str, Hold]:
        return await self._ledger.holds(scopes)

    async def check_and_record(
        self,
        call: Call,
        scopes: Collection[str],
        held: Collection[str],
        tallies: Collection[Tally],
        decide: Decide,
    ) -> Denial | None:
        denial = await self._ledger.check_and_record(call, scopes, held, tallies, decide)
        if denial is None:
            # The running entries' view learns of the call at once.
            for scope in scopes:
                state = self._ledger.book.state(scope)
                if state.loaded_since is not None:
                    state.calls.append(call)
        return denial

    async def save_hold(self, scope: str, hold: Hold) -> None:
        await self._ledger.save_hold(scope, hold)
        shared = self._ledger.book.state(scope)
        if shared.hold is None or hold.until > shared.hold.until:
            shared.hold = hold

    async def prune(self, scope: str, before: datetime) -> None:
        await self._ledger.prune(scope, before)

    async def adopt(self, account: str, scopes: Collection[str]) -> None:
        return None

    async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
        await self._ledger.restamp(call, scopes, at)
        # The running entries' view moves it too.
        self._ledger.book.move(call, at, scopes)

    def load_calls(self, account: str, since: datetime) -> list[Call]:
        return self._ledger.load_calls(account, since)


def validation_ledger(hass: HomeAssistant) -> ValidationLedger:
    """The ledger a config flow checks new credentials on (see `ValidationLedger`)."""
    return ValidationLedger(shared_ledger(hass))
