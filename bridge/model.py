"""The normalized fleet domain, shared by the daemon and the Home Assistant integration.

Standard library only (see docs/architecture.md): providers turn their JSON into
these objects at the edge, in SI units (km/h, km, %, L, V, h); everything inside
the project speaks only this model.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any


class EngineState(enum.StrEnum):
    """Engine state as Home Assistant's `enum` sensor shows it."""

    OFF = "off"
    ON = "on"
    IDLE = "idle"


class Capability(enum.StrEnum):
    """What a provider can fill or do; entities exist only where it can."""

    POSITION = "position"
    SPEED = "speed"
    ODOMETER = "odometer"
    FUEL_LEVEL = "fuel_level"
    FUEL_VOLUME = "fuel_volume"
    ENGINE_STATE = "engine_state"
    IGNITION = "ignition"
    BATTERY_VOLTAGE = "battery_voltage"
    ENGINE_HOURS = "engine_hours"
    ENGINE_TEMPERATURE = "engine_temperature"
    RPM = "rpm"
    DEVICE_BATTERY = "device_battery"
    STATUS = "status"
    PROBLEM = "problem"
    RISK_SCORE = "risk_score"
    LIGHTS = "lights"  # switchable lights (Metrotec light control events)
    TASKS = "tasks"  # delivery tasks: create, update, active ones as a sensor
    SNAPSHOT = "snapshot"  # dashcam stills on request
    ALERTS = "alerts"  # an event entity per vehicle (event types: Provider.alert_types)


class CommandStatus(enum.StrEnum):
    PENDING = "pending"  # accepted by the provider, not yet carried out
    CONFIRMED = "confirmed"  # the provider says it is done
    FAILED = "failed"


class Camera(enum.StrEnum):
    ROAD = "road"
    DRIVER = "driver"


class TaskStatus(enum.StrEnum):
    CREATED = "created"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class VehicleStatus(enum.StrEnum):
    """What the vehicle is doing, as its provider classifies it."""

    DRIVING = "driving"
    STOPPED = "stopped"  # active, engine on, not moving
    PARKED = "parked"
    NO_STATUS = "no_status"
    UNUSED = "unused"


class Problem(enum.StrEnum):
    """A tracker problem the provider reports (FLEETIZE error_code)."""

    NONE = "none"
    REPLUGGED = "replugged"  # unplugged and plugged in again
    UNPLUGGED = "unplugged"
    NO_SIGNAL = "no_signal"
    NO_GPS = "no_gps"
    BAD_GPS = "bad_gps"


# Below this speed a vehicle counts as standing still: GPS jitter of a parked
# vehicle reads as 1-3 km/h on most trackers.
MOVING_SPEED_KMH = 3.0


