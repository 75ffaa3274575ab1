"""Metrotec: last positions, fuel tanks and route tasks around Tallinn; lights and
reporting intervals through vehicle events; tasks keyed by their unique order_ref.

Every request carries `Accept: application/json; version=X.Y.Z` and an identifying
`User-Agent` (the API refuses it otherwise). Auth is a username and password
exchanged for a JWT (cached in the checkpoint, renewed before it expires and once
on a 401) or an API key used as the Bearer token as it is. In position records
`Xpos` is the LONGITUDE and `Ypos` the LATITUDE; times are UTC text without a zone,
except fields named `...LocalTime`, which are in the account's time zone.

A poll is four calls whatever the fleet's size (last positions, fuel tanks, the
active tasks of every vehicle, the alarm log), six when the vehicle list and the
geozones are re-read. The documentation shows bodies but few paths: the paths are
in `PATHS` and can be corrected per account (`MetrotecSettings.paths`) without a
code change.

Alerts come from two sources:

- The alarm log (`GET /api/alarmlog?datetime[]=<from>&datetime[]=<to>`, the path
  NOTES.md gives; its answer is not documented, so entries are read leniently and
  their types mapped by name first, then by code: `ALARM_WORDS`, `ALARM_TYPES`).
  One call per poll for the whole fleet; the window starts at the last entry seen
  (kept in the checkpoint). An account that insists on `object_id` gets one
  vehicle per poll instead, in turn.
- Geozone entries and exits. metrotec.txt documents the zones' geometry (a centre
  and a radius) and a vehicle's link to a zone "for alarm notifications" with the
  events 1 = enter and 2 = exit, but no zone event of its own. By default
  (`geozones_from="positions"`) the client derives them: the zones and their
  linked vehicles (`zObjects`) come from the geozone list once per vehicle-list
  refresh, and each poll's positions are checked against them, with a margin
  against GPS jitter on the way out. The first position of a vehicle is its
  baseline (no alert), and what is inside what survives restarts in the
  checkpoint. An account whose alarm log carries the zone alarms can use those
  instead (`geozones_from="alarm_log"`); either way a zone crossing is one alert.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
from multidict import MultiDict
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
    Capability,
    CommandResult,
    CommandStatus,
    PollPlan,
    Position,
    Priority,
    Severity,
    Task,
    TaskChange,
    TaskStatus,
    Update,
    VehicleState,
    parse_time,
    utc_now,
)
from bridge.providers.http import USER_AGENT, HttpClient, Response, RetryPolicy
from bridge.providers.parse import (
    clip,
    fingerprint,
    integer,
    number,
    text,
    valid_coordinates,
)
from bridge.quota import Budget, BudgetKind, Quota, Scope

_LOGGER = logging.getLogger(__name__)

# --- Endpoints, limits and units, in one place (metrotec.txt, NOTES.md) ------------
BASE_URL = "https://api.metrotec.ee/api"
API_VERSION = "1.1.0"  # the newest version metrotec.txt shows
DEFAULT_TIMEZONE = "Europe/Tallinn"  # the account's zone, for `...LocalTime` fields
#: name -> (method, path under the API root). Only /routelog/ is documented; the
#: rest are the paths we know from the simulator: correct them in `paths:`.
PATHS: dict[str, tuple[str, str]] = {
    "token": ("POST", "/token/"),
    "objects": ("GET", "/objects/"),
    "settings": ("GET", "/objects/settings/"),
    "create_event": ("POST", "/objects/events/"),
    "last_positions": ("GET", "/lastpositions/"),
    "last_position": ("GET", "/lastpositions/{object_id}/"),
    "fuel": ("GET", "/fuel/"),
    "fuel_refill": ("GET", "/fuel/refill/"),
    "tasks": ("GET", "/routetasks/"),
    "create_task": ("POST", "/routetasks/"),
    "task": ("GET", "/routetasks/{id}/"),
    "update_task": ("PATCH", "/routetasks/{id}/"),
    "routelog": ("GET", "/routelog/"),
    # Documented (NOTES.md): GET /api/alarmlog?datetime[]=..&datetime[]=..&object_id=..
    "alarm_log": ("GET", "/alarmlog"),
    "geozones": ("GET", "/geozones/"),
}
# Metrotec publishes no rate limit. One call a second on average is what a
# Django REST API comfortably serves per user, and a poll costs 3-4 calls, so
# a 30 s poll uses about 8 of these 60 and leaves the rest to commands. Raise it
# in `quota.budgets.per_account` if Metrotec grants more; 429s are honoured anyway.
DEFAULT_BUDGETS = (
    Budget("per_account", BudgetKind.WINDOW, limit=60, period=60.0, scope=Scope.ACCOUNT),
)
# Renew a JWT this long before it expires (at most a tenth of its lifetime).
TOKEN_MARGIN = timedelta(minutes=5)
# Position records (the meanings of the counters are not documented: these are
# the simulator's and match the examples): Counter1 km, Counter2 engine hours,
# Input bit 0 the ignition, Power the vehicle's voltage, BatLevel the tracker's.
ODOMETER_FIELD = "Counter1"
ENGINE_HOURS_FIELD = "Counter2"
IGNITION_INPUT_BIT = 0
# Fuel-tank records: Counter1 is the litres in the tank, tank_vol its capacity.
FUEL_LITRES_FIELD = "Counter1"
TANK_VOLUME_FIELD = "tank_vol"
# Vehicle events.
EVENT_REPORTING_INTERVAL, EVENT_LIGHTS, EVENT_OTHER = 3, 4, 5
LIGHTS_ON, LIGHTS_OFF = "ON", "OFF"
# Route tasks: status codes and our names for them.
TASK_STATUS_CODES: dict[TaskStatus, int] = {
    TaskStatus.CREATED: 1,
    TaskStatus.IN_PROGRESS: 2,
    TaskStatus.COMPLETED: 3,
    TaskStatus.REJECTED: 4,
    TaskStatus.CANCELLED: 5,
}
TASK_STATUSES = {code: status for status, code in TASK_STATUS_CODES.items()}
OPEN_TASK_CODES = frozenset({1, 2})
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC, no zone
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

# --- Alerts: the alarm log and geozones (see the module docstring) -----------------
GEOZONES_FROM_POSITIONS = "positions"  # the default: derived from polled positions
GEOZONES_FROM_ALARM_LOG = "alarm_log"
# The alarm log's window: a first start looks an hour back; after that the window
# starts at the last entry seen less an overlap (entries are logged late now and
# then), but never earlier than an hour ago while polls succeed, nor more than a
# day back after an outage. It ends an hour ahead of our clock, in case ours is
# behind Metrotec's. Entries seen twice are published once (their ids are claimed).
ALARM_LOG_FIRST_LOOKBACK = timedelta(hours=1)
ALARM_LOG_OVERLAP = timedelta(minutes=10)
ALARM_LOG_WINDOW = timedelta(hours=1)
ALARM_LOG_MAX_LOOKBACK = timedelta(days=1)
ALARM_LOG_AHEAD = timedelta(hours=1)
# After the alarm log or the geozone list is refused (404, 403, 400), ask again
# after this long; positions, fuel and tasks are polled meanwhile.
OPTIONAL_CALL_PAUSE = timedelta(hours=1)
#: Alarm names (lower case) -> our type: every word of a row must appear. Checked
#: before the codes, which are a guess (the simulator's numbering).
ALARM_WORDS: tuple[tuple[tuple[str, ...], AlertType], ...] = (
    (("zone", "enter"), AlertType.GEOZONE_ENTER),
    (("zone", "entr"), AlertType.GEOZONE_ENTER),
    (("zone", "exit"), AlertType.GEOZONE_EXIT),
    (("zone", "leav"), AlertType.GEOZONE_EXIT),
    (("zone", "left"), AlertType.GEOZONE_EXIT),
    (("sos",), AlertType.PANIC),
    (("panic",), AlertType.PANIC),
    (("alarm button",), AlertType.PANIC),
    (("power",), AlertType.UNPLUGGED),
    (("unplug",), AlertType.UNPLUGGED),
    (("tow",), AlertType.TAMPER),
    (("tamper",), AlertType.TAMPER),
    (("battery",), AlertType.LOW_BATTERY),
    (("crash",), AlertType.CRASH),
    (("impact",), AlertType.CRASH),
    (("speed",), AlertType.SPEEDING),
    (("idl",), AlertType.IDLING),
)
#: Alarm type codes -> our type. GUESS: 1 and 2 as the zone link's event codes.
ALARM_TYPES: dict[int, AlertType] = {
    1: AlertType.GEOZONE_ENTER,
    2: AlertType.GEOZONE_EXIT,
    3: AlertType.PANIC,
    4: AlertType.UNPLUGGED,
    5: AlertType.TAMPER,
    6: AlertType.LOW_BATTERY,
    7: AlertType.SPEEDING,
    8: AlertType.IDLING,
    9: AlertType.CRASH,
}
ALARM_SEVERITY: dict[AlertType, Severity] = {
    AlertType.PANIC: Severity.CRITICAL,
    AlertType.UNPLUGGED: Severity.CRITICAL,
    AlertType.TAMPER: Severity.CRITICAL,
    AlertType.CRASH: Severity.CRITICAL,
    AlertType.GEOZONE_ENTER: Severity.INFO,
    AlertType.GEOZONE_EXIT: Severity.INFO,
    AlertType.IDLING: Severity.INFO,
}  # every other type: WARNING
GEOZONE_TYPES = frozenset({AlertType.GEOZONE_ENTER, AlertType.GEOZONE_EXIT})
# The zone link's events (metrotec.txt): 1 = enter, 2 = exit; a link without them: both.
ZONE_EVENT_ENTER, ZONE_EVENT_EXIT = 1, 2
# Out of a circle only this far past its edge: a parked vehicle's GPS jitter at the
# edge must not enter and leave it every poll.
ZONE_EXIT_MARGIN_M = 25.0
EARTH_RADIUS_M = 6_371_000.0
ALARM_SINCE_KEY = "alarm_log_since"
ALARM_PER_VEHICLE_KEY = "alarm_log_per_vehicle"
ZONES_KEY = "zones_inside"


@dataclass(frozen=True, slots=True)
class MetrotecSettings:
    """What the Metrotec client needs: a username and password, or an API key."""

    base_url: str = BASE_URL
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    api_version: str = API_VERSION
    user_agent: str = USER_AGENT
    request_timeout: float = 30.0
    timezone: str = DEFAULT_TIMEZONE
    #: Corrections to `PATHS` (name -> path under the API root).
    paths: Mapping[str, str] = field(default_factory=dict)
    #: Where geozone entries and exits come from: "positions" or "alarm_log".
    geozones_from: str = GEOZONES_FROM_POSITIONS


@dataclass(frozen=True, slots=True)
class Geozone:
    """A zone from the geozone list: a circle (documented) or a polygon."""

    zone_id: str
    name: str
    latitude: float = 0.0
    longitude: float = 0.0
    radius_m: float = 0.0
    polygon: tuple[tuple[float, float], ...] = ()

    def inside(self, latitude: float, longitude: float, was_inside: bool | None) -> bool:
        """Whether a position is in the zone; near a circle's edge, where it was."""
        if self.polygon:
            return _in_polygon(latitude, longitude, self.polygon)
        distance = _distance_m(self.latitude, self.longitude, latitude, longitude)
        if distance <= self.radius_m:
            return True
        if distance > self.radius_m + ZONE_EXIT_MARGIN_M:
            return False
        return bool(was_inside)


