"""The README's vehicle JSON is the payload the bridge publishes: same keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bridge.model import VehicleState

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_vehicle_json_has_every_published_field() -> None:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", README, re.S)]
    vehicle = next(b for b in blocks if "odometer_km" in b)
    published = VehicleState(vehicle_id="1", name="Truck").to_json()
    assert list(vehicle) == list(published)
