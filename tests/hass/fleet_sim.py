"""The provider simulators and config entries pointing at them, for the
integration's tests (Home Assistant's own aiohttp session talks to them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from bridge.simulator import fleetize, metrotec, samsara, telemax
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics.const import DOMAIN

# A weekday at noon: the simulated fleets are on the road.
START = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
async def sim(socket_enabled: None) -> AsyncIterator[SimulatorServer]:
    # Real sockets on 127.0.0.1: the simulators are real HTTP servers.
    async with SimulatorServer(
        vehicles=3,
        fleetize_vehicles=3,
        telemax_vehicles=3,
        metrotec_vehicles=3,
        tracksafe365_vehicles=3,
        speed=0,
        start=START,
    ) as server:
        yield server


def entry_data(sim: SimulatorServer, provider: str) -> dict[str, Any]:
    """Config entry data of an account at one simulator (the demo credentials)."""
    if provider == "samsara":
        return {"provider": provider, "token": samsara.DEFAULT_TOKEN, "url": sim.samsara_url}
    if provider == "fleetize":
        return {"provider": provider, "token": fleetize.DEFAULT_TOKEN, "url": sim.fleetize_url}
    if provider == "telemax":
        return {"provider": provider, "api_key": telemax.DEFAULT_API_KEY, "url": sim.telemax_url}
    if provider == "metrotec":
        return {"provider": provider, "api_key": metrotec.DEFAULT_API_KEY, "url": sim.metrotec_url}
    return {"provider": provider, "api_key": "ts365_live_demo", "url": sim.tracksafe365_url}


async def setup_account(
    hass: HomeAssistant, sim: SimulatorServer, provider: str, **options: Any
) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=provider.title(),
        unique_id=f"{provider}-account",
        data=entry_data(sim, provider),
        options=options,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry
