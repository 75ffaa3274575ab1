"""Metrotec's JSON shapes for a simulated world: records, times, errors, fields.

Times are UTC strings `YYYY-MM-DD HH:MM:SS` without a zone, except fields named
`...LocalTime` (and `next_refill_time`, `DD.MM.YYYY HH:MM`), which are in the
account's time zone (Europe/Tallinn). Coordinates in position records: `Xpos` is
the LONGITUDE and `Ypos` the LATITUDE; tasks use `lat`/`lon`.

Errors follow Django REST Framework, which the browsable API and the
`Accept: application/json; version=X.Y.Z` versioning give away: `{"detail": "..."}`
for a request as a whole, `{"<field>": ["...", ...]}` for invalid fields
(`non_field_errors` for a rule across fields), with DRF's own wording.

Guessed meanings (the documentation shows the names only): in position records
`Counter1` is the odometer (km) and `Counter2` the engine hours; in the fuel
records `Counter1` is the fuel in the tank (litres, as the tank example suggests),
`tank_vol` its capacity (litres), and `Counter` (refill endpoint) the litres left
before the vehicle wants refuelling. `Input` bit 0 is the ignition, `Power` the
vehicle's voltage and `BatLevel` the tracker's own battery (V).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.simulator.rng import Rng
from bridge.simulator.vehicle import Engine, Fix, SimVehicle, Stat, Trip

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_TIMEZONE = "Europe/Tallinn"
DEFAULT_REP_INTS = ("5MIN", "1H", "12H", "24H")
# Every third vehicle has a tracker with other reporting intervals, so that a
# client must read them per vehicle.
FAST_REP_INTS = ("30S", "1MIN", "5MIN", "1H")
REFUEL_AT_PERCENT = 15
# Litres an hour a delivery vehicle burns on average over a working day (for the
# invented next_refill_time): km/h of an average hour.
_AVERAGE_KMH = 20.0

LocalTime = Callable[[int], datetime]


class ApiError(Exception):
    """A request refused as a whole: `{"detail": ...}`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class FieldErrors(Exception):
    """Invalid fields: 400 with `{"<field>": ["message", ...]}`."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__(str(dict(errors)))
        self.errors = dict(errors)


# --- times ---------------------------------------------------------------------------


def format_utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime(TIME_FORMAT, time.gmtime(ms // 1000))


def local_clock(zone: str = DEFAULT_TIMEZONE) -> LocalTime:
    """UTC ms -> the account's wall-clock time (naive). Without tz data on the
    machine, Europe/Tallinn falls back to its rule: UTC+2, +3 in EU summer time."""
    try:
        tz = ZoneInfo(zone)
    except ZoneInfoNotFoundError:
        if zone != DEFAULT_TIMEZONE:
            raise
        return _eet_with_eu_summer_time

    def convert(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz).replace(tzinfo=None, microsecond=0)

    return convert


def _eet_with_eu_summer_time(ms: int) -> datetime:
    utc = datetime.fromtimestamp(ms // 1000, UTC)
    start = _last_sunday(utc.year, 3)
    end = _last_sunday(utc.year, 10)
    hours = 3 if start <= utc < end else 2
    return (utc + timedelta(hours=hours)).replace(tzinfo=None)


def _last_sunday(year: int, month: int) -> datetime:
    """01:00 UTC on the month's last Sunday (when EU summer time starts or ends)."""
    day = datetime(year, month + 1, 1, 1, tzinfo=UTC) - timedelta(days=1)
    return day - timedelta(days=(day.weekday() + 1) % 7)


