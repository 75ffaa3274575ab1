"""Shared vehicles, capability sets and MQTT helpers of the Home Assistant suite.

The vehicles and payloads import nothing of Home Assistant's test harness, so
tests/hass/smoke/discovery_schema.py checks them in a bare Home Assistant too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.model import (
    Capability,
    EngineState,
    Position,
    Problem,
    VehicleState,
    VehicleStatus,
)
from bridge.mqtt.discovery import DiscoveryMessage, vehicle_discovery
from bridge.mqtt.topics import Topics

if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant

REPO_ROOT = Path(__file__).resolve().parents[2]

ACCOUNT = "acme"
PROVIDER = "samsara"
TOPICS = Topics()

ALL_CAPABILITIES = frozenset(Capability)
# What the Samsara stats feed fills (SamsaraProvider.capabilities), written out so
# this suite does not import the provider and its HTTP stack.
SAMSARA_CAPABILITIES = frozenset(
    {
        Capability.POSITION,
        Capability.SPEED,
        Capability.ODOMETER,
        Capability.FUEL_LEVEL,
        Capability.ENGINE_STATE,
        Capability.IGNITION,
        Capability.BATTERY_VOLTAGE,
        Capability.ENGINE_HOURS,
    }
)
CAPABILITY_SETS = {
    "all": ALL_CAPABILITIES,
    "samsara": SAMSARA_CAPABILITIES,
    "none": frozenset(),
}

SEEN = datetime(2024, 3, 14, 8, 30, 5, tzinfo=UTC)


def make_vehicle(**changes: Any) -> VehicleState:
    """A vehicle with every field known (Berlin, engine on, moving)."""
    vehicle = VehicleState(
        vehicle_id="TRK-7",
        name="Truck 7",
        position=Position(
            latitude=52.52,
            longitude=13.405,
            time=SEEN,
            heading=90.0,
            accuracy_m=8.0,
            address="Alexanderplatz, Berlin",
        ),
        speed_kmh=42.5,
        odometer_km=123456.7,
        fuel_percent=63.5,
        fuel_volume_l=250.0,
        engine_state=EngineState.ON,
        ignition=True,
        battery_voltage=24.6,
        engine_hours=5012.3,
        last_seen=SEEN,
        online=True,
        vin="YV2RT40A5LB123456",
        plate="B-FT 707",
        make="Volvo",
        model="FH16",
        year=2021,
        engine_temperature_c=88.0,
        rpm=1450.0,
        device_battery_voltage=4.05,
        status=VehicleStatus.DRIVING,
        problem=Problem.NO_GPS,
        risk_score=23.0,
        lights_on=True,
        active_tasks=2,
        current_task="ORDER-7",
    )
    return vehicle.merged(**changes)


def discovery_messages(
    capabilities: frozenset[Capability], vehicle: VehicleState | None = None
) -> list[DiscoveryMessage]:
    return list(
        vehicle_discovery(TOPICS, ACCOUNT, PROVIDER, capabilities, vehicle or make_vehicle())
    )


def mqtt_device(hass: HomeAssistant, identifier: str) -> Any:
    """The MQTT integration's device with `identifier` (any version's API)."""
    from custom_components.fleet_telematics.compat import device_by_identifier

    (entry,) = hass.config_entries.async_entries("mqtt")
    return device_by_identifier(hass, ("mqtt", identifier), entry.entry_id)


async def publish(hass: HomeAssistant, topic: str, payload: str) -> None:
    """A message as the broker forwards a live publish, then let Home Assistant settle.

    The broker sets the retain flag only when it replays a retained message to a
    new subscription; Home Assistant ignores a second retained message on a topic.
    """
    from pytest_homeassistant_custom_component.common import async_fire_mqtt_message

    async_fire_mqtt_message(hass, topic, payload)
    await hass.async_block_till_done()


async def publish_discovery(hass: HomeAssistant, messages: Iterable[DiscoveryMessage]) -> None:
    """The retained config messages, as Home Assistant gets them when it subscribes."""
    from pytest_homeassistant_custom_component.common import async_fire_mqtt_message

    for message in messages:
        async_fire_mqtt_message(hass, message.topic, json.dumps(message.payload), retain=True)
    await hass.async_block_till_done()


async def publish_state(hass: HomeAssistant, vehicle: VehicleState) -> None:
    await publish(
        hass, TOPICS.vehicle_state(ACCOUNT, vehicle.vehicle_id), json.dumps(vehicle.to_json())
    )


async def publish_vehicle_availability(hass: HomeAssistant, vehicle_id: str, value: str) -> None:
    await publish(hass, TOPICS.vehicle_availability(ACCOUNT, vehicle_id), value)