def utc_now() -> datetime:
    """The default clock; tests and simulations inject their own."""
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 / ISO 8601 text to an aware UTC datetime; None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # Providers that omit the zone document their times as UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, second precision unless sub-second matters."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Position:
    """A GPS fix. Latitude and longitude in degrees, WGS84."""

    latitude: float
    longitude: float
    time: datetime | None = None
    heading: float | None = None
    accuracy_m: float | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class VehicleState:
    """Everything known about one vehicle at one moment, in SI units.

    A field is None when the provider did not (yet) report it; None is published
    as JSON null, which Home Assistant shows as "unknown".
    """

    vehicle_id: str
    name: str
    position: Position | None = None
    speed_kmh: float | None = None
    odometer_km: float | None = None
    fuel_percent: float | None = None
    fuel_volume_l: float | None = None
    engine_state: EngineState | None = None
    ignition: bool | None = None
    battery_voltage: float | None = None
    engine_hours: float | None = None
    last_seen: datetime | None = None
    online: bool | None = None
    vin: str | None = None
    plate: str | None = None
    make: str | None = None
    model: str | None = None
    year: int | None = None
    engine_temperature_c: float | None = None
    rpm: float | None = None
    # The tracker's own backup battery, not the vehicle's.
    device_battery_voltage: float | None = None
    status: VehicleStatus | None = None
    problem: Problem | None = None
    problem_since: datetime | None = None
    # Provider's risk score, 0-100, lower is safer (Telemax, distance-weighted).
    risk_score: float | None = None
    # What the provider itself says about reachability, when it says anything.
    reported_online: bool | None = None
    # Lights as last confirmed by the provider (Metrotec: the last handled event).
    lights_on: bool | None = None
    # Tasks not yet completed, rejected or cancelled, and the one under way.
    active_tasks: int | None = None
    current_task: str | None = None

    @property
    def moving(self) -> bool | None:
        if self.speed_kmh is None:
            return None
        return self.speed_kmh >= MOVING_SPEED_KMH

    def to_json(self) -> dict[str, Any]:
        """The retained state payload of `fleet/<account>/<vehicle>` (flat, stable keys)."""
        pos = self.position
        return {
            "id": self.vehicle_id,
            "name": self.name,
            "latitude": pos.latitude if pos else None,
            "longitude": pos.longitude if pos else None,
            "heading": pos.heading if pos else None,
            "gps_accuracy": pos.accuracy_m if pos else None,
            "address": pos.address if pos else None,
            "position_time": format_time(pos.time) if pos else None,
            "speed_kmh": self.speed_kmh,
            "moving": self.moving,
            "odometer_km": self.odometer_km,
            "fuel_percent": self.fuel_percent,
            "fuel_volume_l": self.fuel_volume_l,
            "engine_state": self.engine_state.value if self.engine_state else None,
            "ignition": self.ignition,
            "battery_voltage": self.battery_voltage,
            "engine_hours": self.engine_hours,
            "last_seen": format_time(self.last_seen),
            "online": self.online,
            "vin": self.vin,
            "plate": self.plate,
            "make": self.make,
            "model": self.model,
            "year": self.year,
            "engine_temperature_c": self.engine_temperature_c,
            "rpm": self.rpm,
            "device_battery_voltage": self.device_battery_voltage,
            "status": self.status.value if self.status else None,
            "problem": self.problem.value if self.problem else None,
            "problem_since": format_time(self.problem_since),
            "risk_score": self.risk_score,
            "reported_online": self.reported_online,
            "lights_on": self.lights_on,
            "active_tasks": self.active_tasks,
            "current_task": self.current_task,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VehicleState:
        """Inverse of `to_json`, for states read back from the store."""
        position = None
        if data.get("latitude") is not None and data.get("longitude") is not None:
            position = Position(
                latitude=float(data["latitude"]),
                longitude=float(data["longitude"]),
                time=parse_time(data.get("position_time")),
                heading=_opt_float(data.get("heading")),
                accuracy_m=_opt_float(data.get("gps_accuracy")),
                address=data.get("address"),
            )
        engine = data.get("engine_state")
        return cls(
            vehicle_id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            position=position,
            speed_kmh=_opt_float(data.get("speed_kmh")),
            odometer_km=_opt_float(data.get("odometer_km")),
            fuel_percent=_opt_float(data.get("fuel_percent")),
            fuel_volume_l=_opt_float(data.get("fuel_volume_l")),
            engine_state=EngineState(engine) if engine else None,
            ignition=data.get("ignition"),
            battery_voltage=_opt_float(data.get("battery_voltage")),
            engine_hours=_opt_float(data.get("engine_hours")),
            last_seen=parse_time(data.get("last_seen")),
            online=data.get("online"),
            vin=data.get("vin"),
            plate=data.get("plate"),
            make=data.get("make"),
            model=data.get("model"),
            year=data.get("year"),
            engine_temperature_c=_opt_float(data.get("engine_temperature_c")),
            rpm=_opt_float(data.get("rpm")),
            device_battery_voltage=_opt_float(data.get("device_battery_voltage")),
            status=VehicleStatus(data["status"]) if data.get("status") else None,
            problem=Problem(data["problem"]) if data.get("problem") else None,
            problem_since=parse_time(data.get("problem_since")),
            risk_score=_opt_float(data.get("risk_score")),
            reported_online=data.get("reported_online"),
            lights_on=data.get("lights_on"),
            active_tasks=data.get("active_tasks"),
            current_task=data.get("current_task"),
        )

    def merged(self, **changes: Any) -> VehicleState:
        """A copy with the given fields replaced; unknown names raise TypeError."""
        return replace(self, **changes)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


class Priority(enum.IntEnum):
    """Polls leave the quota reserve alone; commands and on-demand refreshes may use it."""

    POLL = 0
    COMMAND = 1


@dataclass(frozen=True, slots=True)
class PollPlan:
    """What the poller asks a provider to fetch this time."""

    # Re-read the vehicle list (names, plates, additions and removals).
    refresh_vehicles: bool = False
    # A refresh asked for by a user may spend the quota reserve.
    priority: Priority = Priority.POLL
    # The poller's clock at the start of the poll (simulations run their own).
    now: datetime | None = None


@dataclass(slots=True)
class Update:
    """What one poll learned.

    `vehicles` holds the full new state of every vehicle that changed (or is new);
    `removed` the ids of vehicles the provider no longer lists. `more` is true when
    the provider has more data ready right now (a feed with another page).
    """

    vehicles: list[VehicleState] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    more: bool = False
    # Alerts seen this poll; the bridge publishes each one once, whatever repeats.
    alerts: list[Alert] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Task:
    """A delivery task to create at the provider (Metrotec: order_ref is unique)."""

    vehicle_id: str
    order_ref: str
    latitude: float
    longitude: float
    start_time: datetime
    stop_time: datetime
    description: str | None = None
    address: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None


@dataclass(frozen=True, slots=True)
class TaskChange:
    """Changes to an existing task, found by its order_ref."""

    order_ref: str
    status: TaskStatus | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None
    description: str | None = None
    vehicle_id: str | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a provider said about a command.

    `handle` is the provider's id for following it up (an event id, a task id,
    a media retrieval id); `data` is what the user gets back (e.g. `url`)."""

    status: CommandStatus
    handle: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


class AlertType(enum.StrEnum):
    """The fixed vocabulary every provider's alerts are mapped into."""

    HARSH_BRAKING = "harsh_braking"
    HARSH_ACCELERATION = "harsh_acceleration"
    HARSH_CORNERING = "harsh_cornering"
    SPEEDING = "speeding"
    CRASH = "crash"
    DROWSINESS = "drowsiness"
    DISTRACTION = "distraction"
    PHONE_USE = "phone_use"
    SEATBELT = "seatbelt"
    SMOKING = "smoking"
    GEOZONE_ENTER = "geozone_enter"
    GEOZONE_EXIT = "geozone_exit"
    UNPLUGGED = "unplugged"
    REPLUGGED = "replugged"
    NO_SIGNAL = "no_signal"
    NO_GPS = "no_gps"
    BAD_GPS = "bad_gps"
    STATUS_CHANGE = "status_change"
    PANIC = "panic"
    TAMPER = "tamper"
    LOW_BATTERY = "low_battery"
    IDLING = "idling"
    OTHER = "other"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """One event a provider reported about a vehicle.

    `alert_id` is the provider's own id for the event (or one derived from what
    identifies it), stable across polls, restarts and webhook deliveries: it is
    what makes each alert published once."""

    alert_id: str
    vehicle_id: str
    type: AlertType
    time: datetime
    severity: Severity = Severity.WARNING
    driver: str | None = None
    position: Position | None = None
    media_url: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, *, stale: bool = False) -> dict[str, Any]:
        """The payload of `fleet/<account>/<vehicle>/alert` (non-retained)."""
        pos = self.position
        return {
            "id": self.alert_id,
            "vehicle": self.vehicle_id,
            # Home Assistant's MQTT event entity reads `event_type`.
            "event_type": self.type.value,
            "type": self.type.value,
            "severity": self.severity.value,
            "time": format_time(self.time),
            "stale": stale,
            "driver": self.driver,
            "latitude": pos.latitude if pos else None,
            "longitude": pos.longitude if pos else None,
            "address": pos.address if pos else None,
            "media_url": self.media_url,
            "details": dict(self.details),
        }
