"""Ignition, moving, online and tracker fault of each vehicle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Re-exported by the package on every version (2026.x only implicitly, for mypy).
from homeassistant.components.binary_sensor import (  # type: ignore[attr-defined,unused-ignore]
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from bridge.model import Capability, Problem, VehicleState

from .coordinator import FleetCoordinator, runtime
from .entity import FleetEntity, add_vehicle_entities, has

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class VehicleBinarySensorDescription(BinarySensorEntityDescription):
    value_fn: Callable[[VehicleState], bool | None]
    requires: frozenset[Capability] = frozenset()


def _fault(state: VehicleState) -> bool | None:
    if state.problem is None:
        return None
    return state.problem not in (Problem.NONE, Problem.REPLUGGED)


BINARY_SENSORS: tuple[VehicleBinarySensorDescription, ...] = (
    VehicleBinarySensorDescription(
        key="ignition",
        translation_key="ignition",
        device_class=BinarySensorDeviceClass.POWER,
        requires=frozenset({Capability.IGNITION}),
        value_fn=lambda s: s.ignition,
    ),
    VehicleBinarySensorDescription(
        key="moving",
        translation_key="moving",
        device_class=BinarySensorDeviceClass.MOVING,
        requires=frozenset({Capability.SPEED}),
        value_fn=lambda s: s.moving,
    ),
    VehicleBinarySensorDescription(
        key="online",
        translation_key="online",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda s: s.online,
    ),
    VehicleBinarySensorDescription(
        key="fault",
        translation_key="fault",
        device_class=BinarySensorDeviceClass.PROBLEM,
        entity_category=EntityCategory.DIAGNOSTIC,
        requires=frozenset({Capability.PROBLEM}),
        value_fn=_fault,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    coordinator = runtime(entry).coordinator
    descriptions = [d for d in BINARY_SENSORS if has(coordinator, d.requires)]
    add_vehicle_entities(
        coordinator,
        async_add_entities,
        lambda vid: [VehicleBinarySensor(coordinator, vid, d) for d in descriptions],
    )


class VehicleBinarySensor(FleetEntity, BinarySensorEntity):
    entity_description: VehicleBinarySensorDescription

    def __init__(
        self,
        coordinator: FleetCoordinator,
        vehicle_id: str,
        description: VehicleBinarySensorDescription,
    ) -> None:
        super().__init__(coordinator, vehicle_id, description.key)
        self.entity_description = description

    @property
    def is_on(self) -> bool | None:
        state = self.vehicle
        return None if state is None else self.entity_description.value_fn(state)
