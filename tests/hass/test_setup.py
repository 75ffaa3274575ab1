"""Setting an account up, unloading it, and what appears."""

from __future__ import annotations

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er

from bridge.simulator import fleetize
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics.const import DOMAIN
from fleet_sim import as_form, coordinator_of, setup_account

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


async def test_first_poll_after_the_flow_keeps_fleetize_spacing(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    """The flow's check was FLEETIZE's call of this minute: the account sets up,
    polls only when the minute is over, and FLEETIZE never sees a violation."""
    flow = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": "user", "show_advanced_options": True}
    )
    flow = await hass.config_entries.flow.async_configure(flow["flow_id"], {"provider": "fleetize"})
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], as_form({"token": fleetize.DEFAULT_TOKEN, "url": sim.fleetize_url})
    )
    await hass.async_block_till_done()

    entry = hass.config_entries.async_get_entry(result["result"].entry_id)
    assert entry is not None
    assert entry.state is ConfigEntryState.LOADED
    stats = sim.fleetize.stats()
    assert (stats["calls_today"], stats["violations"]) == (1, 0)
    coordinator = coordinator_of(entry)
    assert coordinator.status.next_poll is not None
    assert (coordinator.status.next_poll - sim.clock.now()).total_seconds() >= 59

    sim.clock.advance(61)
    await coordinator.async_refresh()
    await hass.async_block_till_done()

    assert len(coordinator.data) == 3  # the vehicles, a minute after setup
    stats = sim.fleetize.stats()
    assert (stats["calls_today"], stats["violations"]) == (2, 0)
