"""The base of every vehicle entity, the devices, and adding vehicles as they come."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from bridge.model import Capability, VehicleState

from .account import PROVIDERS
from .compat import via
from .const import CONF_PROVIDER, DOMAIN
from .coordinator import FleetCoordinator


def vehicle_identifier(coordinator: FleetCoordinator, vehicle_id: str) -> str:
    # The account's id and the provider's vehicle id: stable across restarts
    # and renames, distinct across two accounts with the same vehicle ids.
    return f"{coordinator.account}_{vehicle_id}"


class _Identified(Protocol):
    # A device entry of any version (2026.x adds child devices beside DeviceEntry).
    @property
    def identifiers(self) -> set[tuple[str, str]]: ...


def vehicle_id_of(entry: ConfigEntry, device: _Identified) -> str | None:
    """The provider's vehicle id of one of this entry's vehicle devices."""
    prefix = f"{entry.unique_id or entry.entry_id}_"
    for domain, identifier in device.identifiers:
        if domain == DOMAIN and identifier.startswith(prefix):
            return identifier[len(prefix) :]
    return None


def account_device(coordinator: FleetCoordinator) -> DeviceInfo:
    """The account itself, a service device that holds the quota sensors."""
    provider = PROVIDERS[coordinator.entry.data[CONF_PROVIDER]]
    return DeviceInfo(
        identifiers={(DOMAIN, coordinator.account)},
        name=coordinator.entry.title,
        manufacturer=provider.title,
        model="Provider account",
        entry_type=DeviceEntryType.SERVICE,
    )


def async_register_account_device(coordinator: FleetCoordinator) -> dr.DeviceEntry:
    """Create the account's device before any vehicle names it as its parent
    (a vehicle's `via` must name a device that exists: Home Assistant reports
    one that does not, and will refuse it)."""
    registry = dr.async_get(coordinator.hass)
    return registry.async_get_or_create(
        config_entry_id=coordinator.entry.entry_id, **account_device(coordinator)
    )


def vehicle_device(coordinator: FleetCoordinator, state: VehicleState) -> DeviceInfo:
    info = DeviceInfo(
        identifiers={(DOMAIN, vehicle_identifier(coordinator, state.vehicle_id))},
        name=state.name,
        manufacturer=state.make or PROVIDERS[coordinator.entry.data[CONF_PROVIDER]].title,
    )
    model = " ".join(str(p) for p in (state.model, state.year) if p)
    if model:
        info["model"] = model
    if coordinator.account_device is not None:
        via(info, coordinator.account_device)
    return info


class FleetEntity(CoordinatorEntity[FleetCoordinator]):
    """An entity of one vehicle, updated by its account's coordinator."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: FleetCoordinator, vehicle_id: str, key: str) -> None:
        super().__init__(coordinator)
        self.vehicle_id = vehicle_id
        self._attr_unique_id = f"{vehicle_identifier(coordinator, vehicle_id)}_{key}"
        state = coordinator.data[vehicle_id]
        self._attr_device_info = vehicle_device(coordinator, state)

    @property
    def vehicle(self) -> VehicleState | None:
        return self.coordinator.data.get(self.vehicle_id)

    @property
    def available(self) -> bool:
        # A vehicle the provider no longer lists is unavailable until deleted.
        return super().available and self.vehicle_id in self.coordinator.data


def has(coordinator: FleetCoordinator, requires: Iterable[Capability]) -> bool:
    return set(requires) <= coordinator.provider.capabilities


def add_vehicle_entities(
    coordinator: FleetCoordinator,
    async_add_entities: AddEntitiesCallback,
    factory: Callable[[str], Iterable[Entity]],
) -> None:
    """Add each vehicle's entities now, and those of vehicles the provider adds
    later as soon as a poll sees them (no restart)."""
    known: set[str] = set()

    @callback
    def add_new(*_: Any) -> None:
        new = [vid for vid in coordinator.data if vid not in known]
        known.update(new)
        entities = [entity for vid in new for entity in factory(vid)]
        if entities:
            async_add_entities(entities)

    add_new()
    coordinator.entry.async_on_unload(coordinator.async_add_listener(add_new))
