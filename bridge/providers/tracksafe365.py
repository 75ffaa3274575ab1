"""TrackSafe365: live locations, stats and dashcams, cursor-paged; dashcam stills.

The key's prefix chooses the environment: `ts365_test_` keys work on the sandbox
only, `ts365_live_` and `ts365_rk_` (restricted) keys on production only. The key
goes in the Authorization header, never in the URL (`?api_key=` is deprecated,
removed on 2026-12-01, and would leak the key into logs).

A 403 names the permission scope the key lacks: for fleet data that stops the
account with the scope in the message; for snapshots it fails the one command.
Limits are per key and plan (NOTES.md); `plan_budgets` gives each plan's, and a
sandbox key is always on the Sandbox plan. Speeds arrive in mph and odometers in
metres: converted here, once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from bridge.errors import ProviderAuthError, ProviderDataError, ProviderError
from bridge.model import (
    AlertType,
    Camera,
    Capability,
    CommandResult,
    CommandStatus,
    PollPlan,
    Position,
    Priority,
    Update,
    VehicleState,
    parse_time,
)
from bridge.providers.http import HttpClient, Response, RetryPolicy
from bridge.providers.parse import number, text, valid_coordinates
from bridge.quota import Budget, BudgetKind, Quota

_LOGGER = logging.getLogger(__name__)

# --- Endpoints, limits and units, in one place (tracksafe365.txt, NOTES.md) --------
PRODUCTION_URL = "https://api.tracksafe365.com/v2"
SANDBOX_URL = "https://sandbox-api.tracksafe365.com/v2"
PRODUCTION, SANDBOX = "production", "sandbox"
LIVE_PREFIX, TEST_PREFIX, RESTRICTED_PREFIX = "ts365_live_", "ts365_test_", "ts365_rk_"
KEY_ENVIRONMENTS = {LIVE_PREFIX: PRODUCTION, TEST_PREFIX: SANDBOX, RESTRICTED_PREFIX: PRODUCTION}
#: name -> (method, path under the base URL, the scope it needs).
PATHS: dict[str, tuple[str, str, str]] = {
    "vehicles": ("GET", "/fleet/vehicles", "fleet:read"),
    "locations": ("GET", "/fleet/locations", "fleet:read"),
    "vehicle_stats": ("GET", "/fleet/vehicles/stats", "fleet:read"),
    "dashcams": ("GET", "/devices/dashcams", "fleet:read"),
    "request_snapshot": ("POST", "/media/snapshots", "media:read"),
    "snapshot": ("GET", "/media/snapshots/{id}", "media:read"),
}
PAGE_LIMIT = 500  # documented maximum (default 100)
# A listing stops after this many pages (250,000 vehicles) even if the API says
# there is more: a cursor that never ends must not spend the whole daily budget.
MAX_PAGES = 500
MPH_TO_KMH = 1.609344
#: Speed fields and their factor to km/h (the API's names carry their unit).
SPEED_FIELDS = {"speedMilesPerHour": MPH_TO_KMH, "speedKilometersPerHour": 1.0}
CAMERAS = {Camera.ROAD: "road", Camera.DRIVER: "driver"}
SNAPSHOT_DONE = frozenset({"completed", "complete", "done"})
SNAPSHOT_FAILED = frozenset({"failed", "error", "cancelled", "canceled"})
# Requests per minute and per day by plan (NOTES.md). Enterprise limits are
# custom: there is no default, the user sets them.
PLANS = ("sandbox", "starter", "growth", "enterprise")
PLAN_LIMITS: dict[str, tuple[int, int]] = {
    "sandbox": (60, 10_000),
    "starter": (300, 100_000),
    "growth": (1_000, 500_000),
}
BUDGET_PER_MINUTE, BUDGET_PER_DAY = "per_minute", "per_day"
# A production key of unknown plan is held to the smallest production plan's.
DEFAULT_PLAN = "starter"
_SCOPE = re.compile(r"\b[a-z]+:[a-z]+\b")


def key_environment(api_key: str) -> str | None:
    """`production` or `sandbox` by the key's prefix; None for an unknown prefix."""
    for prefix, environment in KEY_ENVIRONMENTS.items():
        if api_key.startswith(prefix) and len(api_key) > len(prefix):
            return environment
    return None