class MetrotecApiError(ProviderError):
    """Metrotec refused a request; `fields` holds its per-field messages (DRF style)."""

    def __init__(self, message: str, status: int, fields: Mapping[str, list[str]]) -> None:
        super().__init__(message)
        self.status = status
        self.fields = dict(fields)


@dataclass(slots=True)
class MetrotecProvider:
    """One Metrotec account."""

    name: ClassVar[str] = "metrotec"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.POSITION,
            Capability.SPEED,
            Capability.ODOMETER,
            Capability.FUEL_LEVEL,
            Capability.FUEL_VOLUME,
            Capability.IGNITION,
            Capability.BATTERY_VOLTAGE,
            Capability.ENGINE_HOURS,
            Capability.DEVICE_BATTERY,
            Capability.LIGHTS,
            Capability.TASKS,
        }
    )
    default_budgets: ClassVar[tuple[Budget, ...]] = DEFAULT_BUDGETS
    poll_endpoint: ClassVar[str] = "last_positions"
    alert_types: ClassVar[frozenset[AlertType]] = frozenset(
        {*ALARM_TYPES.values(), *(t for _, t in ALARM_WORDS), AlertType.OTHER}
    )

    session: aiohttp.ClientSession
    settings: MetrotecSettings
    quota: Quota | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _http: HttpClient = field(init=False)
    _paths: dict[str, tuple[str, str]] = field(init=False)
    _zone: ZoneInfo | None = field(default=None, init=False)
    _states: dict[str, VehicleState] = field(default_factory=dict, init=False)
    # Vehicles a command changed since the last poll (the next poll reports them).
    _touched: set[str] = field(default_factory=set, init=False)
    _token: str | None = field(default=None, init=False)
    # When to log in again: a little before the JWT expires.
    _token_renew_at: datetime | None = field(default=None, init=False)
    # The alarm log: where the next window starts ("" the fleet, else per vehicle).
    _alarm_since: dict[str, datetime] = field(default_factory=dict, init=False)
    _alarm_per_vehicle: bool = field(default=False, init=False)
    # Geozones: the zones, the zones each vehicle is linked to (with the events it
    # wants), and what each vehicle was last found inside (zone id -> inside).
    _zones: dict[str, Geozone] = field(default_factory=dict, init=False)
    _links: dict[str, dict[str, frozenset[int]]] = field(default_factory=dict, init=False)
    _inside: dict[str, dict[str, bool]] = field(default_factory=dict, init=False)
    # Optional calls refused by the account, and until when they are left alone.
    _paused: dict[str, datetime] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        if not settings.api_key and not (settings.username and settings.password):
            raise ValueError("Metrotec needs an api_key, or a username and a password")
        unknown = set(settings.paths) - set(PATHS)
        if unknown:
            raise ValueError(f"unknown Metrotec paths: {', '.join(sorted(unknown))}")
        if settings.geozones_from not in (GEOZONES_FROM_POSITIONS, GEOZONES_FROM_ALARM_LOG):
            raise ValueError(
                f"geozones_from must be {GEOZONES_FROM_POSITIONS!r} or "
                f"{GEOZONES_FROM_ALARM_LOG!r}, not {settings.geozones_from!r}"
            )
        self._paths = {
            name: (method, settings.paths.get(name, path)) for name, (method, path) in PATHS.items()
        }
        try:
            self._zone = ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            # Without the zone, local times are ignored rather than misread as UTC.
            _LOGGER.warning("Metrotec: unknown time zone %r", settings.timezone)
        self._http = HttpClient(
            self.session,
            "Metrotec",
            timeout=settings.request_timeout,
            retry=self.retry,
            quota=self.quota,
        )

    # --- persistence -------------------------------------------------------
    def checkpoint(self) -> dict[str, str]:
        checkpoint: dict[str, str] = {}
        if self._alarm_since:
            checkpoint[ALARM_SINCE_KEY] = json.dumps(
                {key: value.isoformat() for key, value in sorted(self._alarm_since.items())}
            )
        if self._alarm_per_vehicle:
            checkpoint[ALARM_PER_VEHICLE_KEY] = "1"
        if self._inside:
            checkpoint[ZONES_KEY] = json.dumps(
                {vid: dict(sorted(zones.items())) for vid, zones in sorted(self._inside.items())}
            )
        # No JWT: a bearer token kept at rest is a credential anyone who can
        # read the store could use; a restart logs in again (one call).
        return checkpoint

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        self._states = {v.vehicle_id: v for v in vehicles}
        self._alarm_since = _read_since(checkpoint.get(ALARM_SINCE_KEY))
        self._alarm_per_vehicle = checkpoint.get(ALARM_PER_VEHICLE_KEY) == "1"
        self._inside = _read_inside(checkpoint.get(ZONES_KEY))
        self._token, self._token_renew_at = None, None

    async def validate(self) -> str:
        """The vehicle list (after a login, for username and password)."""
        await self._call("objects", Priority.COMMAND)
        principal = self.settings.username or self.settings.api_key or ""
        return fingerprint(self.name, self.settings.base_url, principal)

    async def close(self) -> None:
        """Nothing to release: the session is injected."""

    # --- polling -----------------------------------------------------------
    async def poll(self, plan: PollPlan) -> Update:
        priority = plan.priority
        before = dict(self._states)
        touched, self._touched = self._touched, set()
        removed: list[str] = []
        now = plan.now or self._now()
        try:
            if plan.refresh_vehicles or not self._states:
                removed = await self._refresh_vehicle_list(priority)
                if self.settings.geozones_from == GEOZONES_FROM_POSITIONS:
                    await self._refresh_geozones(priority, now)
            for record in _records(await self._call("last_positions", priority)):
                self._apply_position(record)
            for record in _records(await self._call("fuel", priority)):
                self._apply_fuel(record)
            await self._refresh_tasks(priority)
            alerts = await self._read_alarm_log(priority, now)
        except BaseException:
            self._touched |= touched
            raise
        alerts += self._zone_crossings(now)
        changed = [
            state
            for vid, state in self._states.items()
            if before.get(vid) != state or vid in touched
        ]
        return Update(vehicles=changed, removed=removed, alerts=alerts)

    async def _refresh_vehicle_list(self, priority: Priority) -> list[str]:
        listed: dict[str, dict[str, Any]] = {}
        for item in _records(await self._call("objects", priority)):
            vid = text(item.get("id"))
            if vid:
                listed[vid] = item
        removed = [vid for vid in self._states if vid not in listed]
        for vid in removed:
            del self._states[vid]
        for vid, item in listed.items():
            state = self._states.get(vid) or VehicleState(vehicle_id=vid, name=vid)
            # The object id is the vehicle's registration number.
            self._states[vid] = state.merged(name=text(item.get("alias")) or vid, plate=vid)
        return removed

    async def _refresh_tasks(self, priority: Priority) -> None:
        """Every vehicle's active tasks in one call (limit=-1: all, all=0: active)."""
        body = await self._call("tasks", priority, params={"limit": "-1", "all": "0"})
        counts: dict[str, int] = {}
        under_way: dict[str, tuple[datetime, str]] = {}
        for task in _records(body):
            vid = text(task.get("object_id"))
            code = integer(task.get("status"))
            if vid is None or code not in OPEN_TASK_CODES or task.get("active") is False:
                continue
            counts[vid] = counts.get(vid, 0) + 1
            label = text(task.get("order_ref")) or text(task.get("task_description"))
            if code == TASK_STATUS_CODES[TaskStatus.IN_PROGRESS] and label:
                # Of several tasks under way, the one that was due first.
                start = parse_time(task.get("start_time")) or datetime.max.replace(tzinfo=UTC)
                if vid not in under_way or start < under_way[vid][0]:
                    under_way[vid] = (start, label)
        for vid, state in self._states.items():
            current = under_way.get(vid)
            self._states[vid] = state.merged(
                active_tasks=counts.get(vid, 0), current_task=current[1] if current else None
            )

    # --- alerts: the alarm log ----------------------------------------------------
    async def _read_alarm_log(self, priority: Priority, now: datetime) -> list[Alert]:
        """New alarm log entries as alerts; best effort, never failing the poll."""
        if self._is_paused("alarm_log", now):
            return []
        key = self._next_alarm_key(now)
        # A vehicle read for the first time (per vehicle) starts where the fleet was.
        default = self._alarm_since.get("", now - ALARM_LOG_FIRST_LOOKBACK)
        start = max(self._alarm_since.get(key, default), now - ALARM_LOG_MAX_LOOKBACK)
        params: MultiDict[str] = MultiDict(
            [("datetime[]", _utc_text(start)), ("datetime[]", _utc_text(now + ALARM_LOG_AHEAD))]
        )
        if key:
            params["object_id"] = key
        try:
            body = await self._call("alarm_log", priority, params=params)
            entries = _records(body)
        except (MetrotecApiError, ProviderAuthError) as err:
            # A refusal (a 403 too: this key may not read alarms) rests an hour.
            if (
                isinstance(err, MetrotecApiError)
                and err.status == 400
                and "object_id" in err.fields
                and not self._alarm_per_vehicle
            ):
                # This account wants one vehicle per request: one per poll, in turn.
                _LOGGER.warning(
                    "Metrotec: the alarm log wants an object_id; reading it per vehicle"
                )
                self._alarm_per_vehicle = True
                return []
            self._pause("alarm_log", now, err)
            return []
        except (ProviderError, QuotaExhaustedError) as err:
            _LOGGER.warning("Metrotec: alarm log not read this time: %s", err)
            return []
        alerts: list[Alert] = []
        newest: datetime | None = None
        for entry in entries:
            alert = self._alarm_alert(entry)
            if alert is None:
                continue
            newest = alert.time if newest is None else max(newest, alert.time)
            if (
                alert.type in GEOZONE_TYPES
                and self.settings.geozones_from != GEOZONES_FROM_ALARM_LOG
            ):
                continue  # derived from positions instead: one alert per crossing
            alerts.append(alert)
        since = now - ALARM_LOG_WINDOW
        if newest is not None:
            since = max(since, min(newest, now) - ALARM_LOG_OVERLAP)
        self._alarm_since[key] = max(since, self._alarm_since.get(key, since))
        return alerts

    def _next_alarm_key(self, now: datetime) -> str:
        if not self._alarm_per_vehicle:
            return ""
        vehicles = sorted(self._states)
        if not vehicles:
            return ""
        never = now - ALARM_LOG_MAX_LOOKBACK
        # The vehicle whose window is furthest behind goes next.
        return min(vehicles, key=lambda vid: (self._alarm_since.get(vid, never), vid))

    def _alarm_alert(self, entry: dict[str, Any]) -> Alert | None:
        vid = text(_first(entry, "object_id", "objectID", "objectId"))
        when = parse_time(_first(entry, "time", "datetime", "GMTime", "alarm_time", "date"))
        if vid is None or when is None or vid not in self._states:
            return None
        code = integer(_first(entry, "alarm_type", "alarmType", "type", "type_id"))
        name = text(_first(entry, "alarm_name", "alarmName", "type_name", "name"))
        alert_type = _alarm_type(name, code)
        entry_id = text(_first(entry, "id", "ID", "alarm_id"))
        alert_id = (
            f"alarm:{entry_id}"
            if entry_id
            else f"alarm:{vid}:{name or code}:{int(when.timestamp())}"
        )
        lat = number(_first(entry, "lat", "Ypos", "latitude"))
        lon = number(_first(entry, "lon", "Xpos", "longitude"))
        position = None
        if lat is not None and lon is not None and valid_coordinates(lat, lon) and (lat or lon):
            address = text(_first(entry, "address", "location", "RevGeo"))
            position = Position(latitude=lat, longitude=lon, time=when, address=address)
        details = {
            "provider_type": name or (str(code) if code is not None else None),
            "alarm_type": code,
            "zone_id": text(_first(entry, "geozone_id", "zone_id", "zoneId", "geozoneID")),
            "zone": text(_first(entry, "geozone_name", "zone_name", "zoneName")),
            "description": text(entry.get("description")),
            "speed_kmh": number(_first(entry, "speed", "Speed")),
        }
        return Alert(
            alert_id=alert_id,
            vehicle_id=vid,
            type=alert_type,
            time=when,
            severity=ALARM_SEVERITY.get(alert_type, Severity.WARNING),
            driver=text(_first(entry, "driver_name", "driverName")),
            position=position,
            details={key: value for key, value in details.items() if value is not None},
        )

    # --- alerts: geozones from positions ------------------------------------------
    async def _refresh_geozones(self, priority: Priority, now: datetime) -> None:
        """The zones and the vehicles linked to them (one call, with the vehicle list)."""
        if self._is_paused("geozones", now):
            return
        try:
            body = await self._call("geozones", priority)
            records = _records(body)
        except (MetrotecApiError, ProviderAuthError) as err:
            self._pause("geozones", now, err)
            return
        except (ProviderError, QuotaExhaustedError) as err:
            _LOGGER.warning("Metrotec: geozones not read this time: %s", err)
            return
        zones: dict[str, Geozone] = {}
        links: dict[str, dict[str, frozenset[int]]] = {}
        for record in records:
            zone = _geozone(record)
            if zone is None or record.get("deleted_at"):
                continue
            zones[zone.zone_id] = zone
            linked = record.get("zObjects")
            for item in linked if isinstance(linked, list) else []:
                vid, events = _zone_link(item)
                if vid:
                    links.setdefault(vid, {})[zone.zone_id] = events
        self._zones, self._links = zones, links

    def _zone_crossings(self, now: datetime) -> list[Alert]:
        """Compare each linked vehicle's position with its zones; alerts for the
        crossings since the last poll. A zone new to a vehicle is its baseline."""
        if self.settings.geozones_from != GEOZONES_FROM_POSITIONS or not self._zones:
            return []
        alerts: list[Alert] = []
        inside: dict[str, dict[str, bool]] = {}
        for vid, links in sorted(self._links.items()):
            state = self._states.get(vid)
            position = state.position if state is not None else None
            before = self._inside.get(vid, {})
            if position is None:
                inside[vid] = {z: v for z, v in before.items() if z in links}
                continue
            now_inside: dict[str, bool] = {}
            for zone_id, events in sorted(links.items()):
                zone = self._zones.get(zone_id)
                if zone is None:
                    continue
                was = before.get(zone_id)
                found = zone.inside(position.latitude, position.longitude, was)
                now_inside[zone_id] = found
                if was is None or was == found:
                    continue
                code = ZONE_EVENT_ENTER if found else ZONE_EVENT_EXIT
                if code in events:
                    alerts.append(self._zone_alert(vid, zone, found, position, now))
            inside[vid] = now_inside
        self._inside = inside
        return alerts

    def _zone_alert(
        self, vid: str, zone: Geozone, entered: bool, position: Position, now: datetime
    ) -> Alert:
        when = position.time or now
        word = "enter" if entered else "exit"
        return Alert(
            alert_id=f"zone:{vid}:{zone.zone_id}:{word}:{int(when.timestamp())}",
            vehicle_id=vid,
            type=AlertType.GEOZONE_ENTER if entered else AlertType.GEOZONE_EXIT,
            time=when,
            severity=Severity.INFO,
            position=position,
            details={
                "provider_type": f"geozone {word}",
                "zone_id": zone.zone_id,
                "zone": zone.name,
            },
        )

    def _is_paused(self, name: str, now: datetime) -> bool:
        until = self._paused.get(name)
        return until is not None and now < until

    def _pause(self, name: str, now: datetime, err: ProviderError) -> None:
        self._paused[name] = now + OPTIONAL_CALL_PAUSE
        _LOGGER.warning(
            "Metrotec refused %s (%s); trying again in an hour. Correct its path in "
            "`paths` if this account's API differs.",
            name,
            err,
        )

    # --- lights and reporting interval (vehicle events) -------------------------
    async def set_lights(self, vehicle_id: str, on: bool, priority: Priority) -> CommandResult:
        event = await self._create_event(
            vehicle_id, EVENT_LIGHTS, LIGHTS_ON if on else LIGHTS_OFF, priority
        )
        return self._lights_result(vehicle_id, event)

    async def lights_status(
        self, vehicle_id: str, handle: str, priority: Priority
    ) -> CommandResult:
        event = await self._find_event(vehicle_id, handle, priority)
        if event is None:
            return _event_vanished(vehicle_id, handle)
        return self._lights_result(vehicle_id, event)

    async def reporting_intervals(self, vehicle_id: str, priority: Priority) -> list[str]:
        """The reporting intervals the vehicle's tracker offers (`repInts`)."""
        settings = await self._vehicle_settings(vehicle_id, priority)
        if settings.get("hasRepInt") is False:
            return []
        values = settings.get("repInts")
        return [v for v in map(text, values) if v] if isinstance(values, list) else []

    async def set_reporting_interval(
        self, vehicle_id: str, interval: str, priority: Priority
    ) -> CommandResult:
        """Ask the tracker to report every `interval` (one of its `repInts`, e.g.
        "5MIN"); PENDING with the event id until the device has done it."""
        offered = await self.reporting_intervals(vehicle_id, priority)
        chosen = next((v for v in offered if v.upper() == interval.strip().upper()), None)
        if chosen is None:
            choices = ", ".join(offered) if offered else "none"
            raise ProviderError(
                f"Metrotec vehicle {vehicle_id} has no reporting interval {interval!r} "
                f"(it offers: {choices})"
            )
        event = await self._create_event(vehicle_id, EVENT_REPORTING_INTERVAL, chosen, priority)
        return _event_result(event, {"interval": chosen})

    async def reporting_interval_status(
        self, vehicle_id: str, handle: str, priority: Priority
    ) -> CommandResult:
        event = await self._find_event(vehicle_id, handle, priority)
        if event is None:
            return _event_vanished(vehicle_id, handle)
        return _event_result(event, {"interval": text(event.get("description"))})

    async def _create_event(
        self, vehicle_id: str, event_type: int, description: str, priority: Priority
    ) -> dict[str, Any]:
        body = {"object_id": vehicle_id, "eventType": event_type, "description": description}
        event = await self._call("create_event", priority, json_body=body)
        if not isinstance(event, dict) or text(event.get("id") or event.get("ID")) is None:
            raise ProviderDataError("Metrotec: the new vehicle event has no id")
        return event

    async def _find_event(
        self, vehicle_id: str, handle: str, priority: Priority
    ) -> dict[str, Any] | None:
        settings = await self._vehicle_settings(vehicle_id, priority)
        events = settings.get("events")
        for event in events if isinstance(events, list) else []:
            if isinstance(event, dict) and text(event.get("ID") or event.get("id")) == handle:
                return event
        return None

    async def _vehicle_settings(self, vehicle_id: str, priority: Priority) -> dict[str, Any]:
        body = await self._call("settings", priority, params={"object_id": vehicle_id})
        if not isinstance(body, dict):
            raise ProviderDataError("Metrotec: vehicle settings are not a JSON object")
        return body

    def _lights_result(self, vehicle_id: str, event: dict[str, Any]) -> CommandResult:
        result = _event_result(event, {})
        if result.status is CommandStatus.CONFIRMED:
            on = text(event.get("description")) == LIGHTS_ON
            result = CommandResult(result.status, handle=result.handle, data={"lights_on": on})
            state = self._states.get(vehicle_id)
            if state is not None and state.lights_on != on:
                self._states[vehicle_id] = state.merged(lights_on=on)
                self._touched.add(vehicle_id)
        return result

    # --- tasks -----------------------------------------------------------------
    async def create_task(self, task: Task, priority: Priority) -> CommandResult:
        body: dict[str, Any] = {
            "object_id": task.vehicle_id,
            "lat": task.latitude,
            "lon": task.longitude,
            "start_time": _utc_text(task.start_time),
            "stop_time": _utc_text(task.stop_time),
            "order_ref": task.order_ref,
            "active": True,
        }
        if task.description:
            body["task_description"] = task.description
        if task.address:
            body["task_address"] = task.address
        # No contact fields on tasks: `order_details` is documented for "client
        # name, etc.", so the contact goes there.
        contact = ", ".join(v for v in (task.contact_name, task.contact_phone) if v)
        if contact:
            body["order_details"] = contact
        try:
            created = await self._call("create_task", priority, json_body=body)
        except MetrotecApiError as err:
            if err.status != 400 or "order_ref" not in err.fields:
                raise
            # order_ref is unique: a retry of a task that was created already.
            existing = await self._task_by_order_ref(task.order_ref, priority)
            if existing is None:
                raise
            return _existing_task(existing, task)
        return _task_result(created, task.order_ref, existing=False)

    async def update_task(self, change: TaskChange, priority: Priority) -> CommandResult:
        found = await self._task_by_order_ref(change.order_ref, priority)
        if found is None:
            return CommandResult(
                CommandStatus.FAILED,
                error=f"Metrotec has no task with order_ref {change.order_ref!r}",
            )
        body: dict[str, Any] = {"edit": True}
        if change.status is not None:
            body["status"] = TASK_STATUS_CODES[change.status]
        if change.start_time is not None:
            body["start_time"] = _utc_text(change.start_time)
        if change.stop_time is not None:
            body["stop_time"] = _utc_text(change.stop_time)
        if change.description is not None:
            body["task_description"] = change.description
        if change.vehicle_id is not None:
            body["object_id"] = change.vehicle_id
        updated = await self._call("update_task", priority, json_body=body, id=found["id"])
        return _task_result(updated, change.order_ref, existing=None)

    async def _task_by_order_ref(self, order_ref: str, priority: Priority) -> dict[str, Any] | None:
        body = await self._call(
            "tasks", priority, params={"order_ref": order_ref, "all": "1", "limit": "-1"}
        )
        # Filtered here too, in case an account's API ignores the filter.
        for task in _records(body):
            if text(task.get("order_ref")) == order_ref and text(task.get("id")):
                return task
        return None

    # --- HTTP ----------------------------------------------------------------
    async def _call(
        self,
        name: str,
        priority: Priority,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        **path_args: Any,
    ) -> Any:
        method, path = self._paths[name]
        path = path.format(**{k: quote(str(v), safe="") for k, v in path_args.items()})
        url = URL(self.settings.base_url.rstrip("/") + "/" + path.lstrip("/"))
        for attempt in (1, 2):
            token = await self._bearer(priority)
            response = await self._http.request(
                method,
                url,
                headers={**self._headers(), "Authorization": f"Bearer {token}"},
                params=params,
                json_body=json_body,
                endpoint=name,
                priority=priority,
                passthrough_statuses=frozenset({400, 401, 403, 404, 405, 406, 409, 422}),
            )
            if response.status == 401:
                if self.settings.api_key:
                    raise ProviderAuthError(
                        f"Metrotec refused the API key (HTTP 401): {_describe(response)}"
                    )
                # An expired or revoked JWT: log in again, once.
                self._token = None
                if attempt == 2:
                    raise ProviderAuthError(
                        f"Metrotec refused a fresh token (HTTP 401): {_describe(response)}"
                    )
                continue
            if response.status >= 400:
                raise self._error(name, response)
            return response.json()
        raise AssertionError("unreachable")

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": f"application/json; version={self.settings.api_version}",
            "User-Agent": self.settings.user_agent,
        }

    def _error(self, name: str, response: Response) -> ProviderError:
        status = response.status
        fields = _field_errors(response)
        reason = _describe(response)
        if status == 403:
            return ProviderAuthError(f"Metrotec denied access to {name} (HTTP 403): {reason}")
        if status == 406:
            message = (
                f"Metrotec refused the Accept header (HTTP 406): {reason} "
                f"(sent version {self.settings.api_version}; set api_version to one it takes)"
            )
        elif status == 404:
            message = f"Metrotec: {name} not found (HTTP 404): {reason}"
        elif status == 405:
            message = f"Metrotec: wrong path or method for {name} (HTTP 405): {reason}"
        else:
            message = f"Metrotec refused {name} (HTTP {status}): {reason}"
        return MetrotecApiError(message, status, fields)

    async def _bearer(self, priority: Priority) -> str:
        if self.settings.api_key:
            return self.settings.api_key
        now = self._now()
        if self._token and self._token_renew_at is not None and now < self._token_renew_at:
            return self._token
        method, path = self._paths["token"]
        response = await self._http.request(
            method,
            URL(self.settings.base_url.rstrip("/") + "/" + path.lstrip("/")),
            headers=self._headers(),
            json_body={"username": self.settings.username, "password": self.settings.password},
            endpoint="token",
            priority=priority,
            passthrough_statuses=frozenset({400, 401, 403, 406}),
        )
        if response.status == 406:
            raise self._error("token", response)
        if response.status >= 400:
            raise ProviderAuthError(
                f"Metrotec refused the username or password (HTTP {response.status}): "
                f"{_describe(response)}"
            )
        body = response.json()
        token = body.get("jwt") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderDataError("Metrotec: the login answer has no jwt")
        lifetime = _token_lifetime(token, body.get("expires"), now)
        margin = min(TOKEN_MARGIN, lifetime / 10)
        self._token = token
        self._token_renew_at = now + lifetime - margin
        return token

    def _now(self) -> datetime:
        return self.quota.now() if self.quota is not None else utc_now()

    # --- mapping into the model -------------------------------------------
    def _state_for(self, record: dict[str, Any]) -> VehicleState | None:
        """The state of a listed vehicle; records of others wait for the next
        vehicle-list refresh (so a vehicle removed from the list stays removed)."""
        vid = text(record.get("objectID"))
        return self._states.get(vid) if vid is not None else None

    def _apply_position(self, record: dict[str, Any]) -> None:
        state = self._state_for(record)
        if state is None:
            return
        changes: dict[str, Any] = {}
        when = parse_time(record.get("GMTime"))
        # Xpos is the longitude, Ypos the latitude.
        lon, lat = number(record.get("Xpos")), number(record.get("Ypos"))
        if lat is not None and lon is not None and valid_coordinates(lat, lon) and (lat or lon):
            changes["position"] = Position(
                latitude=lat, longitude=lon, time=when, heading=_heading(record.get("Heading"))
            )
            changes["speed_kmh"] = number(record.get("Speed"))
        odometer = number(record.get(ODOMETER_FIELD))
        if odometer is not None and odometer > 0:
            changes["odometer_km"] = odometer
        hours = number(record.get(ENGINE_HOURS_FIELD))
        if hours is not None and hours > 0:  # 0: no engine-hour counter
            changes["engine_hours"] = hours
        inputs = integer(record.get("Input"))
        if inputs is not None:
            changes["ignition"] = bool(inputs >> IGNITION_INPUT_BIT & 1)
        power = number(record.get("Power"))
        if power is not None and power > 0:
            changes["battery_voltage"] = power
        device = number(record.get("BatLevel"))
        if device is not None and device > 0:
            changes["device_battery_voltage"] = device
        seen = [t for t in (state.last_seen, when, self._local(record)) if t is not None]
        if seen:
            changes["last_seen"] = max(seen)
        self._states[state.vehicle_id] = state.merged(**changes)

    def _apply_fuel(self, record: dict[str, Any]) -> None:
        state = self._state_for(record)
        if state is None:
            return
        litres = number(record.get(FUEL_LITRES_FIELD))
        if litres is None or litres < 0:
            return
        capacity = number(record.get(TANK_VOLUME_FIELD))
        percent = None
        if capacity is not None and capacity > 0:
            percent = round(min(100.0, litres / capacity * 100), 1)
        self._states[state.vehicle_id] = state.merged(fuel_volume_l=litres, fuel_percent=percent)

    def _local(self, record: dict[str, Any]) -> datetime | None:
        """When the tracker last reported, from the account-local time field."""
        raw = record.get("LastCommunicationLocalTime")
        if self._zone is None or not isinstance(raw, str):
            return None
        try:
            value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=self._zone)
        return value.astimezone(UTC)


