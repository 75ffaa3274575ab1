"""Home Assistant MQTT discovery payloads, from one description table.

Each entity reads the vehicle's one retained JSON state (`fleet/<account>/<vehicle>`)
through a value template, so a changed vehicle costs one state message however
many entities it has. Only entities whose capability the provider has are created.

This module imports nothing outside the standard library and `bridge`, so Home
Assistant's own schemas can validate its payloads in the Home Assistant test venv.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bridge import __version__
from bridge.model import AlertType, Capability, Problem, VehicleState, VehicleStatus
from bridge.mqtt.topics import Topics, topic_level

PROJECT_URL = "https://github.com/fleet-telematics-bridge/fleet-telematics-bridge"

ORIGIN = {"name": "fleet-telematics-bridge", "sw_version": __version__, "support_url": PROJECT_URL}


def _nullable(key: str) -> str:
    # Home Assistant's MQTT sensors treat the rendered text "None" as "unknown",
    # so a JSON null shows as unknown instead of as the string "None". (Numeric
    # sensors do since 2023.2; a timestamp sensor before 2024.10 logs a warning
    # and also becomes unknown. Enum sensors need `_enum_nullable`.)
    return f"{{{{ value_json.{key} }}}}"


def _enum_nullable(key: str) -> str:
    # Before 2024.10 an enum sensor keeps a rendered "None" as its text state.
    # Those versions also ignore `options` (MQTT sensors honour it since 2024.9),
    # so without an `options` attribute the template renders "unknown", the state
    # Home Assistant itself gives an entity without a value; with one, "None".
    return (
        f"{{% if value_json.{key} is none %}}"
        "{{ 'None' if this.attributes.options is defined else 'unknown' }}"
        f"{{% else %}}{{{{ value_json.{key} }}}}{{% endif %}}"
    )


def _switchable(key: str) -> str:
    return (
        f"{{% if value_json.{key} is none %}}None"
        f"{{% elif value_json.{key} %}}ON{{% else %}}OFF{{% endif %}}"
    )


# The device tracker takes its fix from JSON attributes. Without a fix it must
# show "unknown", not the last place: Home Assistant 2026.2 and later keep the
# last location unless the attributes name `latitude`/`longitude`, and log a
# warning whenever they are not numbers. So a lost fix sends them as null once,
# while the entity still shows a location (`this`), and `{}` afterwards: one
# warning when a position is lost, none on every update. (Before 2026.2 the
# attributes replace the location wholesale: `{}` alone clears it.)
_TRACKER_ATTRIBUTES = (
    "{% if value_json.latitude is none or value_json.longitude is none %}"
    "{% if this.attributes.latitude is defined and this.attributes.latitude is not none %}"
    '{"latitude": null, "longitude": null}{% else %}{}{% endif %}'
    "{% else %}{{ {'latitude': value_json.latitude, 'longitude': value_json.longitude, "
    "'gps_accuracy': value_json.gps_accuracy or 0, 'heading': value_json.heading, "
    "'address': value_json.address, 'position_time': value_json.position_time} "
    "| tojson }}{% endif %}"
)

# Seconds since the provider's last report. The sensor reads its state from the
# account's quota topic, which the bridge sends again after every poll, so the
# age grows while a vehicle is silent (a template on the vehicle's own topic would
# stop at its last message, and stale data would pass for live); the vehicle's
# last report reaches it as an attribute from the vehicle's topic.
_DATA_AGE = (
    "{% set seen = this.attributes.last_seen | default(none) %}"
    "{% if seen is none %}None"
    "{% else %}{{ [0, (now() - as_datetime(seen)).total_seconds()] | max | round(0) | int }}"
    "{% endif %}"
)


# Stale alerts (older than alerts.max_age, e.g. after an outage) stay on MQTT with
# "stale": true but do not fire the event entity: "{}" is ignored by Home Assistant.
_FRESH_EVENT = "{% if value_json.stale %}{}{% else %}{{ value_json | tojson }}{% endif %}"


@dataclass(frozen=True, slots=True)
class EntityDescription:
    """One Home Assistant entity of a vehicle device."""

    key: str
    component: str
    # The provider must have every one of these for the entity to exist.
    requires: frozenset[Capability] = frozenset()
    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # False for entities that must stay available while the vehicle is offline.
    vehicle_availability: bool = True
    # Which of the vehicle's topics go into which discovery option.
    topics: tuple[tuple[str, str], ...] = (("state_topic", "state"),)


ENTITY_DESCRIPTIONS: tuple[EntityDescription, ...] = (
    EntityDescription(
        key="location",
        component="device_tracker",
        requires=frozenset({Capability.POSITION}),
        name=None,  # the device's main entity: device_tracker.<vehicle>
        topics=(("json_attributes_topic", "state"),),
        config={
            "source_type": "gps",
            "json_attributes_template": _TRACKER_ATTRIBUTES,
            "icon": "mdi:truck",
        },
    ),
    EntityDescription(
        key="speed",
        component="sensor",
        requires=frozenset({Capability.SPEED}),
        name="Speed",
        config={
            "device_class": "speed",
            "unit_of_measurement": "km/h",
            "state_class": "measurement",
            "suggested_display_precision": 0,
            "value_template": _nullable("speed_kmh"),
        },
    ),
    EntityDescription(
        key="odometer",
        component="sensor",
        requires=frozenset({Capability.ODOMETER}),
        name="Odometer",
        config={
            "device_class": "distance",
            "unit_of_measurement": "km",
            "state_class": "total_increasing",
            "suggested_display_precision": 0,
            "icon": "mdi:counter",
            "value_template": _nullable("odometer_km"),
        },
    ),
    EntityDescription(
        key="fuel_level",
        component="sensor",
        requires=frozenset({Capability.FUEL_LEVEL}),
        name="Fuel level",
        config={
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "suggested_display_precision": 0,
            "icon": "mdi:gas-station",
            "value_template": _nullable("fuel_percent"),
        },
    ),
    EntityDescription(
        key="fuel_volume",
        component="sensor",
        requires=frozenset({Capability.FUEL_VOLUME}),
        name="Fuel volume",
        config={
            "device_class": "volume_storage",
            "unit_of_measurement": "L",
            "state_class": "measurement",
            "suggested_display_precision": 0,
            "value_template": _nullable("fuel_volume_l"),
        },
    ),
    EntityDescription(
        key="engine_state",
        component="sensor",
        requires=frozenset({Capability.ENGINE_STATE}),
        name="Engine state",
        config={
            "device_class": "enum",
            "options": ["off", "on", "idle"],
            "icon": "mdi:engine",
            "value_template": _enum_nullable("engine_state"),
        },
    ),
    EntityDescription(
        key="battery_voltage",
        component="sensor",
        requires=frozenset({Capability.BATTERY_VOLTAGE}),
        name="Battery voltage",
        config={
            "device_class": "voltage",
            "unit_of_measurement": "V",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "value_template": _nullable("battery_voltage"),
        },
    ),
    EntityDescription(
        key="engine_hours",
        component="sensor",
        requires=frozenset({Capability.ENGINE_HOURS}),
        name="Engine hours",
        config={
            "device_class": "duration",
            "unit_of_measurement": "h",
            "state_class": "total_increasing",
            "suggested_display_precision": 1,
            "icon": "mdi:engine-outline",
            "value_template": _nullable("engine_hours"),
        },
    ),
    EntityDescription(
        key="engine_temperature",
        component="sensor",
        requires=frozenset({Capability.ENGINE_TEMPERATURE}),
        name="Engine temperature",
        config={
            "device_class": "temperature",
            "unit_of_measurement": "°C",
            "state_class": "measurement",
            "suggested_display_precision": 0,
            "value_template": _nullable("engine_temperature_c"),
        },
    ),
    EntityDescription(
        key="rpm",
        component="sensor",
        requires=frozenset({Capability.RPM}),
        name="Engine speed",
        config={
            "unit_of_measurement": "rpm",
            "state_class": "measurement",
            "suggested_display_precision": 0,
            "icon": "mdi:gauge",
            "value_template": _nullable("rpm"),
        },
    ),
    EntityDescription(
        key="device_battery",
        component="sensor",
        requires=frozenset({Capability.DEVICE_BATTERY}),
        name="Tracker battery",
        config={
            "device_class": "voltage",
            "unit_of_measurement": "V",
            "state_class": "measurement",
            "suggested_display_precision": 2,
            "entity_category": "diagnostic",
            "enabled_by_default": False,
            "value_template": _nullable("device_battery_voltage"),
        },
    ),
    EntityDescription(
        key="status",
        component="sensor",
        requires=frozenset({Capability.STATUS}),
        name="Status",
        config={
            "device_class": "enum",
            "options": [s.value for s in VehicleStatus],
            "icon": "mdi:truck-check",
            "value_template": _enum_nullable("status"),
        },
    ),
    EntityDescription(
        key="problem",
        component="sensor",
        requires=frozenset({Capability.PROBLEM}),
        name="Tracker problem",
        config={
            "device_class": "enum",
            "options": [p.value for p in Problem],
            "icon": "mdi:alert-circle-outline",
            "value_template": _enum_nullable("problem"),
        },
    ),
    EntityDescription(
        key="fault",
        component="binary_sensor",
        requires=frozenset({Capability.PROBLEM}),
        name="Tracker fault",
        config={
            "device_class": "problem",
            # Replugged is history, not a current fault.
            "value_template": (
                "{% if value_json.problem is none %}None"
                "{% elif value_json.problem in ['unplugged', 'no_signal', 'no_gps', 'bad_gps'] %}"
                "ON{% else %}OFF{% endif %}"
            ),
        },
    ),
    EntityDescription(
        key="risk_score",
        component="sensor",
        requires=frozenset({Capability.RISK_SCORE}),
        name="Risk score",
        config={
            "state_class": "measurement",
            "suggested_display_precision": 0,
            "icon": "mdi:shield-car",
            "value_template": _nullable("risk_score"),
        },
    ),
    EntityDescription(
        key="lights",
        component="switch",
        requires=frozenset({Capability.LIGHTS}),
        name="Lights",
        topics=(
            ("state_topic", "state"),
            ("command_topic", "set"),
            # The last command: shows "pending" until the device carried it out.
            ("json_attributes_topic", "lights"),
        ),
        config={
            "icon": "mdi:car-light-high",
            "payload_on": '{"lights": "ON"}',
            "payload_off": '{"lights": "OFF"}',
            "state_on": "ON",
            "state_off": "OFF",
            "optimistic": False,
            "value_template": (
                "{% if value_json.lights_on is none %}None"
                "{% elif value_json.lights_on %}ON{% else %}OFF{% endif %}"
            ),
            "json_attributes_template": (
                "{{ {'command': value_json.status, 'requested': value_json.requested, "
                "'error': value_json.error} | tojson }}"
            ),
        },
    ),
    EntityDescription(
        key="snapshot_request",
        component="button",
        requires=frozenset({Capability.SNAPSHOT}),
        name="Take dashcam snapshot",
        topics=(("command_topic", "set"),),
        config={"icon": "mdi:camera", "payload_press": '{"snapshot": {"camera": "road"}}'},
    ),
    EntityDescription(
        key="snapshot",
        component="image",
        requires=frozenset({Capability.SNAPSHOT}),
        name="Dashcam snapshot",
        # Its own retained topic carries only URLs (a pending or failed snapshot
        # never reaches it): Home Assistant logs every non-URL it is given there.
        topics=(("url_topic", "snapshot_url"), ("json_attributes_topic", "snapshot")),
        config={
            "url_template": "{{ value_json.url }}",
            "json_attributes_template": (
                "{{ {'status': value_json.status, 'camera': value_json.camera, "
                "'taken_at': value_json.at, 'error': value_json.error} | tojson }}"
            ),
        },
    ),
    EntityDescription(
        key="active_tasks",
        component="sensor",
        requires=frozenset({Capability.TASKS}),
        name="Active tasks",
        config={
            "state_class": "measurement",
            "icon": "mdi:clipboard-list-outline",
            "value_template": _nullable("active_tasks"),
        },
    ),
    EntityDescription(
        key="current_task",
        component="sensor",
        requires=frozenset({Capability.TASKS}),
        name="Current task",
        config={
            "icon": "mdi:clipboard-text-clock",
            "value_template": _enum_nullable("current_task"),
        },
    ),
    EntityDescription(
        key="alert",
        component="event",
        requires=frozenset({Capability.ALERTS}),
        name="Alert",
        topics=(("state_topic", "alert"),),
        config={"icon": "mdi:alert-octagon-outline", "value_template": _FRESH_EVENT},
    ),
    EntityDescription(
        key="last_seen",
        component="sensor",
        name="Last seen",
        config={
            "device_class": "timestamp",
            "entity_category": "diagnostic",
            "enabled_by_default": False,
            "value_template": _nullable("last_seen"),
        },
    ),
    EntityDescription(
        key="data_age",
        component="sensor",
        name="Data age",
        topics=(("state_topic", "quota"), ("json_attributes_topic", "state")),
        config={
            "device_class": "duration",
            "unit_of_measurement": "s",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "enabled_by_default": False,
            "icon": "mdi:timer-sand",
            "value_template": _DATA_AGE,
            "json_attributes_template": "{{ {'last_seen': value_json.last_seen} | tojson }}",
        },
        # Most telling while the vehicle is silent: it stays available.
        vehicle_availability=False,
    ),
    EntityDescription(
        key="ignition",
        component="binary_sensor",
        requires=frozenset({Capability.IGNITION}),
        name="Ignition",
        config={
            "device_class": "power",
            "icon": "mdi:key-variant",
            "value_template": _switchable("ignition"),
        },
    ),
    EntityDescription(
        key="moving",
        component="binary_sensor",
        requires=frozenset({Capability.SPEED}),
        name="Moving",
        config={"device_class": "moving", "value_template": _switchable("moving")},
    ),
    EntityDescription(
        key="online",
        component="binary_sensor",
        name="Online",
        config={
            "device_class": "connectivity",
            "entity_category": "diagnostic",
            "value_template": _switchable("online"),
        },
        # It must still say "off" when the vehicle stops reporting.
        vehicle_availability=False,
    ),
)


@dataclass(frozen=True, slots=True)
class DiscoveryMessage:
    topic: str
    payload: dict[str, Any]


def snapshot_url_topic(topics: Topics, account: str, vehicle_id: str) -> str:
    """The retained URL of a vehicle's last confirmed snapshot (`{"url": ...}`),
    the image entity's own topic: nothing but a URL is ever sent there."""
    return f"{topics.vehicle_snapshot(account, vehicle_id)}/url"


