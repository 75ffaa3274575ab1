"""TrackSafe365's JSON shapes for a simulated world: vehicles, locations, stats,
dashcams, safety and driver-monitoring events, snapshot tasks.

Timestamps are ISO 8601 in UTC (`2025-03-03T06:00:00Z`), coordinates WGS84 decimal
degrees. The documentation names the endpoints and the vehicle fields (`id, name,
vin, licensePlate, tags`) but no other shape; the rest is the simulator's, with
units in the field names (`speedMilesPerHour`, `odometerMeters`, `engineHours`,
`fuelPercent`, `fuelConsumedLiters`), as the API's Samsara-like pagination and
filters (`tagIds`, `vehicleIds`, `endCursor`) suggest.

Safety events (harsh braking, acceleration, cornering, speeding) and DMS events
(drowsiness, distraction, phone use, seatbelt) are drawn per finished trip from the
vehicle's own random stream, so they never change once a trip has ended. Each
names the vehicle's regular driver (`driver: {id, name}`, the simulator's shape);
`event_media` is the linked video `include_media=true` adds (2026-06-10).

A dashcam is online while its vehicle's ignition is on and for
`DASHCAM_SLEEP_S` after it goes off.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.simulator.rng import Rng
from bridge.simulator.vehicle import Engine, Fix, SimVehicle, Stat, Trip

MPH_PER_KMH = 1 / 1.609344
DASHCAM_SLEEP_S = 15 * 60
SPEEDING_KMH = 95
TAGS = (("tag_100", "North Depot"), ("tag_200", "South Depot"), ("tag_300", "West Depot"))
#: type -> chance per finished trip (speeding: whenever the trip went over SPEEDING_KMH).
SAFETY_TYPES = {"harsh_braking": 0.3, "harsh_acceleration": 0.2, "harsh_cornering": 0.15}
DMS_TYPES = {"drowsiness": 0.08, "distraction": 0.15, "phone_use": 0.1, "seatbelt": 0.1}
CAMERAS = ("road", "driver")


def format_time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def naming(seq: int) -> tuple[str, str]:
    """TrackSafe365's vehicle ids are opaque strings like `veh_9e3779b1`."""
    return f"veh_{seq * 0x9E3779B1 % 2**32:08x}", f"Unit {seq:04d}"


def tag_of(vehicle: SimVehicle) -> tuple[str, str]:
    return TAGS[vehicle.seq % len(TAGS)]


def vehicle_json(vehicle: SimVehicle) -> dict[str, Any]:
    identity = vehicle.identity
    tag_id, tag_name = tag_of(vehicle)
    return {
        "id": vehicle.vehicle_id,
        "name": identity.name,
        "vin": identity.vin,
        "licensePlate": f"{identity.plate} IL",  # number and state
        "tags": [{"id": tag_id, "name": tag_name}],
    }


def location_json(vehicle: SimVehicle) -> dict[str, Any]:
    gps = vehicle.last(Stat.GPS)
    assert gps is not None  # recorded when the vehicle is created
    fix: Fix = gps.value
    return {
        "vehicleId": vehicle.vehicle_id,
        "name": vehicle.identity.name,
        "location": {
            "time": format_time(gps.time_ms),
            "latitude": fix.latitude,
            "longitude": fix.longitude,
            "headingDegrees": fix.heading,
            "speedMilesPerHour": round(fix.speed_kmh * MPH_PER_KMH, 2),
            "address": vehicle.city.address(fix.latitude, fix.longitude),
        },
    }


def stats_json(vehicle: SimVehicle, now_ms: int) -> dict[str, Any]:
    """Odometer, engine hours and fuel; vehicles without an OBD connection only
    know their GPS odometer."""
    obd = vehicle.has_obd
    return {
        "vehicleId": vehicle.vehicle_id,
        "name": vehicle.identity.name,
        "time": format_time(now_ms),
        "odometerMeters": int(vehicle.odometer_m if obd else vehicle.gps_odometer_m),
        "engineHours": round(vehicle.engine_s / 3600, 1) if obd else None,
        "fuelPercent": vehicle.fuel_percent if obd else None,
        "fuelConsumedLiters": (
            round(vehicle.distance_m / 1000 * vehicle.consumption / 100, 1) if obd else None
        ),
    }


def dashcam_online(vehicle: SimVehicle, now_ms: int) -> bool:
    engine = vehicle.last(Stat.ENGINE)
    assert engine is not None
    return engine.value is not Engine.OFF or now_ms - engine.time_ms < DASHCAM_SLEEP_S * 1000


def dashcam_json(vehicle: SimVehicle, now_ms: int) -> dict[str, Any]:
    engine = vehicle.last(Stat.ENGINE)
    assert engine is not None
    online = dashcam_online(vehicle, now_ms)
    last_seen = now_ms if online else engine.time_ms + DASHCAM_SLEEP_S * 1000
    return {
        "id": "dc_" + vehicle.vehicle_id.removeprefix("veh_"),
        "vehicleId": vehicle.vehicle_id,
        "serial": "TSC" + vehicle.identity.serial.replace("-", "")[1:],
        "model": "TS-DC360",
        "cameras": list(CAMERAS),
        "online": online,
        "lastSeenAt": format_time(last_seen),
    }


