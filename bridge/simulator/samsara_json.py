"""Samsara's JSON shapes for the simulated world: names, units and time format.

Speeds are served in mph and odometers in metres, as Samsara does; the world
itself keeps km/h.

Camera media retrievals (`MediaRetrieval`) answer with the media statuses of
Samsara's API reference (`available`, `invalid`, `pending`, `failed`,
`unavailable`): `pending` while the device has not picked the request up and
while it uploads, then `available` with `urlInfo` and `availableAtTime`, or
`invalid` once the device answered that it has no such input (no vehicle has an
analog camera, and every fourth has no driver-facing one). NOTES.md says "until
status is done": Samsara's vocabulary for done is `available`. The create
answer carries `quotaStatus` (required by the reference, its text is a guess:
docs/simulator.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.simulator import geo
from bridge.simulator.vehicle import Engine, Fix, Sample, SimVehicle, Stat

MPH_PER_KMH = 1 / 1.609344

# The feed's type names (plural, arrays) and what they read.
FEED_TYPES: dict[str, Stat] = {
    "gps": Stat.GPS,
    "engineStates": Stat.ENGINE,
    "fuelPercents": Stat.FUEL_PERCENT,
    "obdOdometerMeters": Stat.OBD_ODOMETER_M,
    "gpsOdometerMeters": Stat.GPS_ODOMETER_M,
    "obdEngineSeconds": Stat.ENGINE_SECONDS,
    "batteryMilliVolts": Stat.BATTERY_MV,
}
# The snapshot endpoint takes the same `types` but answers single objects, some of
# them under singular names.
SNAPSHOT_KEYS: dict[str, str] = {
    **{name: name for name in FEED_TYPES},
    "engineStates": "engineState",
    "fuelPercents": "fuelPercent",
}
ENGINE_VALUES = {Engine.OFF: "Off", Engine.ON: "On", Engine.IDLE: "Idle"}


def format_time(ms: int) -> str:
    """RFC 3339 in UTC with a `Z`, milliseconds only when there are any."""
    seconds, millis = divmod(ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def external_ids(vehicle: SimVehicle) -> dict[str, str]:
    return {"samsara.serial": vehicle.identity.serial, "samsara.vin": vehicle.identity.vin}


def vehicle_ref(vehicle: SimVehicle) -> dict[str, Any]:
    """The mini-object that starts every stats entry."""
    return {
        "id": vehicle.vehicle_id,
        "name": vehicle.identity.name,
        "externalIds": external_ids(vehicle),
    }


def vehicle_json(vehicle: SimVehicle, created_ms: int) -> dict[str, Any]:
    """One entry of `GET /fleet/vehicles` (`VehicleResponseObjectResponseBody` of
    Samsara's API reference: `id` and `createdAtTime` are required)."""
    identity = vehicle.identity
    return {
        "id": identity.vehicle_id,
        "createdAtTime": format_time(created_ms),
        # Nothing edits a simulated vehicle: updated when it was created.
        "updatedAtTime": format_time(created_ms),
        "name": identity.name,
        "vin": identity.vin,
        "licensePlate": identity.plate,
        "make": identity.make,
        "model": identity.model,
        "year": str(identity.year),  # Samsara sends the year as a string
        "serial": identity.serial,
        "externalIds": external_ids(vehicle),
        "gateway": {"serial": identity.serial, "model": "VG54NA"},
        "harshAccelerationSettingType": "automatic",
        "notes": "",
        "tags": [],
    }


def sample_json(stat: Stat, sample: Sample[Any]) -> dict[str, Any]:
    if stat is Stat.GPS:
        return gps_json(sample)
    value = ENGINE_VALUES[sample.value] if stat is Stat.ENGINE else sample.value
    return {"time": format_time(sample.time_ms), "value": value}


def gps_json(sample: Sample[Fix]) -> dict[str, Any]:
    fix = sample.value
    return {
        "time": format_time(sample.time_ms),
        "latitude": fix.latitude,
        "longitude": fix.longitude,
        "headingDegrees": fix.heading,
        "speedMilesPerHour": round(fix.speed_kmh * MPH_PER_KMH, 2),
        "reverseGeo": {"formattedLocation": geo.fake_address(fix.latitude, fix.longitude)},
        "isEcuSpeed": False,
    }


# --- camera media retrieval ------------------------------------------------------

# The inputs of Samsara's API reference (MediaObjectResponseBodyInput).
MEDIA_INPUTS = (
    "dashcamRoadFacing",
    "dashcamDriverFacing",
    "analog1",
    "analog2",
    "analog3",
    "analog4",
)
PENDING, AVAILABLE, INVALID = "pending", "available", "invalid"
#: `quotaStatus` of a create answer. The reference requires the field and says the
#: quota is counted in seconds of high-resolution video (10 stills = 1 s) and
#: reset monthly; the text itself is a guess.
QUOTA_STATUS = "Quota remaining: 36000 seconds of high-resolution video this month"


def camera_inputs(vehicle: SimVehicle) -> frozenset[str]:
    """The camera inputs a vehicle's dashcam has."""
    if vehicle.seq % 4 == 0:
        return frozenset({"dashcamRoadFacing"})
    return frozenset({"dashcamRoadFacing", "dashcamDriverFacing"})


@dataclass(frozen=True, slots=True)
class MediaRetrieval:
    """One `POST /cameras/media/retrieval`: an image per requested input."""

    retrieval_id: str
    vehicle_id: str
    inputs: tuple[str, ...]
    start_ms: int
    end_ms: int
    pending_ms: int  # the device picked the request up (and knows its inputs)
    available_ms: int  # pending -> available: the image is uploaded
    has: frozenset[str]  # the inputs the device has
    shade: int

    def status(self, media_input: str, now_ms: int) -> str:
        if now_ms < self.pending_ms:
            return PENDING  # not picked up yet: nobody knows the inputs yet
        if media_input not in self.has:
            return INVALID
        return PENDING if now_ms < self.available_ms else AVAILABLE

    def media_json(
        self, now_ms: int, url_for: Callable[[str], tuple[str, int]]
    ) -> list[dict[str, Any]]:
        """The `media` list; `url_for(input)` signs a URL: (url, expiry ms)."""
        media = []
        for media_input in self.inputs:
            status = self.status(media_input, now_ms)
            entry: dict[str, Any] = {
                "input": media_input,
                "mediaType": "image",
                "status": status,
                "startTime": format_time(self.start_ms),
                "endTime": format_time(self.end_ms),
                "vehicleId": self.vehicle_id,
            }
            if status == AVAILABLE:
                url, expiry_ms = url_for(media_input)
                entry["availableAtTime"] = format_time(self.available_ms)
                entry["urlInfo"] = {"url": url, "urlExpiryTime": format_time(expiry_ms)}
            media.append(entry)
        return media