def device_identifier(account: str, vehicle_id: str) -> str:
    return f"fleet_{topic_level(account)}_{topic_level(vehicle_id)}"


def descriptions_for(capabilities: frozenset[Capability]) -> tuple[EntityDescription, ...]:
    return tuple(d for d in ENTITY_DESCRIPTIONS if d.requires <= capabilities)


def vehicle_discovery(
    topics: Topics,
    account: str,
    provider: str,
    capabilities: frozenset[Capability],
    vehicle: VehicleState,
    alert_types: frozenset[AlertType] = frozenset(),
) -> Iterator[DiscoveryMessage]:
    """The discovery messages of one vehicle's device, one per entity."""
    node = device_identifier(account, vehicle.vehicle_id)
    for description, payload in _vehicle_entities(
        topics, account, provider, capabilities, vehicle, alert_types
    ):
        yield DiscoveryMessage(
            topics.discovery(description.component, node, description.key), payload
        )


def _vehicle_entities(
    topics: Topics,
    account: str,
    provider: str,
    capabilities: frozenset[Capability],
    vehicle: VehicleState,
    alert_types: frozenset[AlertType],
) -> Iterator[tuple[EntityDescription, dict[str, Any]]]:
    node = device_identifier(account, vehicle.vehicle_id)
    state_topic = topics.vehicle_state(account, vehicle.vehicle_id)
    device: dict[str, Any] = {
        "identifiers": [node],
        "name": vehicle.name,
        "manufacturer": vehicle.make or provider.capitalize(),
        "model": " ".join(str(p) for p in (vehicle.model, vehicle.year) if p) or "Vehicle",
    }
    if vehicle.vin:
        device["serial_number"] = vehicle.vin
    bridge_available = {"topic": topics.bridge_state}
    vehicle_available = {"topic": topics.vehicle_availability(account, vehicle.vehicle_id)}
    for description in descriptions_for(capabilities):
        payload: dict[str, Any] = {
            "name": description.name,
            "unique_id": f"{node}_{description.key}",
            "device": device,
            "origin": ORIGIN,
            "availability": (
                [bridge_available, vehicle_available]
                if description.vehicle_availability
                else [bridge_available]
            ),
            "availability_mode": "all",
        }
        vehicle_topics = {
            "state": state_topic,
            "set": topics.vehicle_set(account, vehicle.vehicle_id),
            "lights": topics.vehicle_lights(account, vehicle.vehicle_id),
            "snapshot": topics.vehicle_snapshot(account, vehicle.vehicle_id),
            "snapshot_url": snapshot_url_topic(topics, account, vehicle.vehicle_id),
            "quota": topics.account_quota(account),
            "alert": topics.vehicle_alert(account, vehicle.vehicle_id),
        }
        for option, kind in description.topics:
            payload[option] = vehicle_topics[kind]
        payload.update(description.config)
        if description.component == "event":
            # Only what this provider can send: a Home Assistant automation
            # offers these in its trigger editor.
            payload["event_types"] = sorted(t.value for t in alert_types) or ["other"]
        yield description, payload


