"""What a Metrotec client asks of the devices and the dispatch office: vehicle
events (lights, reporting interval) and route tasks, on the simulated clock.

Events: `eventType` 3 sets the reporting interval (`description` one of the
vehicle's `repInts`), 4 switches the lights (`"ON"`/`"OFF"`), 5 is anything else.
An event is created with `handled: 0` and turns `handled: 1` once the device has
carried it out, `handle_delay_s` simulated seconds later (20 s by default; None:
never on its own, as if the device were offline). Only then do the vehicle's lights
(or reporting interval) change. `eventDate` is when the event last changed
(created, then handled), `date` when it was created (a guess: the documentation
shows both without saying).

Tasks: status 1=Created 2=In progress 3=Completed 4=Rejected 5=Cancelled.
`order_ref` is unique across every task ever created. An active task moves on by
itself: Created -> In progress once its start time has come and its vehicle is
driving (`work_started_at`), -> Completed when the vehicle arrives somewhere at least
`WORK_MIN_S` later (`work_finished_at`, `geozone_entered_at`, `distance` in km).
Completed, rejected and cancelled tasks are no longer `active`. A status set by
PATCH is kept; progress goes on from it (2 -> 3) where it applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from bridge.simulator.metrotec_json import FieldErrors, Fields, format_utc, rep_ints
from bridge.simulator.vehicle import SimVehicle, Trip
from bridge.simulator.world import World

HANDLE_DELAY_S = 20.0
REPORTING_INTERVAL, LIGHT_CONTROL, OTHER = 3, 4, 5
EVENT_TYPES = {
    REPORTING_INTERVAL: "Reporting interval",
    LIGHT_CONTROL: "Light control",
    OTHER: "Other",
}
LIGHT_VALUES = ("ON", "OFF")
EVENTS_SHOWN = 50  # per vehicle, newest first, in its settings

CREATED, IN_PROGRESS, COMPLETED, REJECTED, CANCELLED = 1, 2, 3, 4, 5
TASK_STATUSES = {
    CREATED: "Created",
    IN_PROGRESS: "In progress",
    COMPLETED: "Completed",
    REJECTED: "Rejected",
    CANCELLED: "Cancelled",
}
OPEN_STATUSES = (CREATED, IN_PROGRESS)
WORK_MIN_S = 300
DUPLICATE_ORDER_REF = "route task with this order ref already exists."


def no_such_object(object_id: object) -> str:
    return f'Invalid pk "{object_id}" - object does not exist.'


# --- vehicle events ---------------------------------------------------------------


@dataclass(slots=True)
class VehicleEvent:
    id: int
    object_id: str
    event_type: int
    description: str
    created_ms: int
    due_ms: int | None  # when the device carries it out; None: not on its own
    request_id: int
    handled_ms: int | None = None

    @property
    def handled(self) -> bool:
        return self.handled_ms is not None

    def created_json(self) -> dict[str, Any]:
        """The answer to creating it."""
        return {
            "id": self.id,
            "handled": int(self.handled),
            "description": self.description,
            "eventDate": format_utc(self.handled_ms or self.created_ms),
            "date": format_utc(self.created_ms),
        }

    def settings_json(self, oid: str) -> dict[str, Any]:
        """An entry of the vehicle settings' `events`."""
        return {
            "ID": self.id,
            "eventType": self.event_type,
            "navi_request_ID": self.request_id,
            "eventDate": format_utc(self.handled_ms or self.created_ms),
            "object_id": self.object_id,
            "oid": oid,
            "description": self.description,
            "handled": int(self.handled),
            "date": format_utc(self.created_ms),
        }


