"""Telemax's JSON shapes for a simulated world: records, paging, scores, alerts.

Times are ISO 8601 without a zone (`2025-03-03T06:00:00`); they are UTC. Speeds
in km/h, odometers in km, fuel in % and litres, voltage in volts, engine hours
in hours. Vehicles without an OBD connection report no fuel (`null`).

Paging (every list): `page` from 1, `pageSize` default 50, at most 500 (more, or
less than 1, is a 400). `lastResultIndex` is the 1-based index of the last item
on the page (0 on an empty page).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.simulator import geo
from bridge.simulator.rng import Rng
from bridge.simulator.vehicle import Engine, Fix, SimVehicle, Stat, Trip
from bridge.simulator.world import imei

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
ONLINE_WITHIN_MS = 15 * 60_000
RISK_LEVELS = ((35, "Low"), (70, "Medium"), (101, "High"))


class BadQuery(ValueError):
    """A query parameter that Telemax answers with 400."""


def format_time(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))


def parse_time(raw: str, name: str) -> int:
    """ISO 8601; a time without a zone is UTC."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"'{name}' is not a valid date-time: {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def device_id(vehicle: SimVehicle) -> int:
    return 900_000 + vehicle.seq


@dataclass(frozen=True, slots=True)
class Paging:
    page: int
    size: int


def paging(query: Mapping[str, str]) -> Paging:
    page = _positive(query, "page", 1, None)
    size = _positive(query, "pageSize", PAGE_SIZE, MAX_PAGE_SIZE)
    return Paging(page, size)


def envelope(
    items: Sequence[Any], paging: Paging, convert: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """One page of `items`, converted by `convert` (only the page is)."""
    first = (paging.page - 1) * paging.size
    chunk = list(items[first : first + paging.size])
    if convert is not None:
        chunk = [convert(item) for item in chunk]
    return {
        "items": chunk,
        "currentPage": paging.page,
        "numberOfPages": math.ceil(len(items) / paging.size),
        "totalResults": len(items),
        "lastResultIndex": first + len(chunk) if chunk else 0,
    }


def vehicle_json(vehicle: SimVehicle, seed: int) -> dict[str, Any]:
    """An entry of the vehicle list."""
    identity = vehicle.identity
    return {
        "id": int(vehicle.vehicle_id),
        "name": identity.name,
        "registration": identity.plate,
        "vin": identity.vin,
        "make": identity.make,
        "model": identity.model,
        "year": identity.year,
        "deviceId": device_id(vehicle),
        "imei": imei(seed, vehicle.seq, 0x7E1),
    }


def position_json(vehicle: SimVehicle, seed: int, now_ms: int) -> dict[str, Any]:
    """A last-position record."""
    gps = vehicle.last(Stat.GPS)
    engine = vehicle.last(Stat.ENGINE)
    assert gps is not None
    assert engine is not None  # both recorded when the vehicle is created
    fix: Fix = gps.value
    return {
        "id": int(vehicle.vehicle_id),
        "utcTime": format_time(gps.time_ms),
        "lat": fix.latitude,
        "lng": fix.longitude,
        "speed": fix.speed_kmh,
        "course": fix.heading,
        "ignition": engine.value is not Engine.OFF,
        "odometer": round(vehicle.odometer_m / 1000, 1),
        "voltage": round(vehicle.battery_mv / 1000, 2),
        "engineHours": round(vehicle.engine_s / 3600, 1),
        "deviceId": device_id(vehicle),
        "deviceName": vehicle.identity.name,
        "imei": imei(seed, vehicle.seq, 0x7E1),
        "vin": vehicle.identity.vin,
        "lastMovementTime": format_time(_last_movement(vehicle, fix, gps.time_ms, engine.time_ms)),
        "fuelLevel": vehicle.fuel_percent if vehicle.has_obd else None,
        "fuelVolume": round(vehicle.fuel_l, 1) if vehicle.has_obd else None,
        "address": geo.fake_address(fix.latitude, fix.longitude),
        "isOnline": now_ms - gps.time_ms <= ONLINE_WITHIN_MS,
    }


def risk_score(trip: Trip, seed: int, seq: int) -> int:
    """0-100, lower is safer: speeding weighs most, the rest is the driver."""
    rng = Rng(seed, seq, trip.number, 0x5AFE)
    over = max(0.0, trip.max_speed_kmh - 80)
    return min(100, round(over * 2.5 + rng.uniform(0, 40)))


def score_json(trip: Trip, seed: int, seq: int, end_ms: int) -> dict[str, Any]:
    """A safety-score entry; `end_ms` is the trip's end (for one still going on,
    whatever the query made of it)."""
    score = risk_score(trip, seed, seq)
    return {
        "startTime": format_time(trip.start_ms),
        "endTime": format_time(end_ms),
        "riskLevel": next(level for below, level in RISK_LEVELS if score < below),
        "riskScore": score,
        "duration": (end_ms - trip.start_ms) // 1000,
        "distance": round(trip.distance_m / 1000, 2),
    }


def trip_id(vehicle: SimVehicle, trip: Trip) -> int:
    return vehicle.seq * 1_000_000 + trip.number


def replay_json(vehicle: SimVehicle, trip: Trip) -> dict[str, Any]:
    """A trip of the replay, with its positions."""
    first, last = trip.points[0], trip.points[-1]
    moving = [p.speed_kmh for p in trip.points if p.speed_kmh > 0]
    return {
        "tripId": trip_id(vehicle, trip),
        "vehicleId": int(vehicle.vehicle_id),
        "startTime": format_time(trip.start_ms),
        "endTime": None if trip.end_ms is None else format_time(trip.end_ms),
        "startAddress": geo.fake_address(first.latitude, first.longitude),
        "endAddress": geo.fake_address(last.latitude, last.longitude),
        "distance": round(trip.distance_m / 1000, 2),
        "duration": (trip.last_ms - trip.start_ms) // 1000,
        "maxSpeed": trip.max_speed_kmh,
        "averageSpeed": round(sum(moving) / len(moving), 1) if moving else 0.0,
        "positions": [
            {
                "utcTime": format_time(p.time_ms),
                "lat": p.latitude,
                "lng": p.longitude,
                "speed": p.speed_kmh,
                "course": p.heading,
            }
            for p in trip.points
        ],
    }


def alerts_of(vehicle: SimVehicle, trip: Trip, seed: int) -> list[dict[str, Any]]:
    """Speeding (over 95 km/h) and, now and then, harsh braking on one trip."""
    alerts: list[dict[str, Any]] = []
    base = trip_id(vehicle, trip) * 10
    fastest = max(trip.points, key=lambda p: p.speed_kmh)
    if fastest.speed_kmh > 95:
        alerts.append(
            _alert(base + 1, vehicle, "Speeding", fastest.time_ms, f"{fastest.speed_kmh:.0f} km/h")
        )
    rng = Rng(seed, vehicle.seq, trip.number, 0xA1E)
    if rng.random() < 0.25 and len(trip.points) > 2:
        point = trip.points[rng.randint(1, len(trip.points) - 2)]
        alerts.append(
            _alert(base + 2, vehicle, "HarshBraking", point.time_ms, "Deceleration 0.45 g")
        )
    return alerts


def _alert(
    alert_id: int, vehicle: SimVehicle, kind: str, at_ms: int, details: str
) -> dict[str, Any]:
    return {
        "id": alert_id,
        "vehicleId": int(vehicle.vehicle_id),
        "type": kind,
        "time": format_time(at_ms),
        "details": details,
    }


def _last_movement(vehicle: SimVehicle, fix: Fix, fix_ms: int, engine_ms: int) -> int:
    if fix.speed_kmh > 0:
        return fix_ms
    for trip in reversed(vehicle.trip_history()):
        if trip.drive_end_ms is not None:
            return trip.drive_end_ms
    return engine_ms


def _positive(query: Mapping[str, str], name: str, default: int, maximum: int | None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"'{name}' must be an integer, got {raw!r}") from None
    if value < 1 or (maximum is not None and value > maximum):
        limit = f"between 1 and {maximum}" if maximum is not None else "at least 1"
        raise BadQuery(f"'{name}' must be {limit}, got {value}")
    return value
