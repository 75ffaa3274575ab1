"""Samsara: vehicles and their stats through the stats feed, alerts through the
safety events stream.

The feed (`/fleet/vehicles/stats/feed`) returns the last known values on the first
call and only what changed after that, with a cursor that we keep across restarts.
A call takes at most three stat types, so the types are grouped and each group has
its own cursor. Speeds arrive in mph and odometers in metres: converted here, once.

Safety events (`/safety-events/stream`, 5 requests a second) are read after the
feed on every poll, with a cursor of their own kept across restarts. Neither
samsara.txt nor NOTES.md shows the stream's shapes; they follow Samsara's public
API reference (`SafetyEventV2ObjectResponseBody`): a required `startTime` that
must be sent unchanged with every `after` cursor of the same stream, events with
`id`, `asset`, `driver`, `behaviorLabels[].label`, `startMs` (RFC 3339 despite its
name), `location` and `media[].url`. Reading them is best effort: a failure there
never costs the poll its vehicle states, and the cursor only moves on success.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from bridge.errors import ProviderDataError, ProviderError, QuotaExhaustedError
from bridge.model import (
    Alert,
    AlertType,
    Camera,
    Capability,
    CommandResult,
    CommandStatus,
    EngineState,
    PollPlan,
    Position,
    Priority,
    Severity,
    Update,
    VehicleState,
    format_time,
    parse_time,
    utc_now,
)
from bridge.providers.http import HttpClient, RetryPolicy
from bridge.providers.parse import (
    event_position,
    fingerprint,
    integer,
    number,
    text,
    valid_coordinates,
)
from bridge.quota import Budget, BudgetKind, Quota, Scope, endpoint_window

_LOGGER = logging.getLogger(__name__)

# --- Endpoints, limits and units, in one place (docs: providers/samsara.txt, NOTES.md)
BASE_URLS = {"us": "https://api.samsara.com", "eu": "https://api.eu.samsara.com"}
PATH_VEHICLES = "fleet/vehicles"
PATH_STATS_FEED = "fleet/vehicles/stats/feed"
PAGE_LIMIT = 512  # default and maximum page size
MAX_TYPES_PER_CALL = 3
# After a feed page with hasNextPage false, wait at least this long (documented).
FEED_MIN_INTERVAL_S = 5.0
# A poll reads at most this many pages per feed; the rest comes with `more=True`.
MAX_PAGES_PER_POLL = 50
FEED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("gps", "engineStates", "fuelPercents"),
    ("obdOdometerMeters", "batteryMilliVolts", "obdEngineSeconds"),
    ("gpsOdometerMeters",),
)
MPH_TO_KMH = 1.609344
# Published limits (NOTES.md): 150/s per token, 200/s per organisation (shared by
# every token of the organisation: accounts with the same `organisation:` spend
# from one; configure it lower in `quota:` when other integrations share it too),
# and the endpoint limits per token.
ENDPOINT_VEHICLES = "vehicles"
ENDPOINT_STATS_FEED = "stats_feed"
ENDPOINT_MEDIA_CREATE = "media_retrieval_create"
ENDPOINT_MEDIA_STATUS = "media_retrieval_status"
PATH_MEDIA_RETRIEVAL = "cameras/media/retrieval"
ENDPOINT_SAFETY_STREAM = "safety_events_stream"
PATH_SAFETY_STREAM = "safety-events/stream"
DEFAULT_BUDGETS = (
    Budget("per_token", BudgetKind.WINDOW, limit=150, period=1.0),
    Budget("per_organisation", BudgetKind.WINDOW, limit=200, period=1.0, scope=Scope.ORGANISATION),
    endpoint_window(ENDPOINT_MEDIA_CREATE, limit=100, period=60.0),
    endpoint_window(ENDPOINT_MEDIA_STATUS, limit=5, period=1.0),
    endpoint_window(ENDPOINT_SAFETY_STREAM, limit=5, period=1.0),
)
CAMERA_INPUTS = {Camera.ROAD: "dashcamRoadFacing", Camera.DRIVER: "dashcamDriverFacing"}
# Media states: the documentation names "done"; other spellings seen in the wild
# are accepted too, and anything unknown counts as still pending.
MEDIA_DONE = frozenset({"done", "available", "completed", "complete"})
MEDIA_FAILED = frozenset({"failed", "invalid", "unavailable", "error"})
OBD_ODOMETER_KEY = "obd_odometer"
ENGINE_STATES = {"Off": EngineState.OFF, "On": EngineState.ON, "Idle": EngineState.IDLE}

# --- Safety events: the stream's window and Samsara's labels in our vocabulary ----
# The first start reads this far back; a refused cursor (expired after 30 days, or
# the token changed) restarts from the last successful read less the overlap, but
# never further back than the look-back cap. Repeats are harmless: ids are claimed.
SAFETY_FIRST_LOOKBACK = timedelta(hours=1)
SAFETY_OVERLAP = timedelta(minutes=5)
SAFETY_MAX_LOOKBACK = timedelta(hours=24)
# At 5 requests a second, a poll reads at most this many pages; the rest next poll.
SAFETY_PAGES_PER_POLL = 4
# A token without the safety scope (403) or an account without the stream (404):
# ask again after this long, and keep polling the feed meanwhile.
SAFETY_DENIED_PAUSE = timedelta(hours=1)
#: `behaviorLabels[].label` (v2 names, and the legacy camelCase ones) -> our type.
#: Keys are compared in lower case; a label not listed is `other`.
SAFETY_LABELS: dict[str, AlertType] = {
    "braking": AlertType.HARSH_BRAKING,
    "harshbrake": AlertType.HARSH_BRAKING,
    "acceleration": AlertType.HARSH_ACCELERATION,
    "harshaccel": AlertType.HARSH_ACCELERATION,
    "harshturn": AlertType.HARSH_CORNERING,
    "speeding": AlertType.SPEEDING,
    "lightspeeding": AlertType.SPEEDING,
    "moderatespeeding": AlertType.SPEEDING,
    "heavyspeeding": AlertType.SPEEDING,
    "severespeeding": AlertType.SPEEDING,
    "maxspeed": AlertType.SPEEDING,
    "crash": AlertType.CRASH,
    "harshcrash": AlertType.CRASH,
    "drowsy": AlertType.DROWSINESS,
    "drowsiness": AlertType.DROWSINESS,
    "genericdistraction": AlertType.DISTRACTION,
    "edgedistracteddriving": AlertType.DISTRACTION,
    "distracted": AlertType.DISTRACTION,
    "distracteddriving": AlertType.DISTRACTION,
    "eating": AlertType.DISTRACTION,
    "drinking": AlertType.DISTRACTION,
    "eatingdrinking": AlertType.DISTRACTION,
    "mobileusage": AlertType.PHONE_USE,
    "mobile_usage": AlertType.PHONE_USE,
    "phone": AlertType.PHONE_USE,
    "phoneusage": AlertType.PHONE_USE,
    "noseatbelt": AlertType.SEATBELT,
    "smoking": AlertType.SMOKING,
    "idling": AlertType.IDLING,
    "obstructedcamera": AlertType.TAMPER,
}
#: Of several labels on one event, the first type in this order names it.
SAFETY_PRIORITY: tuple[AlertType, ...] = (
    AlertType.CRASH,
    AlertType.DROWSINESS,
    AlertType.PHONE_USE,
    AlertType.DISTRACTION,
    AlertType.HARSH_BRAKING,
    AlertType.HARSH_ACCELERATION,
    AlertType.HARSH_CORNERING,
    AlertType.SPEEDING,
    AlertType.SEATBELT,
    AlertType.SMOKING,
    AlertType.TAMPER,
    AlertType.IDLING,
)
SAFETY_SEVERITY: dict[AlertType, Severity] = {
    AlertType.CRASH: Severity.CRITICAL,
    AlertType.DROWSINESS: Severity.CRITICAL,
    AlertType.IDLING: Severity.INFO,
    AlertType.OTHER: Severity.INFO,
}  # every other type: WARNING
#: Labels that make an event critical whatever its type.
SAFETY_CRITICAL_LABELS = frozenset({"severespeeding", "heavyspeeding"})
# States in which an event is not news: a safety manager dismissed it before we saw it.
SAFETY_IGNORED_STATES = frozenset({"dismissed"})
#: The media of an event, in the order the alert's `media_url` is chosen from.
SAFETY_MEDIA_INPUTS = ("dashcamRoadFacing", "dashcamDriverFacing")
# The legacy safety events' video fields, for accounts still answering with them.
SAFETY_LEGACY_MEDIA = ("downloadForwardVideoUrl", "downloadInwardVideoUrl")
SAFETY_CURSOR_KEY = "safety:cursor"
SAFETY_START_KEY = "safety:start"
SAFETY_READ_KEY = "safety:read"


@dataclass(frozen=True, slots=True)
class SamsaraSettings:
    """What the Samsara client needs from config (plain values, no pydantic)."""

    token: str
    base_url: str = BASE_URLS["us"]
    api_version: str | None = None
    request_timeout: float = 30.0
    feed_groups: tuple[tuple[str, ...], ...] = FEED_GROUPS
    #: Read the safety events stream (alerts) after the feed on every poll.
    safety_events: bool = True


@dataclass(slots=True)
class _Reading:
    """Per-vehicle raw values that need more than one stat to interpret."""

    obd_odometer: bool = False


@dataclass(slots=True)
class SamsaraProvider:
    """One Samsara organisation (one API token)."""

    name: ClassVar[str] = "samsara"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.POSITION,
            Capability.SPEED,
            Capability.ODOMETER,
            Capability.FUEL_LEVEL,
            Capability.ENGINE_STATE,
            Capability.IGNITION,
            Capability.BATTERY_VOLTAGE,
            Capability.ENGINE_HOURS,
            Capability.SNAPSHOT,
        }
    )
    default_budgets: ClassVar[tuple[Budget, ...]] = DEFAULT_BUDGETS
    poll_endpoint: ClassVar[str] = ENDPOINT_STATS_FEED
    alert_types: ClassVar[frozenset[AlertType]] = frozenset(
        {*SAFETY_LABELS.values(), AlertType.OTHER}
    )

    session: aiohttp.ClientSession
    settings: SamsaraSettings
    quota: Quota | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _priority: Priority = field(default=Priority.POLL, init=False)
    _http: HttpClient = field(init=False)
    _states: dict[str, VehicleState] = field(default_factory=dict, init=False)
    _readings: dict[str, _Reading] = field(default_factory=dict, init=False)
    _cursors: dict[str, str] = field(default_factory=dict, init=False)
    # The safety events stream: its cursor, the `startTime` pinned to it, and when
    # it was last read to its end (the look-back of a restart after a refusal).
    _safety_cursor: str | None = field(default=None, init=False)
    _safety_start: str | None = field(default=None, init=False)
    _safety_read: datetime | None = field(default=None, init=False)
    _safety_paused_until: datetime | None = field(default=None, init=False)
    _safety_failing: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for group in self.settings.feed_groups:
            if not 0 < len(group) <= MAX_TYPES_PER_CALL:
                raise ValueError(f"a Samsara feed group takes 1 to 3 types, got {group}")
        self._http = HttpClient(
            self.session,
            "Samsara",
            timeout=self.settings.request_timeout,
            retry=self.retry,
            quota=self.quota,
        )

    # --- persistence -------------------------------------------------------
    def checkpoint(self) -> dict[str, str]:
        checkpoint = dict(self._cursors)
        # Which vehicles have an ECU odometer must survive a restart too, or the
        # first GPS estimate after it would replace the real reading.
        checkpoint[OBD_ODOMETER_KEY] = ",".join(
            sorted(vid for vid, r in self._readings.items() if r.obd_odometer)
        )
        if self._safety_cursor and self._safety_start:
            checkpoint[SAFETY_CURSOR_KEY] = self._safety_cursor
            checkpoint[SAFETY_START_KEY] = self._safety_start
        if self._safety_read is not None:
            checkpoint[SAFETY_READ_KEY] = self._safety_read.isoformat()
        return checkpoint

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        wanted = {_group_key(g) for g in self.settings.feed_groups}
        self._cursors = {k: v for k, v in checkpoint.items() if k in wanted}
        self._states = {v.vehicle_id: v for v in vehicles}
        with_obd = filter(None, checkpoint.get(OBD_ODOMETER_KEY, "").split(","))
        self._readings = {vid: _Reading(obd_odometer=True) for vid in with_obd}
        cursor, start = checkpoint.get(SAFETY_CURSOR_KEY), checkpoint.get(SAFETY_START_KEY)
        self._safety_cursor, self._safety_start = (
            (cursor, start) if cursor and start else (None, None)
        )
        self._safety_read = _aware(checkpoint.get(SAFETY_READ_KEY))

    async def validate(self) -> str:
        """One page of one vehicle: the cheapest call that proves the token."""
        self._priority = Priority.COMMAND
        await self._get(PATH_VEHICLES, {"limit": "1"}, endpoint=ENDPOINT_VEHICLES)
        return fingerprint(self.name, self.settings.base_url, self.settings.token)

    async def close(self) -> None:
        """Nothing to release: the session is injected and owned by the caller."""

    # --- polling -----------------------------------------------------------
    async def poll(self, plan: PollPlan) -> Update:
        self._priority = plan.priority
        before = dict(self._states)
        removed: list[str] = []
        if plan.refresh_vehicles or not self._states:
            removed = await self._refresh_vehicle_list()
        more = False
        for group in self.settings.feed_groups:
            more |= await self._read_feed(group)
        changed = [state for vid, state in self._states.items() if before.get(vid) != state]
        alerts: list[Alert] = []
        if self.settings.safety_events:
            alerts = await self._read_safety_events(self._now(plan))
        # A backlog of safety events is read over the next polls, never by polling
        # the feed sooner than its documented pace.
        return Update(vehicles=changed, removed=removed, more=more, alerts=alerts)

    async def _refresh_vehicle_list(self) -> list[str]:
        listed: dict[str, dict[str, Any]] = {}
        after: str | None = None
        while True:
            params = {"limit": str(PAGE_LIMIT)}
            if after:
                params["after"] = after
            body = await self._get(PATH_VEHICLES, params, endpoint=ENDPOINT_VEHICLES)
            for item in _data_list(body):
                # A record that is not an object costs that vehicle, not the poll.
                vid = text(item.get("id")) if isinstance(item, dict) else None
                if vid:
                    listed[vid] = item
            after, has_next = _pagination(body)
            if not has_next or not after:
                break
        removed = [vid for vid in self._states if vid not in listed]
        for vid in removed:
            del self._states[vid]
            self._readings.pop(vid, None)
        for vid, item in listed.items():
            state = self._states.get(vid) or VehicleState(vehicle_id=vid, name=vid)
            self._states[vid] = state.merged(
                name=text(item.get("name")) or vid,
                vin=text(item.get("vin")),
                plate=text(item.get("licensePlate")),
                make=text(item.get("make")),
                model=text(item.get("model")),
                year=integer(item.get("year")),
            )
        return removed

    async def _read_feed(self, types: tuple[str, ...]) -> bool:
        """Read one feed group to its end (or the page cap). True if more is ready."""
        key = _group_key(types)
        for _ in range(MAX_PAGES_PER_POLL):
            params = {"types": ",".join(types)}
            cursor = self._cursors.get(key)
            if cursor:
                params["after"] = cursor
            body = await self._get(
                PATH_STATS_FEED, params, endpoint=ENDPOINT_STATS_FEED, cursor_given=bool(cursor)
            )
            if body is None:
                # The cursor was refused (expired after 30 days, or from another
                # token): start over from a fresh snapshot of last known values.
                _LOGGER.warning(
                    "Samsara refused the saved feed cursor for %s; starting from a fresh snapshot",
                    key,
                )
                self._cursors.pop(key, None)
                continue
            for item in _data_list(body):
                self._apply(item)
            end_cursor, has_next = _pagination(body)
            if end_cursor:
                self._cursors[key] = end_cursor
            if not has_next:
                return False
        return True

    async def _read_safety_events(self, now: datetime) -> list[Alert]:
        """New safety events as alerts: at most a few pages, and never an error
        that would cost the poll the vehicle states it already has."""
        if self._safety_paused_until is not None and now < self._safety_paused_until:
            return []
        alerts: list[Alert] = []
        for _ in range(SAFETY_PAGES_PER_POLL):
            cursor, start = self._safety_cursor, self._safety_start
            if not (cursor and start):
                cursor, start = None, format_time(self._safety_look_back(now))
            assert start is not None
            params = {"startTime": start, "includeAsset": "true", "includeDriver": "true"}
            if cursor:
                params["after"] = cursor
            try:
                response = await self._http.request(
                    "GET",
                    self._url(PATH_SAFETY_STREAM),
                    headers=self._headers(),
                    params=params,
                    passthrough_statuses=frozenset({400, 403, 404}),
                    endpoint=ENDPOINT_SAFETY_STREAM,
                    priority=self._priority,
                )
            except (ProviderError, QuotaExhaustedError) as err:
                # Once per outage at warning level: this repeats every poll.
                log = _LOGGER.debug if self._safety_failing else _LOGGER.warning
                log("Samsara safety events not read this time: %s", err)
                self._safety_failing = True
                return alerts
            self._safety_failing = False
            if response.status == 400 and cursor:
                # Expired (30 days), or startTime differs from the cursor's: start
                # again a little before the last complete read.
                _LOGGER.warning(
                    "Samsara refused the saved safety events cursor; reading again from %s",
                    format_time(self._safety_look_back(now)),
                )
                self._safety_cursor = self._safety_start = None
                continue
            if response.status in (403, 404) or response.status == 400:
                self._safety_paused_until = now + SAFETY_DENIED_PAUSE
                _LOGGER.warning(
                    "Samsara answered HTTP %s to the safety events stream (%s); alerts are "
                    "off for an hour. A 403 means the API token lacks the 'Read Safety "
                    "Events & Scores' scope.",
                    response.status,
                    response.text(),
                )
                return alerts
            try:
                body = response.json()
                events = _data_list(body)
            except ProviderDataError as err:
                _LOGGER.warning("Samsara safety events: unreadable answer: %s", err)
                return alerts
            alerts += [a for a in map(safety_alert, events) if a is not None]
            end_cursor, has_next = _pagination(body)
            if end_cursor:
                self._safety_cursor, self._safety_start = end_cursor, start
            if not has_next:
                self._safety_read = now
                return alerts
        return alerts

    def _safety_look_back(self, now: datetime) -> datetime:
        if self._safety_read is None:
            return now - SAFETY_FIRST_LOOKBACK
        return max(self._safety_read - SAFETY_OVERLAP, now - SAFETY_MAX_LOOKBACK)

    def _now(self, plan: PollPlan) -> datetime:
        if plan.now is not None:
            return plan.now
        return self.quota.now() if self.quota is not None else utc_now()

    async def _get(
        self, path: str, params: dict[str, str], *, endpoint: str, cursor_given: bool = False
    ) -> Any:
        response = await self._http.request(
            "GET",
            self._url(path),
            headers=self._headers(),
            params=params,
            passthrough_statuses=frozenset({400}) if cursor_given else frozenset(),
            endpoint=endpoint,
            priority=self._priority,
        )
        if response.status == 400:
            return None
        body = response.json()
        if not isinstance(body, dict):
            raise ProviderDataError(f"Samsara {path}: expected a JSON object")
        return body

    # --- camera stills (media retrieval) ----------------------------------------
    async def request_snapshot(
        self, vehicle_id: str, camera: Camera, priority: Priority
    ) -> CommandResult:
        now = datetime.now(UTC)
        body = {
            "vehicleId": vehicle_id,
            "startTime": format_time(now),
            "endTime": format_time(now),
            "inputs": [CAMERA_INPUTS[camera]],
            "mediaType": "image",
        }
        response = await self._http.request(
            "POST",
            self._url(PATH_MEDIA_RETRIEVAL),
            headers=self._headers(),
            json_body=body,
            endpoint=ENDPOINT_MEDIA_CREATE,
            priority=priority,
        )
        data = response.json()
        retrieval = data.get("data") if isinstance(data, dict) else None
        retrieval_id = text(retrieval.get("retrievalId")) if isinstance(retrieval, dict) else None
        if retrieval_id is None:
            raise ProviderDataError("Samsara media retrieval: no retrievalId in the answer")
        return CommandResult(CommandStatus.PENDING, handle=retrieval_id)

    async def snapshot_status(self, handle: str, priority: Priority) -> CommandResult:
        response = await self._http.request(
            "GET",
            self._url(PATH_MEDIA_RETRIEVAL),
            headers=self._headers(),
            params={"retrievalId": handle},
            endpoint=ENDPOINT_MEDIA_STATUS,
            priority=priority,
        )
        data = response.json()
        inner = data.get("data") if isinstance(data, dict) else None
        media = inner.get("media") if isinstance(inner, dict) else None
        if media is None and isinstance(data, dict):
            media = data.get("media")
        for item in media or []:
            if not isinstance(item, dict):
                continue
            status = str(item.get("status", "")).lower()
            url_info = item.get("urlInfo")
            url = text(url_info.get("url")) if isinstance(url_info, dict) else None
            if status in MEDIA_DONE and url:
                return CommandResult(CommandStatus.CONFIRMED, handle=handle, data={"url": url})
            if status in MEDIA_FAILED:
                return CommandResult(
                    CommandStatus.FAILED, handle=handle, error=f"Samsara media {status}"
                )
        return CommandResult(CommandStatus.PENDING, handle=handle)

    def _url(self, path: str) -> URL:
        return URL(self.settings.base_url.rstrip("/") + "/" + path)

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.settings.token}"}
        if self.settings.api_version:
            headers["X-Samsara-Version"] = self.settings.api_version
        return headers

    # --- mapping into the model -------------------------------------------
    def _apply(self, item: Any) -> None:
        """Fold one feed entry into the vehicle's state. Garbage in one entry is
        logged and skipped; it never spoils the others."""
        if not isinstance(item, dict):
            return
        vid = text(item.get("id"))
        if not vid:
            return
        try:
            self._states[vid] = self._fold(vid, item)
        except (ProviderError, TypeError, ValueError, KeyError) as err:
            _LOGGER.warning("Samsara: skipped unreadable stats for vehicle %s: %s", vid, err)

    def _fold(self, vid: str, item: dict[str, Any]) -> VehicleState:
        state = self._states.get(vid) or VehicleState(
            vehicle_id=vid, name=text(item.get("name")) or vid
        )
        reading = self._readings.setdefault(vid, _Reading())
        changes: dict[str, Any] = {}
        seen: list[datetime] = [state.last_seen] if state.last_seen else []

        gps = _latest(item.get("gps"))
        if gps is not None:
            lat, lon = number(gps.get("latitude")), number(gps.get("longitude"))
            when = parse_time(gps.get("time"))
            if lat is not None and lon is not None and valid_coordinates(lat, lon):
                geo = gps.get("reverseGeo")
                address = geo.get("formattedLocation") if isinstance(geo, dict) else None
                changes["position"] = Position(
                    latitude=lat,
                    longitude=lon,
                    time=when,
                    heading=number(gps.get("headingDegrees")),
                    address=address if isinstance(address, str) else None,
                )
                mph = number(gps.get("speedMilesPerHour"))
                if mph is not None:
                    changes["speed_kmh"] = round(mph * MPH_TO_KMH, 1)
                if when:
                    seen.append(when)

        engine = _latest(item.get("engineStates"))
        if engine is not None and engine.get("value") in ENGINE_STATES:
            engine_state = ENGINE_STATES[engine["value"]]
            changes["engine_state"] = engine_state
            changes["ignition"] = engine_state is not EngineState.OFF
            seen.extend(_time_of(engine))

        fuel = _latest_value(item.get("fuelPercents"))
        if fuel is not None and 0 <= fuel <= 100:
            changes["fuel_percent"] = fuel

        obd_odo = _latest_value(item.get("obdOdometerMeters"))
        if obd_odo is not None and obd_odo >= 0:
            reading.obd_odometer = True
            changes["odometer_km"] = round(obd_odo / 1000, 3)
        gps_odo = _latest_value(item.get("gpsOdometerMeters"))
        # The ECU's odometer wins; the GPS estimate is for vehicles without one.
        if gps_odo is not None and gps_odo >= 0 and not reading.obd_odometer:
            changes["odometer_km"] = round(gps_odo / 1000, 3)

        millivolts = _latest_value(item.get("batteryMilliVolts"))
        if millivolts is not None and millivolts >= 0:
            changes["battery_voltage"] = round(millivolts / 1000, 3)

        engine_seconds = _latest_value(item.get("obdEngineSeconds"))
        if engine_seconds is not None and engine_seconds >= 0:
            changes["engine_hours"] = round(engine_seconds / 3600, 2)

        for key in (
            "fuelPercents",
            "obdOdometerMeters",
            "gpsOdometerMeters",
            "batteryMilliVolts",
            "obdEngineSeconds",
        ):
            seen.extend(_time_of(_latest(item.get(key))))
        if seen:
            changes["last_seen"] = max(seen)
        return state.merged(**changes)


# --- safety events into alerts -------------------------------------------------------


def safety_alert(item: Any) -> Alert | None:
    """One safety event as an alert; None for what is not one (no id or vehicle,
    no time, or dismissed before we saw it)."""
    if not isinstance(item, dict):
        return None
    event_id = text(item.get("id"))
    asset = item.get("asset") or item.get("vehicle")
    vehicle_id = text(asset.get("id")) if isinstance(asset, dict) else None
    when = _event_time(item.get("startMs")) or _event_time(item.get("time"))
    state = text(item.get("eventState"))
    if event_id is None or vehicle_id is None or when is None:
        _LOGGER.debug("Samsara: skipped a safety event without id, vehicle or time")
        return None
    if state is not None and state.lower() in SAFETY_IGNORED_STATES:
        return None
    labels = _labels(item.get("behaviorLabels"))
    alert_type = _alert_type(labels)
    # The label the type came from is the provider's own name for the event.
    named = next((x for x in labels if SAFETY_LABELS.get(x.lower()) is alert_type), None)
    severity = SAFETY_SEVERITY.get(alert_type, Severity.WARNING)
    if any(label.lower() in SAFETY_CRITICAL_LABELS for label in labels):
        severity = Severity.CRITICAL
    driver = item.get("driver")
    details = {
        "provider_type": named or (labels[0] if labels else None),
        "labels": labels,
        "event_state": state,
        "max_g": number(item.get("maxAccelerationGForce")),
        "review_url": text(item.get("inboxEventUrl")),
    }
    return Alert(
        alert_id=event_id,
        vehicle_id=vehicle_id,
        type=alert_type,
        time=when,
        severity=severity,
        driver=(text(driver.get("name")) or text(driver.get("id")))
        if isinstance(driver, dict)
        else None,
        position=_event_location(item.get("location"), when),
        media_url=_media_url(item),
        details={key: value for key, value in details.items() if value not in (None, [])},
    )


def _labels(raw: Any) -> list[str]:
    labels: list[str] = []
    for entry in raw if isinstance(raw, list) else []:
        label = text(entry.get("label") or entry.get("name")) if isinstance(entry, dict) else None
        label = label or text(entry)
        if label:
            labels.append(label)
    return labels


def _alert_type(labels: list[str]) -> AlertType:
    found = {SAFETY_LABELS[label.lower()] for label in labels if label.lower() in SAFETY_LABELS}
    return next((t for t in SAFETY_PRIORITY if t in found), AlertType.OTHER)


def _event_time(value: Any) -> datetime | None:
    """RFC 3339 text (the v2 API, even in fields named `...Ms`) or epoch ms."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC) if value > 0 else None
        except (OverflowError, OSError, ValueError):
            return None
    return parse_time(value)