def read_event(body: Mapping[str, Any], world: World) -> tuple[str, int, str]:
    """(object_id, eventType, description) of a valid body, else FieldErrors."""
    reader = Fields(body)
    reader.string("object_id", required=True, nullable=False)
    reader.choice("eventType", EVENT_TYPES, required=True)
    reader.string("description", required=True, nullable=False)
    values = reader.check()
    object_id, event_type = values["object_id"], values["eventType"]
    description = values["description"].strip()
    if object_id not in world:
        raise FieldErrors({"object_id": [no_such_object(object_id)]})
    problem: str | None = None
    if event_type == LIGHT_CONTROL and description not in LIGHT_VALUES:
        problem = f'"{description}" is not a valid choice for light control: use "ON" or "OFF".'
    elif event_type == REPORTING_INTERVAL and description not in rep_ints(world.vehicle(object_id)):
        allowed = ", ".join(rep_ints(world.vehicle(object_id)))
        problem = f'"{description}" is not a reporting interval of this vehicle: {allowed}.'
    elif len(description) > 255:
        problem = "Ensure this field has no more than 255 characters."
    if problem is not None:
        raise FieldErrors({"description": [problem]})
    return object_id, event_type, description


class EventBook:
    """Every vehicle event, and what the handled ones changed."""

    def __init__(self, handle_delay_s: float | None = HANDLE_DELAY_S) -> None:
        self.handle_delay_s = handle_delay_s
        self.created = 0
        self.handled = 0
        #: Lights per vehicle as the devices last set them (off until told).
        self.lights: dict[str, bool] = {}
        #: Reporting interval per vehicle, once an event set one.
        self.report_intervals: dict[str, str] = {}
        self._events: list[VehicleEvent] = []
        self._next_id = 1500
        self._next_request = 15_788_545

    def create(
        self, object_id: str, event_type: int, description: str, now_ms: int
    ) -> VehicleEvent:
        delay = self.handle_delay_s
        event = VehicleEvent(
            id=self._next_id,
            object_id=object_id,
            event_type=event_type,
            description=description,
            created_ms=now_ms,
            due_ms=None if delay is None else now_ms + round(delay * 1000),
            request_id=self._next_request,
        )
        self._next_id += 1
        self._next_request += 3
        self.created += 1
        self._events.append(event)
        return event

    def settle(self, now_ms: int) -> int:
        """Carry out every event due by now, in the order they fell due."""
        due = sorted(
            (e for e in self._events if not e.handled and e.due_ms is not None),
            key=lambda e: (e.due_ms or 0, e.id),
        )
        handled = 0
        for event in due:
            if event.due_ms is None or event.due_ms > now_ms:
                break
            self._handle(event, event.due_ms)
            handled += 1
        return handled

    def handle_all(self, now_ms: int) -> int:
        """Every device carries out what it was asked, now."""
        self.settle(now_ms)
        pending = [e for e in self._events if not e.handled]
        for event in pending:
            self._handle(event, now_ms)
        return len(pending)

    @property
    def pending(self) -> int:
        return sum(not e.handled for e in self._events)

    def of(self, object_id: str) -> list[VehicleEvent]:
        """A vehicle's events, newest first."""
        return [e for e in reversed(self._events) if e.object_id == object_id][:EVENTS_SHOWN]

    def lights_on(self, object_id: str) -> bool:
        return self.lights.get(object_id, False)

    def _handle(self, event: VehicleEvent, at_ms: int) -> None:
        event.handled_ms = at_ms
        self.handled += 1
        if event.event_type == LIGHT_CONTROL:
            self.lights[event.object_id] = event.description == "ON"
        elif event.event_type == REPORTING_INTERVAL:
            self.report_intervals[event.object_id] = event.description


# --- route tasks -----------------------------------------------------------------


@dataclass(slots=True)
class RouteTask:
    """A task, with attributes named as in its JSON; times in UTC ms."""

    id: int
    oid: str
    object_id: str
    lat: float
    lon: float
    start_lat: float | None
    start_lon: float | None
    start_address: str | None
    start_time: int
    stop_time: int
    order_ref: str
    order_details: str | None
    task_address: str | None
    task_description: str | None
    cancel_reason: str | None
    status: int
    created_at: int
    updated_at: int
    work_started_at: int | None
    work_finished_at: int | None
    sender: str | None
    invoice_nr: str | None
    user_km: float | None
    distance: float | None
    geozone_entered_at: int | None
    geozone_left_at: int | None
    closeType: int | None
    planned_km: float | None
    ut: int
    alias: str | None
    task_notes: str | None
    active: bool
    group_id: int | None
    is_not_own_vehicle: bool

    @property
    def open(self) -> bool:
        """Not finished: the "active tasks" of the list endpoint."""
        return self.active and self.status in OPEN_STATUSES

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _TIME_FIELDS:
            data[name] = format_utc(data[name])
        return data


