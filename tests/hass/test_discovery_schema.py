"""Every discovery message passes Home Assistant's own discovery validation.

This mirrors `homeassistant/components/mqtt/discovery.py` (topic matching,
abbreviation expansion, origin check) and then applies the platform's
`DISCOVERY_SCHEMA`, exactly what the MQTT integration does with a config message.
`DISCOVERY_SCHEMA` silently drops keys it does not know (`extra=REMOVE_EXTRA`), so
a dropped key is a problem too: Home Assistant would ignore that setting.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from ha_discovery import ha_problems

from bridge.mqtt.discovery import DiscoveryMessage, account_discovery
from fleet_ha import CAPABILITY_SETS, REPO_ROOT, TOPICS, discovery_messages, make_vehicle


@pytest.mark.parametrize("capabilities", CAPABILITY_SETS.values(), ids=CAPABILITY_SETS.keys())
def test_every_discovery_payload_passes_home_assistant_validation(capabilities):
    messages = discovery_messages(capabilities)

    problems = {message.topic: ha_problems(message) for message in messages}

    assert {topic: p for topic, p in problems.items() if p} == {}
    # Online and last seen exist for every vehicle, whatever the provider fills.
    assert len(messages) >= 2


def test_awkward_vehicle_ids_and_missing_details_still_pass():
    vehicle = make_vehicle(
        vehicle_id="fleet/Truck 7+#ü", name="Zug № 7", vin=None, make=None, model=None, year=None
    )
    messages = discovery_messages(CAPABILITY_SETS["all"], vehicle)

    assert {m.topic: ha_problems(m) for m in messages if ha_problems(m)} == {}
    device = messages[0].payload["device"]
    assert device["manufacturer"] == "Samsara"
    assert device["model"] == "Vehicle"
    assert "serial_number" not in device


def test_the_check_catches_what_home_assistant_rejects_or_ignores():
    good = discovery_messages(CAPABILITY_SETS["all"])
    speed = next(m for m in good if m.topic.endswith("/speed/config"))
    assert ha_problems(speed) == []

    def broken(**changes: Any) -> DiscoveryMessage:
        return DiscoveryMessage(speed.topic, {**speed.payload, **changes})

    assert ha_problems(broken(state_class="sometimes"))  # rejected
    assert ha_problems(broken(device_class="velocity"))  # rejected
    assert ha_problems(broken(value_template="{{ value_json.speed_kmh "))  # bad Jinja
    assert ha_problems(broken(unit_of_measurment="km/h"))  # typo: silently ignored
    assert ha_problems(broken(device={"name": "Truck 7"}))  # device without identifier
    assert ha_problems(broken(origin={"sw_version": "1"}))  # origin without name
    assert ha_problems(DiscoveryMessage(speed.topic.replace("TRK-7", "TRK 7"), speed.payload))
    assert ha_problems(DiscoveryMessage(speed.topic.replace("/sensor/", "/gauge/"), speed.payload))


@pytest.mark.parametrize("capabilities", CAPABILITY_SETS.values(), ids=CAPABILITY_SETS.keys())
def test_unique_ids_and_discovery_topics_are_distinct(capabilities):
    messages = discovery_messages(capabilities)
    unique_ids = [m.payload["unique_id"] for m in messages]
    topics = [m.topic for m in messages]

    assert len(set(unique_ids)) == len(unique_ids)
    assert len(set(topics)) == len(topics)


def test_discovery_module_imports_only_the_standard_library():
    """The premise of this suite: no bridge dependency is needed in the HA venv."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import bridge.mqtt.discovery\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'bridge'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r})\n{code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("has_daily_budget", [True, False])
def test_account_quota_sensors_pass_home_assistant_validation(has_daily_budget):
    messages = list(
        account_discovery(
            TOPICS, "acme", "fleetize", "Acme fleet", has_daily_budget=has_daily_budget
        )
    )
    keys = {m.topic.split("/")[-2] for m in messages}
    always = {"next_poll", "republish"}
    assert keys == (always | {"calls_left_today"} if has_daily_budget else always)
    for message in messages:
        assert ha_problems(message) == [], message.topic


@pytest.mark.parametrize("capabilities", CAPABILITY_SETS.values(), ids=CAPABILITY_SETS.keys())
def test_no_payload_sets_object_id(capabilities):
    """Home Assistant 2025.x/2026.x deprecate `object_id` in discovery (for
    `default_entity_id`); we set neither: entity ids come from the device and
    entity names, the same on 2024.3 and 2026.x."""
    messages = [
        *discovery_messages(capabilities),
        *account_discovery(TOPICS, "acme", "fleetize", "Acme", has_daily_budget=True),
    ]
    for message in messages:
        assert not {"object_id", "obj_id", "default_entity_id"} & set(message.payload)