def effective_plan(api_key: str, plan: str | None) -> str:
    """The plan whose limits apply: sandbox keys are always on the Sandbox plan."""
    if key_environment(api_key) == SANDBOX:
        return "sandbox"
    return plan or DEFAULT_PLAN


def plan_budgets(plan: str) -> tuple[Budget, ...] | None:
    """A plan's published limits as budgets; None for Enterprise (custom limits)."""
    limits = PLAN_LIMITS.get(plan)
    if limits is None:
        return None
    per_minute, per_day = limits
    return (
        Budget(BUDGET_PER_MINUTE, BudgetKind.WINDOW, limit=per_minute, period=60.0),
        Budget(BUDGET_PER_DAY, BudgetKind.DAILY, limit=per_day),
    )


DEFAULT_BUDGETS = plan_budgets(DEFAULT_PLAN) or ()
_UNKNOWN_PREFIX = (
    "TrackSafe365 API key has an unknown prefix: expected ts365_live_ (production), "
    "ts365_test_ (sandbox) or ts365_rk_ (restricted, production)"
)


@dataclass(frozen=True, slots=True)
class TracksafeSettings:
    api_key: str
    #: Production; keys with the ts365_test_ prefix use `sandbox_url` instead.
    base_url: str = PRODUCTION_URL
    sandbox_url: str = SANDBOX_URL
    request_timeout: float = 30.0
    #: sandbox, starter, growth or enterprise: chooses the default budgets.
    plan: str | None = None


class TracksafeScopeError(ProviderAuthError):
    """The key lacks a permission scope (HTTP 403); `scope` names it."""

    def __init__(self, message: str, scope: str) -> None:
        super().__init__(message)
        self.scope = scope


