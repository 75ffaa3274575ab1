"""Each vehicle's alerts (harsh braking, phone use, geozones ...) as an event entity."""

from __future__ import annotations

from homeassistant.components.event import EventEntity
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from .coordinator import FleetCoordinator, runtime
from .entity import FleetEntity, add_vehicle_entities

PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    coordinator = runtime(entry).coordinator
    # Providers say which alerts they report; none, no event entity.
    if coordinator.provider.alert_types:
        add_vehicle_entities(
            coordinator, async_add_entities, lambda vid: [VehicleAlert(coordinator, vid)]
        )


class VehicleAlert(FleetEntity, EventEntity):
    _attr_translation_key = "alert"

    def __init__(self, coordinator: FleetCoordinator, vehicle_id: str) -> None:
        super().__init__(coordinator, vehicle_id, "alert")
        self._attr_event_types = sorted(t.value for t in coordinator.provider.alert_types)

    @callback
    def _handle_coordinator_update(self) -> None:
        for alert, stale in self.coordinator.new_alerts:
            # Old news (an outage's backlog) is remembered, but fires nothing.
            if alert.vehicle_id != self.vehicle_id or stale:
                continue
            if alert.type.value not in self.event_types:
                continue
            data = alert.to_json()
            for key in ("event_type", "vehicle", "stale"):
                data.pop(key, None)
            self._trigger_event(alert.type.value, data)
        super()._handle_coordinator_update()
