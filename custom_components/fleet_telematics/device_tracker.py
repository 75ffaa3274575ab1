"""Each vehicle on the map: the device's main entity."""

from __future__ import annotations

from typing import Any

# The package's own names: 2026.x made `config_entry.TrackerEntity` a deprecated
# alias; the package exports the class on every version (implicitly for mypy).
from homeassistant.components.device_tracker import (  # type: ignore[attr-defined,unused-ignore]
    SourceType,
    TrackerEntity,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from bridge.model import Capability, format_time

from .coordinator import FleetCoordinator, runtime
from .entity import FleetEntity, add_vehicle_entities, has

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    coordinator = runtime(entry).coordinator
    if has(coordinator, {Capability.POSITION}):
        add_vehicle_entities(
            coordinator, async_add_entities, lambda vid: [VehicleTracker(coordinator, vid)]
        )


class VehicleTracker(FleetEntity, TrackerEntity):
    _attr_name = None  # the device's main entity: device_tracker.<vehicle>
    _attr_translation_key = "location"
    # Home Assistant files trackers under diagnostics by default; a vehicle's
    # position is what its device is for.
    _attr_entity_category = None  # type: ignore[assignment]

    def __init__(self, coordinator: FleetCoordinator, vehicle_id: str) -> None:
        super().__init__(coordinator, vehicle_id, "location")

    @property
    def source_type(self) -> SourceType:
        return SourceType.GPS

    @property
    def latitude(self) -> float | None:
        state = self.vehicle
        return state.position.latitude if state and state.position else None

    @property
    def longitude(self) -> float | None:
        state = self.vehicle
        return state.position.longitude if state and state.position else None

    @property
    def location_accuracy(self) -> int:
        state = self.vehicle
        accuracy = state.position.accuracy_m if state and state.position else None
        return round(accuracy or 0)

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        state = self.vehicle
        position = state.position if state else None
        if position is None:
            return {}
        return {
            "heading": position.heading,
            "address": position.address,
            "position_time": format_time(position.time),
        }
