"""Home Assistant's own code judges the bridge's MQTT discovery payloads.

Runs in the Home Assistant test venv (see requirements.txt and pytest.ini here),
never in the project venv; `bridge` comes from the working tree.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion

import bridge
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics import account
from fleet_sim import START

# An installed copy of the bridge would be tested instead of the checkout.
assert Path(bridge.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2]), (
    bridge.__file__
)


HERE = Path(__file__).resolve().parent
# scripts/ha-lane names the lane; a lane has its own snapshots only where Home
# Assistant's own output differs from the other lanes' (tests/hass/snapshots-<lane>).
LANE = os.environ.get("FTB_HA_LANE", "")


class LaneSnapshotExtension(HomeAssistantSnapshotExtension):
    """Home Assistant's snapshot format, from tests/hass/snapshots (or the
    lane's own folder, when it has this module's snapshots)."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        shared = HERE / "snapshots"
        if LANE:
            own = HERE / f"snapshots-{LANE}"
            if (own / f"{Path(test_location.filepath).stem}.ambr").exists():
                return str(own)
        return str(shared)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """The plugin's README fixture: newer plugins no longer apply it themselves."""
    return snapshot.use_extension(LaneSnapshotExtension)


# --- deprecations of ours fail the test -----------------------------------------------
# Home Assistant reports a deprecated call by a custom integration in its log (the
# `frame` helper's "Detected that custom integration ...", the deprecation helpers'
# "... was called from fleet_telematics ..."): a warning today, an error in the
# release that removes the old API. Python's own DeprecationWarnings raised in our
# modules are errors through pytest.ini's filterwarnings.
_OURS = re.compile(r"fleet_telematics|custom_components/fleet_telematics")
_DEPRECATION = re.compile(
    r"deprecat|Detected that custom integration|Detected code that|will stop working"
    r"|will be removed|is removed in",
    re.IGNORECASE,
)


class _DeprecationReports(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("homeassistant", "py.warnings")):
            return
        message = record.getMessage()
        if _OURS.search(message) and _DEPRECATION.search(message):
            self.reports.append(f"{record.name}: {message}")


@pytest.fixture(autouse=True)
def no_deprecation_reports() -> Iterator[_DeprecationReports]:
    handler = _DeprecationReports()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    if handler.reports:
        pytest.fail(
            "Home Assistant reported deprecated use by fleet_telematics:\n"
            + "\n".join(handler.reports),
            pytrace=False,
        )


@pytest.fixture
async def mqtt_ready(
    hass: HomeAssistant,
    mock_hass_config: None,
    mqtt_mock_entry: Any,
    mqtt_client_mock: Any,
) -> AsyncIterator[HomeAssistant]:
    """Home Assistant with its MQTT integration set up (discovery on) on a mocked client."""
    # Kept for tests that check what Home Assistant publishes (switch, button).
    hass.data["fleet_test_mqtt_mock"] = await mqtt_mock_entry()
    yield hass
    # The mocked socket never closes by itself: close it as a broker would, or
    # Home Assistant's 1 s MQTT housekeeping timer (newer versions start it when
    # the socket opens) outlives the test.
    close = getattr(mqtt_client_mock, "on_socket_close", None)
    if callable(close):
        close(mqtt_client_mock, None, Mock(fileno=Mock(return_value=-1)))
        await hass.async_block_till_done()


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
