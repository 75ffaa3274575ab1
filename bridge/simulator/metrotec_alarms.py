"""Metrotec geozones and the alarm log, for the simulated fleet around Tallinn.

Zones are circles (metrotec.txt documents `geometry: {latlng: {lat, lng}, radius,
type: "circle"}`): one around each yard the fleet's depots are in, one over the
old town, and one deleted zone that the list still shows with its `deleted_at`.
Every vehicle but every fifth (seq 5, 10, ...) is linked to every live zone for
both events (1 = enter, 2 = exit): the zones' `zObjects` and the vehicles'
settings `zones` say so.

The alarm log is what the account's devices and zones raised, GUESSED in shape
(the documentation gives only the request): entries with `id`, `object_id`,
`alias`, `alarm_type` (a code), `alarm_name`, `time` (UTC text), `lat`, `lon`,
`speed`, `address`, and for zone alarms `geozone_id` and `geozone_name`. Zone
alarms come from every fix of a linked vehicle's trips, exactly at the edge
(inside means within the radius); the others (speeding, power cut, low battery,
the alarm button) are drawn from the same fixes, a handful per day of driving.
Like everything in the simulator they depend only on the world's seed and what
the vehicles drove, not on who asked when.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bridge.simulator import geo
from bridge.simulator.metrotec_geo import TALLINN
from bridge.simulator.metrotec_json import alias, format_utc
from bridge.simulator.rng import Rng
from bridge.simulator.vehicle import SimVehicle, TripPoint
from bridge.simulator.world import World

ZONE_FIRST_ID = 48207
YARD_RADIUS_M = 500.0
OLD_TOWN = (59.4372, 24.7450)
OLD_TOWN_RADIUS_M = 700.0
UNLINKED_EVERY = 5
LINK_FIRST_ID = 1367
# Alarm codes (GUESS: 1 and 2 as the zone link's event codes) and their names.
ALARM_ZONE_ENTER, ALARM_ZONE_EXIT = 1, 2
ALARM_BUTTON, ALARM_POWER_CUT, ALARM_LOW_BATTERY, ALARM_SPEEDING = 3, 4, 6, 7
ALARM_NAMES = {
    ALARM_ZONE_ENTER: "Geozone enter",
    ALARM_ZONE_EXIT: "Geozone exit",
    ALARM_BUTTON: "Alarm button",
    ALARM_POWER_CUT: "Power cut",
    ALARM_LOW_BATTERY: "Low battery",
    ALARM_SPEEDING: "Speeding",
}
#: The chance that one fix of a moving vehicle raises a device alarm, and which.
DEVICE_ALARM_CHANCE = 0.006
DEVICE_ALARMS: tuple[tuple[int, float], ...] = (
    (ALARM_SPEEDING, 0.55),
    (ALARM_POWER_CUT, 0.2),
    (ALARM_LOW_BATTERY, 0.15),
    (ALARM_BUTTON, 0.1),
)
MIN_SPEED_KMH = 8.0
_SALT = 0xA1A


@dataclass(frozen=True, slots=True)
class SimZone:
    zone_id: int
    name: str
    latitude: float
    longitude: float
    radius_m: float
    deleted_at: str | None = None

    def contains(self, latitude: float, longitude: float) -> bool:
        return geo.distance_m(self.latitude, self.longitude, latitude, longitude) <= self.radius_m

    def to_json(self, linked: list[str]) -> dict[str, Any]:
        return {
            "id": self.zone_id,
            "name": self.name,
            "geometry": {
                "latlng": {"lat": self.latitude, "lng": self.longitude},
                "radius": self.radius_m,
                "type": "circle",
            },
            "deleted_at": self.deleted_at,
            "zObjects": [] if self.deleted_at else linked,
        }


def make_zones(world: World) -> list[SimZone]:
    """A zone per yard the fleet's depots are in, the old town, a deleted one."""
    centres: list[tuple[float, float]] = []
    for vehicle in world.vehicles():
        if all(geo.distance_m(*vehicle.depot, *c) > 2 * YARD_RADIUS_M for c in centres):
            centres.append(vehicle.depot)
    zones = [
        SimZone(ZONE_FIRST_ID + index, TALLINN.address(*centre), *centre, YARD_RADIUS_M)
        for index, centre in enumerate(centres)
    ]
    zones.append(
        SimZone(ZONE_FIRST_ID + len(zones), "Vanalinn, Tallinn", *OLD_TOWN, OLD_TOWN_RADIUS_M)
    )
    deleted = SimZone(
        ZONE_FIRST_ID + len(zones),
        "Vana ladu (suletud)",
        59.40,
        24.70,
        300.0,
        "2025-01-02 08:00:00",
    )
    return [*zones, deleted]


def linked(vehicle: SimVehicle) -> bool:
    return vehicle.seq % UNLINKED_EVERY != 0


def zone_links_json(vehicle: SimVehicle, zones: list[SimZone]) -> list[dict[str, Any]]:
    """The vehicle settings' `zones`: its links, as the link endpoint answers them."""
    if not linked(vehicle):
        return []
    return [
        {
            "id": LINK_FIRST_ID + vehicle.seq * 100 + index,
            "geozoneID": zone.zone_id,
            "object_id": vehicle.vehicle_id,
            "geo_id": 1,
            "events": [ALARM_ZONE_ENTER, ALARM_ZONE_EXIT],
        }
        for index, zone in enumerate(zones)
        if zone.deleted_at is None
    ]


