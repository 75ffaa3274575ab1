"""What the bridge shows on MQTT, and sending only what changed.

The publisher keeps the desired retained picture (each vehicle's state JSON, its
availability, its discovery) and sends a message only where the picture changed.
When there is no broker, the picture still updates; a (re)connection sends it
whole, so nothing is lost while the broker is away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from bridge.model import Alert, AlertType, Capability, VehicleState
from bridge.mqtt.discovery import (
    DiscoveryMessage,
    account_discovery,
    vehicle_discovery,
    vehicle_discovery_topics,
)
from bridge.mqtt.topics import OFFLINE, ONLINE, Topics

Message = tuple[str, bytes | str, bool]  # topic, payload, retain

_LOGGER = logging.getLogger(__name__)


class MessageSink(Protocol):
    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Send messages in order; raise `MqttUnavailableError` when not connected."""


def encode(data: object) -> bytes:
    """Compact UTF-8 JSON (orjson: the same JSON as the standard library's
    `json.dumps(separators=(",", ":"), ensure_ascii=False)`, several times faster)."""
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


@dataclass(slots=True)
class _Vehicle:
    payload: bytes
    device_key: tuple[object, ...]
    discovered: bool = False


@dataclass(slots=True)
class _Account:
    provider: str
    capabilities: frozenset[Capability]
    name: str | None = None
    has_daily_budget: bool = False
    alert_types: frozenset[AlertType] = frozenset()
    available: bool = True
    vehicles: dict[str, _Vehicle] = field(default_factory=dict)
    states: dict[str, VehicleState] = field(default_factory=dict)


def _device_key(state: VehicleState) -> tuple[object, ...]:
    # Discovery carries the device's name and identity; resend it when they change.
    return (state.name, state.make, state.model, state.year, state.vin)


