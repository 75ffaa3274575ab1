"""FLEETIZE's devicelist sample exactly as its documentation prints it.

The fixture is copied byte for byte from the documentation (shared/providers/
fleetize.txt): no-break spaces (U+00A0) as indentation, a doubled comma, and a
literal `...` line where the second device is elided. An answer copied from a
browser looks like that. It is read as printed; anything else that is not JSON
fails with an error naming its line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ProviderDataError
from bridge.model import PollPlan
from bridge.providers.fleetize import LenientJSONError, loads_lenient
from tests.bridge.test_fleetize import fleetize, make, session

__all__ = ["fleetize", "session"]  # the fixtures of the scripted FLEETIZE server

SAMPLE = (Path(__file__).parent / "fixtures" / "fleetize_devicelist_documented.txt").read_text(
    encoding="utf-8"
)


def test_the_fixture_is_the_documentation_as_printed() -> None:
    # Guard against an editor "fixing" the fixture: its quirks are the point.
    assert "\u00a0\u00a0\u00a0" in SAMPLE
    assert '.png",,' in SAMPLE
    assert any(line.replace("\u00a0", " ").strip() == "..." for line in SAMPLE.splitlines())


def test_the_sample_reads_as_printed() -> None:
    devices = loads_lenient(SAMPLE)
    assert [d["device_id"] for d in devices] == [492, 493]
    first, elided = devices
    assert first["device_name"] == "My vehicle"
    assert first["location"] == "48.87778,9.34889"
    assert first["error_text"] is None
    assert elided == {"device_id": 493, "device_imei": 349133054916622, "device_type": "CAR"}


async def test_the_provider_polls_the_sample(fleetize, session) -> None:
    fake, url = fleetize
    fake.answers.append((200, SAMPLE))
    update = await make(session, url).poll(PollPlan(refresh_vehicles=True))
    vehicles = {v.vehicle_id: v for v in update.vehicles}
    assert set(vehicles) == {"492", "493"}
    assert vehicles["492"].odometer_km == 277910
    assert vehicles["493"].position is None  # elided: nothing known yet


def test_what_is_not_json_fails_naming_its_line() -> None:
    broken = SAMPLE.replace('"device_distance":0,', '"device_distance":0 "km",')
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if '0 "km"' in text)
    with pytest.raises(LenientJSONError, match=rf"line {line} column \d+: .*device_distance"):
        loads_lenient(broken)


async def test_the_provider_error_names_the_line(fleetize, session) -> None:
    fake, url = fleetize
    cut = "\n".join(SAMPLE.splitlines()[:12])  # an answer cut off mid-object
    fake.answers.append((200, cut))
    with pytest.raises(
        ProviderDataError, match=r"FLEETIZE devicelist: unreadable answer .*not JSON at line \d+"
    ):
        await make(session, url).poll(PollPlan(refresh_vehicles=True))