def vehicle_discovery_topics(
    topics: Topics, account: str, capabilities: frozenset[Capability], vehicle_id: str
) -> list[str]:
    """The config topics to clear (empty retained payload) when a vehicle is gone."""
    node = device_identifier(account, vehicle_id)
    return [topics.discovery(d.component, node, d.key) for d in descriptions_for(capabilities)]


def vehicle_device_discovery(
    topics: Topics,
    account: str,
    provider: str,
    capabilities: frozenset[Capability],
    vehicle: VehicleState,
    alert_types: frozenset[AlertType] = frozenset(),
) -> DiscoveryMessage:
    """The vehicle's whole device in one message (Home Assistant 2024.11 and later).

    `<prefix>/device/<node>/config` carries the device (`dev`), the origin (`o`)
    and the availability once, and each entity under `cmps`, keyed by the same
    key as its own topic in the per-entity form, with its platform in `p` and
    the same `unique_id`: switching forms keeps every entity."""
    node = device_identifier(account, vehicle.vehicle_id)
    shared = [
        {"topic": topics.bridge_state},
        {"topic": topics.vehicle_availability(account, vehicle.vehicle_id)},
    ]
    device: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    for description, payload in _vehicle_entities(
        topics, account, provider, capabilities, vehicle, alert_types
    ):
        device = payload.pop("device")
        del payload["origin"]
        if payload["availability"] == shared:
            # Only entities that stay available without the vehicle say otherwise.
            del payload["availability"], payload["availability_mode"]
        components[description.key] = {"p": description.component, **payload}
    return DiscoveryMessage(
        topics.device_discovery(node),
        {
            "dev": device,
            "o": ORIGIN,
            "availability": shared,
            "availability_mode": "all",
            "cmps": components,
        },
    )


