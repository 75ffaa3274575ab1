"""TrackSafe365: live locations, stats and dashcams, cursor-paged; dashcam stills.

The key's prefix chooses the environment: `ts365_test_` keys work on the sandbox
only, `ts365_live_` and `ts365_rk_` (restricted) keys on production only. The key
goes in the Authorization header, never in the URL (`?api_key=` is deprecated,
removed on 2026-12-01, and would leak the key into logs).

A 403 names the permission scope the key lacks: for fleet data that stops the
account with the scope in the message; for snapshots it fails the one command;
for safety events it is logged once and alerts are skipped (positions go on).
Limits are per key and plan (NOTES.md); `plan_budgets` gives each plan's, and a
sandbox key is always on the Sandbox plan. Speeds arrive in mph and odometers in
metres: converted here, once.

Alerts come from `/safety/events` (harsh driving, speeding) and
`/safety/dms/events` (driver monitoring), two calls at most every
`alert_interval`, from the second poll of a run on (the first publishes the
vehicles, and with them the event entities an alert needs). Each call asks for
the window from `alert_overlap` before the end of the last window read (events
arrive late: when a trip ends, when a dashcam uploads) to now; the first reaches
back `alert_lookback`. Repeats are expected: the poller publishes each event id
once. The same events pushed to the webhook receiver are parsed by
`webhook_alerts`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from bridge.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    QuotaExhaustedError,
)
from bridge.model import (
    Alert,
    AlertType,
    Camera,
    Capability,
    CommandResult,
    CommandStatus,
    PollPlan,
    Position,
    Priority,
    Severity,
    Update,
    VehicleState,
    format_time,
    parse_time,
)
from bridge.providers.http import HttpClient, Response, RetryPolicy
from bridge.providers.parse import event_position, fingerprint, number, text, valid_coordinates
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
    "safety_events": ("GET", "/safety/events", "safety:read"),
    "dms_events": ("GET", "/safety/dms/events", "safety:read"),
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

# --- Alerts: the provider's event types in the bridge's vocabulary -----------------
#: Event endpoints read per alert poll (one page each).
EVENT_ENDPOINTS = ("safety_events", "dms_events")
#: The types tracksafe365.txt names ("including": others may come, as OTHER with
#: the provider's own name in `details.provider_type`). Keys are snake_case; a
#: camelCase or spaced spelling is normalised first.
EVENT_TYPES: dict[str, AlertType] = {
    "harsh_braking": AlertType.HARSH_BRAKING,
    "harsh_acceleration": AlertType.HARSH_ACCELERATION,
    "harsh_cornering": AlertType.HARSH_CORNERING,
    "speeding": AlertType.SPEEDING,
    "drowsiness": AlertType.DROWSINESS,
    "distraction": AlertType.DISTRACTION,
    "phone_use": AlertType.PHONE_USE,
    "seatbelt": AlertType.SEATBELT,
}
#: The event's own `severity`, when it has one.
SEVERITIES: dict[str, Severity] = {
    "low": Severity.INFO,
    "medium": Severity.WARNING,
    "high": Severity.CRITICAL,
    "info": Severity.INFO,
    "warning": Severity.WARNING,
    "critical": Severity.CRITICAL,
}
#: Severity of an event that carries none (anything else: WARNING).
DEFAULT_SEVERITIES: dict[AlertType, Severity] = {
    AlertType.DROWSINESS: Severity.CRITICAL,
    AlertType.OTHER: Severity.INFO,
}
# After an outage the window never reaches back further than this (the API's
# default window; older events would only be published as stale anyway).
MAX_ALERT_CATCH_UP = timedelta(days=1)
# A key without safety:read is asked again this often (a scope can be granted).
SCOPE_RETRY = timedelta(hours=1)


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
    #: Read safety and DMS events (2 calls) at most this often, in seconds.
    alert_interval: float = 60.0
    #: How far back the first read reaches, and how far before the end of the
    #: last window each later one starts again (late events), in seconds.
    alert_lookback: float = 3600.0
    alert_overlap: float = 3600.0
    #: Ask for linked video URLs (`include_media`, 2026-06-10).
    include_media: bool = True


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
    # The documented types, and OTHER for those the documentation leaves out.
    alert_types: ClassVar[frozenset[AlertType]] = frozenset(
        {*EVENT_TYPES.values(), AlertType.OTHER}
    )

    session: aiohttp.ClientSession
    settings: TracksafeSettings
    quota: Quota | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _http: HttpClient = field(init=False)
    _states: dict[str, VehicleState] = field(default_factory=dict, init=False)
    # Per event endpoint: the end of the last window read whole (checkpointed),
    # and while a window is being paged, its end and the next page's cursor.
    _events_until: dict[str, datetime] = field(default_factory=dict, init=False)
    _window_ends: dict[str, datetime] = field(default_factory=dict, init=False)
    _event_cursors: dict[str, str] = field(default_factory=dict, init=False)
    _alerts_armed: bool = field(default=False, init=False)
    _alerts_due: datetime | None = field(default=None, init=False)
    _alerts_denied_until: datetime | None = field(default=None, init=False)

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
        return {f"{name}_until": until.isoformat() for name, until in self._events_until.items()}

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        self._states = {v.vehicle_id: v for v in vehicles}
        self._events_until = {}
        for name in EVENT_ENDPOINTS:
            until = parse_time(checkpoint.get(f"{name}_until"))
            if until is not None:
                self._events_until[name] = until

    async def validate(self) -> str:
        """One vehicle of the list: proves the key and its fleet:read scope."""
        await self._call("vehicles", Priority.COMMAND, params={"limit": "1"})
        return fingerprint(self.name, self.base_url, self.settings.api_key)

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
        alerts = await self._poll_alerts(plan.now or datetime.now(UTC), priority)
        return Update(vehicles=changed, removed=removed, alerts=alerts)

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

    # --- alerts ------------------------------------------------------------------
    async def _poll_alerts(self, now: datetime, priority: Priority) -> list[Alert]:
        """Safety and DMS events, when due; a failure here never fails the poll."""
        if not self._alerts_armed:
            # The first poll of a run publishes the vehicles (and their event
            # entities); alerts start with the next, the window covers the gap.
            self._alerts_armed = True
            return []
        if self._alerts_due is not None and now < self._alerts_due:
            return []
        if self._alerts_denied_until is not None and now < self._alerts_denied_until:
            return []
        if self.quota is not None and self.quota.available(EVENT_ENDPOINTS[0], priority) < len(
            EVENT_ENDPOINTS
        ):
            _LOGGER.debug("TrackSafe365: no quota to spare for events this poll")
            return []
        alerts: list[Alert] = []
        for name in EVENT_ENDPOINTS:
            try:
                alerts += await self._poll_events(name, now, priority)
            except TracksafeScopeError as err:
                if self._alerts_denied_until is None:
                    _LOGGER.warning(
                        "%s; alerts are skipped (positions keep coming), asked again hourly",
                        err,
                    )
                self._alerts_denied_until = now + SCOPE_RETRY
                return alerts
            except ProviderAuthError:
                raise
            except (ProviderError, QuotaExhaustedError) as err:
                _LOGGER.info("TrackSafe365 %s: no events this poll: %s", name, err)
                return alerts
        if self._alerts_denied_until is not None:
            _LOGGER.info("TrackSafe365: safety events are readable again")
            self._alerts_denied_until = None
        self._alerts_due = now + timedelta(seconds=self.settings.alert_interval)
        return alerts

    async def _poll_events(self, name: str, now: datetime, priority: Priority) -> list[Alert]:
        """One page of an event endpoint: a new window, or the next page of one."""
        params = {"limit": str(PAGE_LIMIT)}
        if self.settings.include_media:
            params["include_media"] = "true"
        cursor = self._event_cursors.get(name)
        if cursor:
            params["cursor"] = cursor
        else:
            until = self._events_until.get(name)
            if until is None:
                start = now - timedelta(seconds=self.settings.alert_lookback)
            else:
                start = until - timedelta(seconds=self.settings.alert_overlap)
            if start >= now:  # the clock went back
                start = now - timedelta(seconds=self.settings.alert_overlap)
            start = max(start, now - MAX_ALERT_CATCH_UP)
            params["startTime"] = format_time(start) or ""
            params["endTime"] = format_time(now) or ""
            self._window_ends[name] = now
        try:
            body = await self._call(name, priority, params=params)
        except ProviderAuthError:
            raise
        except ProviderError:
            if cursor:  # a refused (expired) cursor: read the window again
                self._event_cursors.pop(name, None)
                self._window_ends.pop(name, None)
            raise
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProviderDataError(f"TrackSafe365 {name}: `data` is not a list")
        alerts = []
        for item in data:
            alert = event_alert(item) if isinstance(item, dict) else None
            if alert is None:
                _LOGGER.debug("TrackSafe365 %s: skipped an event without id, vehicle or time", name)
            else:
                alerts.append(alert)
        page = body.get("pagination")
        more = isinstance(page, dict) and page.get("hasNextPage") is True
        next_cursor = text(page.get("endCursor")) if more and isinstance(page, dict) else None
        if next_cursor and next_cursor != cursor:
            self._event_cursors[name] = next_cursor
        else:
            self._event_cursors.pop(name, None)
            self._events_until[name] = self._window_ends.pop(name, now)
        return alerts

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


# --- alerts: one mapping for polled and pushed events ---------------------------------


def event_alert(item: Mapping[str, Any]) -> Alert | None:
    """A safety or DMS event as an Alert; None without an id, a vehicle or a time."""
    event_id = text(item.get("id"))
    vehicle = item.get("vehicle")
    vehicle_id = text(item.get("vehicleId")) or (
        text(vehicle.get("id")) if isinstance(vehicle, dict) else None
    )
    when = parse_time(item.get("time")) or parse_time(item.get("startTime"))
    if event_id is None or vehicle_id is None or when is None:
        return None
    provider_type = text(item.get("type")) or text(item.get("eventType")) or "unknown"
    kind = EVENT_TYPES.get(_snake(provider_type), AlertType.OTHER)
    raw_severity = text(item.get("severity"))
    severity = SEVERITIES.get((raw_severity or "").lower()) or DEFAULT_SEVERITIES.get(
        kind, Severity.WARNING
    )
    details: dict[str, Any] = {"provider_type": provider_type}
    if raw_severity:
        details["provider_severity"] = raw_severity
    speed = _speed_kmh(item)
    if speed is not None:
        details["speed_kmh"] = speed
    duration = number(item.get("durationSeconds"))
    if duration is not None and duration >= 0:
        details["duration_s"] = duration
    coaching = text(item.get("coachingStatus"))
    if coaching:
        details["coaching_status"] = coaching
    return Alert(
        alert_id=event_id,
        vehicle_id=vehicle_id,
        type=kind,
        time=when,
        severity=severity,
        driver=_driver(item),
        position=_event_location(item.get("location"), when),
        media_url=_media_url(item),
        details=details,
    )


def webhook_alerts(body: bytes) -> list[Alert]:
    """The alerts in a webhook delivery (signature already checked).

    The documentation names the signature, not the body; accepted are an envelope
    `{"type": "safety_event.created", "data": event | [event, ...]}` (also under
    `events`), a bare event, or a list of events, where an event has the shape
    of `/safety/events` items. An envelope whose `type` names neither safety nor
    DMS events (a trip, a device) carries no alert: an empty list.
    Raises ProviderDataError (never quoting the body) for anything else."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProviderDataError("TrackSafe365 webhook: the body is not JSON") from None
    events: Any
    if isinstance(payload, list):
        events = payload
    elif isinstance(payload, dict) and ("data" in payload or "events" in payload):
        kind = text(payload.get("type")) or text(payload.get("event")) or ""
        if kind and not any(word in kind.lower() for word in ("safety", "dms")):
            return []
        events = payload.get("data", payload.get("events"))
        if isinstance(events, dict):
            events = [events]
    elif isinstance(payload, dict) and ("vehicleId" in payload or "vehicle" in payload):
        events = [payload]
    else:
        raise ProviderDataError("TrackSafe365 webhook: no event in the body")
    if not isinstance(events, list):
        raise ProviderDataError("TrackSafe365 webhook: `data` is neither an event nor a list")
    alerts = []
    for event in events:
        alert = event_alert(event) if isinstance(event, dict) else None
        if alert is None:
            raise ProviderDataError("TrackSafe365 webhook: an event lacks id, vehicleId or time")
        alerts.append(alert)
    return alerts


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _snake(name: str) -> str:
    """`harshBraking`, `Harsh Braking`, `harsh-braking` -> `harsh_braking`."""
    return re.sub(r"[\s\-.]+", "_", _CAMEL.sub("_", name.strip())).lower()


def _driver(item: Mapping[str, Any]) -> str | None:
    driver = item.get("driver")
    if isinstance(driver, dict):
        return text(driver.get("name")) or text(driver.get("id"))
    return text(driver) or text(item.get("driverName")) or text(item.get("driverId"))


def _event_location(location: Any, when: datetime) -> Position | None:
    address = text(location.get("address")) if isinstance(location, dict) else None
    return event_position(location, when, address)


def _media_url(item: Mapping[str, Any]) -> str | None:
    """The first http(s) link: `media[].url` (include_media), or a flat URL field."""
    candidates: list[Any] = []
    media = item.get("media")
    if isinstance(media, list):
        candidates += [m.get("url") for m in media if isinstance(m, dict)]
    elif isinstance(media, dict):
        candidates.append(media.get("url"))
    candidates += [item.get(name) for name in ("mediaUrl", "videoUrl", "imageUrl")]
    for candidate in candidates:
        url = text(candidate)
        if url and url.lower().startswith(("https://", "http://")):
            return url
    return None