def parse_time(raw: object) -> int | None:
    """`YYYY-MM-DD HH:MM:SS` (UTC), also with a `T`, a `Z`, or glued together as in
    the documentation's examples (`2017-10-2400:00:00`); None if unreadable."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if len(text) == 18 and text[10:11].isdigit():
        text = f"{text[:10]} {text[10:]}"
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


# --- records ------------------------------------------------------------------------


def rep_ints(vehicle: SimVehicle) -> tuple[str, ...]:
    return FAST_REP_INTS if vehicle.seq % 3 == 0 else DEFAULT_REP_INTS


def alias(vehicle: SimVehicle) -> str:
    return vehicle.identity.name


def position_json(vehicle: SimVehicle, now_ms: int, local: LocalTime) -> dict[str, Any]:
    """A last-position record."""
    gps = vehicle.last(Stat.GPS)
    engine = vehicle.last(Stat.ENGINE)
    assert gps is not None
    assert engine is not None  # both recorded when the vehicle is created
    fix: Fix = gps.value
    ignition = engine.value is not Engine.OFF
    odometer_m = vehicle.odometer_m if vehicle.has_obd else vehicle.gps_odometer_m
    # The tracker's message arrives a few seconds after its fix.
    contact_ms = min(now_ms, gps.time_ms + (vehicle.seq % 7) * 1000)
    gm_time = format_utc(gps.time_ms)
    sats = 8 + vehicle.seq % 7
    return {
        "ID": record_id(vehicle, gps.time_ms),
        "objectID": vehicle.vehicle_id,
        "Xpos": fix.longitude,
        "Ypos": fix.latitude,
        "Counter1": round(odometer_m / 1000, 1),
        "Counter2": round(vehicle.engine_s / 3600, 1) if vehicle.has_obd else 0,
        "GMTime": gm_time,
        "Speed": round(fix.speed_kmh),
        "Heading": f"{fix.heading}°",
        "Input": int(ignition),
        "LastCommunicationLocalTime": local(contact_ms).strftime(TIME_FORMAT),
        "Content": (
            f"{gm_time},{fix.longitude:.7f},{fix.latitude:.7f},{fix.heading},"
            f"{round(fix.speed_kmh)},{sats},0,{int(ignition)},"
            f"E03:07:{vehicle.seq:06X}{gps.time_ms // 1000 % 0xFFFFFF:06X}:00:00"
        ),
        "Power": round(vehicle.battery_mv / 1000, 2),
        "BatLevel": round(3.9 + (vehicle.seq % 4) * 0.1, 1),
        "NoGPSFix": "0",
        "t1": 0,
        "t2": 0,
        "t3": 0,
        "t4": 0,
    }


def record_id(vehicle: SimVehicle, time_ms: int) -> int:
    """Position record ids grow with time; one per vehicle and second."""
    return (time_ms // 1000 - 1_500_000_000) * 1000 + vehicle.seq % 1000


def fuel_json(vehicle: SimVehicle, now_ms: int, local: LocalTime) -> dict[str, Any]:
    """A record of the fuel-tank endpoint: the position record and the tank."""
    record = position_json(vehicle, now_ms, local)
    record["Counter1"] = round(vehicle.fuel_l, 1)  # litres in the tank
    return {
        **record,
        "alias": alias(vehicle),
        "GroupID": 170 + vehicle.seq % 3,
        "GroupName": ("Jaotus", "Kaugsõit", "Linn")[vehicle.seq % 3],
        "CustomerID": 90_000_036,
        "TankNr": 900_000 + vehicle.seq,
        "tank_vol": round(vehicle.tank_l),
    }


def refill_json(vehicle: SimVehicle, now_ms: int, local: LocalTime) -> dict[str, Any]:
    """The refill endpoint's record: litres left before refuelling, and when."""
    left_l = max(0.0, vehicle.fuel_l - vehicle.tank_l * REFUEL_AT_PERCENT / 100)
    per_hour = vehicle.consumption / 100 * _AVERAGE_KMH
    refill_ms = now_ms + math.floor(left_l / per_hour * 3600) * 1000
    return {
        **fuel_json(vehicle, now_ms, local),
        "Counter": round(left_l),
        "next_refill_time": local(refill_ms).strftime("%d.%m.%Y %H:%M"),
    }


def object_json(
    vehicle: SimVehicle, created_ms: int, report_interval: str | None
) -> dict[str, Any]:
    """An entry of the vehicle list."""
    rng = Rng(vehicle.seq, 0x3E7)
    return {
        "id": vehicle.vehicle_id,
        "extraDevices": 17_246_981_848 + vehicle.seq,
        "categoryID": 0,
        "naviseade": "0",
        "isDDD": int(vehicle.seq % 2 == 0),
        "account_type": 3,
        "Manufacture": 60 + rng.randint(0, 20),
        "calcByM": 0,
        "T1min": 0,
        "T1max": 540,
        "T2min": 0,
        "T2max": 0,
        "tank_vol": round(vehicle.tank_l) if vehicle.has_obd else 0,
        "barrel_type": None,
        "alias": alias(vehicle),
        "isPercent": 0,
        "next_maintenance_km": "",
        "isOwn": 1,
        "odometer_day": format_utc(created_ms),
        "odometer": round(vehicle.odometer_m / 1000),
        "mode": None,
        "fuel_card_nr": "",
        "categoryName": None,
        "btime": 1,
        "gps_refresh_interval": report_interval,
        "is_fuel_as_pressure": 0,
    }


