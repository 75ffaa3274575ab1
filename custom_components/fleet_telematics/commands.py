"""Writes to the provider (lights, tasks, snapshots), shared by the actions and
the switch and button entities.

A provider answers a light or snapshot request "pending" with a handle; the
device carries it out later. The follow-up runs in the background (the action
returns at once with the pending status) and shows its result on the entities:
the lights switch once the provider confirms, the image entity once the still is
ready. Every error is raised as a translated Home Assistant error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from bridge.errors import ProviderError, QuotaExhaustedError
from bridge.model import (
    Camera,
    CommandResult,
    CommandStatus,
    Priority,
    Task,
    TaskChange,
    format_time,
)
from bridge.providers.base import LightsControl, SnapshotControl, TaskControl

from .const import DOMAIN, LOGGER
from .coordinator import FleetCoordinator, Snapshot, runtime

# Seconds between follow-ups, and how long to wait for the device at most.
FOLLOW_UP_INTERVAL = {"lights": 5.0, "snapshot": 3.0}
FOLLOW_UP_TIMEOUT = {"lights": 120.0, "snapshot": 300.0}


def unsupported(coordinator: FleetCoordinator, action: str) -> ServiceValidationError:
    return ServiceValidationError(
        f"{coordinator.entry.title} cannot {action}",
        translation_domain=DOMAIN,
        translation_key="not_supported",
        translation_placeholders={"account": coordinator.entry.title, "action": action},
    )


def quota_error(err: QuotaExhaustedError) -> HomeAssistantError:
    return HomeAssistantError(
        str(err),
        translation_domain=DOMAIN,
        translation_key="quota_exhausted",
        translation_placeholders={
            "budget": err.budget,
            "until": format_time(err.available_at) or "",
        },
    )


def provider_error(coordinator: FleetCoordinator, err: Exception) -> HomeAssistantError:
    return HomeAssistantError(
        str(err),
        translation_domain=DOMAIN,
        translation_key="provider_error",
        translation_placeholders={"account": coordinator.entry.title, "error": str(err)},
    )


async def call(coordinator: FleetCoordinator, request: Awaitable[CommandResult]) -> CommandResult:
    """Send one command; quota and provider errors become Home Assistant errors."""
    try:
        result = await request
    except QuotaExhaustedError as err:
        raise quota_error(err) from err
    except ProviderError as err:
        raise provider_error(coordinator, err) from err
    if result.status is CommandStatus.FAILED:
        raise HomeAssistantError(
            result.error or "the provider refused the command",
            translation_domain=DOMAIN,
            translation_key="command_failed",
            translation_placeholders={"error": result.error or "refused"},
        )
    return result


async def set_lights(coordinator: FleetCoordinator, vehicle_id: str, on: bool) -> CommandResult:
    provider = coordinator.provider
    if not isinstance(provider, LightsControl):
        raise unsupported(coordinator, "switch lights")
    result = await call(coordinator, provider.set_lights(vehicle_id, on, Priority.COMMAND))

    def confirmed(_: CommandResult) -> None:
        coordinator.apply(vehicle_id, lights_on=on)

    if result.status is CommandStatus.CONFIRMED:
        confirmed(result)
    elif result.handle is not None:
        handle = result.handle
        _follow(
            coordinator,
            "lights",
            lambda: provider.lights_status(vehicle_id, handle, Priority.COMMAND),
            confirmed,
        )
    return result


async def request_snapshot(
    coordinator: FleetCoordinator, vehicle_id: str, camera: Camera
) -> CommandResult:
    provider = coordinator.provider
    if not isinstance(provider, SnapshotControl):
        raise unsupported(coordinator, "take dashcam snapshots")
    result = await call(
        coordinator, provider.request_snapshot(vehicle_id, camera, Priority.COMMAND)
    )

    def ready(done: CommandResult) -> None:
        url = done.data.get("url")
        if isinstance(url, str):
            coordinator.snapshots[vehicle_id] = Snapshot(url, coordinator.quota.now())
            coordinator.async_update_listeners()

    if result.status is CommandStatus.CONFIRMED:
        ready(result)
    elif result.handle is not None:
        handle = result.handle
        _follow(
            coordinator,
            "snapshot",
            lambda: provider.snapshot_status(handle, Priority.COMMAND),
            ready,
        )
    return result


async def create_task(coordinator: FleetCoordinator, task: Task) -> CommandResult:
    provider = coordinator.provider
    if not isinstance(provider, TaskControl):
        raise unsupported(coordinator, "create tasks")
    return await call(coordinator, provider.create_task(task, Priority.COMMAND))


async def update_task(coordinator: FleetCoordinator, change: TaskChange) -> CommandResult:
    provider = coordinator.provider
    if not isinstance(provider, TaskControl):
        raise unsupported(coordinator, "update tasks")
    return await call(coordinator, provider.update_task(change, Priority.COMMAND))


def _follow(
    coordinator: FleetCoordinator,
    kind: str,
    check: Callable[[], Awaitable[CommandResult]],
    done: Callable[[CommandResult], None],
) -> None:
    async def follow() -> None:
        deadline = coordinator.quota.now().timestamp() + FOLLOW_UP_TIMEOUT[kind]
        while coordinator.quota.now().timestamp() < deadline:
            await coordinator.sleep(FOLLOW_UP_INTERVAL[kind])
            try:
                result = await check()
            except (ProviderError, QuotaExhaustedError) as err:
                LOGGER.debug("%s: following up %s: %s", coordinator.entry.title, kind, err)
                continue
            if result.status is CommandStatus.CONFIRMED:
                done(result)
                return
            if result.status is CommandStatus.FAILED:
                LOGGER.warning(
                    "%s: %s failed: %s", coordinator.entry.title, kind, result.error or "refused"
                )
                return
        LOGGER.warning(
            "%s: the provider did not confirm %s within %.0f s",
            coordinator.entry.title,
            kind,
            FOLLOW_UP_TIMEOUT[kind],
        )

    tasks = runtime(coordinator.entry).tasks
    task = coordinator.entry.async_create_background_task(
        coordinator.hass, follow(), f"{DOMAIN} {kind} follow-up"
    )
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def result_data(result: CommandResult) -> dict[str, Any]:
    """What an action returns (its response data); `status` is the command's,
    a task's own status is `task_status`."""
    data: dict[str, Any] = {
        ("task_status" if key == "status" else key): (
            format_time(value) if isinstance(value, datetime) else value
        )
        for key, value in result.data.items()
    }
    data["status"] = result.status.value
    if result.handle is not None:
        data["handle"] = result.handle
    return data
