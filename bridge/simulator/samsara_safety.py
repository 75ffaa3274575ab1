"""Samsara safety events for the simulated world: drawn from the trips it drives.

Every GPS fix of a moving vehicle (after a trip's first) may be a safety event:
a few an hour of driving, mostly harsh braking, acceleration and turns, now and
then a phone in the hand or a missing seatbelt, rarely a crash. The draw depends
only on the world's seed, the vehicle, the trip and the fix, so the same world
gives the same events however often (or rarely) anyone asks for them.

An event appears in the stream (`createdAtTime`, which the stream also reports as
`updatedAtTime`) 30-120 s after it happened (`startMs`), as Samsara needs to
upload and process it. The journal keeps events as long as the world keeps
trips; it scans only the fixes recorded since the last look, so asking every few
seconds costs next to nothing.

Shapes follow Samsara's `SafetyEventV2ObjectResponseBody` (asset, driver,
behaviorLabels, startMs/endMs in RFC 3339, location with an address object,
media with a URL per camera input, eventState).
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bridge.simulator import geo
from bridge.simulator.rng import Rng
from bridge.simulator.samsara_json import camera_inputs, external_ids, format_time
from bridge.simulator.vehicle import SimVehicle, TripPoint
from bridge.simulator.world import World

#: The chance that one fix of a moving vehicle is an event. Fixes come every 5-30 s
#: (about 200 an hour): two or three events per hour of driving.
EVENT_CHANCE = 0.012
#: behaviorLabels and how often each is drawn.
LABELS: tuple[tuple[str, float], ...] = (
    ("Braking", 0.27),
    ("Acceleration", 0.18),
    ("HarshTurn", 0.14),
    ("Speeding", 0.12),
    ("MobileUsage", 0.08),
    ("GenericDistraction", 0.06),
    ("NoSeatbelt", 0.05),
    ("Drowsy", 0.04),
    ("FollowingDistance", 0.03),
    ("Smoking", 0.02),
    ("Crash", 0.01),
)
#: Labels the driver-facing camera sees (its clip comes with the event if the
#: dashcam has one).
DRIVER_FACING = frozenset({"MobileUsage", "GenericDistraction", "NoSeatbelt", "Drowsy", "Smoking"})
PROCESSING_S = (30, 120)
MIN_SPEED_KMH = 8.0  # the slowest a simulated vehicle drives
_SALT = 0x5AFE7
_NAMESPACE = uuid.UUID("9b6f5a4e-3c1d-4e8f-a2b7-5d0c9e1f2a3b")
_FIRST_NAMES = ("Ana", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jon")
_LAST_NAMES = ("Alvarez", "Brooks", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Hill")


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    event_id: str
    vehicle_id: str
    vehicle_name: str
    vin: str
    seq: int
    trip: int
    index: int
    label: str
    start_ms: int
    created_ms: int
    trip_start_ms: int
    latitude: float
    longitude: float
    heading: int
    speed_kmh: float
    max_g: float
    inputs: tuple[str, ...]

    @property
    def key(self) -> tuple[int, int]:
        """The stream's order: by creation, then a number unique to the event."""
        return self.created_ms, (self.seq * 100_000 + self.trip) * 10_000 + self.index


