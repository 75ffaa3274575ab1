"""A real Home Assistant (2024.3, MQTT integration on a mocked client) gets the
bridge's discovery and state messages; the entities must be what a user expects."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.template import Template

from bridge.model import (
    Alert,
    AlertType,
    Capability,
    EngineState,
    Position,
    Problem,
    Severity,
    VehicleStatus,
)
from bridge.mqtt.discovery import (
    account_discovery,
    device_identifier,
    snapshot_url_topic,
    vehicle_discovery,
    vehicle_discovery_topics,
)
from bridge.mqtt.topics import OFFLINE, ONLINE
from fleet_ha import (
    ACCOUNT,
    ALL_CAPABILITIES,
    SAMSARA_CAPABILITIES,
    SEEN,
    TOPICS,
    discovery_messages,
    make_vehicle,
    mqtt_device,
    publish,
    publish_discovery,
    publish_state,
    publish_vehicle_availability,
)

VEHICLE = make_vehicle()
NODE = device_identifier(ACCOUNT, VEHICLE.vehicle_id)
URL_TOPIC = snapshot_url_topic(TOPICS, ACCOUNT, VEHICLE.vehicle_id)

# What the user sees: entity ids from the device name, one per description key.
ENTITY_IDS = {
    "location": "device_tracker.truck_7",
    "speed": "sensor.truck_7_speed",
    "odometer": "sensor.truck_7_odometer",
    "fuel_level": "sensor.truck_7_fuel_level",
    "fuel_volume": "sensor.truck_7_fuel_volume",
    "engine_state": "sensor.truck_7_engine_state",
    "battery_voltage": "sensor.truck_7_battery_voltage",
    "engine_hours": "sensor.truck_7_engine_hours",
    "engine_temperature": "sensor.truck_7_engine_temperature",
    "rpm": "sensor.truck_7_engine_speed",
    "device_battery": "sensor.truck_7_tracker_battery",
    "status": "sensor.truck_7_status",
    "problem": "sensor.truck_7_tracker_problem",
    "fault": "binary_sensor.truck_7_tracker_fault",
    "risk_score": "sensor.truck_7_risk_score",
    "lights": "switch.truck_7_lights",
    "alert": "event.truck_7_alert",
    "snapshot_request": "button.truck_7_take_dashcam_snapshot",
    "snapshot": "image.truck_7_dashcam_snapshot",
    "active_tasks": "sensor.truck_7_active_tasks",
    "current_task": "sensor.truck_7_current_task",
    "last_seen": "sensor.truck_7_last_seen",
    "data_age": "sensor.truck_7_data_age",
    "ignition": "binary_sensor.truck_7_ignition",
    "moving": "binary_sensor.truck_7_moving",
    "online": "binary_sensor.truck_7_online",
}
NOT_FROM_SAMSARA = {
    "alert",
    "fuel_volume",
    "engine_temperature",
    "rpm",
    "device_battery",
    "status",
    "problem",
    "fault",
    "risk_score",
    "lights",
    "snapshot_request",
    "snapshot",
    "active_tasks",
    "current_task",
}
# Entities whose state is not a reading of the vehicle state topic.
NOT_FROM_STATE = {"snapshot_request", "snapshot", "alert", "data_age"}
# Diagnostics nobody needs at first: registered, disabled until a user enables them.
DISABLED_BY_DEFAULT = {"last_seen", "data_age", "device_battery"}
SHOWN = [key for key in ENTITY_IDS if key not in DISABLED_BY_DEFAULT]


def _state(hass: HomeAssistant, key: str) -> Any:
    state = hass.states.get(ENTITY_IDS[key])
    assert state is not None, f"{ENTITY_IDS[key]} does not exist"
    return state


def _states(hass: HomeAssistant, keys: Any = ENTITY_IDS) -> dict[str, str]:
    return {key: _state(hass, key).state for key in keys}


def _problems_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings and errors of Home Assistant about our entities or messages."""
    return [
        f"{r.levelname} {r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("homeassistant")
    ]


