"""FLEETIZE's JSON shapes for a simulated world: names, units, codes and quirks.

Units as FLEETIZE documents them: kilometres, km/h, degrees Celsius, volts and unix
seconds (UTC). `location` and route points are `"lat,lon"` strings, route times
are strings, and `device_portrait` is URL-encoded.

With `quirks` on (the default), answers look like the documentation's examples
rather than like clean JSON: objects of odd-numbered devices end in a trailing
comma (`..."location":"48.87778,9.34889",}`) and double the comma after
`device_portrait` (`".png",,`), which makes the whole body invalid JSON; every
third device sends `device_mileage` as a string; a standing vehicle's
`device_speed` is the string `"0"`; `device_voltage_internal` is a string.

Device faults (`error_code` 1-5) come from deterministic episodes: every 3-hour
slot of a vehicle's life may hold one (no signal, unplugged, no GPS, bad GPS) of
10-60 minutes; every fourth vehicle (2, 6, 10, ...) is flaky and has them often.
After an unplugged episode the device reports "modified" until the slot ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bridge.simulator.rng import Rng
from bridge.simulator.vehicle import HOUR_MS, Engine, Fix, Phase, SimVehicle, Stat, Trip
from bridge.simulator.world import imei

#: Every field of a device, in the documentation's order.
DEVICE_FIELDS = (
    "device_id",
    "device_imei",
    "device_type",
    "device_name",
    "device_description",
    "device_portrait",
    "device_mileage",
    "device_mileage_raw",
    "device_distance",
    "device_speed",
    "device_upm",
    "device_temp_engine",
    "device_voltage_external",
    "device_voltage_internal",
    "device_angle",
    "online_timestamp",
    "heartbeat_timestamp",
    "error_code",
    "error_code_time",
    "error_text",
    "status_absence",
    "status_description",
    "status_text",
    "status_code",
    "location",
    "timestamp",
)
STATUS_OFFLINE, STATUS_ACTIVE, STATUS_INACTIVE = 1, 2, 3
STATUS_TEXTS = {1: "offline", 2: "active", 3: "inactive", 4: "not moved yet", 5: "unused"}
ERROR_MODIFIED, ERROR_UNPLUGGED, ERROR_NO_SIGNAL, ERROR_NO_GPS, ERROR_BAD_GPS = 1, 2, 3, 4, 5
ERROR_TEXTS = {
    1: "Modified: Device was plugged-out and plugged-in again",
    2: "Unplugged: Device is currently unplugged",
    3: "No Signal: Device is currently not connected",
    4: "No GPS: Device has no GPS-Signal",
    5: "Bad GPS: Device has bad GPS-Signal",
}
PAUSE_IGNITION_OFF, PAUSE_LONG_STOPPED = 1, 2
PORTRAIT_URL = "http://track.fleetize.com/assets/img/devices/{}.png"
_WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")  # the service speaks German
_EPISODE_SLOT_MS = 3 * HOUR_MS
_FLAKY_EVERY, _FLAKY_AT = 4, 2
_VAN_MAKES = {"Ford", "Ram"}


@dataclass(frozen=True, slots=True)
class DeviceError:
    code: int  # 1..5; 0 (none) is represented by None
    since_ms: int


def error_at(seed: int, seq: int, at_ms: int) -> DeviceError | None:
    """The device fault of vehicle `seq` at `at_ms`, if any (stateless, O(1))."""
    slot = at_ms // _EPISODE_SLOT_MS
    rng = Rng(seed, seq, slot, 0xF1E)
    chance = 0.6 if seq % _FLAKY_EVERY == _FLAKY_AT else 0.04
    if rng.random() >= chance:
        return None
    code = rng.choice((ERROR_UNPLUGGED, ERROR_NO_SIGNAL, ERROR_NO_GPS, ERROR_BAD_GPS))
    duration_s = rng.randint(10, 60) * 60
    start = slot * _EPISODE_SLOT_MS + rng.randint(0, _EPISODE_SLOT_MS // 1000 - duration_s) * 1000
    end = start + duration_s * 1000
    if start <= at_ms < end:
        return DeviceError(code, start)
    if code == ERROR_UNPLUGGED and at_ms >= end:
        return DeviceError(ERROR_MODIFIED, end)
    return None


class Loose(dict[str, Any]):
    """An object that `encode` writes with stray commas, as FLEETIZE's examples do."""


