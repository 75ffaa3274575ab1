"""FLEETIZE: the whole fleet in one `devicelist` call, within 100 calls a day.

Every call is a form POST to `/v2/{ActionCode}` with `apitoken`. The answer is
JSON, except when it is not: errors come back as text (`ERROR #1055 - ...`), and
the documented examples carry trailing commas, so bodies are parsed leniently.
The budget is tight (100 calls per account per day, one call per 60 s, and a
blocked token after repeated violations that only FLEETIZE support can lift):
the quota engine guards every call, and a poll is exactly one call.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from bridge.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTokenBlockedError,
)
from bridge.model import (
    Alert,
    AlertType,
    Capability,
    PollPlan,
    Position,
    Priority,
    Problem,
    Severity,
    Update,
    VehicleState,
    VehicleStatus,
)
from bridge.providers.http import HttpClient, RetryPolicy
from bridge.providers.parse import (
    clip,
    fingerprint,
    integer,
    number,
    text,
    unix_time,
    valid_coordinates,
)
from bridge.quota import Budget, BudgetKind, Quota, Scope

_LOGGER = logging.getLogger(__name__)

# --- Endpoints, limits and units, in one place (docs: providers/fleetize.txt) ----
BASE_URL = "https://api.fleetize.com/v2"
ACTION_DEVICELIST = "devicelist"
ACTION_DEVICE = "device"
DEFAULT_BUDGETS = (
    # Per account (FLEETIZE counts a token's calls).
    Budget("daily", BudgetKind.DAILY, limit=100, scope=Scope.ACCOUNT),
    # Documented per IP address: every account behind one egress shares it, and
    # the accounts take turns (bridge.quota).
    Budget("spacing", BudgetKind.SPACING, period=60.0, scope=Scope.EGRESS),
)
# After #1055 the provider restarts its 60 s counter: wait a full fresh minute.
THRESHOLD_PAUSE_S = 61.0
# Fields the poll reads (scope keeps the answer small; the docs encourage it).
SCOPE = (
    "device_id;device_imei;device_type;device_name;device_description;device_mileage;"
    "device_distance;device_speed;device_upm;device_temp_engine;device_voltage_external;"
    "device_voltage_internal;device_angle;online_timestamp;heartbeat_timestamp;error_code;"
    "error_code_time;error_text;status_text;status_code;location;timestamp"
)
# Activity a little before the last poll still counts: clocks and processing lag.
ACTIVITY_MARGIN = timedelta(minutes=5)

STATUS_CODES = {
    1: VehicleStatus.PARKED,
    2: VehicleStatus.DRIVING,
    3: VehicleStatus.STOPPED,
    4: VehicleStatus.NO_STATUS,
    5: VehicleStatus.UNUSED,
}
ERROR_CODES = {
    0: Problem.NONE,
    1: Problem.REPLUGGED,
    2: Problem.UNPLUGGED,
    3: Problem.NO_SIGNAL,
    4: Problem.NO_GPS,
    5: Problem.BAD_GPS,
}
# Active (driving or standing with the engine on) means ignition on; parked off.
IGNITION_BY_STATUS = {
    VehicleStatus.DRIVING: True,
    VehicleStatus.STOPPED: True,
    VehicleStatus.PARKED: False,
}
# Alerts are derived from successive `devicelist` answers (no call of their own):
# a problem (error_code) that appears or starts again, and every status_code change.
PROBLEM_ALERTS: dict[Problem, tuple[AlertType, Severity]] = {
    Problem.UNPLUGGED: (AlertType.UNPLUGGED, Severity.CRITICAL),
    Problem.REPLUGGED: (AlertType.REPLUGGED, Severity.WARNING),
    Problem.NO_SIGNAL: (AlertType.NO_SIGNAL, Severity.WARNING),
    Problem.NO_GPS: (AlertType.NO_GPS, Severity.WARNING),
    Problem.BAD_GPS: (AlertType.BAD_GPS, Severity.INFO),
}
STATUS_CHANGE_SEVERITY = Severity.INFO
ERROR_CODE_OF = {problem: code for code, problem in ERROR_CODES.items()}
STATUS_CODE_OF = {status: code for code, status in STATUS_CODES.items()}
_ERROR = re.compile(r"ERROR\s*#\s*(\d+)\s*-?\s*(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class FleetizeSettings:
    token: str
    base_url: str = BASE_URL
    request_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class RoutePoint:
    latitude: float
    longitude: float
    speed_kmh: float | None


@dataclass(frozen=True, slots=True)
class Route:
    """One trip of a day, from `device` (fetched only when asked)."""

    start: datetime | None
    end: datetime | None
    start_km: float | None
    end_km: float | None
    points: tuple[RoutePoint, ...]


@dataclass(slots=True)
class FleetizeProvider:
    """One FLEETIZE account (one API token)."""

    name: ClassVar[str] = "fleetize"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.POSITION,
            Capability.SPEED,
            Capability.ODOMETER,
            Capability.IGNITION,
            Capability.BATTERY_VOLTAGE,
            Capability.ENGINE_TEMPERATURE,
            Capability.RPM,
            Capability.DEVICE_BATTERY,
            Capability.STATUS,
            Capability.PROBLEM,
        }
    )
    default_budgets: ClassVar[tuple[Budget, ...]] = DEFAULT_BUDGETS
    poll_endpoint: ClassVar[str] = ACTION_DEVICELIST
    alert_types: ClassVar[frozenset[AlertType]] = frozenset(
        {alert_type for alert_type, _ in PROBLEM_ALERTS.values()} | {AlertType.STATUS_CHANGE}
    )

    session: aiohttp.ClientSession
    settings: FleetizeSettings
    quota: Quota | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _http: HttpClient = field(init=False)
    _states: dict[str, VehicleState] = field(default_factory=dict, init=False)
    _last_poll: datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # FLEETIZE punishes quick retries: one attempt per poll, the planner and
        # the quota engine decide when the next one may go.
        self._http = HttpClient(
            self.session,
            "FLEETIZE",
            timeout=self.settings.request_timeout,
            retry=RetryPolicy(attempts=1),
            quota=self.quota,
        )

    # --- persistence -------------------------------------------------------
    def checkpoint(self) -> dict[str, str]:
        return {"last_poll": self._last_poll.isoformat()} if self._last_poll else {}

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        self._states = {v.vehicle_id: v for v in vehicles}
        try:
            self._last_poll = datetime.fromisoformat(checkpoint["last_poll"])
        except (KeyError, ValueError):
            self._last_poll = None

    async def validate(self) -> str:
        """The fleet list: FLEETIZE has no cheaper call (it costs one of the 100 a day)."""
        devices = await self._call(ACTION_DEVICELIST, {"scope": SCOPE}, Priority.COMMAND)
        if not isinstance(devices, list):
            raise ProviderDataError("FLEETIZE devicelist: expected a JSON array")
        return fingerprint(self.name, self.settings.base_url, self.settings.token)

    async def close(self) -> None:
        """Nothing to release: the session is injected."""

    # --- polling -----------------------------------------------------------
    async def poll(self, plan: PollPlan) -> Update:
        full = plan.refresh_vehicles or not self._states or self._last_poll is None
        form = {"scope": SCOPE}
        if not full and self._last_poll is not None:
            since = self._last_poll - ACTIVITY_MARGIN
            form["activity_after"] = str(int(since.timestamp()))
        started = plan.now or datetime.now(UTC)
        devices = await self._call(ACTION_DEVICELIST, form, plan.priority)
        if not isinstance(devices, list):
            raise ProviderDataError("FLEETIZE devicelist: expected a JSON array")
        before = dict(self._states)
        listed: set[str] = set()
        alerts: list[Alert] = []
        for item in devices:
            parsed = self._parse_device(item)
            if parsed is not None:
                listed.add(parsed.vehicle_id)
                self._states[parsed.vehicle_id] = parsed
                # A vehicle seen for the first time (no state restored from the
                # store either) is the baseline: its present problem is no news.
                previous = before.get(parsed.vehicle_id)
                if previous is not None:
                    alerts += transitions(previous, parsed, item, started)
        removed: list[str] = []
        if full:
            removed = [vid for vid in self._states if vid not in listed]
            for vid in removed:
                del self._states[vid]
        self._last_poll = started
        changed = [s for vid, s in self._states.items() if before.get(vid) != s]
        return Update(vehicles=changed, removed=removed, alerts=alerts)

    async def routes(
        self, vehicle_id: str, day: datetime | None = None, priority: Priority = Priority.COMMAND
    ) -> list[Route]:
        """A vehicle's trips of one UTC day (the latest activity day by default).

        Costs one call of the daily budget, so it is never part of a poll."""
        form = {"device": vehicle_id}
        if day is not None:
            form["time"] = str(int(day.timestamp()))
        body = await self._call(ACTION_DEVICE, form, priority)
        routes = body.get("routes") if isinstance(body, dict) else None
        return [_route(r) for r in routes or [] if isinstance(r, dict)]

    async def _call(self, action: str, form: dict[str, str], priority: Priority) -> Any:
        url = URL(self.settings.base_url.rstrip("/") + "/" + action)
        response = await self._http.request(
            "POST",
            url,
            form={"apitoken": self.settings.token, **form},
            endpoint=action,
            priority=priority,
        )
        text = response.body.decode("utf-8", "replace").strip()
        error = _ERROR.match(text)
        if error:
            await self._raise(int(error.group(1)), error.group(2).strip())
        try:
            return loads_lenient(text)
        except (ValueError, RecursionError) as err:
            raise ProviderDataError(f"FLEETIZE {action}: unreadable answer ({err})") from None

    async def _raise(self, code: int, text: str) -> None:
        message = f"FLEETIZE error #{code}: {clip(text, 160)}"
        if code == 1000:
            raise ProviderAuthError(
                f"{message}. The API token was refused: copy it again from FLEETIZE "
                "(My Account > Administration)"
            )
        if code == 1002:
            raise ProviderTokenBlockedError(
                f"{message}. FLEETIZE blocked the API token; only FLEETIZE support can unblock it"
            )
        if code == 1055:
            if self.quota is not None:
                # FLEETIZE restarts the counter of the address: every account
                # behind it waits.
                await self.quota.hold(
                    THRESHOLD_PAUSE_S, "FLEETIZE #1055, waiting a fresh 60 s", Scope.EGRESS
                )
            raise ProviderRateLimitedError(message, retry_after=THRESHOLD_PAUSE_S)
        raise ProviderError(message)

    # --- mapping into the model -------------------------------------------
    def _parse_device(self, item: Any) -> VehicleState | None:
        if not isinstance(item, dict):
            return None
        vid = text(item.get("device_id"))
        if not vid:
            return None
        try:
            return self._fold(vid, item)
        except (TypeError, ValueError) as err:
            _LOGGER.warning("FLEETIZE: skipped unreadable device %s: %s", vid, err)
            return None

    def _fold(self, vid: str, item: dict[str, Any]) -> VehicleState:
        state = self._states.get(vid) or VehicleState(vehicle_id=vid, name=vid)
        changes: dict[str, Any] = {}
        if "device_name" in item:
            changes["name"] = text(item.get("device_name")) or vid
        if "device_description" in item:
            changes["model"] = text(item.get("device_description"))
        online_at = unix_time(item.get("online_timestamp"))
        heartbeat_at = unix_time(item.get("heartbeat_timestamp"))
        seen = [t for t in (online_at, heartbeat_at, state.last_seen) if t]
        if seen:
            changes["last_seen"] = max(seen)
        location = parse_location(item.get("location"))
        if location is not None:
            changes["position"] = Position(
                latitude=location[0],
                longitude=location[1],
                time=online_at,
                heading=number(item.get("device_angle")),
            )
        numbers = {
            "speed_kmh": "device_speed",
            "odometer_km": "device_mileage",
            "rpm": "device_upm",
            "engine_temperature_c": "device_temp_engine",
            "battery_voltage": "device_voltage_external",
            "device_battery_voltage": "device_voltage_internal",
        }
        for target, source in numbers.items():
            if source in item:
                changes[target] = number(item.get(source))
        status_code = integer(item.get("status_code"))
        if status_code in STATUS_CODES:
            status = STATUS_CODES[status_code]
            changes["status"] = status
            changes["ignition"] = IGNITION_BY_STATUS.get(status)
        if "error_code" in item:
            error_code = integer(item.get("error_code"))
            problem = ERROR_CODES.get(error_code if error_code is not None else 0, Problem.NONE)
            changes["problem"] = problem
            changes["problem_since"] = (
                unix_time(item.get("error_code_time")) if problem is not Problem.NONE else None
            )
        return state.merged(**changes)


def transitions(
    previous: VehicleState, current: VehicleState, item: Mapping[str, Any], now: datetime
) -> list[Alert]:
    """The alerts between two successive states of one device.

    Ids are built from what identifies the transition (the device, the code and
    the provider's own time of it), so the same transition seen again after a
    restart, or replayed after a crash, has the same id and is published once."""
    alerts: list[Alert] = []
    vid = current.vehicle_id
    problem = current.problem
    if (
        previous.problem is not None
        and problem in PROBLEM_ALERTS
        and (problem != previous.problem or current.problem_since != previous.problem_since)
    ):
        alert_type, severity = PROBLEM_ALERTS[problem]
        code = ERROR_CODE_OF[problem]
        # error_code_time is documented; without it, the device's last contact.
        since = current.problem_since or current.last_seen or now
        alerts.append(
            Alert(
                alert_id=f"{vid}:error_code:{code}:{int(since.timestamp())}",
                vehicle_id=vid,
                type=alert_type,
                time=since,
                severity=severity,
                position=current.position,
                details=_without_none(
                    {
                        "provider_type": f"error_code {code}",
                        "error_code": code,
                        "error_text": text(item.get("error_text")),
                        "previous": previous.problem.value,
                    }
                ),
            )
        )
    if (
        previous.status is not None
        and current.status is not None
        and current.status != previous.status
    ):
        before, after = STATUS_CODE_OF[previous.status], STATUS_CODE_OF[current.status]
        # No time of the change is documented; the last activity is when it moved
        # off or stopped, and it is FLEETIZE's own (stable across polls).
        when = (current.position.time if current.position else None) or current.last_seen or now
        alerts.append(
            Alert(
                alert_id=f"{vid}:status_code:{before}-{after}:{int(when.timestamp())}",
                vehicle_id=vid,
                type=AlertType.STATUS_CHANGE,
                time=when,
                severity=STATUS_CHANGE_SEVERITY,
                position=current.position,
                details=_without_none(
                    {
                        "provider_type": f"status_code {after}",
                        "from": previous.status.value,
                        "to": current.status.value,
                        "from_code": before,
                        "to_code": after,
                        "status_text": text(item.get("status_text")),
                    }
                ),
            )
        )
    return alerts


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def parse_location(value: Any) -> tuple[float, float] | None:
    """FLEETIZE's `"lat,lon"` string; None when absent, malformed or out of range."""
    if not isinstance(value, str) or "," not in value:
        return None
    lat_text, _, lon_text = value.partition(",")
    lat, lon = number(lat_text), number(lon_text.split(",")[0])
    if lat is None or lon is None or not valid_coordinates(lat, lon):
        return None
    if lat == 0 and lon == 0:
        return None  # no fix yet, not the Gulf of Guinea
    return lat, lon


class LenientJSONError(ValueError):
    """An answer that is not JSON even read leniently; names the line."""


def loads_lenient(text: str) -> Any:
    """JSON as FLEETIZE's documentation prints it, which is what an answer copied
    from a browser looks like: trailing and doubled commas, no-break spaces
    (U+00A0) as indentation, and a line of its own reading `...` where the
    documentation elides the rest of an object. Anything else that is not JSON
    raises `LenientJSONError` naming the line (of `text`) and what is on it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    cleaned = _drop_stray_commas(_drop_elisions(text))
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError as err:
        # Elided lines are blanked, not removed: line numbers are the original's.
        lines = text.splitlines()
        shown = lines[err.lineno - 1].strip()[:80] if err.lineno <= len(lines) else ""
        raise LenientJSONError(
            f"not JSON at line {err.lineno} column {err.colno}: {err.msg} ({shown!r})"
        ) from None


def _drop_elisions(text: str) -> str:
    """Blank the documentation's `...` lines (keeping the line count)."""
    return "\n".join(
        "" if line.replace("\u00a0", " ").strip() == "..." else line for line in text.split("\n")
    )


def _drop_stray_commas(text: str) -> str:
    """Stray commas out, and no-break spaces outside strings read as spaces.

    Linear in the answer's length: a devicelist of 1,000 vehicles is some 600 KB
    with thousands of commas, and looking at the whole rest of the text (or the
    whole output so far) at each one took minutes with the event loop held."""
    out: list[str] = []
    in_string = escaped = False
    previous = ""  # the last character kept that is not whitespace
    length = len(text)
    for i, char in enumerate(text):
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
                previous = char
            continue
        if char == '"':
            in_string = True
        elif char == "\u00a0":
            char = " "
        elif char == ",":
            j = i + 1
            while j < length and (text[j].isspace() or text[j] == "\u00a0"):
                j += 1
            following = text[j] if j < length else ""
            # A comma before a closer, after an opener, or after another comma.
            if following in ("}", "]", ",") or previous in ("{", "[", ","):
                continue
        out.append(char)
        if not char.isspace():
            previous = char
    return "".join(out)


def _route(item: dict[str, Any]) -> Route:
    points = []
    for chunk in str(item.get("route_points") or "").split(";"):
        parts = chunk.split(",")
        if len(parts) >= 2:
            lat, lon = number(parts[0]), number(parts[1])
            if lat is not None and lon is not None:
                speed = number(parts[2]) if len(parts) > 2 else None
                points.append(RoutePoint(lat, lon, speed))
    return Route(
        start=unix_time(item.get("origin_timestamp")),
        end=unix_time(item.get("destination_timestamp")),
        start_km=number(item.get("origin_mileage")),
        end_km=number(item.get("destination_mileage")),
        points=tuple(points),
    )
