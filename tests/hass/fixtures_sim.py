"""A real provider simulator on 127.0.0.1 for Home Assistant tests.

Home Assistant's shared aiohttp session talks to it for real: the flows and the
coordinator see the providers' actual answers (401, FLEETIZE #1002 and #1055,
TrackSafe365's missing-scope 403), not mocks. pytest-homeassistant-custom-component
allows connections to 127.0.0.1 only, and sockets only with `socket_enabled`.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.simulator import fleetize, metrotec, samsara, telemax
from bridge.simulator.server import SimulatorServer
from bridge.simulator.tracksafe365_keys import DEFAULT_LIVE_KEY, default_keys, make_key

REPO_ROOT = Path(__file__).resolve().parents[2]

# Second credentials of each kind: another account (Samsara, FLEETIZE), or another
# key of the same company (Telemax: the company is the account).
SAMSARA_TOKEN = samsara.DEFAULT_TOKEN
SAMSARA_OTHER_TOKEN = "other-samsara-token"
FLEETIZE_TOKEN = fleetize.DEFAULT_TOKEN
FLEETIZE_OTHER_TOKEN = "other-fleetize-token"
TELEMAX_KEY = telemax.DEFAULT_API_KEY
TELEMAX_SECOND_KEY = "second-telemax-key"
METROTEC_USER = metrotec.DEFAULT_USERNAME
METROTEC_PASSWORD = metrotec.DEFAULT_PASSWORD
METROTEC_KEY = metrotec.DEFAULT_API_KEY
TRACKSAFE_KEY = DEFAULT_LIVE_KEY
# A restricted key without fleet:read: the provider's 403 names the scope.
TRACKSAFE_NO_FLEET_KEY = "ts365_rk_nofleet"


@pytest.fixture(name="sim")
async def sim_fixture(socket_enabled: None) -> AsyncIterator[SimulatorServer]:
    """Every provider's simulator on one local port, its clock standing still
    (FLEETIZE's 60 s spacing runs on it: `sim.clock.advance(61)` to pass it)."""
    async with SimulatorServer(
        vehicles=3,
        speed=0,
        samsara_tokens=(SAMSARA_TOKEN, SAMSARA_OTHER_TOKEN),
        fleetize_tokens=(FLEETIZE_TOKEN, FLEETIZE_OTHER_TOKEN),
        telemax_api_keys=(TELEMAX_KEY, TELEMAX_SECOND_KEY),
        tracksafe365_keys=[*default_keys(), make_key(TRACKSAFE_NO_FLEET_KEY, ("safety:read",))],
    ) as server:
        yield server


def closed_port_url() -> str:
    """A local URL nobody listens on (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
