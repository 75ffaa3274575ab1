"""Fleet Telematics: vehicles of Samsara, FLEETIZE, Telemax, Metrotec and
TrackSafe365 accounts as Home Assistant devices, polled within each provider's
published limits by the fleet-telematics-bridge core."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from .account import build_client, cadence_for
from .const import DOMAIN, ISSUE_TOKEN_BLOCKED
from .coordinator import FleetCoordinator, FleetRuntime, runtime
from .entity import async_register_account_device, vehicle_id_of
from .services import async_setup_services
from .store import async_get_store

PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.DEVICE_TRACKER,
    Platform.EVENT,
    Platform.IMAGE,
    Platform.SENSOR,
    Platform.SWITCH,
]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions once, whatever the number of accounts."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    account = entry.unique_id or entry.entry_id
    store = await async_get_store(hass, account)
    provider, quota = build_client(
        async_get_clientsession(hass), entry.data, entry.options, store, account
    )

    coordinator = FleetCoordinator(hass, entry, provider, quota, store, cadence_for(entry.options))
    coordinator.restore()
    coordinator.account_device = async_register_account_device(coordinator)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = FleetRuntime(coordinator)  # type: ignore[attr-defined,unused-ignore]
    entry.async_on_unload(entry.add_update_listener(_async_options_updated))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    unloaded: bool = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        data = runtime(entry)
        for task in data.tasks:
            task.cancel()
        await data.coordinator.provider.close()
        # Whatever the last poll spent is on disk before the entry goes.
        await data.coordinator.store.async_flush()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """The account is gone: so are its ledger, cursors and repair issue."""
    ir.async_delete_issue(hass, DOMAIN, f"{ISSUE_TOKEN_BLOCKED}_{entry.entry_id}")
    store = await async_get_store(hass, entry.unique_id or entry.entry_id)
    await store.async_remove()
    hass.data.get(f"{DOMAIN}_stores", {}).pop(store.account, None)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: ConfigEntry, device: dr.DeviceEntry
) -> bool:
    """A vehicle can be deleted from the UI once its provider no longer lists it."""
    vehicle = vehicle_id_of(entry, device)
    return vehicle is None or vehicle not in runtime(entry).coordinator.data


async def _async_options_updated(hass: HomeAssistant, entry: ConfigEntry) -> None:
    await hass.config_entries.async_reload(entry.entry_id)
