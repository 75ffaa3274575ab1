"""Command payloads: validated before anything is sent to a provider.

Two ways in, one set of commands:

- `fleet/bridge/request/<command>` with `{"transaction": "...", "account": ..., ...}`,
  answered on `fleet/bridge/response/<command>`;
- `fleet/<account>/<vehicle>/set` with `{"lights": "ON"}` or
  `{"snapshot": {"camera": "road"}}` (what Home Assistant's switch and button send),
  answered on the same response topic when it carries a transaction.

A payload that is not what the command takes raises `RequestError` naming the
field and the reason; the input itself is never echoed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bridge.model import Camera, TaskStatus
from bridge.mqtt.requests import RequestError

COMMANDS = ("lights", "snapshot", "task/create", "task/update")


# Task times a provider can store: anything outside is a typo or an attack
# (9999-12-31T23:59:59-14:00 cannot even be converted to UTC).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _task_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("must include a time zone (e.g. 2026-11-21T08:00:00Z)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z")
    return value


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)


class _Targeted(_Payload):
    account: Annotated[str, Field(min_length=1, max_length=64)]
    vehicle: Annotated[str, Field(min_length=1, max_length=128)]


class LightsPayload(_Targeted):
    state: Literal["ON", "OFF"]

    @field_validator("state", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class SnapshotPayload(_Targeted):
    camera: Camera = Camera.ROAD


class TaskCreatePayload(_Targeted):
    order_ref: Annotated[str, Field(min_length=1, max_length=100)]
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    start_time: datetime
    stop_time: datetime
    description: Annotated[str, Field(max_length=2000)] | None = None
    address: Annotated[str, Field(max_length=500)] | None = None
    contact_name: Annotated[str, Field(max_length=200)] | None = None
    contact_phone: Annotated[str, Field(max_length=50)] | None = None

    _times = field_validator("start_time", "stop_time")(_task_time)

    def model_post_init(self, _: Any) -> None:
        if self.stop_time <= self.start_time:
            raise RequestError("stop_time", "must be after start_time")


class TaskUpdatePayload(_Payload):
    account: Annotated[str, Field(min_length=1, max_length=64)]
    order_ref: Annotated[str, Field(min_length=1, max_length=100)]
    status: TaskStatus | None = None
    start_time: datetime | None = None
    stop_time: datetime | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    vehicle: Annotated[str, Field(min_length=1, max_length=128)] | None = None

    _times = field_validator("start_time", "stop_time")(_task_time)

    def model_post_init(self, _: Any) -> None:
        if all(
            v is None
            for v in (self.status, self.start_time, self.stop_time, self.description, self.vehicle)
        ):
            raise RequestError("payload", "nothing to change (status, start_time, ...)")


Payload = LightsPayload | SnapshotPayload | TaskCreatePayload | TaskUpdatePayload

_MODELS: dict[str, type[_Payload]] = {
    "lights": LightsPayload,
    "snapshot": SnapshotPayload,
    "task/create": TaskCreatePayload,
    "task/update": TaskUpdatePayload,
}


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    transaction: str | None
    payload: Payload

    @property
    def account(self) -> str:
        return self.payload.account

    @property
    def vehicle(self) -> str | None:
        return self.payload.vehicle


def parse_command(name: str, body: dict[str, Any], transaction: str | None) -> Command:
    """A validated command; raises `RequestError` naming the first bad field."""
    model = _MODELS.get(name)
    if model is None:
        raise RequestError(
            "command", f"unknown command '{name[:50]}' (one of: {', '.join(COMMANDS)})"
        )
    try:
        payload = model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "payload"
        reason = "field required" if first["type"] == "missing" else first["msg"]
        if first["type"] == "extra_forbidden":
            reason = "unknown field"
        reason = reason.removeprefix("Value error, ")
        raise RequestError(field, reason[:1].lower() + reason[1:]) from None
    return Command(name, transaction, payload)  # type: ignore[arg-type]


def _field_name(name: str) -> str:
    """A field name as it can be read in an error (an empty one is quoted)."""
    return name if name.strip() and name.isprintable() else repr(name)


def parse_set(account: str, vehicle: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A `.../set` payload as (command, request body)."""
    if "lights" in body:
        extra = set(body) - {"lights"}
        if extra:
            raise RequestError(_field_name(sorted(extra)[0]), "unknown field")
        return "lights", {"account": account, "vehicle": vehicle, "state": body["lights"]}
    if "snapshot" in body:
        extra = set(body) - {"snapshot"}
        if extra:
            raise RequestError(_field_name(sorted(extra)[0]), "unknown field")
        options = body["snapshot"]
        if options is True or options is None:
            options = {}
        if isinstance(options, str):
            options = {"camera": options}
        if not isinstance(options, dict):
            raise RequestError("snapshot", 'must be an object such as {"camera": "road"}')
        return "snapshot", {"account": account, "vehicle": vehicle, **options}
    raise RequestError("payload", 'expected "lights" or "snapshot"')