def routelog_json(
    vehicle: SimVehicle, trip: Trip, previous: Trip | None, following: Trip | None
) -> dict[str, Any]:
    """A trip of the route log: from moving off to arriving, and the stop after."""
    start = trip.drive_start_ms if trip.drive_start_ms is not None else trip.start_ms
    stop = trip.drive_end_ms if trip.drive_end_ms is not None else trip.last_ms
    stop_end = following.start_ms if following is not None else None
    driving_s = max(0, (stop - start) // 1000)
    distance_km = trip.distance_m / 1000
    first, last = trip.points[0], trip.points[-1]
    address = vehicle.city.address
    return {
        "ID": 53_000_000 + vehicle.seq * 10_000 + trip.number,
        "objectID": vehicle.vehicle_id,
        "startTime": format_utc(start),
        "previousStopTime": format_utc(previous.end_ms) if previous is not None else None,
        "stopTime": format_utc(stop),
        "stopEnd": format_utc(stop_end),
        "routeLengthKM": round(distance_km, 2),
        "drivingTimeSeconds": driving_s,
        "pauseTimeSeconds": (stop_end - stop) // 1000 if stop_end is not None else 0,
        "averageSpeed": round(distance_km / driving_s * 3600, 2) if driving_s else 0,
        "maxSpeed": round(trip.max_speed_kmh),
        "AddressAtStartingPoint": address(first.latitude, first.longitude),
        "AddressAtEndPoint": address(last.latitude, last.longitude),
        "status": "0",
    }


# --- fields, DRF-style -------------------------------------------------------------

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
NOT_BLANK = "This field may not be blank."


class Fields:
    """Reads a JSON object field by field, collecting DRF-worded errors."""

    def __init__(self, body: Mapping[str, Any], *, partial: bool = False) -> None:
        self.body = body
        self.partial = partial
        self.errors: dict[str, list[str]] = {}
        self.values: dict[str, Any] = {}

    def _take(self, name: str, required: bool, nullable: bool) -> tuple[bool, Any]:
        if name not in self.body:
            if required and not self.partial:
                self.fail(name, REQUIRED)
            return False, None
        value = self.body[name]
        if value is None:
            if not nullable:
                self.fail(name, NOT_NULL)
                return False, None
            self.values[name] = None
            return False, None
        return True, value

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def string(self, name: str, *, required: bool = False, nullable: bool = True) -> None:
        present, value = self._take(name, required, nullable)
        if not present:
            return
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(name, "Not a valid string.")
        elif not str(value).strip() and required:
            self.fail(name, NOT_BLANK)
        else:
            self.values[name] = str(value)

    def number(
        self, name: str, low: float | None = None, high: float | None = None, **kw: bool
    ) -> None:
        present, value = self._take(name, kw.get("required", False), kw.get("nullable", True))
        if not present:
            return
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            self.fail(name, "A valid number is required.")
            return
        if not math.isfinite(number):
            self.fail(name, "A valid number is required.")
        elif low is not None and number < low:
            self.fail(name, f"Ensure this value is greater than or equal to {low:g}.")
        elif high is not None and number > high:
            self.fail(name, f"Ensure this value is less than or equal to {high:g}.")
        else:
            self.values[name] = number

    def integer(self, name: str, *, required: bool = False, nullable: bool = True) -> None:
        present, value = self._take(name, required, nullable)
        if not present:
            return
        parsed = _as_int(value)
        if parsed is None:
            self.fail(name, "A valid integer is required.")
        else:
            self.values[name] = parsed

    def choice(self, name: str, choices: Mapping[int, str], *, required: bool = False) -> None:
        present, value = self._take(name, required, False)
        if not present:
            return
        parsed = _as_int(value)
        if parsed is None or parsed not in choices:
            self.fail(name, f'"{value}" is not a valid choice.')
        else:
            self.values[name] = parsed

    def boolean(self, name: str) -> None:
        present, value = self._take(name, False, False)
        if not present:
            return
        words = {"true": True, "1": True, "false": False, "0": False}
        if isinstance(value, bool | int) and value in (0, 1):
            self.values[name] = bool(value)
        elif isinstance(value, str) and value.lower() in words:
            self.values[name] = words[value.lower()]
        else:
            self.fail(name, "Must be a valid boolean.")

    def datetime(self, name: str, *, required: bool = False) -> None:
        present, value = self._take(name, required, not required)
        if not present:
            return
        ms = parse_time(value)
        if ms is None:
            self.fail(
                name,
                "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DD hh:mm:ss.",
            )
        else:
            self.values[name] = ms

    def check(self) -> dict[str, Any]:
        if self.errors:
            raise FieldErrors(self.errors)
        return self.values


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
