"""Home Assistant's own code judges the bridge's MQTT discovery payloads.

Runs in the Home Assistant test venv (see requirements.txt and pytest.ini here),
never in the project venv; `bridge` comes from the working tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from homeassistant.core import HomeAssistant

import bridge
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics import account
from fleet_sim import START

# An installed copy of the bridge would be tested instead of the checkout.
assert Path(bridge.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2]), (
    bridge.__file__
)


@pytest.fixture
async def mqtt_ready(
    hass: HomeAssistant,
    mock_hass_config: None,
    mqtt_mock_entry: Any,
) -> HomeAssistant:
    """Home Assistant with its MQTT integration set up (discovery on) on a mocked client."""
    # Kept for tests that check what Home Assistant publishes (switch, button).
    hass.data["fleet_test_mqtt_mock"] = await mqtt_mock_entry()
    return hass


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load custom_components/fleet_telematics from the checkout."""


@pytest.fixture
async def sim(
    socket_enabled: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SimulatorServer]:
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
        # The accounts' quota clock is the simulated one (fixed unless advanced).
        monkeypatch.setattr(account, "utc_now", server.clock.now)
        yield server
