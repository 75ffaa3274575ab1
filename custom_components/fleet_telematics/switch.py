"""A vehicle's lights (Metrotec light control events)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback

from bridge.model import Capability

from . import commands
from .coordinator import FleetCoordinator, runtime
from .entity import FleetEntity, add_vehicle_entities, has

PARALLEL_UPDATES = 1  # one light command at a time per platform


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    coordinator = runtime(entry).coordinator
    if has(coordinator, {Capability.LIGHTS}):
        add_vehicle_entities(
            coordinator, async_add_entities, lambda vid: [VehicleLights(coordinator, vid)]
        )


class VehicleLights(FleetEntity, SwitchEntity):
    """On or off as the provider last confirmed, not as last asked: the device
    carries a command out when it next reports, seconds or minutes later."""

    _attr_translation_key = "lights"

    def __init__(self, coordinator: FleetCoordinator, vehicle_id: str) -> None:
        super().__init__(coordinator, vehicle_id, "lights")

    @property
    def is_on(self) -> bool | None:
        state = self.vehicle
        return state.lights_on if state else None

    async def async_turn_on(self, **kwargs: Any) -> None:
        await commands.set_lights(self.coordinator, self.vehicle_id, True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await commands.set_lights(self.coordinator, self.vehicle_id, False)