def encode(value: Any) -> str:
    """JSON, except that `Loose` objects end in `,}` and double the comma after
    `device_portrait`, as the documentation's example does (not valid JSON)."""
    if isinstance(value, dict):
        loose = isinstance(value, Loose)
        parts: list[str] = []
        previous = ""
        for key, item in value.items():
            if parts:
                parts.append(",," if loose and previous == "device_portrait" else ",")
            parts.append(f"{json.dumps(key)}:{encode(item)}")
            previous = key
        return "{" + "".join(parts) + ("," if parts and loose else "") + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def device_id(vehicle: SimVehicle) -> int:
    return int(vehicle.vehicle_id)


def device_json(
    vehicle: SimVehicle,
    *,
    seed: int,
    now_ms: int,
    error: DeviceError | None,
    quirks: bool,
    day_start_ms: int,
) -> dict[str, Any]:
    """Every documented field of one device, in order, as FLEETIZE sends them."""
    identity = vehicle.identity
    gps = vehicle.last(Stat.GPS)
    engine_sample = vehicle.last(Stat.ENGINE)
    assert gps is not None
    assert engine_sample is not None  # both recorded when the vehicle is created
    fix: Fix = gps.value
    engine: Engine = engine_sample.value
    engine_since = engine_sample.time_ms
    code = error.code if error is not None else 0
    heartbeat = gps.time_ms
    online = gps.time_ms if engine is not Engine.OFF else engine_since
    if code == ERROR_NO_SIGNAL and error is not None:
        heartbeat = min(heartbeat, error.since_ms)
        online = min(online, error.since_ms)
    mileage = int(vehicle.odometer_m // 1000)
    speed = round(fix.speed_kmh)
    external_v = 0.0 if code == ERROR_UNPLUGGED else vehicle.battery_mv / 1000
    internal_v = 4.05 + vehicle.seq % 10 / 100
    if code == ERROR_UNPLUGGED and error is not None:
        internal_v = max(3.5, internal_v - (now_ms - error.since_ms) / 60_000 * 0.002)
    status = _status(vehicle, fix)
    verb, absence = {
        STATUS_OFFLINE: ("parked", "Parking"),
        STATUS_ACTIVE: ("driving", "Driving"),
        STATUS_INACTIVE: ("standing", "Standing"),
    }[status]
    data: dict[str, Any] = {
        "device_id": device_id(vehicle),
        "device_imei": int(imei(seed, vehicle.seq)),
        "device_type": "VAN" if identity.make in _VAN_MAKES else "TRUCK",
        "device_name": identity.name,
        "device_description": f"{identity.make} {identity.model}",
        "device_portrait": quote(PORTRAIT_URL.format(1471424858000 + vehicle.seq), safe=""),
        "device_mileage": str(mileage) if quirks and vehicle.seq % 3 == 0 else mileage,
        "device_mileage_raw": int(vehicle.gps_odometer_m // 1000),
        "device_distance": round(day_distance_m(vehicle, day_start_ms) / 1000),
        "device_speed": "0" if quirks and speed == 0 else speed,
        "device_upm": _rpm(engine, vehicle.seq, fix.speed_kmh),
        "device_temp_engine": _engine_temp(engine, engine_since, now_ms, vehicle.seq),
        "device_voltage_external": round(external_v, 2),
        "device_voltage_internal": f"{internal_v:.2f}" if quirks else round(internal_v, 2),
        "device_angle": fix.heading,
        "online_timestamp": online // 1000,
        "heartbeat_timestamp": heartbeat // 1000,
        "error_code": code,
        "error_code_time": None if error is None else error.since_ms // 1000,
        "error_text": None if error is None else ERROR_TEXTS[code],
        "status_absence": f"{absence}: {_duration(now_ms - engine_since)}",
        "status_description": f"{verb} since {_german_time(engine_since)}",
        "status_text": STATUS_TEXTS[status],
        "status_code": status,
        "location": location(fix.latitude, fix.longitude),
        "timestamp": gps.time_ms // 1000,
    }
    return data


def location(latitude: float, longitude: float) -> str:
    return f"{latitude:.5f},{longitude:.5f}"


def day_distance_m(vehicle: SimVehicle, day_start_ms: int) -> int:
    """Metres driven since `day_start_ms`, from the kept trips."""
    total = 0
    for trip in vehicle.trip_history():
        if trip.last_ms < day_start_ms or not trip.points:
            continue
        end = trip.points[-1].odometer_m
        total += end - _odometer_at(trip, day_start_ms)
    return total


def route_json(trip: Trip, now_ms: int) -> dict[str, Any]:
    """One entry of `routes`: a trip from engine on to engine off (or so far)."""
    points = trip.points
    first, last = points[0], points[-1]
    end_ms = trip.end_ms if trip.end_ms is not None else last.time_ms
    drive_from = trip.drive_start_ms if trip.drive_start_ms is not None else trip.start_ms
    drive_to = trip.drive_end_ms if trip.drive_end_ms is not None else last.time_ms
    drive_h = max(0, drive_to - drive_from) / HOUR_MS
    moving = [p.speed_kmh for p in points if p.speed_kmh > 0]
    pauses: list[dict[str, Any]] = []
    if trip.drive_start_ms is not None and trip.drive_start_ms > trip.start_ms:
        pauses.append(_pause(trip.start_ms, trip.drive_start_ms, first))
    if trip.drive_end_ms is not None:
        pauses.append(_pause(trip.drive_end_ms, trip.end_ms or now_ms, last))
    return {
        "origin_timestamp": str(trip.start_ms // 1000),
        "origin_mileage": trip.start_odometer_m // 1000,
        "origin_location": location(first.latitude, first.longitude),
        "destination_timestamp": str(end_ms // 1000),
        "destination_mileage": last.odometer_m // 1000,
        "destination_location": location(last.latitude, last.longitude),
        "route_points": ";".join(
            f"{location(p.latitude, p.longitude)},{round(p.speed_kmh)}" for p in points
        ),
        "average_speed": round(sum(moving) / len(moving)) if moving else 0,
        "average_speed_distance": round(trip.distance_m / 1000 / drive_h) if drive_h else 0,
        "pause_duration": sum(p["end_timestamp"] - p["start_timestamp"] for p in pauses),
        "route_pause": pauses,
    }


def _pause(start_ms: int, end_ms: int, where: Any) -> dict[str, Any]:
    return {
        "grouped": 0,
        "type": PAUSE_LONG_STOPPED,  # engine running, not moving
        "start_timestamp": start_ms // 1000,
        "end_timestamp": end_ms // 1000,
        "mileage": where.odometer_m // 1000,
        "location": location(where.latitude, where.longitude),
    }


def _odometer_at(trip: Trip, at_ms: int) -> int:
    odometer = trip.start_odometer_m
    for point in trip.points:
        if point.time_ms > at_ms:
            break
        odometer = point.odometer_m
    return odometer


def _status(vehicle: SimVehicle, fix: Fix) -> int:
    if vehicle.phase is Phase.PARKED:
        return STATUS_OFFLINE
    return STATUS_ACTIVE if fix.speed_kmh > 0 else STATUS_INACTIVE


def _rpm(engine: Engine, seq: int, speed_kmh: float) -> int:
    if engine is Engine.OFF:
        return 0
    if engine is Engine.IDLE:
        return 650 + seq * 37 % 100
    return min(2100, 900 + round(speed_kmh * 11))


def _engine_temp(engine: Engine, since_ms: int, now_ms: int, seq: int) -> int:
    minutes = (now_ms - since_ms) / 60_000
    if engine is Engine.OFF:
        return round(max(12.0, 88 - minutes * 0.6))
    return round(min(86.0 + seq % 5, 40 + minutes * 8))


def _duration(ms: int) -> str:
    minutes = max(0, ms) // 60_000
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _german_time(ms: int) -> str:
    """'Di, 17.03., 08:09' (UTC)."""
    when = time.gmtime(ms // 1000)
    return f"{_WEEKDAYS[when.tm_wday]}, {time.strftime('%d.%m., %H:%M', when)}"