# --- helpers -------------------------------------------------------------------------


def _first(record: Mapping[str, Any], *names: str) -> Any:
    """The first of several possible names a field goes by (undocumented shapes)."""
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


def _alarm_type(name: str | None, code: int | None) -> AlertType:
    if name:
        lowered = name.lower()
        for words, alert_type in ALARM_WORDS:
            if all(word in lowered for word in words):
                return alert_type
    if code is not None:
        return ALARM_TYPES.get(code, AlertType.OTHER)
    return AlertType.OTHER


def _geozone(record: dict[str, Any]) -> Geozone | None:
    zone_id = text(_first(record, "id", "ID"))
    geometry = record.get("geometry")
    if isinstance(geometry, str):  # the create request sends it as JSON text
        try:
            geometry = json.loads(geometry)
        except json.JSONDecodeError:
            geometry = None
    if zone_id is None or not isinstance(geometry, dict):
        return None
    name = text(record.get("name")) or zone_id
    kind = str(geometry.get("type", "circle")).lower()
    if kind == "circle":
        centre = _lat_lng(geometry.get("latlng"))
        radius = number(geometry.get("radius"))
        if centre is None or radius is None or radius <= 0:
            return None
        return Geozone(zone_id, name, centre[0], centre[1], radius)
    points = geometry.get("latlngs") or geometry.get("coordinates")
    while isinstance(points, list) and len(points) == 1 and isinstance(points[0], list):
        points = points[0]  # [[ring]] -> ring
    ring = [p for p in map(_lat_lng, points if isinstance(points, list) else []) if p]
    if len(ring) < 3:
        _LOGGER.debug("Metrotec: zone %s has a geometry we cannot read (%s)", zone_id, kind)
        return None
    return Geozone(zone_id, name, polygon=tuple(ring))


