"""One simulated vehicle: its daily routine and the readings it reports.

A vehicle lives from event to event (a GPS fix while driving, a ping while parked,
the engine starting or stopping) instead of in fixed time steps, so a parked fleet
costs nothing to simulate and catching up a day takes one pass per event.

The routine: parked with the engine off (10-120 min), engine idling for a minute or
two, a drive of 2-30 km at 30-100 km/h along the street grid, idling on arrival,
parked again. Fuel drops with distance and is topped up at a stop once below 15 %.

Readings are stored as samples, each stamped with the simulated time and with the
world's revision (a counter that grows whenever anything is recorded); providers
answer "what changed since" from the revision, because a frozen clock can still
see forced changes. Only the last few samples of each stat are kept.

Optionally (when the world asks for it) a vehicle also keeps its trips of the last
days with every fix, for the providers that serve trip history, and only starts
trips within work hours.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

from bridge.simulator import geo
from bridge.simulator.identity import Identity, Model
from bridge.simulator.rng import Rng

_V = TypeVar("_V")

PARKED_PING_S = 600  # a parked gateway still reports its position every 10 minutes
REPORT_INTERVAL_S = 60  # odometer, engine seconds and battery while running
REFUEL_BELOW_PERCENT = 15
TRIP_KM = (2.0, 30.0)
CRUISE_KMH = (30.0, 100.0)
PARK_MIN = (10, 120)
IDLE_S = (60, 120)
ARRIVAL_IDLE_S = (30, 120)
DRIVING_FIX_S = (5, 30)
FLEET_RADIUS_KM = 35.0
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# How late after the start of work hours a vehicle leaves its first trip of the day.
WORK_START_JITTER_S = 45 * 60

#: (first hour, end hour) of the UTC day within which trips start, e.g. (7, 17).
#: An end before the start wraps past midnight: (22, 6) is a night shift.
WorkHours = tuple[int, int]


def check_work_hours(hours: WorkHours) -> WorkHours:
    start, end = hours
    if not (0 <= start <= 23 and 1 <= end <= 24 and start != end):
        raise ValueError(f"work hours must be (start 0-23, end 1-24), start != end: {hours!r}")
    return start, end


def in_work_hours(at_ms: int, hours: WorkHours) -> bool:
    hour = at_ms // HOUR_MS % 24
    start, end = hours
    return start <= hour < end if start < end else (hour >= start or hour < end)


def next_work_start(at_ms: int, hours: WorkHours) -> int:
    """The first start of work hours after `at_ms`."""
    start = at_ms - at_ms % DAY_MS + hours[0] * HOUR_MS
    return start if start > at_ms else start + DAY_MS


@dataclass(frozen=True, slots=True)
class City:
    """Where a fleet drives: its centre, what counts as land, and how a point reads
    as an address. Vehicles keep within `radius_km` of the centre."""

    name: str
    centre: tuple[float, float]
    on_land: Callable[[float, float], bool]
    address: Callable[[float, float], str]
    radius_km: float = FLEET_RADIUS_KM

    def route(
        self, start: tuple[float, float], end: tuple[float, float]
    ) -> list[tuple[float, float]]:
        """Waypoints after `start`: one corner then `end`, like driving a street grid.
        Of the two corners, take one on land; if neither is, drive straight."""
        for corner in ((start[0], end[1]), (end[0], start[1])):
            if self.on_land(*corner):
                return [corner, end]
        return [end]


#: The default city (the Samsara, FLEETIZE and Telemax fleets).
CHICAGO = City("Chicago", geo.CITY_CENTRE, geo.on_land, geo.fake_address)


class Stat(enum.StrEnum):
    """What a vehicle reports; each provider maps these to its own names and units."""

    GPS = "gps"  # samples of `Fix`
    ENGINE = "engine"  # samples of `Engine`
    FUEL_PERCENT = "fuel_percent"  # the rest are ints
    OBD_ODOMETER_M = "obd_odometer_m"
    GPS_ODOMETER_M = "gps_odometer_m"
    ENGINE_SECONDS = "engine_seconds"
    BATTERY_MV = "battery_mv"


_HISTORY = {Stat.GPS: 5, Stat.ENGINE: 4}
_DEFAULT_HISTORY = 3


class Engine(enum.StrEnum):
    OFF = "off"
    ON = "on"
    IDLE = "idle"


class Phase(enum.StrEnum):
    PARKED = "parked"
    LEAVING = "leaving"  # engine idling before a trip
    DRIVING = "driving"
    ARRIVED = "arrived"  # engine idling after a trip


class Fix(NamedTuple):
    latitude: float
    longitude: float
    heading: int  # degrees, 0 = north
    speed_kmh: float


class Sample(NamedTuple, Generic[_V]):
    revision: int
    time_ms: int
    value: _V


class TripPoint(NamedTuple):
    time_ms: int
    latitude: float
    longitude: float
    speed_kmh: float
    heading: int
    odometer_m: int


@dataclass(slots=True)
class Trip:
    """One trip, from the engine starting to it stopping, with every fix between
    (the first is where it started, the last where it is or ended)."""

    number: int  # per vehicle, from 1
    start_ms: int  # engine on
    start_odometer_m: int
    points: list[TripPoint] = field(default_factory=list)
    drive_start_ms: int | None = None  # moving off after idling
    drive_end_ms: int | None = None  # arrived, idling again
    end_ms: int | None = None  # engine off; None while the trip goes on

    @property
    def done(self) -> bool:
        return self.end_ms is not None

    @property
    def last_ms(self) -> int:
        """When it ended, or its latest fix while it goes on."""
        if self.end_ms is not None:
            return self.end_ms
        return self.points[-1].time_ms if self.points else self.start_ms

    @property
    def distance_m(self) -> int:
        end = self.points[-1].odometer_m if self.points else self.start_odometer_m
        return end - self.start_odometer_m

    @property
    def max_speed_kmh(self) -> float:
        return max((p.speed_kmh for p in self.points), default=0.0)


@dataclass(slots=True)
class Forced:
    """Values a test pins on a vehicle; None leaves a value alone."""

    latitude: float | None = None
    longitude: float | None = None
    fuel_percent: float | None = None
    odometer_m: int | None = None
    gps_odometer_m: int | None = None
    engine_seconds: int | None = None
    battery_mv: int | None = None


class SimVehicle:
    """State and routine of one vehicle. The world drives it through `advance`."""

    __slots__ = (
        "_engine_mark_ms",
        "_report_ms",
        "_revision",
        "_rng",
        "battery_mv",
        "city",
        "consumption",
        "cruise_kmh",
        "depot",
        "distance_m",
        "engine",
        "engine_s",
        "fuel_l",
        "gps_odo_factor",
        "gps_odometer_m",
        "has_obd",
        "heading",
        "held",
        "history",
        "identity",
        "latitude",
        "longitude",
        "next_ms",
        "next_ping_ms",
        "odometer_m",
        "open_trip",
        "park_s",
        "phase",
        "phase_end_ms",
        "refuels",
        "seq",
        "speed_kmh",
        "step_ms",
        "tank_l",
        "trip_done_m",
        "trip_history_ms",
        "trip_log",
        "trip_number",
        "trips",
        "waypoints",
        "work_hours",
    )

    def __init__(
        self,
        *,
        seq: int,
        identity: Identity,
        model: Model,
        depot: tuple[float, float],
        has_obd: bool,
        rng: Rng,
        now_ms: int,
        revision: int,
        work_hours: WorkHours | None = None,
        park_minutes: tuple[int, int] = PARK_MIN,
        trip_history_ms: int = 0,
        city: City = CHICAGO,
    ) -> None:
        """`work_hours`: trips only start within them; `trip_history_ms`: keep the
        trips that ended within this long (0: keep none, the cheap default);
        `city`: where it drives (Chicago by default)."""
        self.seq = seq
        self.city = city
        self.identity = identity
        self.depot = depot
        self.has_obd = has_obd
        self._rng = rng
        self._revision = revision
        self.tank_l = float(rng.randint(*model.tank_l))
        self.consumption = rng.uniform(*model.litres_per_100km)
        # Some start nearly empty so that refuelling shows up within a day.
        self.fuel_l = self.tank_l * rng.uniform(0.16, 1.0)
        self.odometer_m = float(rng.randint(20_000, 900_000) * 1000)
        # The gateway was fitted after the truck had already run for a while, and
        # GPS distance reads a little differently from the ECU's.
        self.gps_odometer_m = self.odometer_m * rng.uniform(0.2, 0.9)
        self.gps_odo_factor = rng.uniform(0.99, 1.01)
        self.engine_s = self.odometer_m / 1000 / rng.uniform(35.0, 55.0) * 3600
        self.battery_mv = rng.randint(1220, 1270) * 10
        self.latitude, self.longitude = depot
        self.heading = float(rng.randint(0, 359))
        self.speed_kmh = 0.0
        self.engine = Engine.OFF
        self.phase = Phase.PARKED
        self.phase_end_ms = now_ms
        self.next_ping_ms = now_ms
        self.next_ms = now_ms
        self.step_ms = now_ms
        self._engine_mark_ms = now_ms
        self._report_ms = now_ms
        self.waypoints: list[tuple[float, float]] = []
        self.cruise_kmh = 0.0
        self.trip_done_m = 0.0
        self.held = False
        self.trips = 0
        self.refuels = 0
        self.distance_m = 0.0
        self.history: dict[Stat, list[Sample[Any]]] = {stat: [] for stat in Stat}
        self.work_hours = work_hours
        self.park_s = (park_minutes[0] * 60, park_minutes[1] * 60)
        self.trip_history_ms = trip_history_ms
        self.trip_log: deque[Trip] = deque()
        self.open_trip: Trip | None = None
        self.trip_number = 0
        self._start(now_ms)

    # --- what the providers read ------------------------------------------
    @property
    def vehicle_id(self) -> str:
        return self.identity.vehicle_id

    def samples(self, stat: Stat) -> list[Sample[Any]]:
        """Recent samples of one stat, oldest first (at most a handful)."""
        return self.history[stat]

    def last(self, stat: Stat) -> Sample[Any] | None:
        samples = self.history[stat]
        return samples[-1] if samples else None

    @property
    def fuel_percent(self) -> int:
        return max(0, min(100, round(100 * self.fuel_l / self.tank_l)))

    def trip_history(self) -> list[Trip]:
        """Kept trips, oldest first, the one going on (if any) last."""
        trips = list(self.trip_log)
        if self.open_trip is not None:
            trips.append(self.open_trip)
        return trips

    # --- the world's entry points ------------------------------------------
    def advance(self, until_ms: int, revision: int) -> None:
        """Live every event due up to `until_ms`."""
        self._revision = revision
        while self.next_ms <= until_ms:
            at = self.next_ms
            if self.phase is Phase.PARKED:
                self._parked_event(at)
            elif self.phase is Phase.LEAVING:
                self._start_driving(at)
            elif self.phase is Phase.DRIVING:
                self._drive(at)
            else:
                self._park(at)

    def hold(self, at_ms: int, revision: int) -> None:
        """Park now, engine off, and stay parked until `release`."""
        self._revision = revision
        self.held = True
        if self.phase is Phase.PARKED:
            self.next_ms = self.next_ping_ms
            return
        if self.phase is Phase.DRIVING:
            self._add_distance(self._move(self.speed_kmh / 3.6 * (at_ms - self.step_ms) / 1000))
        self.waypoints = []
        self.speed_kmh = 0.0
        self._record_fix(at_ms)
        self._park(at_ms)

    def release(self, at_ms: int) -> None:
        if not self.held:
            return
        self.held = False
        if self.phase is Phase.PARKED:
            self.phase_end_ms = self._departure(at_ms + self._rng.randint(60, 1800) * 1000)
            self.next_ms = min(self.next_ping_ms, self.phase_end_ms)

    def force(self, at_ms: int, revision: int, forced: Forced) -> None:
        """Pin values (for tests); each one is reported at `at_ms`."""
        self._revision = revision
        if forced.latitude is not None or forced.longitude is not None:
            self.latitude = self.latitude if forced.latitude is None else forced.latitude
            self.longitude = self.longitude if forced.longitude is None else forced.longitude
            if self.waypoints:
                self.waypoints = self.city.route(
                    (self.latitude, self.longitude), self.waypoints[-1]
                )
            self.step_ms = max(self.step_ms, at_ms)
            self._record_fix(at_ms)
        if forced.fuel_percent is not None:
            self.fuel_l = self.tank_l * forced.fuel_percent / 100
            self._record_fuel(at_ms)
        if forced.odometer_m is not None:
            self.odometer_m = float(forced.odometer_m)
        if forced.gps_odometer_m is not None:
            self.gps_odometer_m = float(forced.gps_odometer_m)
        if forced.engine_seconds is not None:
            self._accrue_engine(at_ms)
            self.engine_s = float(forced.engine_seconds)
        if forced.battery_mv is not None:
            self.battery_mv = forced.battery_mv
        self._report(at_ms, force=True)

    # --- the routine -------------------------------------------------------
    def _start(self, now_ms: int) -> None:
        """Drop the vehicle into a random point of its routine, with a history,
        so that a new fleet starts as a natural mix of parked and moving."""
        rng = self._rng
        draw = rng.random()
        if self.work_hours is not None and not in_work_hours(now_ms, self.work_hours):
            draw = 0.0  # after hours the whole fleet is parked
        if draw < 0.5:
            parked_since = now_ms - rng.randint(0, 90 * 60) * 1000
            self._record_all(parked_since)
            pings = (now_ms - parked_since) // (PARKED_PING_S * 1000)
            last_ping = parked_since + pings * PARKED_PING_S * 1000
            if pings:
                self._record_fix(last_ping)
            self.next_ping_ms = last_ping + PARKED_PING_S * 1000
            self.phase_end_ms = self._departure(now_ms + rng.randint(60, self.park_s[1]) * 1000)
            self.next_ms = min(self.next_ping_ms, self.phase_end_ms)
            return
        self._plan_trip()
        self.engine = Engine.IDLE
        self.battery_mv = self._running_battery()
        if draw < 0.6:
            started = now_ms - rng.randint(0, 59) * 1000
            self._engine_mark_ms = started
            self._open_trip(started)
            self._record_all(started)
            self.phase = Phase.LEAVING
            self.phase_end_ms = max(now_ms + 1000, started + rng.randint(*IDLE_S) * 1000)
            self.next_ms = self.phase_end_ms
            return
        # Mid-trip: somewhere along the route, the engine on for as long as that took.
        self.cruise_kmh = rng.uniform(*CRUISE_KMH)
        done = self._remaining_m() * rng.uniform(0.05, 0.9)
        self.trip_done_m = self._move(done)
        last_fix = now_ms - rng.randint(0, 15) * 1000
        self.engine = Engine.ON
        self.phase = Phase.DRIVING
        self.speed_kmh = self._pick_speed()
        self._engine_mark_ms = last_fix
        self.step_ms = last_fix
        self._open_trip(last_fix)
        if self.open_trip is not None:
            self.open_trip.drive_start_ms = last_fix
        self._record_all(last_fix)
        self.next_ms = last_fix + self._fix_interval_ms()

    def _parked_event(self, at: int) -> None:
        if not self.held and at >= self.phase_end_ms:
            self._depart(at)
            return
        self._record_fix(at)
        self.next_ping_ms = at + PARKED_PING_S * 1000
        self.next_ms = self.next_ping_ms if self.held else min(self.next_ping_ms, self.phase_end_ms)

    def _depart(self, at: int) -> None:
        self._plan_trip()
        self._open_trip(at)
        self._set_engine(at, Engine.IDLE)
        self.battery_mv = self._running_battery()
        self._record_fix(at)
        self._report(at, force=True)
        self.phase = Phase.LEAVING
        self.phase_end_ms = at + self._rng.randint(*IDLE_S) * 1000
        self.next_ms = self.phase_end_ms

    def _start_driving(self, at: int) -> None:
        self._set_engine(at, Engine.ON)
        self.phase = Phase.DRIVING
        self.cruise_kmh = self._rng.uniform(*CRUISE_KMH)
        self.trip_done_m = 0.0
        self.step_ms = at
        self.speed_kmh = self._pick_speed()
        self._aim()
        if self.open_trip is not None:
            self.open_trip.drive_start_ms = at
        self._record_fix(at)
        self.next_ms = at + self._fix_interval_ms()

    def _drive(self, at: int) -> None:
        self._add_distance(self._move(self.speed_kmh / 3.6 * (at - self.step_ms) / 1000))
        self.step_ms = at
        if not self.waypoints:
            self._arrive(at)
            return
        self.speed_kmh = self._pick_speed()
        self._record_fix(at)
        self._record_fuel(at)
        self._report(at)
        self.next_ms = at + self._fix_interval_ms()

    def _arrive(self, at: int) -> None:
        self.speed_kmh = 0.0
        self.trips += 1
        if self.open_trip is not None:
            self.open_trip.drive_end_ms = at
        self._set_engine(at, Engine.IDLE)
        self._record_fix(at)
        self._record_fuel(at)
        self._report(at, force=True)
        self.phase = Phase.ARRIVED
        self.phase_end_ms = at + self._rng.randint(*ARRIVAL_IDLE_S) * 1000
        self.next_ms = self.phase_end_ms

    def _park(self, at: int) -> None:
        self._set_engine(at, Engine.OFF)
        self.battery_mv = self._rng.randint(1220, 1270) * 10
        if self.fuel_percent < REFUEL_BELOW_PERCENT:
            self.fuel_l = self.tank_l * self._rng.uniform(0.95, 1.0)
            self.refuels += 1
            self._record_fuel(at)
        self._report(at, force=True)
        self._close_trip(at)
        self.phase = Phase.PARKED
        self.phase_end_ms = self._departure(at + self._rng.randint(*self.park_s) * 1000)
        self.next_ping_ms = at + PARKED_PING_S * 1000
        self.next_ms = self.next_ping_ms if self.held else min(self.next_ping_ms, self.phase_end_ms)

    def _departure(self, planned_ms: int) -> int:
        """When to leave: as planned within work hours, else early in the next ones."""
        hours = self.work_hours
        if hours is None or in_work_hours(planned_ms, hours):
            return planned_ms
        span_s = ((hours[1] - hours[0]) % 24 or 24) * 3600
        jitter_s = self._rng.randint(0, min(WORK_START_JITTER_S, span_s // 2))
        return next_work_start(planned_ms, hours) + jitter_s * 1000

    # --- trip history ---------------------------------------------------------
    def _open_trip(self, at: int) -> None:
        if not self.trip_history_ms:
            return
        self.trip_number += 1
        self.open_trip = Trip(self.trip_number, at, int(self.odometer_m))

    def _close_trip(self, at: int) -> None:
        trip, self.open_trip = self.open_trip, None
        if trip is None or trip.drive_start_ms is None:
            return  # the engine ran but the vehicle never moved: no trip
        trip.end_ms = at
        log = self.trip_log
        log.append(trip)
        oldest = at - self.trip_history_ms
        while log and (log[0].end_ms or 0) < oldest:
            log.popleft()

    # --- trips and motion ---------------------------------------------------
    def _plan_trip(self) -> None:
        here = (self.latitude, self.longitude)
        away_from_depot = geo.distance_m(*here, *self.depot) > TRIP_KM[0] * 1000
        if away_from_depot and self._rng.random() < 0.4:
            destination = self.depot
        else:
            destination = self._random_destination(here) or (
                self.depot if away_from_depot else geo.offset(*here, 3000, -3000)
            )
        self.waypoints = self.city.route(here, destination)
        self._aim()

    def _random_destination(self, here: tuple[float, float]) -> tuple[float, float] | None:
        city = self.city
        for _ in range(30):
            distance = self._rng.uniform(*TRIP_KM) * 1000
            angle = self._rng.uniform(0, 2 * math.pi)
            lat, lon = geo.offset(*here, distance * math.cos(angle), distance * math.sin(angle))
            if city.on_land(lat, lon) and geo.distance_m(lat, lon, *city.centre) < (
                city.radius_km * 1000
            ):
                return lat, lon
        return None

    def _move(self, distance: float) -> float:
        """Follow the waypoints for up to `distance` metres; the metres covered."""
        left = distance
        while left > 0 and self.waypoints:
            target = self.waypoints[0]
            leg = geo.distance_m(self.latitude, self.longitude, *target)
            if leg <= left:
                self.latitude, self.longitude = target
                self.waypoints.pop(0)
                left -= leg
                self._aim()
            else:
                share = left / leg
                self.latitude += (target[0] - self.latitude) * share
                self.longitude += (target[1] - self.longitude) * share
                left = 0.0
        return distance - left

    def _aim(self) -> None:
        if self.waypoints:
            target = self.waypoints[0]
            if geo.distance_m(self.latitude, self.longitude, *target) > 1:
                self.heading = geo.bearing_deg(self.latitude, self.longitude, *target)

    def _remaining_m(self) -> float:
        total, here = 0.0, (self.latitude, self.longitude)
        for point in self.waypoints:
            total += geo.distance_m(*here, *point)
            here = point
        return total

    def _pick_speed(self) -> float:
        speed = self.cruise_kmh * self._rng.uniform(0.8, 1.1)
        # Slower pulling away and coming in: nobody leaves a yard at 90 km/h.
        near_end = min(self.trip_done_m, self._remaining_m())
        if near_end < 400:
            speed *= 0.35 + 0.65 * near_end / 400
        return max(8.0, speed)

    def _fix_interval_ms(self) -> int:
        interval = self._rng.randint(*DRIVING_FIX_S)
        to_arrival = self._remaining_m() / (self.speed_kmh / 3.6)
        if to_arrival < interval:
            interval = max(1, math.ceil(to_arrival))
        return interval * 1000

    def _add_distance(self, metres: float) -> None:
        self.odometer_m += metres
        self.gps_odometer_m += metres * self.gps_odo_factor
        self.distance_m += metres
        self.trip_done_m += metres
        self.fuel_l = max(0.0, self.fuel_l - metres / 1000 * self.consumption / 100)

    def _running_battery(self) -> int:
        return self._rng.randint(1410, 1440) * 10

    # --- recording ------------------------------------------------------------
    def _record(self, stat: Stat, at: int, value: Any) -> None:
        samples = self.history[stat]
        if len(samples) >= _HISTORY.get(stat, _DEFAULT_HISTORY):
            del samples[0]
        samples.append(Sample(self._revision, at, value))

    def _record_changed(self, stat: Stat, at: int, value: Any) -> None:
        samples = self.history[stat]
        if not samples or samples[-1].value != value:
            self._record(stat, at, value)

    def _record_fix(self, at: int) -> None:
        heading = round(self.heading + self._rng.uniform(-3, 3)) % 360
        fix = Fix(
            round(self.latitude, 6), round(self.longitude, 6), heading, round(self.speed_kmh, 1)
        )
        self._record(Stat.GPS, at, fix)
        if self.open_trip is not None:
            self.open_trip.points.append(
                TripPoint(
                    at, fix.latitude, fix.longitude, fix.speed_kmh, heading, int(self.odometer_m)
                )
            )

    def _record_fuel(self, at: int) -> None:
        self._record_changed(Stat.FUEL_PERCENT, at, self.fuel_percent)

    def _set_engine(self, at: int, engine: Engine) -> None:
        self._accrue_engine(at)
        self.engine = engine
        self._record_changed(Stat.ENGINE, at, engine)

    def _accrue_engine(self, at: int) -> None:
        if self.engine is not Engine.OFF:
            self.engine_s += (at - self._engine_mark_ms) / 1000
        self._engine_mark_ms = at

    def _report(self, at: int, *, force: bool = False) -> None:
        """Odometers, engine seconds and battery: once a minute while running, and
        whenever the engine changes state."""
        if not force and at - self._report_ms < REPORT_INTERVAL_S * 1000:
            return
        self._report_ms = at
        self._accrue_engine(at)
        if self.has_obd:
            self._record_changed(Stat.OBD_ODOMETER_M, at, int(self.odometer_m))
            self._record_changed(Stat.ENGINE_SECONDS, at, int(self.engine_s))
        self._record_changed(Stat.GPS_ODOMETER_M, at, int(self.gps_odometer_m))
        self._record_changed(Stat.BATTERY_MV, at, self.battery_mv)

    def _record_all(self, at: int) -> None:
        self._record_fix(at)
        self._record(Stat.ENGINE, at, self.engine)
        self._record(Stat.FUEL_PERCENT, at, self.fuel_percent)
        self._report(at, force=True)
