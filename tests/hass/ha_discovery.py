"""Home Assistant's own validation of our MQTT discovery payloads, per version.

This mirrors `homeassistant/components/mqtt/discovery.py` (topic matching,
abbreviation expansion, origin check) and then applies the platform's
`DISCOVERY_SCHEMA`, exactly what the MQTT integration does with a config message.
`DISCOVERY_SCHEMA` silently drops keys it does not know (`extra=REMOVE_EXTRA`), so
a dropped key is a problem too: Home Assistant would ignore that setting.

tests/hass/test_discovery_schema.py runs it on every lane against that lane's
Home Assistant. Run as a script it checks every payload we publish against the
Home Assistant it is run with: scripts/ha-smoke runs it in the bare Home
Assistant 2026.11 venv (nothing of the test harness there), so the payloads meet
the newest MQTT schemas, not only those the test lanes pin.

    python tests/hass/ha_discovery.py     (the checkout and tests/hass on the path)
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import tempfile
from typing import Any

# Home Assistant first: 2026.x makes `voluptuous` an alias of probatio on import.
import homeassistant.const
import voluptuous as vol
from homeassistant.components.mqtt.abbreviations import (
    ABBREVIATIONS,
    DEVICE_ABBREVIATIONS,
    ORIGIN_ABBREVIATIONS,
)
from homeassistant.components.mqtt.discovery import (
    MQTT_ORIGIN_INFO_SCHEMA,
    SUPPORTED_COMPONENTS,
    TOPIC_MATCHER,
)

from bridge.mqtt.discovery import DiscoveryMessage, account_discovery
from bridge.mqtt.topics import Topics
from fleet_ha import CAPABILITY_SETS, TOPICS, discovery_messages, make_vehicle

# Keys newer Home Assistant versions read that 2024.3 does not know and drops:
# MQTT sensors take `options` (for enum sensors) since 2024.9.
NEWER_THAN_HA_2024_3 = {"sensor": {"options"}}


def _expand(payload: dict[str, Any]) -> dict[str, Any]:
    """Home Assistant's abbreviation expansion of a discovery payload."""
    expanded = {ABBREVIATIONS.get(key, key): value for key, value in payload.items()}
    if isinstance(expanded.get("device"), dict):
        expanded["device"] = {
            DEVICE_ABBREVIATIONS.get(key, key): value for key, value in expanded["device"].items()
        }
    if isinstance(expanded.get("origin"), dict):
        expanded["origin"] = {
            ORIGIN_ABBREVIATIONS.get(key, key): value for key, value in expanded["origin"].items()
        }
    if isinstance(expanded.get("availability"), list):
        expanded["availability"] = [
            {ABBREVIATIONS.get(key, key): value for key, value in entry.items()}
            if isinstance(entry, dict)
            else entry
            for entry in expanded["availability"]
        ]
    return expanded


def ha_problems(message: DiscoveryMessage, topics: Topics = TOPICS) -> list[str]:
    """What this Home Assistant would reject or ignore in one config message."""
    prefix = f"{topics.discovery_prefix}/"
    if not message.topic.startswith(prefix):
        return [f"topic {message.topic!r} is outside the discovery prefix {prefix!r}"]
    match = TOPIC_MATCHER.match(message.topic[len(prefix) :])
    if match is None:
        return [f"topic {message.topic!r} is not a discovery topic Home Assistant accepts"]
    component = match.group("component")
    if component not in SUPPORTED_COMPONENTS:
        return [f"component {component!r} is not supported by MQTT discovery"]

    # What goes over the wire, then Home Assistant's expansion of it.
    payload = _expand(json.loads(json.dumps(message.payload)))
    problems = []
    try:
        MQTT_ORIGIN_INFO_SCHEMA(payload.get("origin", {"name": "absent"}))
    except vol.Invalid as err:
        problems.append(f"origin: {err}")

    schema = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    try:
        validated = schema.DISCOVERY_SCHEMA(payload)
    except vol.Invalid as err:
        return [*problems, f"{component}: {err}"]
    dropped = set(payload) - set(validated) - NEWER_THAN_HA_2024_3.get(component, set())
    if dropped:
        problems.append(f"{component}: Home Assistant ignores {sorted(dropped)}")
    return problems


def every_payload() -> list[DiscoveryMessage]:
    """Every config message the bridge can publish: each capability set, an
    awkward vehicle (odd id, no details), and the account's own entities."""
    awkward = make_vehicle(
        vehicle_id="fleet/Truck 7+#ü", name="Zug № 7", vin=None, make=None, model=None, year=None
    )
    messages: list[DiscoveryMessage] = []
    for capabilities in CAPABILITY_SETS.values():
        messages += discovery_messages(capabilities)
    messages += discovery_messages(CAPABILITY_SETS["all"], awkward)
    for daily in (True, False):
        messages += account_discovery(TOPICS, "acme", "fleetize", "Acme", has_daily_budget=daily)
    return messages


def report() -> int:
    messages = every_payload()
    problems = {m.topic: p for m in messages if (p := ha_problems(m))}
    # The check itself must be able to fail: a typo'd key is dropped, so reported.
    speed = next(m for m in messages if m.topic.endswith("/speed/config"))
    typo = DiscoveryMessage(speed.topic, {**speed.payload, "unit_of_measurment": "km/h"})
    if not ha_problems(typo):
        print("discovery check: a payload with an unknown key was not reported", file=sys.stderr)
        return 1
    for topic, found in problems.items():
        print(f"discovery check: {topic}: {'; '.join(found)}", file=sys.stderr)
    components = sorted({m.topic.split("/")[1] for m in messages})
    print(
        f"discovery payloads against Home Assistant {homeassistant.const.__version__}'s"
        " MQTT schemas: "
        f"{len(messages)} checked ({', '.join(components)}), {len(problems)} with problems"
    )
    return 1 if problems else 0


async def main() -> int:
    """Templates are validated against a Home Assistant instance in the running
    loop (2026.x refuses them outside one), as the MQTT integration has it."""
    from homeassistant.core import HomeAssistant

    with tempfile.TemporaryDirectory() as config_dir:
        hass = HomeAssistant(config_dir)
        try:
            return report()
        finally:
            await hass.async_stop(force=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