def _lat_lng(value: Any) -> tuple[float, float] | None:
    """`{lat, lng}` (Metrotec's circles) or `[lat, lng]`."""
    if isinstance(value, dict):
        lat, lon = number(value.get("lat")), number(value.get("lng", value.get("lon")))
    elif isinstance(value, list | tuple) and len(value) >= 2:
        lat, lon = number(value[0]), number(value[1])
    else:
        return None
    if lat is None or lon is None or not valid_coordinates(lat, lon):
        return None
    return lat, lon


def _zone_link(item: Any) -> tuple[str | None, frozenset[int]]:
    """A zObjects entry: an object id (documented), or an object with its events."""
    both = frozenset({ZONE_EVENT_ENTER, ZONE_EVENT_EXIT})
    if not isinstance(item, dict):
        return text(item), both
    vid = text(_first(item, "object_id", "objectID", "id"))
    raw = item.get("events")
    events = (
        frozenset(e for e in map(integer, raw) if e is not None) if isinstance(raw, list) else both
    )
    return vid, events or both


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    half = (
        math.sin((phi2 - phi1) / 2) ** 2
        + math.cos(phi1) * math.cos(phi2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, half)))


def _in_polygon(lat: float, lon: float, ring: tuple[tuple[float, float], ...]) -> bool:
    inside = False
    j = len(ring) - 1
    for i, (lat_i, lon_i) in enumerate(ring):
        lat_j, lon_j = ring[j]
        if (lat_i > lat) != (lat_j > lat) and lon < (lon_j - lon_i) * (lat - lat_i) / (
            lat_j - lat_i
        ) + lon_i:
            inside = not inside
        j = i
    return inside