# --- events ----------------------------------------------------------------------


def safety_events(vehicle: SimVehicle, trip: Trip, seed: int) -> list[dict[str, Any]]:
    """Harsh driving and speeding on one finished trip."""
    events: list[dict[str, Any]] = []
    if not trip.done or len(trip.points) < 3:
        return events
    fastest = max(trip.points, key=lambda p: p.speed_kmh)
    if fastest.speed_kmh > SPEEDING_KMH:
        over = fastest.speed_kmh - SPEEDING_KMH
        events.append(_event(vehicle, trip, 0, "speeding", fastest.time_ms,
                             fastest.latitude, fastest.longitude, fastest.speed_kmh,
                             "high" if over > 15 else "medium" if over > 5 else "low"))  # fmt: skip
    rng = Rng(seed, vehicle.seq, trip.number, 0x5AFE)
    for index, (kind, chance) in enumerate(SAFETY_TYPES.items(), start=1):
        if rng.random() < chance:
            point = trip.points[rng.randint(1, len(trip.points) - 2)]
            severity = rng.choice(("low", "medium", "high"))
            events.append(_event(vehicle, trip, index, kind, point.time_ms, point.latitude,
                                 point.longitude, point.speed_kmh, severity))  # fmt: skip
    return events


def dms_events(vehicle: SimVehicle, trip: Trip, seed: int) -> list[dict[str, Any]]:
    """Driver monitoring on one finished trip."""
    events: list[dict[str, Any]] = []
    if not trip.done or len(trip.points) < 3:
        return events
    rng = Rng(seed, vehicle.seq, trip.number, 0xD35)
    for index, (kind, chance) in enumerate(DMS_TYPES.items(), start=5):
        if rng.random() < chance:
            # No seatbelt shows right as the vehicle moves off; the rest anywhere.
            at = 1 if kind == "seatbelt" else rng.randint(1, len(trip.points) - 2)
            point = trip.points[at]
            severity = rng.choice(("low", "medium", "high"))
            event = _event(vehicle, trip, index, kind, point.time_ms, point.latitude,
                           point.longitude, point.speed_kmh, severity)  # fmt: skip
            event["durationSeconds"] = rng.randint(2, 40)
            events.append(event)
    return events


def _event(
    vehicle: SimVehicle,
    trip: Trip,
    index: int,
    kind: str,
    at_ms: int,
    lat: float,
    lon: float,
    speed_kmh: float,
    severity: str,
) -> dict[str, Any]:
    return {
        "id": f"evt_{vehicle.seq:05d}{trip.number:05d}{index}",
        "vehicleId": vehicle.vehicle_id,
        "type": kind,
        "time": format_time(at_ms),
        "severity": severity,
        "location": {"latitude": lat, "longitude": lon},
        "speedMilesPerHour": round(speed_kmh * MPH_PER_KMH, 1),
        "coachingStatus": "needs_review",
        "driver": driver_json(vehicle),
    }


def driver_json(vehicle: SimVehicle) -> dict[str, str]:
    """Each vehicle has one regular driver."""
    return {"id": f"drv_{vehicle.seq:05d}", "name": f"Driver {vehicle.seq:04d}"}


def event_media(event: Mapping[str, Any], origin: str) -> list[dict[str, str]]:
    """The clip linked to an event: driver-facing for driver monitoring."""
    camera = "driver" if event["type"] in DMS_TYPES else "road"
    return [{"type": "video", "camera": camera, "url": f"{origin}/{event['id']}.mp4"}]


# --- snapshots ----------------------------------------------------------------------

PENDING, PROCESSING, COMPLETED, FAILED = "pending", "processing", "completed", "failed"
FAILURES: Mapping[str, str] = {
    "dashcam_offline": "The dashcam is offline and did not answer the request",
    "capture_failed": "The dashcam could not capture an image",
}


@dataclass(slots=True)
class Snapshot:
    """A snapshot task: pending until the dashcam takes it, processing while it
    uploads, then completed with an image or failed (decided when requested)."""

    task_id: str
    vehicle_id: str
    camera: str
    requested_ms: int
    processing_ms: int
    done_ms: int
    failure: str | None
    shade: int
    reported: bool = False  # counted as completed or failed

    def status(self, now_ms: int) -> str:
        if now_ms < self.processing_ms:
            return PENDING
        if now_ms < self.done_ms:
            return PROCESSING
        return FAILED if self.failure else COMPLETED

    def to_json(self, now_ms: int, image_url: str) -> dict[str, Any]:
        status = self.status(now_ms)
        finished = status in (COMPLETED, FAILED)
        return {
            "taskId": self.task_id,
            "status": status,
            "vehicleId": self.vehicle_id,
            "camera": self.camera,
            "requestedAt": format_time(self.requested_ms),
            "completedAt": format_time(self.done_ms) if finished else None,
            "imageUrl": image_url if status == COMPLETED else None,
            "error": (
                {"code": self.failure, "message": FAILURES[self.failure]}
                if status == FAILED and self.failure
                else None
            ),
        }
