"""Every MQTT topic the bridge uses, built in one place (see the README's topic table)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: The account id that names the bridge's own topic level; no account may use it.
RESERVED_ACCOUNT_ID = "bridge"

# Topic levels under an account that are the account's own, not a vehicle's.
ACCOUNT_LEVELS = frozenset({"quota"})

ONLINE = "online"
OFFLINE = "offline"

# Topic levels we build from provider ids must not contain MQTT wildcards or
# separators, and Home Assistant object ids must be [a-zA-Z0-9_-].
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def topic_level(value: str) -> str:
    """A provider id made safe as one topic level (and as a discovery object id).

    Injective: an id that is already safe is kept as it is; any other id is
    sanitised and gets a short hash of the original, so `a+b` and `a#b` (both
    `a_b` once sanitised) are `a_b_<hash>` with different hashes and never share
    a topic or a Home Assistant unique id."""
    if value and not _UNSAFE.search(value):
        return value
    return f"{_UNSAFE.sub('_', value)[:64]}_{_digest(value)}"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic scheme under a base topic and a discovery prefix."""

    base: str = "fleet"
    discovery_prefix: str = "homeassistant"

    # --- bridge level
    @property
    def bridge_state(self) -> str:
        return f"{self.base}/bridge/state"

    def instance_state(self, instance: str) -> str:
        """One instance's own availability and last will (several share a store)."""
        return f"{self.base}/bridge/instance/{topic_level(instance)}/state"

    def instance_info(self, instance: str) -> str:
        return f"{self.base}/bridge/instance/{topic_level(instance)}/info"

    @property
    def bridge_info(self) -> str:
        return f"{self.base}/bridge/info"

    def bridge_request(self, command: str) -> str:
        return f"{self.base}/bridge/request/{command}"

    def bridge_response(self, command: str) -> str:
        return f"{self.base}/bridge/response/{command}"

    @property
    def ha_status(self) -> str:
        """Home Assistant announces `online` here when it (re)starts."""
        return f"{self.discovery_prefix}/status"

    # --- account and vehicle level
    def account_quota(self, account: str) -> str:
        return f"{self.base}/{account}/quota"

    def vehicle_state(self, account: str, vehicle: str) -> str:
        level = topic_level(vehicle)
        if level in ACCOUNT_LEVELS:
            # A vehicle called "quota" must not shadow the account's topic; the
            # hash keeps it apart from a vehicle called "quota_" too.
            level = f"{level}_{_digest(level)}"
        return f"{self.base}/{account}/{level}"

    def vehicle_availability(self, account: str, vehicle: str) -> str:
        return f"{self.vehicle_state(account, vehicle)}/availability"

    def vehicle_alert(self, account: str, vehicle: str) -> str:
        return f"{self.vehicle_state(account, vehicle)}/alert"

    def vehicle_set(self, account: str, vehicle: str) -> str:
        return f"{self.vehicle_state(account, vehicle)}/set"

    def vehicle_lights(self, account: str, vehicle: str) -> str:
        """The last light command: pending until the device confirmed it."""
        return f"{self.vehicle_state(account, vehicle)}/lights"

    def vehicle_snapshot(self, account: str, vehicle: str) -> str:
        """The last dashcam still: its status and, when ready, its URL."""
        return f"{self.vehicle_state(account, vehicle)}/snapshot"

    @property
    def set_wildcard(self) -> str:
        return f"{self.base}/+/+/set"

    def set_target(self, topic: str) -> tuple[str, str] | None:
        """(account, vehicle level) of a vehicle's `set` topic; None for any
        other topic, and for the bridge's own level: `fleet/bridge/response/set`
        matches the `set` wildcard but is an answer, never a command."""
        prefix = f"{self.base}/"
        if not topic.startswith(prefix) or not topic.endswith("/set"):
            return None
        levels = topic[len(prefix) : -len("/set")].split("/")
        if len(levels) != 2 or levels[0] == RESERVED_ACCOUNT_ID:
            return None
        return levels[0], levels[1]

    def consumes(self, topic: str) -> bool:
        """Whether the bridge acts on a message on `topic` (an answer must never
        land on such a topic, or the bridge would answer its own answers)."""
        return (
            topic in (self.ha_status, self.bridge_discovery)
            or topic.startswith(self.bridge_request(""))
            or self.set_target(topic) is not None
        )

    # --- Home Assistant discovery
    def discovery(self, component: str, node_id: str, object_id: str) -> str:
        """One entity's config (per-entity discovery)."""
        return f"{self.discovery_prefix}/{component}/{node_id}/{object_id}/config"

    def device_discovery(self, node_id: str) -> str:
        """A whole device's config (device-based discovery, Home Assistant 2024.11+)."""
        return f"{self.discovery_prefix}/device/{node_id}/config"

    @property
    def bridge_discovery(self) -> str:
        """Retained: which discovery form the bridge last left on the broker, so
        that a bridge started in the other form clears it."""
        return f"{self.base}/bridge/discovery"