class Publisher:
    """The retained MQTT picture of every account and vehicle."""

    def __init__(
        self,
        sink: MessageSink,
        topics: Topics,
        *,
        discovery: bool = True,
        unavailable: type[Exception] = Exception,
    ) -> None:
        self._sink = sink
        self._topics = topics
        self._discovery = discovery
        self._unavailable = unavailable
        self._accounts: dict[str, _Account] = {}

    # --- accounts ------------------------------------------------------------
    def register_account(
        self,
        account: str,
        provider: str,
        capabilities: frozenset[Capability],
        *,
        name: str | None = None,
        has_daily_budget: bool = False,
        alert_types: frozenset[AlertType] = frozenset(),
    ) -> None:
        if alert_types:
            capabilities = capabilities | {Capability.ALERTS}
        self._accounts[account] = _Account(
            provider, capabilities, name, has_daily_budget, alert_types
        )

    def states(self, account: str) -> dict[str, VehicleState]:
        return dict(self._accounts[account].states)

    def seed(self, account: str, states: Iterable[VehicleState]) -> None:
        """Last known states from the store: shown on connect, before the first poll."""
        acct = self._accounts[account]
        for state in states:
            acct.states[state.vehicle_id] = state
            acct.vehicles[state.vehicle_id] = _Vehicle(encode(state.to_json()), _device_key(state))

    # --- changes -------------------------------------------------------------
    async def vehicles_changed(self, account: str, states: Iterable[VehicleState]) -> int:
        """Publish the vehicles whose state differs from what was last shown.

        Returns the number of vehicles that changed."""
        acct = self._accounts[account]
        sends: list[tuple[str, bytes | str, bool]] = []
        changed = 0
        for state in states:
            vid = state.vehicle_id
            # Providers that list the whole fleet on every poll send mostly
            # vehicles that did not change: an equal state needs no encoding.
            if acct.states.get(vid) == state and vid in acct.vehicles:
                continue
            payload = encode(state.to_json())
            known = acct.vehicles.get(vid)
            acct.states[vid] = state
            if known is not None and known.payload == payload:
                continue
            changed += 1
            device_key = _device_key(state)
            if known is None:
                known = acct.vehicles[vid] = _Vehicle(payload, device_key)
                sends.append(self._availability_message(account, vid, acct.available))
            elif known.device_key != device_key:
                known.discovered = False
            known.payload, known.device_key = payload, device_key
            if self._discovery and not known.discovered:
                sends.extend(self._discovery_messages(account, acct, state))
                known.discovered = True
            sends.append((self._topics.vehicle_state(account, vid), payload, True))
        await self._send(sends)
        return changed

    async def vehicles_removed(self, account: str, vehicle_ids: Iterable[str]) -> None:
        """Clear everything retained of vehicles the provider no longer lists."""
        acct = self._accounts[account]
        sends: list[tuple[str, bytes | str, bool]] = []
        for vid in vehicle_ids:
            acct.states.pop(vid, None)
            if acct.vehicles.pop(vid, None) is None:
                continue
            if self._discovery:
                sends.extend(
                    (topic, b"", True)
                    for topic in vehicle_discovery_topics(
                        self._topics, account, acct.capabilities, vid
                    )
                )
            sends.append((self._topics.vehicle_state(account, vid), b"", True))
            sends.append((self._topics.vehicle_availability(account, vid), b"", True))
        await self._send(sends)

    async def set_account_available(self, account: str, available: bool) -> None:
        acct = self._accounts[account]
        if acct.available == available:
            return
        acct.available = available
        await self._send(
            [self._availability_message(account, vid, available) for vid in acct.vehicles]
        )

    async def publish_alerts(self, account: str, alerts: Iterable[tuple[Alert, bool]]) -> None:
        """Alerts are events, not state: never retained (a new subscriber must
        not see yesterday's harsh braking as news)."""
        await self._send(
            [
                (
                    self._topics.vehicle_alert(account, alert.vehicle_id),
                    encode(alert.to_json(stale=stale)),
                    False,
                )
                for alert, stale in alerts
            ]
        )

    async def publish_json(self, topic: str, data: object, *, retain: bool) -> None:
        await self._send([(topic, encode(data), retain)])

    # --- whole picture -------------------------------------------------------
    async def connected(self) -> None:
        """A (re)connection: the broker may have lost everything, send it all."""
        sends: list[tuple[str, bytes | str, bool]] = []
        for account, acct in self._accounts.items():
            if self._discovery:
                sends.extend(self._account_messages(account, acct))
            for vid, vehicle in acct.vehicles.items():
                if self._discovery:
                    sends.extend(self._discovery_messages(account, acct, acct.states[vid]))
                    vehicle.discovered = True
                sends.append(self._availability_message(account, vid, acct.available))
                sends.append((self._topics.vehicle_state(account, vid), vehicle.payload, True))
        await self._send(sends)

    async def republish_discovery(self) -> None:
        """Home Assistant restarted (`online` on its status topic)."""
        if not self._discovery:
            return
        sends: list[tuple[str, bytes | str, bool]] = []
        for account, acct in self._accounts.items():
            sends.extend(self._account_messages(account, acct))
            for vid in acct.vehicles:
                sends.extend(self._discovery_messages(account, acct, acct.states[vid]))
        await self._send(sends)

    # --- helpers -------------------------------------------------------------
    def _discovery_messages(
        self, account: str, acct: _Account, state: VehicleState
    ) -> list[tuple[str, bytes | str, bool]]:
        messages: Iterable[DiscoveryMessage] = vehicle_discovery(
            self._topics, account, acct.provider, acct.capabilities, state, acct.alert_types
        )
        return [(m.topic, encode(m.payload), True) for m in messages]

    def _account_messages(
        self, account: str, acct: _Account
    ) -> list[tuple[str, bytes | str, bool]]:
        messages = account_discovery(
            self._topics,
            account,
            acct.provider,
            acct.name,
            has_daily_budget=acct.has_daily_budget,
        )
        return [(m.topic, encode(m.payload), True) for m in messages]

    def _availability_message(
        self, account: str, vid: str, available: bool
    ) -> tuple[str, bytes | str, bool]:
        return (
            self._topics.vehicle_availability(account, vid),
            ONLINE if available else OFFLINE,
            True,
        )

    async def _send(self, messages: list[tuple[str, bytes | str, bool]]) -> None:
        if not messages:
            return
        try:
            await self._sink.publish_many(messages)
        except self._unavailable as err:
            # Nothing is lost: the picture is kept and sent whole on reconnect.
            _LOGGER.debug(
                "MQTT unavailable, %d messages wait for reconnect: %s", len(messages), err
            )
