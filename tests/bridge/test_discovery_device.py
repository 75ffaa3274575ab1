"""Device-based discovery (`mqtt.discovery_mode: device`, Home Assistant 2024.11+).

Home Assistant 2024.3 in tests/hass cannot read this form, so these tests check
its shape against Home Assistant's documented schema: one retained
`<prefix>/device/<object_id>/config` per device with `dev`, `o` (required) and
`cmps`, each component with its platform in `p` and a `unique_id`; and that a
bridge switching forms leaves no duplicate on the broker.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.model import AlertType, Capability, Position, VehicleState
from bridge.mqtt.discovery import (
    ORIGIN,
    account_device_discovery,
    account_discovery,
    descriptions_for,
    device_identifier,
    vehicle_device_discovery,
    vehicle_discovery,
)
from bridge.mqtt.topics import Topics
from bridge.providers.samsara import SamsaraProvider
from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import make_config, running, state_topic
from tests.support.mqtt import Mosquitto, Recorder

TOPICS = Topics()
ACCOUNT = "sim"
# Platforms Home Assistant's device discovery accepts that the bridge uses.
PLATFORMS = {"device_tracker", "sensor", "binary_sensor", "switch", "button", "image", "event"}
VEHICLE = VehicleState(
    vehicle_id="281474976710001",
    name="Truck 0001",
    position=Position(41.8781, -87.6298, datetime(2026, 11, 21, 10, 15, tzinfo=UTC)),
    make="Freightliner",
    model="Cascadia",
    year=2019,
    vin="1FUJA6CK14LM94383",
)


def test_one_message_carries_the_whole_vehicle_device() -> None:
    capabilities = frozenset(Capability)
    types = frozenset({AlertType.HARSH_BRAKING, AlertType.SPEEDING})
    message = vehicle_device_discovery(TOPICS, "acme", "samsara", capabilities, VEHICLE, types)
    node = device_identifier("acme", VEHICLE.vehicle_id)

    assert message.topic == f"homeassistant/device/{node}/config"
    payload = message.payload
    assert payload["o"] == ORIGIN
    assert payload["o"]["name"]
    assert payload["dev"]["identifiers"] == [node]
    assert payload["dev"]["name"] == "Truck 0001"
    assert payload["availability"] == [
        {"topic": "fleet/bridge/state"},
        {"topic": f"fleet/acme/{VEHICLE.vehicle_id}/availability"},
    ]
    components = payload["cmps"]
    assert set(components) == {d.key for d in descriptions_for(capabilities)}
    # The per-entity form, entity by entity: the same options and unique id, with
    # the platform in `p` and the device, origin and shared availability once.
    for entity in vehicle_discovery(TOPICS, "acme", "samsara", capabilities, VEHICLE, types):
        component_type, _node, key = entity.topic.split("/")[1:4]
        component = components[key]
        assert component["p"] == component_type
        assert component["p"] in PLATFORMS
        assert component["unique_id"] == entity.payload["unique_id"]
        assert "device" not in component
        assert "origin" not in component
        expected = {k: v for k, v in entity.payload.items() if k not in {"device", "origin"}}
        if expected["availability"] == payload["availability"]:
            del expected["availability"], expected["availability_mode"]
        assert {k: v for k, v in component.items() if k != "p"} == expected
    # The online sensor must stay available when the vehicle stops reporting.
    assert components["online"]["availability"] == [{"topic": "fleet/bridge/state"}]
    assert "availability" not in components["speed"]
    assert components["alert"]["event_types"] == ["harsh_braking", "speeding"]
    json.dumps(payload)  # plain JSON all the way down


def test_only_the_providers_entities_are_components() -> None:
    capabilities = SamsaraProvider.capabilities
    message = vehicle_device_discovery(TOPICS, "acme", "samsara", capabilities, VEHICLE)
    assert set(message.payload["cmps"]) == {d.key for d in descriptions_for(capabilities)}
    assert "lights" not in message.payload["cmps"]


def test_the_account_device_in_one_message() -> None:
    message = account_device_discovery(TOPICS, "depot", "fleetize", "Depot", has_daily_budget=True)
    assert message.topic == "homeassistant/device/fleet_depot/config"
    assert message.payload["dev"]["name"] == "Depot"
    assert message.payload["o"] == ORIGIN
    entities = list(account_discovery(TOPICS, "depot", "fleetize", "Depot", has_daily_budget=True))
    components = message.payload["cmps"]
    assert set(components) == {"calls_left_today", "next_poll", "republish"}
    for entity in entities:
        component, key = entity.topic.split("/")[1], entity.topic.split("/")[3]
        assert components[key]["p"] == component
        assert components[key]["unique_id"] == entity.payload["unique_id"]


def config_in(mode: str, mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path) -> Any:
    config = make_config(mosquitto, simulator, tmp_path)
    mqtt = config.mqtt.model_copy(update={"discovery_mode": mode})
    return config.model_copy(update={"mqtt": mqtt})


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=6, speed=0, seed=7) as server:
        yield server


def entity_topics(vehicle_id: str) -> set[str]:
    node = device_identifier(ACCOUNT, vehicle_id)
    return {
        TOPICS.discovery(d.component, node, d.key)
        for d in descriptions_for(SamsaraProvider.capabilities)
    }


def device_topic(vehicle_id: str) -> str:
    return TOPICS.device_discovery(device_identifier(ACCOUNT, vehicle_id))


@contextlib.asynccontextmanager
async def settled(config: BridgeConfig) -> AsyncIterator[Bridge]:
    async with running(config) as bridge:
        await bridge.pollers[ACCOUNT].wait_polls(1)
        await bridge.publisher.discovery_settled(30)
        yield bridge


async def test_switching_forms_clears_the_other_one_from_the_broker(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = simulator.world.ids()
    every_entity_topic = set().union(*(entity_topics(v) for v in ids))
    device_topics = {device_topic(v) for v in ids}
    marker = "fleet/bridge/discovery"

    async with settled(config_in("entity", mosquitto, simulator, tmp_path)):
        await recorder.wait_for(
            lambda: (
                every_entity_topic <= recorder.retained.keys()
                and json.loads(recorder.retained.get(marker, b"{}")).get("mode") == "entity"
            )
        )
    assert not device_topics & recorder.retained.keys()

    def sent_after_clearing(vid: str) -> bool:
        # Each device's old configs are cleared before its new one is sent (again),
        # so Home Assistant removes the old entities before it sees the new ones.
        messages = recorder.messages
        cleared = [i for i, m in enumerate(messages) if m.topic in entity_topics(vid)]
        sent = [i for i, m in enumerate(messages) if m.topic == device_topic(vid) and m.payload]
        return bool(sent) and max(sent) > max(cleared)

    async with settled(config_in("device", mosquitto, simulator, tmp_path)):
        await recorder.wait_for(
            lambda: (
                all(sent_after_clearing(v) for v in ids)
                and not every_entity_topic & recorder.retained.keys()
                and json.loads(recorder.retained.get(marker, b"{}")).get("mode") == "device"
            )
        )
        # The account's device moved to the device form too.
        await recorder.wait_for(
            lambda: (
                "homeassistant/device/fleet_sim/config" in recorder.retained
                and "homeassistant/sensor/fleet_sim/next_poll/config" not in recorder.retained
            )
        )
        payload = json.loads(recorder.retained[device_topic(ids[0])])
        assert payload["cmps"]["location"]["json_attributes_topic"] == state_topic(ids[0])

    # And back: the device configs go, the per-entity ones return.
    async with settled(config_in("entity", mosquitto, simulator, tmp_path)):
        await recorder.wait_for(
            lambda: (
                every_entity_topic <= recorder.retained.keys()
                and not device_topics & recorder.retained.keys()
            )
        )


async def test_a_restart_in_the_same_form_clears_nothing(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = config_in("device", mosquitto, simulator, tmp_path)
    async with settled(config):
        await recorder.wait_for(lambda: "fleet/bridge/discovery" in recorder.retained)
    mark = recorder.mark()
    async with settled(config) as bridge:
        await recorder.wait_for(lambda: bridge.link.announced.is_set())
        await recorder.wait_for(
            lambda: any(m.topic == "fleet/bridge/discovery" for m in recorder.since(mark))
        )
    assert [m.topic for m in recorder.since(mark, "homeassistant/") if not m.payload] == []
