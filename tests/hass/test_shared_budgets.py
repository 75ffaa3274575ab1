"""Two FLEETIZE entries in one Home Assistant are behind one address: they share
FLEETIZE's 60 s spacing (one ledger in hass.data, persisted), take turns, and
never make FLEETIZE answer #1055 - at setup, after a restart, on a refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from bridge.errors import QuotaExhaustedError
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics import account
from custom_components.fleet_telematics.const import DOMAIN
from custom_components.fleet_telematics.store import LEDGER_KEY
from fleet_sim import START, coordinator_of

TOKENS = ("fleetize-token-north", "fleetize-token-south")


@pytest.fixture
async def sim(
    socket_enabled: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=0,
        telemax_vehicles=0,
        fleetize_vehicles=3,
        speed=0,
        start=START,
        fleetize_tokens=TOKENS,
    ) as server:
        monkeypatch.setattr(account, "utc_now", server.clock.now)
        yield server


def add_entry(hass: HomeAssistant, sim: SimulatorServer, token: str) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=f"FLEETIZE {token[-5:]}",
        unique_id=f"fleetize-{TOKENS.index(token)}",
        data={"provider": "fleetize", "token": token, "url": sim.fleetize_url},
        options={},
    )
    entry.add_to_hass(hass)
    return entry


async def set_up(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


def fleetize_calls(sim: SimulatorServer) -> int:
    return sum(sim.fleetize.counters.by_token[token] for token in TOKENS)


def threshold_errors(sim: SimulatorServer) -> int:
    return sim.fleetize.error_counts[1055] + sim.fleetize.error_counts[1002]


async def test_two_entries_share_the_spacing_of_their_address(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    north = add_entry(hass, sim, TOKENS[0])
    await set_up(hass, north)
    assert fleetize_calls(sim) == 1

    # The second entry's first poll waits for the minute instead of calling.
    south = add_entry(hass, sim, TOKENS[1])
    await set_up(hass, south)
    assert threshold_errors(sim) == 0
    assert fleetize_calls(sim) == 1
    waiting = coordinator_of(south)
    assert "egress 'default'" in (waiting.status.reason or "")
    assert waiting.quota.usage()["spacing"]["shared_with"] == [north.unique_id]
    # Each takes every other turn: never planned closer than two spacings.
    assert waiting.quota.min_spacing("devicelist") == 2 * 60.6  # with the margin

    # A refresh the spacing forbids says when, and sends nothing.
    with pytest.raises(QuotaExhaustedError) as refused:
        await waiting.async_refresh_now()
    assert refused.value.available_at == START + timedelta(seconds=60.6)
    assert fleetize_calls(sim) == 1

    # Its turn: it polls, and now the first one waits.
    sim.clock.advance(61)
    await waiting.async_refresh()
    assert fleetize_calls(sim) == 2
    assert len(waiting.data) == 3
    first = coordinator_of(north)
    await first.async_refresh()
    assert fleetize_calls(sim) == 2
    assert threshold_errors(sim) == 0
    # Each token kept its own 100 a day.
    assert first.quota.calls_left_today() == waiting.quota.calls_left_today() == 89


async def test_a_restart_remembers_the_shared_spacing(
    hass: HomeAssistant, sim: SimulatorServer, hass_storage: dict[str, Any]
) -> None:
    north = add_entry(hass, sim, TOKENS[0])
    await set_up(hass, north)
    assert fleetize_calls(sim) == 1
    assert await hass.config_entries.async_unload(north.entry_id)
    # On disk under the address's scope (and the account's), never the token.
    stored = hass_storage[LEDGER_KEY]["data"]
    assert "fleetize:egress:default" in stored["calls"]
    assert not any(token in str(stored) for token in TOKENS)

    # A restart: nothing in memory, only what is on disk.
    hass.data.pop(f"{DOMAIN}_ledger")
    hass.data.pop(f"{DOMAIN}_stores")
    sim.clock.advance(20)
    south = add_entry(hass, sim, TOKENS[1])
    await set_up(hass, south)
    assert fleetize_calls(sim) == 1  # the other entry's call 20 s ago holds the address
    assert threshold_errors(sim) == 0
    sim.clock.advance(41)  # the minute and the spacing's margin
    await coordinator_of(south).async_refresh()
    assert fleetize_calls(sim) == 2
    assert threshold_errors(sim) == 0


async def test_calls_an_older_version_kept_per_account_still_count(
    hass: HomeAssistant, sim: SimulatorServer, hass_storage: dict[str, Any]
) -> None:
    """Before the shared ledger each account kept its calls: an upgrade 20 s
    after a FLEETIZE call must not call again within the minute."""
    north = add_entry(hass, sim, TOKENS[0])
    called = START - timedelta(seconds=20)
    hass_storage[f"{DOMAIN}.{north.unique_id}"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"{DOMAIN}.{north.unique_id}",
        "data": {"calls": [["devicelist", called.isoformat()]], "hold": None},
    }
    await set_up(hass, north)
    assert fleetize_calls(sim) == 0
    coordinator = coordinator_of(north)
    assert coordinator.quota.calls_left_today() == 89
    # Adopted once, into the shared ledger, and gone from the account's file.
    assert await hass.config_entries.async_unload(north.entry_id)
    assert "calls" not in hass_storage[f"{DOMAIN}.{north.unique_id}"]["data"]
    assert any(
        row[1] == called.isoformat()
        for row in hass_storage[LEDGER_KEY]["data"]["calls"]["fleetize:egress:default"]
    )