@dataclass(frozen=True, slots=True)
class AlarmEntry:
    entry_id: int
    vehicle_id: str
    alias: str
    code: int
    time_ms: int
    latitude: float
    longitude: float
    speed_kmh: float
    zone: SimZone | None = None

    def to_json(self, account: str) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "oid": account,
            "object_id": self.vehicle_id,
            "alias": self.alias,
            "alarm_type": self.code,
            "alarm_name": ALARM_NAMES[self.code],
            "time": format_utc(self.time_ms),
            "lat": self.latitude,
            "lon": self.longitude,
            "speed": round(self.speed_kmh),
            "address": TALLINN.address(self.latitude, self.longitude),
            "geozone_id": self.zone.zone_id if self.zone else None,
            "geozone_name": self.zone.name if self.zone else None,
        }


class AlarmLog:
    """Every alarm of a world (with trip history), in time order."""

    def __init__(self, world: World, zones: list[SimZone]) -> None:
        self.world = world
        self.zones = [zone for zone in zones if zone.deleted_at is None]
        self._entries: list[AlarmEntry] = []
        self._keys: list[tuple[int, int]] = []
        # vehicle seq -> (trip number, fixes looked at, zones it is in)
        self._scanned: dict[int, tuple[int, int, frozenset[int] | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def catch_up(self) -> int:
        """Scan the fixes recorded since the last call; the time now (ms)."""
        self.world.update()
        now = self.world.clock.now_ms()
        for vehicle in self.world.vehicles():
            done_trip, done_index, inside = self._scanned.get(vehicle.seq, (0, 0, None))
            for trip in vehicle.trip_history():
                if trip.number < done_trip:
                    continue
                first = done_index if trip.number == done_trip else 0
                for index in range(first, len(trip.points)):
                    point = trip.points[index]
                    if linked(vehicle):
                        inside = self._zone_alarms(vehicle, point, inside)
                    self._device_alarm(vehicle, trip.number, index, point)
                done_trip, done_index = trip.number, len(trip.points)
            self._scanned[vehicle.seq] = (done_trip, done_index, inside)
        self._forget(now - round(max(self.world.history_days, 1.0) * 86_400_000))
        return now

    def between(self, start_ms: int, stop_ms: int, vehicle_id: str | None) -> Iterator[AlarmEntry]:
        for index in range(bisect_left(self._keys, (start_ms, -1)), len(self._entries)):
            entry = self._entries[index]
            if entry.time_ms > stop_ms:
                return
            if vehicle_id is None or entry.vehicle_id == vehicle_id:
                yield entry

    def entries(self) -> list[AlarmEntry]:
        return list(self._entries)

    def _zone_alarms(
        self, vehicle: SimVehicle, point: TripPoint, inside: frozenset[int] | None
    ) -> frozenset[int]:
        now_inside = frozenset(
            zone.zone_id for zone in self.zones if zone.contains(point.latitude, point.longitude)
        )
        if inside is not None:
            for zone in self.zones:
                was, found = zone.zone_id in inside, zone.zone_id in now_inside
                if was != found:
                    code = ALARM_ZONE_ENTER if found else ALARM_ZONE_EXIT
                    self._add(vehicle, code, point, zone)
        return now_inside

    def _device_alarm(self, vehicle: SimVehicle, trip: int, index: int, point: TripPoint) -> None:
        if index < 1 or point.speed_kmh < MIN_SPEED_KMH:
            return
        rng = Rng(self.world.seed, vehicle.seq, trip, index, _SALT)
        if rng.random() >= DEVICE_ALARM_CHANCE:
            return
        pick = rng.random()
        for code, weight in DEVICE_ALARMS:
            pick -= weight
            if pick < 0:
                self._add(vehicle, code, point)
                return

    def _add(
        self, vehicle: SimVehicle, code: int, point: TripPoint, zone: SimZone | None = None
    ) -> None:
        zone_part = (zone.zone_id - ZONE_FIRST_ID) % 100 if zone else 0
        entry_id = (
            ((point.time_ms // 1000 - 1_500_000_000) * 1000 + vehicle.seq % 1000) * 1000
            + code * 100
            + zone_part
        )
        entry = AlarmEntry(
            entry_id=entry_id,
            vehicle_id=vehicle.vehicle_id,
            alias=alias(vehicle),
            code=code,
            time_ms=point.time_ms,
            latitude=point.latitude,
            longitude=point.longitude,
            speed_kmh=point.speed_kmh,
            zone=zone,
        )
        key = (entry.time_ms, entry.entry_id)
        index = bisect_right(self._keys, key)
        self._keys.insert(index, key)
        self._entries.insert(index, entry)

    def _forget(self, before_ms: int) -> None:
        cut = bisect_left(self._keys, (before_ms, -1))
        if cut:
            del self._keys[:cut]
            del self._entries[:cut]