_TIME_FIELDS = ("start_time", "stop_time", "created_at", "updated_at", "work_started_at",
                "work_finished_at", "geozone_entered_at", "geozone_left_at")  # fmt: skip


def _read_task(body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    reader = Fields(body, partial=partial)
    reader.string("object_id", required=True, nullable=False)
    reader.number("start_lat", -90, 90)
    reader.number("start_lon", -180, 180)
    reader.string("start_address")
    reader.number("lat", -90, 90, required=True, nullable=False)
    reader.number("lon", -180, 180, required=True, nullable=False)
    reader.datetime("start_time", required=True)
    reader.datetime("stop_time", required=True)
    reader.string("order_ref", required=True, nullable=False)
    for name in ("order_details", "task_address", "task_description", "task_notes"):
        reader.string(name)
    reader.number("planned_km", 0)
    reader.choice("status", TASK_STATUSES)
    reader.boolean("active")
    reader.integer("group_id")
    if partial:
        reader.boolean("edit")
        reader.string("sender")
    else:
        reader.boolean("is_not_own_vehicle")
    return reader.check()


class TaskBook:
    """Every route task of the account."""

    def __init__(self, oid: str) -> None:
        self.oid = oid
        self.created = 0
        self.updated = 0
        self.duplicates = 0
        self._tasks: dict[int, RouteTask] = {}
        self._by_order_ref: dict[str, RouteTask] = {}
        self._next_id = 12346

    def __iter__(self) -> Iterator[RouteTask]:
        return iter(self._tasks.values())

    def get(self, task_id: int) -> RouteTask:
        return self._tasks[task_id]

    def create(self, body: Mapping[str, Any], world: World, now_ms: int, sender: str) -> RouteTask:
        values = _read_task(body, partial=False)
        self._check(values, world, None)
        vehicle = world.vehicle(values["object_id"])
        status = values.get("status", CREATED)
        start = values["start_time"]
        task = RouteTask(
            id=self._next_id,
            oid=self.oid,
            object_id=values["object_id"],
            lat=values["lat"],
            lon=values["lon"],
            start_lat=values.get("start_lat"),
            start_lon=values.get("start_lon"),
            start_address=values.get("start_address"),
            start_time=start,
            stop_time=values["stop_time"],
            order_ref=values["order_ref"],
            order_details=values.get("order_details"),
            task_address=values.get("task_address"),
            task_description=values.get("task_description"),
            cancel_reason=None,
            status=status,
            created_at=now_ms,
            updated_at=now_ms,
            work_started_at=now_ms if status in (IN_PROGRESS, COMPLETED) else None,
            work_finished_at=now_ms if status == COMPLETED else None,
            sender=sender,
            invoice_nr=None,
            user_km=None,
            distance=None,
            geozone_entered_at=None,
            geozone_left_at=None,
            closeType=None,
            planned_km=values.get("planned_km"),
            ut=start // 1000,
            alias=vehicle.identity.name,
            task_notes=values.get("task_notes"),
            active=values.get("active", True) and status in OPEN_STATUSES,
            group_id=values.get("group_id"),
            is_not_own_vehicle=values.get("is_not_own_vehicle", False),
        )
        self._next_id += 1
        self.created += 1
        self._tasks[task.id] = task
        self._by_order_ref[task.order_ref] = task
        return task

    def update(self, task_id: int, body: Mapping[str, Any], world: World, now_ms: int) -> RouteTask:
        task = self._tasks[task_id]
        values = _read_task(body, partial=True)
        self._check(values, world, task)
        values.pop("edit", None)
        if "order_ref" in values and values["order_ref"] != task.order_ref:
            del self._by_order_ref[task.order_ref]
            self._by_order_ref[values["order_ref"]] = task
        status = values.get("status")
        for name, value in values.items():
            setattr(task, name, value)
        if "start_time" in values:
            task.ut = task.start_time // 1000
        if "object_id" in values:
            task.alias = world.vehicle(task.object_id).identity.name
        if status is not None:
            if status in (IN_PROGRESS, COMPLETED) and task.work_started_at is None:
                task.work_started_at = now_ms
            if status == COMPLETED and task.work_finished_at is None:
                task.work_finished_at = now_ms
            if "active" not in values:
                task.active = status in OPEN_STATUSES
        task.updated_at = now_ms
        self.updated += 1
        return task

    def listing(
        self,
        *,
        every: bool = False,
        object_id: str | None = None,
        order_ref: str | None = None,
    ) -> list[RouteTask]:
        return [
            task
            for task in self._tasks.values()
            if (every or task.open)
            and (object_id is None or task.object_id == object_id)
            and (order_ref is None or task.order_ref == order_ref)
        ]

    def by_status(self) -> dict[str, int]:
        counts = dict.fromkeys(TASK_STATUSES.values(), 0)
        for task in self._tasks.values():
            counts[TASK_STATUSES[task.status]] += 1
        return counts

    def progress(self, world: World, now_ms: int) -> None:
        """Move active tasks on with their vehicles (call after `world.update()`)."""
        for task in self._tasks.values():
            if task.open and task.object_id in world:
                _progress(task, world.vehicle(task.object_id), now_ms)

    def _check(self, values: dict[str, Any], world: World, task: RouteTask | None) -> None:
        errors: dict[str, list[str]] = {}
        object_id = values.get("object_id")
        if object_id is not None and object_id not in world:
            errors["object_id"] = [no_such_object(object_id)]
        ref = values.get("order_ref")
        if ref is not None:
            holder = self._by_order_ref.get(ref)
            if holder is not None and holder is not task:
                self.duplicates += 1
                errors["order_ref"] = [DUPLICATE_ORDER_REF]
        start = values.get("start_time", task.start_time if task else None)
        stop = values.get("stop_time", task.stop_time if task else None)
        if start is not None and stop is not None and stop < start:
            errors["non_field_errors"] = ["stop_time must not be before start_time."]
        if errors:
            raise FieldErrors(errors)


def _progress(task: RouteTask, vehicle: SimVehicle, now_ms: int) -> None:
    trips = vehicle.trip_history()
    if task.status == CREATED:
        eligible = max(task.start_time, task.created_at)
        for trip in trips:
            begin = trip.drive_start_ms
            end = trip.drive_end_ms if trip.drive_end_ms is not None else now_ms
            if begin is None or end < eligible:
                continue
            started = max(begin, eligible)
            if started > now_ms:
                return
            task.status = IN_PROGRESS
            task.work_started_at = task.updated_at = started
            break
        else:
            return
    if task.status != IN_PROGRESS or task.work_started_at is None:
        return
    earliest = task.work_started_at + WORK_MIN_S * 1000
    for trip in trips:
        arrived = trip.drive_end_ms
        if arrived is not None and earliest <= arrived <= now_ms:
            task.status = COMPLETED
            task.active = False
            task.work_finished_at = task.updated_at = task.geozone_entered_at = arrived
            task.distance = round(
                (_odometer_at(trips, arrived) - _odometer_at(trips, task.work_started_at)) / 1000,
                3,
            )
            return


def _odometer_at(trips: Iterable[Trip], at_ms: int) -> int:
    """The odometer (m) at the last recorded fix at or before `at_ms`."""
    reading: int | None = None
    for trip in trips:
        for point in trip.points:
            if point.time_ms > at_ms:
                return reading if reading is not None else point.odometer_m
            reading = point.odometer_m
    return reading or 0
