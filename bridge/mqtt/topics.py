"""Every MQTT topic the bridge uses, built in one place (see the README's topic table)."""

from __future__ import annotations

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


def topic_level(value: str) -> str:
    """A provider id made safe as one topic level (and as a discovery object id)."""
    safe = _UNSAFE.sub("_", value.strip())
    return safe or "_"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic scheme under a base topic and a discovery prefix."""

    base: str = "fleet"
    discovery_prefix: str = "homeassistant"

    # --- bridge level
    @property
    def bridge_state(self) -> str:
        return f"{self.base}/bridge/state"

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
            level += "_"  # a vehicle called "quota" must not shadow the account's topic
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
