"""Setting an account up, unloading it, and what appears."""

from __future__ import annotations

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er

from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics.const import DOMAIN
from fleet_sim import setup_account

PROVIDERS = ["samsara", "fleetize", "telemax", "metrotec", "tracksafe365"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_vehicle_is_a_device_with_a_tracker(
    hass: HomeAssistant, sim: SimulatorServer, provider: str
) -> None:
    entry = await setup_account(hass, sim, provider)
    assert entry.state is ConfigEntryState.LOADED
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    vehicles = [d for d in devices if d.via_device_id is not None]
    assert len(vehicles) == 3
    trackers = [
        e
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if e.domain == "device_tracker"
    ]
    assert len(trackers) == 3
    state = hass.states.get(trackers[0].entity_id)
    assert state is not None
    assert state.attributes.get("latitude") is not None, state

    assert await hass.config_entries.async_unload(entry.entry_id)
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert DOMAIN