def driver_of(vehicle: SimVehicle) -> dict[str, str]:
    """The driver assigned to a vehicle (one each, for the whole simulation)."""
    seq = vehicle.seq
    first = _FIRST_NAMES[seq % len(_FIRST_NAMES)]
    last = _LAST_NAMES[(seq // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
    return {"id": f"52{seq:08d}", "name": f"{first} {last}"}


def draw(
    seed: int, vehicle: SimVehicle, trip: int, index: int, point: TripPoint, trip_start_ms: int
) -> SafetyEvent | None:
    """The event at one fix of a trip, if that fix is one."""
    if index < 1 or point.speed_kmh < MIN_SPEED_KMH:
        return None
    rng = Rng(seed, vehicle.seq, trip, index, _SALT)
    if rng.random() >= EVENT_CHANCE:
        return None
    pick, label = rng.random(), LABELS[-1][0]
    total = sum(weight for _, weight in LABELS)
    for name, weight in LABELS:
        pick -= weight / total
        if pick < 0:
            label = name
            break
    has = camera_inputs(vehicle)
    inputs = ["dashcamRoadFacing"]
    if label in DRIVER_FACING and "dashcamDriverFacing" in has:
        inputs.append("dashcamDriverFacing")
    created = point.time_ms + rng.randint(*PROCESSING_S) * 1000
    return SafetyEvent(
        event_id=str(uuid.uuid5(_NAMESPACE, f"{seed}/{vehicle.seq}/{trip}/{index}")),
        vehicle_id=vehicle.vehicle_id,
        vehicle_name=vehicle.identity.name,
        vin=vehicle.identity.vin,
        seq=vehicle.seq,
        trip=trip,
        index=index,
        label=label,
        start_ms=point.time_ms,
        created_ms=created,
        trip_start_ms=trip_start_ms,
        latitude=point.latitude,
        longitude=point.longitude,
        heading=point.heading,
        speed_kmh=point.speed_kmh,
        max_g=round(rng.uniform(0.25, 0.9) if label != "Crash" else rng.uniform(2.0, 4.0), 2),
        inputs=tuple(inputs),
    )


class SafetyJournal:
    """Every safety event of a world (with trip history), in stream order."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._events: list[SafetyEvent] = []
        self._keys: list[tuple[int, int]] = []
        # vehicle seq -> (trip number, fixes of it already looked at)
        self._scanned: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._events)

    def catch_up(self) -> int:
        """Scan what the world recorded since the last call; the time now (ms)."""
        self.world.update()
        now = self.world.clock.now_ms()
        seed = self.world.seed
        for vehicle in self.world.vehicles():
            done_trip, done_index = self._scanned.get(vehicle.seq, (0, 0))
            for trip in vehicle.trip_history():
                if trip.number < done_trip:
                    continue
                first = done_index if trip.number == done_trip else 0
                for index in range(first, len(trip.points)):
                    event = draw(
                        seed, vehicle, trip.number, index, trip.points[index], trip.start_ms
                    )
                    if event is not None:
                        self._insert(event)
                done_trip, done_index = trip.number, len(trip.points)
            self._scanned[vehicle.seq] = (done_trip, done_index)
        self._forget(now - max(round(self.world.history_days * 86_400_000), 3_600_000))
        return now

    def after(self, key: tuple[int, int], since_ms: int, until_ms: int) -> Iterator[SafetyEvent]:
        """Events past `key` created within [since_ms, until_ms], in stream order."""
        for index in range(bisect_right(self._keys, key), len(self._events)):
            event = self._events[index]
            if event.created_ms > until_ms:
                return
            if event.created_ms >= since_ms:
                yield event

    def events(self) -> list[SafetyEvent]:
        return list(self._events)

    def _insert(self, event: SafetyEvent) -> None:
        key = event.key
        index = bisect_right(self._keys, key)
        self._keys.insert(index, key)
        self._events.insert(index, event)

    def _forget(self, before_ms: int) -> None:
        cut = bisect_right(self._keys, (before_ms, -1))
        if cut:
            del self._keys[:cut]
            del self._events[:cut]


def event_json(
    event: SafetyEvent,
    vehicle: SimVehicle | None,
    media_url: Callable[[SafetyEvent, str], str],
    *,
    include_asset: bool,
    include_driver: bool,
) -> dict[str, Any]:
    asset: dict[str, Any] = {"id": event.vehicle_id}
    if vehicle is not None:
        asset["externalIds"] = external_ids(vehicle)
    if include_asset:
        asset.update({"name": event.vehicle_name, "type": "vehicle", "vin": event.vin})
    driver: dict[str, Any] = {"id": ""}
    if vehicle is not None:
        driver = driver_of(vehicle)
        if not include_driver:
            driver = {"id": driver["id"]}
    # "1200 W Madison St, Chicago, IL" -> Samsara's address object
    address = geo.fake_address(event.latitude, event.longitude).split(", ")
    street, city, state = [*address, "", ""][:3]
    number, _, street_name = street.partition(" ")
    created = format_time(event.created_ms)
    return {
        "id": event.event_id,
        "asset": asset,
        "driver": driver,
        "behaviorLabels": [{"label": event.label, "source": "automated"}],
        "contextLabels": [],
        "createdAtTime": created,
        "updatedAtTime": created,
        "startMs": format_time(event.start_ms),
        "endMs": format_time(event.start_ms + 4000),
        "eventState": "needsReview",
        "inboxEventUrl": f"https://cloud.samsara.com/o/1/fleet/safety/event/{event.event_id}",
        "incidentReportUrl": f"https://cloud.samsara.com/o/1/fleet/reports/{event.event_id}",
        "location": {
            "latitude": event.latitude,
            "longitude": event.longitude,
            "headingDegrees": event.heading,
            "address": {
                "streetNumber": number,
                "street": street_name,
                "city": city,
                "state": state,
                "country": "US",
            },
        },
        "maxAccelerationGForce": event.max_g,
        "media": [{"input": name, "url": media_url(event, name)} for name in event.inputs],
        "tripStartTime": format_time(event.trip_start_ms),
    }
