"""The last dashcam still of a vehicle (after its snapshot button or action)."""

from __future__ import annotations

from datetime import datetime

from homeassistant.components.image import ImageEntity
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from bridge.model import Capability

from .coordinator import FleetCoordinator, runtime
from .entity import FleetEntity, add_vehicle_entities, has

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    coordinator = runtime(entry).coordinator
    if has(coordinator, {Capability.SNAPSHOT}):
        add_vehicle_entities(
            coordinator,
            async_add_entities,
            lambda vid: [SnapshotImage(hass, coordinator, vid)],
        )


class SnapshotImage(FleetEntity, ImageEntity):
    _attr_translation_key = "snapshot"

    def __init__(self, hass: HomeAssistant, coordinator: FleetCoordinator, vehicle_id: str) -> None:
        FleetEntity.__init__(self, coordinator, vehicle_id, "snapshot")
        ImageEntity.__init__(self, hass)
        self._shown: str | None = None

    @property
    def image_url(self) -> str | None:
        snapshot = self.coordinator.snapshots.get(self.vehicle_id)
        return snapshot.url if snapshot else None

    @property
    def image_last_updated(self) -> datetime | None:
        snapshot = self.coordinator.snapshots.get(self.vehicle_id)
        return snapshot.at if snapshot else None

    @callback
    def _handle_coordinator_update(self) -> None:
        url = self.image_url
        if url != self._shown:
            # A new still: drop the cached image so the next fetch gets it.
            self._shown = url
            self._cached_image = None
        super()._handle_coordinator_update()
