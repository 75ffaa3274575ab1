"""Ask a vehicle's dashcam for a still (TrackSafe365, Samsara)."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from bridge.model import Camera, Capability

from . import commands
from .coordinator import FleetCoordinator, runtime
from .entity import FleetEntity, add_vehicle_entities, has

PARALLEL_UPDATES = 1


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    coordinator = runtime(entry).coordinator
    if has(coordinator, {Capability.SNAPSHOT}):
        add_vehicle_entities(
            coordinator, async_add_entities, lambda vid: [SnapshotButton(coordinator, vid)]
        )


class SnapshotButton(FleetEntity, ButtonEntity):
    _attr_translation_key = "snapshot_request"

    def __init__(self, coordinator: FleetCoordinator, vehicle_id: str) -> None:
        super().__init__(coordinator, vehicle_id, "snapshot_request")

    async def async_press(self) -> None:
        await commands.request_snapshot(self.coordinator, self.vehicle_id, Camera.ROAD)