def _event_location(location: Any, when: datetime) -> Position | None:
    address = None
    if isinstance(location, dict):
        address = _address(location.get("address")) or text(location.get("formattedLocation"))
    return event_position(location, when, address)


def _address(address: Any) -> str | None:
    """`{streetNumber, street, city, state, ...}` as one line."""
    if isinstance(address, str):
        return address.strip() or None
    if not isinstance(address, dict):
        return None
    street = " ".join(
        part for part in (text(address.get("streetNumber")), text(address.get("street"))) if part
    )
    parts = [street, text(address.get("city")), text(address.get("state"))]
    return ", ".join(part for part in parts if part) or text(address.get("pointOfInterest"))


def _media_url(item: dict[str, Any]) -> str | None:
    media = item.get("media")
    urls: dict[str, str] = {}
    for entry in media if isinstance(media, list) else []:
        if isinstance(entry, dict):
            url, source = text(entry.get("url")), text(entry.get("input")) or ""
            if url:
                urls.setdefault(source, url)
    for source in SAFETY_MEDIA_INPUTS:
        if source in urls:
            return urls[source]
    if urls:
        return next(iter(urls.values()))
    return next((u for u in map(text, map(item.get, SAFETY_LEGACY_MEDIA)) if u), None)


def _aware(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _group_key(types: tuple[str, ...]) -> str:
    return "feed:" + ",".join(types)


def _data_list(body: Any) -> list[Any]:
    data = body.get("data") if isinstance(body, dict) else None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ProviderDataError("Samsara: `data` is not a list")
    return data


def _pagination(body: Any) -> tuple[str | None, bool]:
    page = body.get("pagination") if isinstance(body, dict) else None
    if not isinstance(page, dict):
        return None, False
    cursor = page.get("endCursor")
    return (cursor if isinstance(cursor, str) and cursor else None), page.get("hasNextPage") is True


def _latest(points: Any) -> dict[str, Any] | None:
    """The newest point of a feed array (they are chronological, but be sure)."""
    if isinstance(points, dict):  # the snapshot endpoint's singular form
        return points
    if not isinstance(points, list):
        return None
    best: dict[str, Any] | None = None
    best_time: datetime | None = None
    for point in points:
        if not isinstance(point, dict):
            continue
        when = parse_time(point.get("time"))
        if best is None or (when is not None and (best_time is None or when >= best_time)):
            best, best_time = point, when
    return best


def _latest_value(points: Any) -> float | None:
    point = _latest(points)
    return None if point is None else number(point.get("value"))


def _time_of(point: dict[str, Any] | None) -> list[datetime]:
    when = parse_time(point.get("time")) if point else None
    return [when] if when else []
