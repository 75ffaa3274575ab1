"""Samsara's JSON shapes for the simulated world: names, units and time format.

Speeds are served in mph and odometers in metres, as Samsara does; the world
itself keeps km/h.
"""

from __future__ import annotations

import time
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


def vehicle_json(vehicle: SimVehicle) -> dict[str, Any]:
    """One entry of `GET /fleet/vehicles`."""
    identity = vehicle.identity
    return {
        "id": identity.vehicle_id,
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