def assert_published(mqtt_mock: Any, topic: str, payload: str) -> None:
    """Home Assistant's last publish: `topic`, `payload`, QoS 0, not retained
    (newer versions add keyword arguments such as message_expiry_interval)."""
    assert mqtt_mock.async_publish.call_args.args[:4] == (topic, payload, 0, False)


async def _vehicle_online(hass: HomeAssistant, vehicle: Any = VEHICLE) -> None:
    await publish(hass, TOPICS.bridge_state, ONLINE)
    await publish_vehicle_availability(hass, vehicle.vehicle_id, ONLINE)
    await publish_state(hass, vehicle)


def enabled(messages: Any) -> list[Any]:
    """The discovery messages as a user sees them after enabling every entity."""
    return [
        type(m)(m.topic, {k: v for k, v in m.payload.items() if k != "enabled_by_default"})
        for m in messages
    ]


@pytest.fixture
async def discovered(mqtt_ready: HomeAssistant) -> HomeAssistant:
    """Home Assistant after the bridge announced the full-capability vehicle (its
    diagnostics, disabled by default, enabled as a user who wants them would)."""
    await publish_discovery(mqtt_ready, enabled(discovery_messages(ALL_CAPABILITIES)))
    return mqtt_ready


async def test_entities_wait_for_the_bridge_and_vehicle_to_be_online(
    discovered: HomeAssistant,
) -> None:
    hass = discovered
    assert set(_states(hass).values()) == {STATE_UNAVAILABLE}

    await publish(hass, TOPICS.bridge_state, ONLINE)
    states = _states(hass)
    assert states.pop("online") == STATE_UNKNOWN  # needs only the bridge
    assert states.pop("data_age") == STATE_UNKNOWN  # so does the data age
    assert set(states.values()) == {STATE_UNAVAILABLE}

    await publish_vehicle_availability(hass, VEHICLE.vehicle_id, ONLINE)
    assert set(_states(hass).values()) == {STATE_UNKNOWN}  # no state message yet