@dataclass(slots=True)
class TracksafeProvider:
    """One TrackSafe365 organisation (one API key)."""

    name: ClassVar[str] = "tracksafe365"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.POSITION,
            Capability.SPEED,
            Capability.ODOMETER,
            Capability.FUEL_LEVEL,
            Capability.ENGINE_HOURS,
            Capability.SNAPSHOT,
        }
    )
    #: The Starter plan's; `plan_budgets` has the others (config applies them).
    default_budgets: ClassVar[tuple[Budget, ...]] = DEFAULT_BUDGETS
    poll_endpoint: ClassVar[str] = "locations"
    # Alerts arrive with the alerts issue; none yet.
    alert_types: ClassVar[frozenset[AlertType]] = frozenset()

    session: aiohttp.ClientSession
    settings: TracksafeSettings
    quota: Quota | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _http: HttpClient = field(init=False)
    _states: dict[str, VehicleState] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._http = HttpClient(
            self.session,
            "TrackSafe365",
            timeout=self.settings.request_timeout,
            retry=self.retry,
            quota=self.quota,
        )

    @property
    def environment(self) -> str | None:
        """`production` or `sandbox`, as the key's prefix says (None: unknown)."""
        return key_environment(self.settings.api_key)

    @property
    def base_url(self) -> str:
        environment = self.environment
        if environment is None:
            raise ProviderAuthError(_UNKNOWN_PREFIX)
        return self.settings.sandbox_url if environment == SANDBOX else self.settings.base_url

    # --- persistence -------------------------------------------------------
    def checkpoint(self) -> dict[str, str]:
        return {}

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        self._states = {v.vehicle_id: v for v in vehicles}

    async def close(self) -> None:
        """Nothing to release: the session is injected."""

    # --- polling -----------------------------------------------------------
    async def poll(self, plan: PollPlan) -> Update:
        priority = plan.priority
        before = dict(self._states)
        removed: list[str] = []
        if plan.refresh_vehicles or not self._states:
            removed = await self._refresh_vehicle_list(priority)
        for item in await self._list("locations", priority):
            self._apply_location(item)
        for item in await self._list("vehicle_stats", priority):
            self._apply_stats(item)
        for item in await self._list("dashcams", priority):
            self._apply_dashcam(item)
        changed = [s for vid, s in self._states.items() if before.get(vid) != s]
        return Update(vehicles=changed, removed=removed)

    async def _refresh_vehicle_list(self, priority: Priority) -> list[str]:
        listed: dict[str, dict[str, Any]] = {}
        for item in await self._list("vehicles", priority):
            vid = text(item.get("id"))
            if vid:
                listed[vid] = item
        removed = [vid for vid in self._states if vid not in listed]
        for vid in removed:
            del self._states[vid]
        for vid, item in listed.items():
            state = self._states.get(vid) or VehicleState(vehicle_id=vid, name=vid)
            self._states[vid] = state.merged(
                name=text(item.get("name")) or vid,
                vin=text(item.get("vin")),
                plate=text(item.get("licensePlate")),
            )
        return removed

    async def _list(self, name: str, priority: Priority) -> list[dict[str, Any]]:
        """Every page of a list endpoint (`limit` 500, `cursor` = endCursor)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"limit": str(PAGE_LIMIT)}
            if cursor:
                params["cursor"] = cursor
            body = await self._call(name, priority, params=params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ProviderDataError(f"TrackSafe365 {name}: `data` is not a list")
            items.extend(item for item in data if isinstance(item, dict))
            page = body.get("pagination")
            if not isinstance(page, dict) or page.get("hasNextPage") is not True:
                return items
            cursor = text(page.get("endCursor"))
            if not cursor or cursor in seen:
                raise ProviderDataError(f"TrackSafe365 {name}: a next page without a new cursor")
            seen.add(cursor)
        _LOGGER.warning("TrackSafe365 %s: stopped after %d pages", name, MAX_PAGES)
        return items

    # --- dashcam stills ------------------------------------------------------------
    async def request_snapshot(
        self, vehicle_id: str, camera: Camera, priority: Priority
    ) -> CommandResult:
        body = {"vehicleId": vehicle_id, "camera": CAMERAS[camera]}
        try:
            answer = await self._call("request_snapshot", priority, json_body=body)
        except TracksafeScopeError as err:
            return CommandResult(CommandStatus.FAILED, error=str(err))
        task = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(task, dict) or text(task.get("taskId")) is None:
            raise ProviderDataError("TrackSafe365 snapshot: no taskId in the answer")
        return _snapshot_result(task, str(text(task.get("taskId"))))

    async def snapshot_status(self, handle: str, priority: Priority) -> CommandResult:
        try:
            answer = await self._call("snapshot", priority, passthrough=frozenset({404}), id=handle)
        except TracksafeScopeError as err:
            return CommandResult(CommandStatus.FAILED, handle=handle, error=str(err))
        if answer is _NOT_FOUND:
            return CommandResult(
                CommandStatus.FAILED,
                handle=handle,
                error=f"TrackSafe365 does not know snapshot task {handle}",
            )
        task = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(task, dict):
            raise ProviderDataError("TrackSafe365 snapshot: no task in the answer")
        return _snapshot_result(task, handle)

    # --- HTTP ----------------------------------------------------------------
    async def _call(
        self,
        name: str,
        priority: Priority,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        passthrough: frozenset[int] = frozenset(),
        **path_args: str,
    ) -> Any:
        method, path, scope = PATHS[name]
        path = path.format(**{k: quote(v, safe="") for k, v in path_args.items()})
        url = URL(self.base_url.rstrip("/") + path)
        response = await self._http.request(
            method,
            url,
            # The key only ever travels in this header.
            headers={
                "Authorization": f"Bearer {self.settings.api_key}",
                "Content-Type": "application/json",
            },
            params=params,
            json_body=json_body,
            endpoint=name,
            priority=priority,
            passthrough_statuses=frozenset({400, 401, 403, 404, 409, 422}),
        )
        status = response.status
        if status in passthrough:
            return _NOT_FOUND
        if status == 401:
            raise ProviderAuthError(
                f"TrackSafe365 refused the API key (HTTP 401): {_describe(response)}"
            )
        if status == 403:
            reason = _describe(response)
            # "insufficient_scope: Key lacks fleet:read permission." names it.
            named = _SCOPE.search(reason.partition(": ")[2] or reason)
            missing = named.group() if named else scope
            raise TracksafeScopeError(
                f"TrackSafe365 key lacks the {missing} permission (HTTP 403 on {name}): {reason}",
                missing,
            )
        if status >= 400:
            reason = _describe(response)
            raise ProviderError(f"TrackSafe365 {name} failed (HTTP {status}): {reason}")
        return response.json()

    # --- mapping into the model -------------------------------------------
    def _state_for(self, item: dict[str, Any]) -> VehicleState | None:
        """The state of a listed vehicle; others wait for the next list refresh."""
        vid = text(item.get("vehicleId"))
        return self._states.get(vid) if vid is not None else None

    def _apply_location(self, item: dict[str, Any]) -> None:
        state = self._state_for(item)
        location = item.get("location")
        if state is None or not isinstance(location, dict):
            return
        lat, lon = number(location.get("latitude")), number(location.get("longitude"))
        if lat is None or lon is None or not valid_coordinates(lat, lon):
            return
        when = parse_time(location.get("time"))
        address = text(location.get("address"))
        changes: dict[str, Any] = {
            "position": Position(
                latitude=lat,
                longitude=lon,
                time=when,
                heading=number(location.get("headingDegrees")),
                address=address,
            ),
            "speed_kmh": _speed_kmh(location),
        }
        if when is not None and (state.last_seen is None or when > state.last_seen):
            changes["last_seen"] = when
        self._states[state.vehicle_id] = state.merged(**changes)

    def _apply_stats(self, item: dict[str, Any]) -> None:
        state = self._state_for(item)
        if state is None:
            return
        changes: dict[str, Any] = {}
        metres = number(item.get("odometerMeters"))
        if metres is not None and metres >= 0:
            changes["odometer_km"] = round(metres / 1000, 3)
        hours = number(item.get("engineHours"))
        if hours is not None and hours >= 0:
            changes["engine_hours"] = hours
        fuel = number(item.get("fuelPercent"))
        if fuel is not None and 0 <= fuel <= 100:
            changes["fuel_percent"] = fuel
        self._states[state.vehicle_id] = state.merged(**changes)

    def _apply_dashcam(self, item: dict[str, Any]) -> None:
        state = self._state_for(item)
        online = item.get("online")
        if state is not None and isinstance(online, bool):
            # What TrackSafe365 says about reaching the vehicle: its dashcam's link.
            self._states[state.vehicle_id] = state.merged(reported_online=online)


class _NotFound:
    """A 404 the caller asked to see."""


_NOT_FOUND: Any = _NotFound()


def _speed_kmh(location: Mapping[str, Any]) -> float | None:
    for name, factor in SPEED_FIELDS.items():
        value = number(location.get(name))
        if value is not None and value >= 0:
            return round(value * factor, 1)
    return None


def _snapshot_result(task: Mapping[str, Any], handle: str) -> CommandResult:
    status = str(task.get("status") or "").lower()
    url = text(task.get("imageUrl"))
    if status in SNAPSHOT_DONE and url:
        return CommandResult(CommandStatus.CONFIRMED, handle=handle, data={"url": url})
    if status in SNAPSHOT_FAILED:
        error = task.get("error")
        if isinstance(error, dict):
            code, message = text(error.get("code")), text(error.get("message"))
            reason = ": ".join(p for p in (code, message) if p) or "no reason given"
        else:
            reason = text(error) or "no reason given"
        return CommandResult(
            CommandStatus.FAILED, handle=handle, error=f"TrackSafe365 snapshot failed: {reason}"
        )
    return CommandResult(CommandStatus.PENDING, handle=handle)


def _describe(response: Response) -> str:
    """`{"code", "message"}` as `code: message`; other bodies as short text."""
    try:
        body = response.json()
    except ProviderDataError:
        return response.text() or "no reason given"
    if isinstance(body, dict):
        code, message = text(body.get("code")), text(body.get("message"))
        return ": ".join(p for p in (code, message) if p) or "no reason given"
    return response.text() or "no reason given"