def vehicle_discovery_topic(topics: Topics, account: str, vehicle_id: str) -> str:
    """The one config topic of a vehicle in the device-based form."""
    return topics.device_discovery(device_identifier(account, vehicle_id))


def account_device_identifier(account: str) -> str:
    return f"fleet_{topic_level(account)}"


def account_discovery(
    topics: Topics, account: str, provider: str, name: str | None, *, has_daily_budget: bool
) -> Iterator[DiscoveryMessage]:
    """The account's own device: its quota, as diagnostic sensors."""
    node = account_device_identifier(account)
    device = {
        "identifiers": [node],
        "name": name or account,
        "manufacturer": provider.capitalize(),
        "model": "Telematics account",
    }
    common = {
        "device": device,
        "origin": ORIGIN,
        "availability": [
            {"topic": topics.bridge_state},
            # The account is unavailable while stopped (credentials refused).
            {
                "topic": topics.account_quota(account),
                "value_template": "{{ 'offline' if value_json.available == false else 'online' }}",
            },
        ],
        "availability_mode": "all",
        "state_topic": topics.account_quota(account),
        "entity_category": "diagnostic",
    }
    if has_daily_budget:
        yield DiscoveryMessage(
            topics.discovery("sensor", node, "calls_left_today"),
            {
                **common,
                "name": "API calls left today",
                "unique_id": f"{node}_calls_left_today",
                "state_class": "measurement",
                "icon": "mdi:api",
                "value_template": _nullable("calls_left_today"),
            },
        )
    yield DiscoveryMessage(
        topics.discovery("sensor", node, "next_poll"),
        {
            **common,
            "name": "Next poll",
            "unique_id": f"{node}_next_poll",
            "device_class": "timestamp",
            "enabled_by_default": False,
            "value_template": _nullable("next_poll"),
        },
    )
    # After a broker lost its retained messages (a wiped or replaced broker):
    # discovery and every retained state again, as `fleet/bridge/request/republish`.
    yield DiscoveryMessage(
        topics.discovery("button", node, "republish"),
        {
            "device": device,
            "origin": ORIGIN,
            # Works while the account is stopped: only the bridge must be up.
            "availability": [{"topic": topics.bridge_state}],
            "name": "Republish to MQTT",
            "unique_id": f"{node}_republish",
            "entity_category": "config",
            "icon": "mdi:broadcast",
            "command_topic": topics.bridge_request("republish"),
            "payload_press": "{}",
        },
    )


def account_device_discovery(
    topics: Topics, account: str, provider: str, name: str | None, *, has_daily_budget: bool
) -> DiscoveryMessage:
    """The account's device in one message (see `vehicle_device_discovery`)."""
    components: dict[str, dict[str, Any]] = {}
    device: dict[str, Any] = {}
    for message in account_discovery(
        topics, account, provider, name, has_daily_budget=has_daily_budget
    ):
        payload = dict(message.payload)
        device = payload.pop("device")
        del payload["origin"]
        component, _node, key = message.topic.rsplit("/", 4)[-4:-1]
        components[key] = {"p": component, **payload}
    return DiscoveryMessage(
        topics.device_discovery(account_device_identifier(account)),
        {"dev": device, "o": ORIGIN, "cmps": components},
    )


def account_discovery_topics(topics: Topics, account: str) -> list[str]:
    """Every config topic the account's device may have, in both forms."""
    node = account_device_identifier(account)
    return [
        topics.discovery("sensor", node, "calls_left_today"),
        topics.discovery("sensor", node, "next_poll"),
        topics.discovery("button", node, "republish"),
        topics.device_discovery(node),
    ]