def _read_since(raw: str | None) -> dict[str, datetime]:
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    result: dict[str, datetime] = {}
    for key, value in data.items() if isinstance(data, dict) else []:
        when = parse_time(value)
        if isinstance(key, str) and when is not None:
            result[key] = when
    return result


def _read_inside(raw: str | None) -> dict[str, dict[str, bool]]:
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(vid): {str(z): bool(v) for z, v in zones.items()}
        for vid, zones in data.items()
        if isinstance(zones, dict)
    }


def _records(body: Any) -> list[dict[str, Any]]:
    if body is None:
        return []
    if isinstance(body, dict) and isinstance(body.get("results"), list):
        body = body["results"]  # DRF's paginated form
    if not isinstance(body, list):
        raise ProviderDataError("Metrotec: expected a JSON list")
    return [item for item in body if isinstance(item, dict)]


def _heading(value: Any) -> float | None:
    """`"357°"` -> 357.0."""
    if isinstance(value, str):
        match = _NUMBER.search(value)
        return float(match.group()) % 360 if match else None
    heading = number(value)
    return None if heading is None else heading % 360


def _utc_text(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def _token_lifetime(token: str, expires: Any, now: datetime) -> timedelta:
    """How long a JWT lives, measured on the issuer's own clock when the token
    says when it was issued (so a skewed clock cannot make it look expired)."""
    claims = _jwt_claims(token)
    issued, expiry = number(claims.get("iat")), number(expires) or number(claims.get("exp"))
    if expiry is not None and expiry < 1e9:  # a lifetime in seconds, not a time
        seconds = expiry
    elif expiry is not None and issued is not None:
        seconds = expiry - issued
    elif expiry is not None:
        seconds = expiry - now.timestamp()
    else:
        seconds = 3600.0
    return timedelta(seconds=max(seconds, 60.0))


def _jwt_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _field_errors(response: Response) -> dict[str, list[str]]:
    try:
        body = json.loads(response.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(body, dict):
        return {}
    return {
        str(key): [str(m) for m in value] if isinstance(value, list) else [str(value)]
        for key, value in body.items()
        if key != "detail"
    }


def _describe(response: Response) -> str:
    """DRF's error body as one line that names every field: `{"detail": ...}` or
    `{"<field>": [messages]}` (`non_field_errors` without its name)."""
    try:
        body = json.loads(response.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return response.text() or "no reason given"
    if not isinstance(body, dict):
        return clip(str(body))
    parts = []
    for key, value in body.items():
        messages = value if isinstance(value, list) else [value]
        joined = " ".join(
            json.dumps(m, ensure_ascii=False) if isinstance(m, dict | list) else str(m)
            for m in messages
        )
        parts.append(joined if key in ("detail", "non_field_errors") else f"{key}: {joined}")
    return clip("; ".join(parts), 500) or "no reason given"


def _event_result(event: dict[str, Any], data: Mapping[str, Any]) -> CommandResult:
    handle = text(event.get("ID") or event.get("id"))
    if integer(event.get("handled")) == 1:
        return CommandResult(CommandStatus.CONFIRMED, handle=handle, data=dict(data))
    return CommandResult(CommandStatus.PENDING, handle=handle, data=dict(data))


def _event_vanished(vehicle_id: str, handle: str) -> CommandResult:
    return CommandResult(
        CommandStatus.FAILED,
        handle=handle,
        error=f"Metrotec no longer lists event {handle} of vehicle {vehicle_id}",
    )


def _task_result(body: Any, order_ref: str, *, existing: bool | None) -> CommandResult:
    if not isinstance(body, dict) or text(body.get("id")) is None:
        raise ProviderDataError("Metrotec: the task answer has no id")
    code = integer(body.get("status"))
    status = TASK_STATUSES.get(code) if code is not None else None
    data: dict[str, Any] = {
        "task_id": text(body.get("id")),
        "order_ref": text(body.get("order_ref")) or order_ref,
    }
    if existing is not None:
        data["existing"] = existing
    if status is not None:
        data["status"] = status.value
    return CommandResult(CommandStatus.CONFIRMED, handle=data["task_id"], data=data)


def _existing_task(found: dict[str, Any], task: Task) -> CommandResult:
    result = _task_result(found, task.order_ref, existing=True)
    owner = text(found.get("object_id"))
    if owner is not None and owner != task.vehicle_id:
        return CommandResult(
            CommandStatus.FAILED,
            handle=result.handle,
            data=result.data,
            error=(
                f"order_ref {task.order_ref!r} is already task {result.handle} of vehicle "
                f"{owner}, not of {task.vehicle_id}: choose another order_ref"
            ),
        )
    return result
