"""The provider simulators and config entries pointing at them, for the
integration's tests (Home Assistant's own aiohttp session talks to them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from homeassistant.core import Event, HomeAssistant, State, callback
from pytest_homeassistant_custom_component.common import MockConfigEntry

from bridge.simulator import fleetize, metrotec, samsara, telemax
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics.const import DOMAIN

# A weekday at noon: the simulated fleets are on the road.
START = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


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


def as_form(user_input: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the frontend sends: the server URL inside the collapsed section where
    Home Assistant has no advanced mode any more."""
    from custom_components.fleet_telematics.compat import ADVANCED_MODE_DEPRECATED

    if not ADVANCED_MODE_DEPRECATED or user_input is None or "url" not in user_input:
        return user_input
    flat = dict(user_input)
    url = flat.pop("url")
    return {**flat, "advanced": {"url": url}}


def coordinator_of(entry: MockConfigEntry) -> Any:
    from custom_components.fleet_telematics.coordinator import runtime

    return runtime(entry).coordinator


def vehicle_device_id(hass: HomeAssistant, entry: MockConfigEntry, vehicle_id: str) -> str:
    from custom_components.fleet_telematics.compat import device_by_identifier

    device = device_by_identifier(hass, (DOMAIN, f"{entry.unique_id}_{vehicle_id}"), entry.entry_id)
    assert device is not None, vehicle_id
    return device.id


def entity_id_of(hass: HomeAssistant, platform: str, unique_id: str) -> str:
    from homeassistant.helpers import entity_registry as er

    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, unique_id)
    assert entity_id is not None, unique_id
    return entity_id


async def wait_state(
    hass: HomeAssistant,
    entity_id: str,
    predicate: Callable[[State | None], bool],
    timeout: float = 10.0,
) -> State | None:
    """Wait for a state change that satisfies `predicate` (no sleeping)."""
    from homeassistant.helpers.event import async_track_state_change_event

    if predicate(hass.states.get(entity_id)):
        return hass.states.get(entity_id)
    reached: asyncio.Future[State | None] = hass.loop.create_future()

    @callback
    def changed(event: Event) -> None:
        state = event.data.get("new_state")
        if predicate(state) and not reached.done():
            reached.set_result(state)

    unsubscribe = async_track_state_change_event(hass, [entity_id], changed)
    try:
        async with asyncio.timeout(timeout):
            return await reached
    finally:
        unsubscribe()


def advancing_sleep(sim: SimulatorServer) -> Callable[[float], Awaitable[None]]:
    """A follow-up wait that moves the simulated clock instead of real time."""

    async def sleep(seconds: float) -> None:
        sim.clock.advance(seconds)
        await asyncio.sleep(0)

    return sleep