async def test_vehicle_state_shows_as_typed_entities(
    discovered: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    hass = discovered
    await _vehicle_online(hass)

    tracker = _state(hass, "location")
    assert tracker.state == "not_home"
    assert tracker.attributes["latitude"] == pytest.approx(52.52)
    assert tracker.attributes["longitude"] == pytest.approx(13.405)
    assert tracker.attributes["gps_accuracy"] == 8
    assert tracker.attributes["source_type"] == "gps"
    assert tracker.attributes["heading"] == 90
    assert tracker.attributes["address"] == "Alexanderplatz, Berlin"
    assert tracker.attributes["friendly_name"] == "Truck 7"

    def numeric(key: str, value: float, unit: str, device_class: str | None, state_class: str):
        state = _state(hass, key)
        assert float(state.state) == pytest.approx(value), key
        assert state.attributes.get("unit_of_measurement") == unit, key
        assert state.attributes.get("device_class") == device_class, key
        assert state.attributes.get("state_class") == state_class, key

    numeric("speed", 42.5, "km/h", "speed", "measurement")
    numeric("odometer", 123456.7, "km", "distance", "total_increasing")
    numeric("fuel_level", 63.5, "%", None, "measurement")
    numeric("fuel_volume", 250.0, "L", "volume_storage", "measurement")
    numeric("battery_voltage", 24.6, "V", "voltage", "measurement")
    numeric("engine_hours", 5012.3, "h", "duration", "total_increasing")
    numeric("engine_temperature", 88.0, "°C", "temperature", "measurement")
    numeric("rpm", 1450.0, "rpm", None, "measurement")
    numeric("device_battery", 4.05, "V", "voltage", "measurement")
    numeric("risk_score", 23.0, None, None, "measurement")
    assert _state(hass, "status").state == "driving"
    assert _state(hass, "problem").state == "no_gps"
    assert _state(hass, "problem").attributes["device_class"] == "enum"
    assert _state(hass, "fault").state == "on"
    assert _state(hass, "fault").attributes["device_class"] == "problem"
    assert _state(hass, "lights").state == "on"
    assert _state(hass, "active_tasks").state == "2"
    assert _state(hass, "current_task").state == "ORDER-7"

    engine = _state(hass, "engine_state")
    assert engine.state == "on"
    assert engine.attributes["device_class"] == "enum"
    assert engine.state in [s.value for s in EngineState]

    last_seen = _state(hass, "last_seen")
    assert last_seen.attributes["device_class"] == "timestamp"
    assert last_seen.state == SEEN.isoformat()

    assert _states(hass, ["ignition", "moving", "online"]) == {
        "ignition": "on",
        "moving": "on",
        "online": "on",
    }
    assert _state(hass, "ignition").attributes["device_class"] == "power"
    assert _state(hass, "moving").attributes["device_class"] == "moving"
    assert _state(hass, "online").attributes["device_class"] == "connectivity"

    parked = VEHICLE.merged(
        speed_kmh=0.0,
        ignition=False,
        engine_state=EngineState.OFF,
        fuel_percent=12.0,
        problem=Problem.REPLUGGED,
        status=VehicleStatus.PARKED,
    )
    await publish_state(hass, parked)
    assert _states(
        hass, ["speed", "fuel_level", "engine_state", "ignition", "moving", "fault", "status"]
    ) == {
        "speed": "0.0",
        "fuel_level": "12.0",
        "engine_state": "off",
        "ignition": "off",
        "moving": "off",
        "fault": "off",  # replugged is history, not a current fault
        "status": "parked",
    }
    assert _problems_logged(caplog) == []


async def test_vehicle_at_home_is_home(discovered: HomeAssistant) -> None:
    hass = discovered
    home = Position(latitude=hass.config.latitude, longitude=hass.config.longitude)
    await _vehicle_online(hass, VEHICLE.merged(position=home))

    tracker = _state(hass, "location")
    assert tracker.state == "home"
    assert tracker.attributes["gps_accuracy"] == 0  # the provider gave none


async def test_one_device_with_the_vehicle_details_and_designed_unique_ids(
    discovered: HomeAssistant,
) -> None:
    hass = discovered
    entity_registry = er.async_get(hass)
    device_registry = dr.async_get(hass)

    entity_ids = {
        key: entity_registry.async_get_entity_id(entity_id.split(".")[0], "mqtt", f"{NODE}_{key}")
        for key, entity_id in ENTITY_IDS.items()
    }
    assert entity_ids == ENTITY_IDS
    assert NODE == "fleet_acme_TRK-7"

    device = mqtt_device(hass, NODE)
    assert device is not None
    assert device.name == "Truck 7"
    assert device.manufacturer == "Volvo"
    assert device.model == "FH16 2021"
    assert device.serial_number == "YV2RT40A5LB123456"
    entries = er.async_entries_for_device(entity_registry, device.id)
    assert sorted(e.entity_id for e in entries) == sorted(ENTITY_IDS.values())
    assert len(dr.async_entries_for_config_entry(device_registry, entries[0].config_entry_id)) == 1

    by_key = {key: entity_registry.async_get(entity_id) for key, entity_id in ENTITY_IDS.items()}
    assert by_key["location"].has_entity_name
    assert by_key["location"].original_name is None  # the device's main entity
    assert by_key["speed"].original_name == "Speed"
    diagnostic = {
        key for key, e in by_key.items() if e.entity_category == er.EntityCategory.DIAGNOSTIC
    }
    assert diagnostic == {"last_seen", "online", "device_battery", "data_age"}
    assert by_key["speed"].options["sensor"]["suggested_display_precision"] == 0
    assert by_key["battery_voltage"].options["sensor"]["suggested_display_precision"] == 1


async def test_samsara_vehicle_gets_only_its_entities_on_one_device(
    mqtt_ready: HomeAssistant,
) -> None:
    hass = mqtt_ready
    await publish_discovery(hass, discovery_messages(SAMSARA_CAPABILITIES))
    await _vehicle_online(hass)

    expected = {k: v for k, v in ENTITY_IDS.items() if k not in NOT_FROM_SAMSARA}
    entity_registry = er.async_get(hass)
    device = mqtt_device(hass, NODE)
    assert device is not None
    entries = er.async_entries_for_device(
        entity_registry, device.id, include_disabled_entities=True
    )
    assert sorted(e.entity_id for e in entries) == sorted(expected.values())
    assert hass.states.get(ENTITY_IDS["fuel_volume"]) is None
    shown = [k for k in expected if k not in DISABLED_BY_DEFAULT]
    assert STATE_UNAVAILABLE not in _states(hass, shown).values()


async def test_null_values_become_unknown(
    discovered: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    hass = discovered
    await _vehicle_online(hass)
    caplog.clear()

    nothing_known = VEHICLE.merged(
        position=None,
        speed_kmh=None,
        odometer_km=None,
        fuel_percent=None,
        fuel_volume_l=None,
        engine_state=None,
        ignition=None,
        battery_voltage=None,
        engine_hours=None,
        last_seen=None,
        engine_temperature_c=None,
        rpm=None,
        device_battery_voltage=None,
        status=None,
        problem=None,
        risk_score=None,
        lights_on=None,
        active_tasks=None,
        current_task=None,
    )
    await publish_state(hass, nothing_known)

    states = _states(hass)
    assert states.pop("online") == "on"
    states.pop("data_age")  # follows the quota topic, not the state
    assert states == dict.fromkeys(states, STATE_UNKNOWN)
    tracker = _state(hass, "location")
    assert tracker.attributes.get("latitude") is None
    assert tracker.attributes.get("longitude") is None
    # Home Assistant 2024.3 warns once about a timestamp sensor given "None"
    # (it still becomes unknown; 2024.10 and later take "None" silently), and
    # 2026.2 and later once about the cleared location (it has no silent way).
    logged = _problems_logged(caplog)
    expected = ("Invalid state message", "incomplete location info")
    assert [m for m in logged if not any(e in m for e in expected)] == []
    assert len(logged) <= 2

    # Still nothing known: no further warning, whatever the number of updates.
    caplog.clear()
    await publish_state(hass, nothing_known.merged(name="Truck 7 (again)"))
    await publish_state(hass, nothing_known)
    assert [m for m in _problems_logged(caplog) if "location" in m] == []
    assert "latitude" not in _state(hass, "location").attributes
    assert _state(hass, "location").state == STATE_UNKNOWN

    unknown_online = nothing_known.merged(online=None)
    await publish_state(hass, unknown_online)
    assert _state(hass, "online").state == STATE_UNKNOWN

    await publish_state(hass, VEHICLE)
    from_state = [key for key in SHOWN if key not in NOT_FROM_STATE]
    assert STATE_UNKNOWN not in _states(hass, from_state).values()


async def test_engine_state_template_fits_old_and_new_home_assistant(hass: HomeAssistant) -> None:
    """Null engine state: "unknown" text where HA keeps text, "None" where `options` work.

    Home Assistant 2024.9 added `options` to MQTT sensors (they then show as an
    attribute) and 2024.10 made a rendered "None" unknown for enum sensors too.
    """
    config = next(
        m.payload
        for m in discovery_messages(ALL_CAPABILITIES)
        if m.topic.endswith("/engine_state/config")
    )
    template = Template(config["value_template"], hass)

    def render(engine_state: str | None, attributes: dict[str, Any]) -> str:
        payload = json.dumps(VEHICLE.merged(engine_state=engine_state).to_json())
        this = {"state": "on", "attributes": attributes}
        return str(
            template.async_render_with_possible_json_value(payload, variables={"this": this})
        )

    assert render(EngineState.IDLE, {}) == "idle"
    assert render(None, {}) == "unknown"
    assert render(EngineState.IDLE, {"options": config["options"]}) == "idle"
    assert render(None, {"options": config["options"]}) == "None"


async def test_vehicle_offline_keeps_only_online_available(discovered: HomeAssistant) -> None:
    hass = discovered
    await _vehicle_online(hass)

    await publish_vehicle_availability(hass, VEHICLE.vehicle_id, OFFLINE)
    await publish_state(hass, VEHICLE.merged(online=False))

    states = _states(hass)
    assert states.pop("online") == "off"
    assert states.pop("data_age") != STATE_UNAVAILABLE  # how long it has been silent
    assert states == dict.fromkeys(states, STATE_UNAVAILABLE)

    await publish_vehicle_availability(hass, VEHICLE.vehicle_id, ONLINE)
    await publish_state(hass, VEHICLE)
    assert STATE_UNAVAILABLE not in _states(hass).values()
    assert _state(hass, "online").state == "on"


async def test_bridge_offline_makes_every_entity_unavailable(discovered: HomeAssistant) -> None:
    hass = discovered
    await _vehicle_online(hass)

    await publish(hass, TOPICS.bridge_state, OFFLINE)
    assert set(_states(hass).values()) == {STATE_UNAVAILABLE}

    await publish(hass, TOPICS.bridge_state, ONLINE)
    assert _state(hass, "speed").state == "42.5"
    assert _state(hass, "online").state == "on"


async def test_empty_config_removes_the_entity_and_finally_the_device(
    discovered: HomeAssistant,
) -> None:
    hass = discovered
    await _vehicle_online(hass)
    entity_registry = er.async_get(hass)
    dr.async_get(hass)

    speed_topic = TOPICS.discovery("sensor", NODE, "speed")
    await publish(hass, speed_topic, "")

    assert hass.states.get(ENTITY_IDS["speed"]) is None
    assert entity_registry.async_get(ENTITY_IDS["speed"]) is None
    assert _state(hass, "odometer").state == "123456.7"

    for topic in vehicle_discovery_topics(
        TOPICS, ACCOUNT, frozenset(Capability), VEHICLE.vehicle_id
    ):
        await publish(hass, topic, "")

    assert [s.entity_id for s in hass.states.async_all() if "truck_7" in s.entity_id] == []
    assert mqtt_device(hass, NODE) is None


async def test_account_quota_sensors_follow_the_quota_topic(mqtt_ready: HomeAssistant) -> None:
    hass = mqtt_ready
    await publish_discovery(
        hass, enabled(account_discovery(TOPICS, "acme", "fleetize", "Acme", has_daily_budget=True))
    )
    await publish(hass, TOPICS.bridge_state, ONLINE)
    report = {
        "available": True,
        "budgets": {},
        "calls_left_today": 42,
        "next_poll": "2024-03-14T08:45:00Z",
        "reason": "vehicles moving",
    }
    await publish(hass, TOPICS.account_quota("acme"), json.dumps(report))
    calls = hass.states.get("sensor.acme_api_calls_left_today")
    next_poll = hass.states.get("sensor.acme_next_poll")
    assert calls is not None
    assert next_poll is not None
    assert calls.state == "42"
    assert next_poll.state == "2024-03-14T08:45:00+00:00"
    assert next_poll.attributes["device_class"] == "timestamp"
    # A stopped account (credentials refused) shows its sensors unavailable.
    await publish(hass, TOPICS.account_quota("acme"), json.dumps({**report, "available": False}))
    assert hass.states.get("sensor.acme_api_calls_left_today").state == STATE_UNAVAILABLE


async def test_lights_switch_sends_the_command_and_shows_the_pending_one(
    discovered: HomeAssistant,
) -> None:
    hass = discovered
    mqtt_mock = hass.data["fleet_test_mqtt_mock"]
    await _vehicle_online(hass, VEHICLE.merged(lights_on=False))
    assert _state(hass, "lights").state == "off"
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": ENTITY_IDS["lights"]}, blocking=True
    )
    set_topic = TOPICS.vehicle_set("acme", VEHICLE.vehicle_id)
    assert_published(mqtt_mock, set_topic, '{"lights": "ON"}')
    # Not optimistic: the switch stays off until the provider confirms.
    assert _state(hass, "lights").state == "off"
    pending = {"status": "pending", "requested": "ON", "at": "2024-03-14T08:31:00Z", "error": None}
    await publish(hass, TOPICS.vehicle_lights("acme", VEHICLE.vehicle_id), json.dumps(pending))
    assert _state(hass, "lights").attributes["command"] == "pending"
    await publish_state(hass, VEHICLE.merged(lights_on=True))
    assert _state(hass, "lights").state == "on"


async def test_snapshot_button_and_image(discovered: HomeAssistant) -> None:
    hass = discovered
    mqtt_mock = hass.data["fleet_test_mqtt_mock"]
    await _vehicle_online(hass)
    await hass.services.async_call(
        "button", "press", {"entity_id": ENTITY_IDS["snapshot_request"]}, blocking=True
    )
    assert_published(
        mqtt_mock,
        TOPICS.vehicle_set("acme", VEHICLE.vehicle_id),
        '{"snapshot": {"camera": "road"}}',
    )
    done = {
        "status": "confirmed",
        "camera": "road",
        "url": "http://127.0.0.1:1/snap.jpg",
        "at": "2024-03-14T08:31:00Z",
        "error": None,
    }
    await publish(hass, TOPICS.vehicle_snapshot("acme", VEHICLE.vehicle_id), json.dumps(done))
    await publish(hass, URL_TOPIC, json.dumps({"url": done["url"]}))
    image = _state(hass, "snapshot")
    assert image.attributes["status"] == "confirmed"
    assert image.attributes["camera"] == "road"
    assert image.state != STATE_UNKNOWN  # the time the new image arrived


async def test_a_pending_or_failed_snapshot_never_reaches_the_image_url(
    discovered: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """The snapshot topic is retained: whatever it holds is replayed at every
    Home Assistant start, and must never be taken for an image URL."""
    hass = discovered
    await _vehicle_online(hass)
    shown = _state(hass, "snapshot").state
    for status, error in (("pending", None), ("failed", "camera offline")):
        answer = {"status": status, "camera": "road", "url": None, "at": "x", "error": error}
        await publish(hass, TOPICS.vehicle_snapshot("acme", VEHICLE.vehicle_id), json.dumps(answer))
        assert _state(hass, "snapshot").attributes["status"] == status
    assert _state(hass, "snapshot").state == shown  # no new image
    assert _problems_logged(caplog) == []
    # The discovery sends the image entity's URL to a topic of its own.
    config = next(
        m.payload
        for m in discovery_messages(ALL_CAPABILITIES)
        if m.topic.endswith("/snapshot/config")
    )
    assert config["url_topic"] == URL_TOPIC


async def test_data_age_grows_while_the_vehicle_is_silent(
    discovered: HomeAssistant, freezer: Any
) -> None:
    hass = discovered
    freezer.move_to(SEEN + timedelta(seconds=90))
    await _vehicle_online(hass)
    quota = TOPICS.account_quota(ACCOUNT)
    report = {"available": True, "next_poll": None}

    await publish(hass, quota, json.dumps(report))  # the bridge's next poll
    age = _state(hass, "data_age")
    assert age.state == "90"
    assert age.attributes["unit_of_measurement"] == "s"
    assert age.attributes["device_class"] == "duration"

    freezer.tick(600)  # ten minutes without a report, polls going on
    await publish(hass, quota, json.dumps(report))
    assert _state(hass, "data_age").state == "690"

    await publish_state(hass, VEHICLE.merged(last_seen=SEEN + timedelta(seconds=680)))
    await publish(hass, quota, json.dumps(report))
    assert _state(hass, "data_age").state == "10"

    # The vehicle goes offline: the age still shows how long it has been silent.
    await publish_vehicle_availability(hass, VEHICLE.vehicle_id, OFFLINE)
    freezer.tick(3600)
    await publish(hass, quota, json.dumps(report))
    assert _state(hass, "data_age").state == "3610"


async def test_diagnostics_are_registered_disabled(mqtt_ready: HomeAssistant) -> None:
    hass = mqtt_ready
    await publish_discovery(hass, discovery_messages(ALL_CAPABILITIES))
    await publish_discovery(
        hass, account_discovery(TOPICS, ACCOUNT, "samsara", "Acme", has_daily_budget=True)
    )
    registry = er.async_get(hass)
    for key in DISABLED_BY_DEFAULT:
        entry = registry.async_get(ENTITY_IDS[key])
        assert entry is not None, key
        assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION, key
        assert hass.states.get(ENTITY_IDS[key]) is None, key
    assert registry.async_get("sensor.acme_next_poll").disabled_by is not None
    # What users look at stays enabled: the vehicle's connectivity and the quota.
    assert registry.async_get(ENTITY_IDS["online"]).disabled_by is None
    assert registry.async_get("sensor.acme_api_calls_left_today").disabled_by is None


async def test_republish_button_asks_the_bridge(mqtt_ready: HomeAssistant) -> None:
    hass = mqtt_ready
    mqtt_mock = hass.data["fleet_test_mqtt_mock"]
    await publish_discovery(
        hass, account_discovery(TOPICS, ACCOUNT, "samsara", "Acme", has_daily_budget=False)
    )
    await publish(hass, TOPICS.bridge_state, ONLINE)
    button = hass.states.get("button.acme_republish_to_mqtt")
    assert button is not None
    assert button.state == STATE_UNKNOWN  # available: only the bridge must be up
    await hass.services.async_call(
        "button", "press", {"entity_id": "button.acme_republish_to_mqtt"}, blocking=True
    )
    assert_published(mqtt_mock, "fleet/bridge/request/republish", "{}")


async def test_alerts_fire_the_event_entity_unless_stale(mqtt_ready: HomeAssistant) -> None:
    hass = mqtt_ready
    types = frozenset({AlertType.HARSH_BRAKING, AlertType.PHONE_USE})
    capabilities = SAMSARA_CAPABILITIES | {Capability.ALERTS}
    await publish_discovery(
        hass, vehicle_discovery(TOPICS, "acme", "tracksafe365", capabilities, VEHICLE, types)
    )
    await _vehicle_online(hass)
    event_entity = _state(hass, "alert")
    assert event_entity.attributes["event_types"] == ["harsh_braking", "phone_use"]
    alert = Alert(
        alert_id="evt-1",
        vehicle_id=VEHICLE.vehicle_id,
        type=AlertType.HARSH_BRAKING,
        time=SEEN,
        severity=Severity.CRITICAL,
        media_url="http://127.0.0.1:1/clip.mp4",
    )
    topic = TOPICS.vehicle_alert("acme", VEHICLE.vehicle_id)
    await publish(hass, topic, json.dumps(alert.to_json()))
    fired = _state(hass, "alert")
    assert fired.attributes["event_type"] == "harsh_braking"
    assert fired.attributes["severity"] == "critical"
    assert fired.attributes["media_url"] == "http://127.0.0.1:1/clip.mp4"
    when = fired.state
    # A day-old alert seen after an outage: on MQTT, but no automation fires.
    old = Alert("evt-0", VEHICLE.vehicle_id, AlertType.PHONE_USE, SEEN)
    await publish(hass, topic, json.dumps(old.to_json(stale=True)))
    assert _state(hass, "alert").state == when
    assert _state(hass, "alert").attributes["event_type"] == "harsh_braking"
