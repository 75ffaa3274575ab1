"""The simulated fleet that every provider simulator serves.

The world is lazy: nothing moves until someone asks (`update()`), and then every
vehicle catches up to the clock's `now`. A frozen clock therefore means a world
that does not change, which is what tests rely on.

Every batch of recorded readings gets a new revision number; a provider that has
answered up to revision N can later ask for exactly what came after it.

Each provider simulator gets a world of its own (its own seed, vehicle ids and
names), all on one clock. Options: `work_hours` (trips only start within those UTC
hours; parked otherwise), `park_minutes` (how long a stop lasts within them),
`history_days` (keep every trip of the last days, for trip and route endpoints)
and `city` (where the fleet drives: Chicago unless told otherwise).

`imei()` and `dashcam_jpeg()` are the hardware the vehicles carry, for the
providers that serve them.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.simulator import geo
from bridge.simulator.clock import SimClock, from_ms
from bridge.simulator.identity import MODELS, make_identity
from bridge.simulator.rng import Rng
from bridge.simulator.vehicle import (
    CHICAGO,
    DAY_MS,
    PARK_MIN,
    City,
    Engine,
    Fix,
    Forced,
    SimVehicle,
    Stat,
    WorkHours,
    check_work_hours,
)

MPH_PER_KMH = 1 / 1.609344
_YARDS = 6
_YARD_KM = (5.0, 28.0)
# Every tenth vehicle has a gateway without an OBD connection: no ECU odometer or
# engine seconds, only the GPS odometer, so clients must fall back to it.
_NO_OBD_EVERY = 10
_NO_OBD_AT = 3

#: A vehicle's sequence number (1, 2, ...) -> (vehicle id, display name), so that
#: each provider's fleet carries ids in that provider's style.
Naming = Callable[[int], tuple[str, str]]


@dataclass(frozen=True, slots=True)
class VehicleTruth:
    """What the simulator last reported for one vehicle, in neutral units.

    Compare a client's output against this: it is exactly what was served.
    """

    vehicle_id: str
    name: str
    vin: str
    plate: str
    make: str
    model: str
    year: int
    serial: str
    has_obd: bool
    latitude: float
    longitude: float
    heading: int
    speed_kmh: float
    position_time: datetime
    address: str
    engine: Engine
    fuel_percent: int
    obd_odometer_m: int | None
    gps_odometer_m: int
    engine_seconds: int | None
    battery_mv: int
    phase: str
    held: bool
    trips: int
    refuels: int
    distance_m: float
    tank_l: float

    @property
    def speed_mph(self) -> float:
        return self.speed_kmh * MPH_PER_KMH

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["position_time"] = self.position_time.isoformat().replace("+00:00", "Z")
        data["engine"] = self.engine.value
        data["speed_mph"] = self.speed_mph
        return data


class World:
    """A deterministic fleet around a city (Chicago by default), driven by a `SimClock`."""

    def __init__(
        self,
        vehicles: int = 20,
        seed: int = 1,
        clock: SimClock | None = None,
        *,
        work_hours: WorkHours | None = None,
        park_minutes: tuple[int, int] = PARK_MIN,
        history_days: float = 0,
        naming: Naming | None = None,
        city: City | None = None,
    ) -> None:
        """`work_hours=(7, 17)`: vehicles start trips only from 07:00 to 16:59 UTC
        (a trip under way at 17:00 is finished) and stay parked otherwise;
        `park_minutes`: the range a stop within work hours lasts (10-120 min);
        `history_days`: how long finished trips are kept (0: none, the cheapest);
        `naming`: vehicle ids and names (default Samsara-style); `city`: where the
        fleet drives (default Chicago)."""
        if vehicles < 0:
            raise ValueError("vehicles must be >= 0")
        if not 1 <= park_minutes[0] <= park_minutes[1]:
            raise ValueError("park_minutes must be (low, high) with 1 <= low <= high")
        if history_days < 0:
            raise ValueError("history_days must be >= 0")
        self.clock = clock if clock is not None else SimClock()
        self.seed = seed
        self.work_hours = None if work_hours is None else check_work_hours(work_hours)
        self.park_minutes = park_minutes
        self.history_days = history_days
        self.city = city if city is not None else CHICAGO
        self._naming = naming
        self._revision = 1
        self._updated_ms = self.clock.now_ms()
        self._by_id: dict[str, SimVehicle] = {}
        self._hidden: dict[str, SimVehicle] = {}
        # In creation order (= ascending seq), for stable pagination.
        self._order: list[SimVehicle] = []
        self._seqs: list[int] = []
        self._next_seq = 1
        self._yards = _make_yards(Rng(seed, 0), self.city)
        for _ in range(vehicles):
            self._spawn(self._updated_ms, self._revision)

    # --- reading ----------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._revision

    def update(self) -> int:
        """Catch every vehicle up with the clock; the revision now current."""
        now = self.clock.now_ms()
        if now > self._updated_ms:
            self._updated_ms = now
            self._revision += 1
            revision = self._revision
            for vehicle in self._order:
                if vehicle.next_ms <= now:
                    vehicle.advance(now, revision)
        return self._revision

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, vehicle_id: object) -> bool:
        return vehicle_id in self._by_id

    def ids(self) -> list[str]:
        return [v.vehicle_id for v in self._order]

    def vehicle(self, vehicle_id: str) -> SimVehicle:
        return self._by_id[vehicle_id]

    def vehicles(self) -> list[SimVehicle]:
        return list(self._order)

    def vehicles_after(self, seq: int) -> Iterator[SimVehicle]:
        """Vehicles with a sequence number above `seq`, in order (for cursors that
        must survive additions and removals)."""
        order = self._order
        for index in range(bisect_right(self._seqs, seq), len(order)):
            yield order[index]

    def truth(self, vehicle_id: str) -> VehicleTruth:
        self.update()
        return _truth(self._by_id[vehicle_id])

    def truths(self) -> list[VehicleTruth]:
        self.update()
        return [_truth(v) for v in self._order]

    # --- changing it (tests and the control API) ------------------------------
    def add_vehicle(self) -> str:
        now, revision = self._begin_change()
        return self._spawn(now, revision).vehicle_id

    def remove_vehicle(self, vehicle_id: str) -> None:
        vehicle = self._by_id.pop(vehicle_id)
        index = bisect_right(self._seqs, vehicle.seq) - 1
        del self._order[index]
        del self._seqs[index]

    def hide_vehicle(self, vehicle_id: str) -> None:
        """The vehicle leaves every list (a tracker unplugged, a licence moved) until
        `show_vehicle` brings it back with the same id; KeyError if unknown."""
        vehicle = self._by_id[vehicle_id]
        self.remove_vehicle(vehicle_id)
        self._hidden[vehicle_id] = vehicle

    def show_vehicle(self, vehicle_id: str) -> None:
        vehicle = self._hidden.pop(vehicle_id)
        index = bisect_right(self._seqs, vehicle.seq)
        self._order.insert(index, vehicle)
        self._seqs.insert(index, vehicle.seq)
        self._by_id[vehicle_id] = vehicle

    def park_all(self) -> None:
        """Park every vehicle where it is, engine off, until `release()`."""
        now, revision = self._begin_change()
        for vehicle in self._order:
            vehicle.hold(now, revision)

    def park(self, vehicle_id: str) -> None:
        now, revision = self._begin_change()
        self._by_id[vehicle_id].hold(now, revision)

    def release(self, vehicle_id: str | None = None) -> None:
        """Let held vehicles go back to their routine (all of them by default)."""
        self.update()
        targets = self._order if vehicle_id is None else [self._by_id[vehicle_id]]
        for vehicle in targets:
            vehicle.release(self._updated_ms)

    def set_vehicle(
        self,
        vehicle_id: str,
        *,
        latitude: float | None = None,
        longitude: float | None = None,
        fuel_percent: float | None = None,
        odometer_m: int | None = None,
        gps_odometer_m: int | None = None,
        engine_seconds: int | None = None,
        battery_mv: int | None = None,
    ) -> VehicleTruth:
        """Pin values on a vehicle now; they are reported like any other change."""
        vehicle = self._by_id[vehicle_id]
        now, revision = self._begin_change()
        forced = Forced(
            latitude=latitude,
            longitude=longitude,
            fuel_percent=fuel_percent,
            odometer_m=odometer_m,
            gps_odometer_m=gps_odometer_m,
            engine_seconds=engine_seconds,
            battery_mv=battery_mv,
        )
        vehicle.force(now, revision, forced)
        return _truth(vehicle)

    def _begin_change(self) -> tuple[int, int]:
        """The time and a fresh revision for a forced change, so that a provider
        sees it even when the clock has not moved since its last answer."""
        self.update()
        self._revision += 1
        return self._updated_ms, self._revision

    def _spawn(self, now_ms: int, revision: int) -> SimVehicle:
        seq = self._next_seq
        self._next_seq += 1
        rng = Rng(self.seed, seq)
        model = rng.choice(MODELS)
        yard = self._yards[seq % len(self._yards)]
        depot = geo.offset(*yard, rng.uniform(-150, 150), rng.uniform(-150, 150))
        identity = make_identity(seq, model, rng)
        if self._naming is not None:
            vehicle_id, name = self._naming(seq)
            identity = dataclasses.replace(identity, vehicle_id=vehicle_id, name=name)
        vehicle = SimVehicle(
            seq=seq,
            identity=identity,
            model=model,
            depot=depot,
            has_obd=seq % _NO_OBD_EVERY != _NO_OBD_AT,
            rng=rng,
            now_ms=now_ms,
            revision=revision,
            work_hours=self.work_hours,
            park_minutes=self.park_minutes,
            trip_history_ms=round(self.history_days * DAY_MS),
            city=self.city,
        )
        self._by_id[vehicle.vehicle_id] = vehicle
        self._order.append(vehicle)
        self._seqs.append(seq)
        return vehicle


def imei(seed: int, seq: int, salt: int = 0) -> str:
    """A 15-digit IMEI for vehicle `seq`'s tracker, with a valid Luhn check digit."""
    rng = Rng(seed, seq, 0x1E1, salt)
    body = "35" + "".join(str(rng.randint(0, 9)) for _ in range(12))
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char) * (2 if index % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return body + str(-total % 10)


#: Each a row of 8x8-pixel blocks, top to bottom: grey levels 0-255.
_ROAD_VIEW = (220, 215, 205, 120, 95, 80)  # sky, horizon, road
_CABIN_VIEW = (40, 70, 150, 160, 70, 40)  # a dim cabin, a lit face in the middle


def dashcam_jpeg(driver_facing: bool = False, *, width: int = 64, shade: int = 0) -> bytes:
    """A tiny valid baseline JPEG (greyscale, 8 blocks wide by default) that looks
    like a road (or, `driver_facing`, a cabin); `shade` (-40..40) brightens or
    darkens it, so that two stills of a fleet are not byte-identical."""
    rows = _CABIN_VIEW if driver_facing else _ROAD_VIEW
    columns = max(1, width // 8)
    levels = [max(0, min(255, level + shade)) for level in rows for _ in range(columns)]
    return _baseline_jpeg(columns * 8, len(rows) * 8, levels)


# The standard luminance DC table (JPEG Annex K.3): code lengths, then symbols 0-11.
_DC_COUNTS = bytes((0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0))
# A one-code AC table: every block ends at once (end of block, symbol 0x00, code 00).
_AC_COUNTS = bytes((0, 1, *([0] * 14)))


def _baseline_jpeg(width: int, height: int, levels: list[int]) -> bytes:
    """Flat 8x8 blocks, left to right and top to bottom, each one grey level: only
    DC coefficients, quantised by 1, so every block is exact."""
    codes = _huffman_codes(_DC_COUNTS, list(range(12)))
    bits: list[str] = []
    previous = 0
    for level in levels:
        dc = 8 * (level - 128)  # the DC coefficient of a flat block
        diff, previous = dc - previous, dc
        size = abs(diff).bit_length()
        bits.append(codes[size])
        if size:
            bits.append(format(diff if diff > 0 else diff + (1 << size) - 1, f"0{size}b"))
        bits.append("00")  # end of block
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for index in range(0, len(stream), 8):
        byte = int(stream[index : index + 8], 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0)  # byte stuffing
    parts = [
        b"\xff\xd8",
        _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
        _segment(0xDB, b"\x00" + b"\x01" * 64),
        _segment(
            0xC0, bytes((8, height >> 8, height & 255, width >> 8, width & 255, 1, 1, 0x11, 0))
        ),
        _segment(0xC4, b"\x00" + _DC_COUNTS + bytes(range(12))),
        _segment(0xC4, b"\x10" + _AC_COUNTS + b"\x00"),
        _segment(0xDA, bytes((1, 1, 0x00, 0, 63, 0))),
        bytes(data),
        b"\xff\xd9",
    ]
    return b"".join(parts)


def _huffman_codes(counts: bytes, symbols: list[int]) -> dict[int, str]:
    codes: dict[int, str] = {}
    code, index = 0, 0
    for length, count in enumerate(counts, start=1):
        for _ in range(count):
            codes[symbols[index]] = format(code, f"0{length}b")
            code += 1
            index += 1
        code <<= 1
    return codes


def _segment(marker: int, payload: bytes) -> bytes:
    size = len(payload) + 2
    return bytes((0xFF, marker, size >> 8, size & 255)) + payload


def _make_yards(rng: Rng, city: City) -> list[tuple[float, float]]:
    yards: list[tuple[float, float]] = []
    while len(yards) < _YARDS:
        distance = rng.uniform(*_YARD_KM) * 1000
        angle = rng.uniform(0, 2 * math.pi)
        point = geo.offset(*city.centre, distance * math.cos(angle), distance * math.sin(angle))
        if city.on_land(*point):
            yards.append(point)
    return yards


def _truth(vehicle: SimVehicle) -> VehicleTruth:
    identity = vehicle.identity
    gps = vehicle.last(Stat.GPS)
    assert gps is not None  # every vehicle reports a position when it is created
    fix: Fix = gps.value
    obd_odometer = vehicle.last(Stat.OBD_ODOMETER_M)
    engine_seconds = vehicle.last(Stat.ENGINE_SECONDS)
    return VehicleTruth(
        vehicle_id=identity.vehicle_id,
        name=identity.name,
        vin=identity.vin,
        plate=identity.plate,
        make=identity.make,
        model=identity.model,
        year=identity.year,
        serial=identity.serial,
        has_obd=vehicle.has_obd,
        latitude=fix.latitude,
        longitude=fix.longitude,
        heading=fix.heading,
        speed_kmh=fix.speed_kmh,
        position_time=from_ms(gps.time_ms),
        address=vehicle.city.address(fix.latitude, fix.longitude),
        engine=_last_value(vehicle, Stat.ENGINE),
        fuel_percent=_last_value(vehicle, Stat.FUEL_PERCENT),
        obd_odometer_m=None if obd_odometer is None else obd_odometer.value,
        gps_odometer_m=_last_value(vehicle, Stat.GPS_ODOMETER_M),
        engine_seconds=None if engine_seconds is None else engine_seconds.value,
        battery_mv=_last_value(vehicle, Stat.BATTERY_MV),
        phase=vehicle.phase.value,
        held=vehicle.held,
        trips=vehicle.trips,
        refuels=vehicle.refuels,
        distance_m=vehicle.distance_m,
        tank_l=vehicle.tank_l,
    )


def _last_value(vehicle: SimVehicle, stat: Stat) -> Any:
    sample = vehicle.last(stat)
    assert sample is not None  # recorded for every vehicle at creation
    return sample.value
