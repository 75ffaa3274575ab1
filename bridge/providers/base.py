"""The contract between the poller and a provider client.

A provider turns its API into `bridge.model` objects and knows nothing of MQTT,
Home Assistant, SQLite or pydantic. What it must remember across restarts (feed
cursors) it exposes as an opaque checkpoint; the daemon persists it in SQLite,
the Home Assistant integration in its own storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar, Protocol, runtime_checkable

from bridge.model import (
    AlertType,
    Camera,
    Capability,
    CommandResult,
    PollPlan,
    Priority,
    Task,
    TaskChange,
    Update,
    VehicleState,
)
from bridge.quota import Budget


@runtime_checkable
class Provider(Protocol):
    """One account at one provider."""

    #: Registry key, also the `provider:` value in config.
    name: ClassVar[str]
    #: What this provider can fill; entities are created only for these.
    capabilities: ClassVar[frozenset[Capability]]
    #: The provider's published limits (NOTES.md), before the user's overrides.
    default_budgets: ClassVar[tuple[Budget, ...]]
    #: The endpoint a poll starts with: the planner asks the quota about it.
    poll_endpoint: ClassVar[str]
    #: The alert types this provider can report (the event entity's event types).
    alert_types: ClassVar[frozenset[AlertType]]

    async def poll(self, plan: PollPlan) -> Update:
        """Fetch what changed since the last poll."""

    async def validate(self) -> str:
        """Check the credentials with the cheapest call the provider has.

        The call goes through the quota at command priority, so it is counted
        like any other (the first poll after a setup still keeps FLEETIZE's 60 s
        spacing). Returns a stable id of the account that holds no secret: the
        Home Assistant integration refuses a second entry with the same id."""

    def checkpoint(self) -> dict[str, str]:
        """Opaque resume state (cursors) to persist after a successful poll."""

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        """Resume from a persisted checkpoint and the vehicle states that went with it."""

    async def close(self) -> None:
        """Release what the client owns (never the injected session)."""


# --- Commands: optional abilities a provider may have (checked with isinstance) ----


@runtime_checkable
class LightsControl(Protocol):
    async def set_lights(self, vehicle_id: str, on: bool, priority: Priority) -> CommandResult:
        """Ask for the lights; PENDING with a handle until the device has done it."""

    async def lights_status(
        self, vehicle_id: str, handle: str, priority: Priority
    ) -> CommandResult:
        """Follow a light command up: CONFIRMED once the device carried it out."""


@runtime_checkable
class TaskControl(Protocol):
    async def create_task(self, task: Task, priority: Priority) -> CommandResult:
        """Create a task; CONFIRMED with data["task_id"] once the provider stored it.

        A task whose order_ref exists already must not be created twice: return
        the existing one (CONFIRMED, data["existing"] = True) or FAILED saying so."""

    async def update_task(self, change: TaskChange, priority: Priority) -> CommandResult:
        """Change a task found by order_ref."""


@runtime_checkable
class SnapshotControl(Protocol):
    async def request_snapshot(
        self, vehicle_id: str, camera: Camera, priority: Priority
    ) -> CommandResult:
        """Ask a dashcam for a still; PENDING with a handle to follow up."""

    async def snapshot_status(self, handle: str, priority: Priority) -> CommandResult:
        """CONFIRMED with data["url"] when the image is ready, FAILED if it never will be."""
