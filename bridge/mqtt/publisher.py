"""What the bridge shows on MQTT, and sending only what changed.

The publisher keeps the desired retained picture (each vehicle's state JSON, its
availability, its discovery) and sends a message only where the picture changed.
When there is no broker, the picture still updates; a (re)connection sends it
whole, so nothing is lost while the broker is away.

Discovery is paced. Home Assistant restarts, reconnections and a first start
with thousands of vehicles would otherwise put every config on the broker at once
(13 per vehicle in the per-entity form). Discovery goes out at `discovery_rate`
messages a second at most, after a burst of one second's worth that covers a
small fleet at once. What is due beyond that waits in a queue, one entry per
device, drained in the background: states and availability never wait behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from bridge.model import AlertType, Capability, VehicleState
from bridge.mqtt.discovery import (
    account_device_discovery,
    account_discovery,
    vehicle_device_discovery,
    vehicle_discovery,
    vehicle_discovery_topic,
    vehicle_discovery_topics,
)
from bridge.mqtt.topics import OFFLINE, ONLINE, Topics

Message = tuple[str, bytes | str, bool]  # topic, payload, retain
DiscoveryMode = Literal["entity", "device"]
#: Discovery messages a second by default: Home Assistant keeps up, and 10,000
#: vehicles in the device-based form take about half a minute.
DISCOVERY_RATE = 300.0

_LOGGER = logging.getLogger(__name__)


class MessageSink(Protocol):
    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Send messages in order; raise `MqttUnavailableError` when not connected."""


def encode(data: object) -> bytes:
    """Compact UTF-8 JSON (orjson: the same JSON as the standard library's
    `json.dumps(separators=(",", ":"), ensure_ascii=False)`, several times faster)."""
    # orjson's bytes keep the capacity of its output buffer (about 8 KB for a
    # state of 800 bytes); the publisher keeps one per vehicle, so it keeps a
    # copy of the exact size: 10,000 vehicles, 155 MB of payloads -> 8 MB.
    return bytes(memoryview(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)))


class Pacer:
    """A token bucket: `rate` messages a second, bursts of up to one second's worth."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = rate
        self._tokens = rate
        self._clock = clock
        self._sleep = sleep
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def try_take(self, count: int) -> bool:
        self._refill()
        # (The tolerance: a wait computed to the exact token must end in success.)
        if self._tokens + 1e-9 < min(count, self.capacity):
            return False
        # A device larger than a whole burst may overdraw: the next ones wait longer.
        self._tokens -= count
        return True

    async def wait(self, count: int) -> None:
        """Until `try_take(count)` can succeed."""
        self._refill()
        await self._sleep(max(0.0, (min(count, self.capacity) - self._tokens) / self.rate))


# A discovery queue entry: (account, vehicle id), or (account, None) for the
# account's own device.
_DeviceKey = tuple[str, str | None]


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
        discovery_mode: DiscoveryMode = "entity",
        discovery_rate: float = DISCOVERY_RATE,
        unavailable: type[Exception] = Exception,
        pacer: Pacer | None = None,
    ) -> None:
        self._sink = sink
        self._topics = topics
        self._discovery = discovery
        self._mode: DiscoveryMode = discovery_mode
        self._unavailable = unavailable
        self._accounts: dict[str, _Account] = {}
        self._pacer = pacer or Pacer(discovery_rate)
        # Devices whose discovery is due, in order (a dict as an ordered set),
        # and those whose discovery in the other form must be cleared first.
        self._due: dict[_DeviceKey, None] = {}
        self._clear_other: set[_DeviceKey] = set()
        self._drainer: asyncio.Task[None] | None = None
        self._discovery_idle = asyncio.Event()
        self._discovery_idle.set()
        # The form the broker holds, as its retained marker says (None: unknown).
        self._marked: str | None = None
        #: Told of every alert as it is published (the dashboard's feed).
        self.on_alerts: Callable[[str, list[dict[str, Any]]], None] | None = None

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

    def unregister_account(self, account: str) -> None:
        """Another instance holds the account now: forget its picture without a
        message (what the broker retains stays, the new holder goes on from it)."""
        self._accounts.pop(account, None)
        for key in [key for key in self._due if key[0] == account]:
            del self._due[key]
        self._clear_other = {key for key in self._clear_other if key[0] != account}

    async def account_connected(self, account: str) -> None:
        """The picture of one account, as on a connection (an account this
        instance took over: its states from the store, discovery at its pace)."""
        acct = self._accounts[account]
        sends: list[Message] = []
        if self._discovery:
            sends.extend(self._discovery_due([(account, None)]))
        for vid, vehicle in acct.vehicles.items():
            if self._discovery:
                sends.extend(self._discovery_due([(account, vid)]))
                vehicle.discovered = True
            sends.append(self._availability_message(account, vid, acct.available))
            sends.append((self._topics.vehicle_state(account, vid), vehicle.payload, True))
        self._start_drainer()
        await self._send(sends)

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
        sends: list[Message] = []
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
                sends.extend(self._discovery_due([(account, vid)]))
                known.discovered = True
            sends.append((self._topics.vehicle_state(account, vid), payload, True))
        await self._send(sends)
        return changed

    async def vehicles_removed(self, account: str, vehicle_ids: Iterable[str]) -> None:
        """Clear everything retained of vehicles the provider no longer lists."""
        acct = self._accounts[account]
        sends: list[Message] = []
        for vid in vehicle_ids:
            acct.states.pop(vid, None)
            if acct.vehicles.pop(vid, None) is None:
                continue
            if self._discovery:
                self._due.pop((account, vid), None)
                self._clear_other.discard((account, vid))
                sends.extend(
                    (topic, b"", True) for topic in self._vehicle_config_topics(account, acct, vid)
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

    def alert_topic(self, account: str, vehicle_id: str) -> str:
        return self._topics.vehicle_alert(account, vehicle_id)

    async def publish_alerts(self, account: str, alerts: Sequence[tuple[str, Any]]) -> bool:
        """Alerts (topic, JSON) are events, not state: never retained, since a new
        subscriber must not see yesterday's harsh braking as news, and not part
        of the picture sent on reconnect. False when the broker did not take
        them: the caller keeps them to send again."""
        if not alerts:
            return True
        try:
            await self._sink.publish_many([(topic, encode(data), False) for topic, data in alerts])
        except self._unavailable as err:
            _LOGGER.debug("MQTT unavailable, %d alerts kept: %s", len(alerts), err)
            return False
        if self.on_alerts is not None:
            self.on_alerts(account, [data for _topic, data in alerts])
        return True

    async def publish_json(self, topic: str, data: object, *, retain: bool) -> None:
        await self._send([(topic, encode(data), retain)])

    # --- whole picture -------------------------------------------------------
    async def connected(self) -> None:
        """A (re)connection: the broker may have lost everything, send it all.

        States and availability go at once; discovery at its pace."""
        # Whatever the broker still holds, its retained marker will say.
        self._marked = None
        sends: list[Message] = []
        for account, acct in self._accounts.items():
            if self._discovery:
                sends.extend(self._discovery_due([(account, None)]))
            for vid, vehicle in acct.vehicles.items():
                if self._discovery:
                    sends.extend(self._discovery_due([(account, vid)]))
                    vehicle.discovered = True
                sends.append(self._availability_message(account, vid, acct.available))
                sends.append((self._topics.vehicle_state(account, vid), vehicle.payload, True))
        self._start_drainer()
        await self._send(sends)

    async def republish_discovery(self) -> None:
        """Home Assistant restarted (`online` on its status topic)."""
        if not self._discovery:
            return
        keys: list[_DeviceKey] = []
        for account, acct in self._accounts.items():
            keys.append((account, None))
            keys.extend((account, vid) for vid in acct.vehicles)
        await self._send(self._discovery_due(keys))

    async def discovery_marker(self, payload: bytes) -> None:
        """The retained marker of the form on the broker (ours, or an earlier run's).

        A marker of the other form means the broker holds configs that would
        duplicate every entity in Home Assistant: each device's configs of that
        form are cleared, then its configs in ours are sent again, so that the
        entities (same unique ids) come back after the removal."""
        try:
            marked = orjson.loads(payload).get("mode") if payload else None
        except (orjson.JSONDecodeError, AttributeError):
            marked = None
        self._marked = marked if isinstance(marked, str) else None
        if not self._discovery or self._marked in (None, self._mode):
            return
        _LOGGER.info(
            "Discovery on the broker is in the %s form: clearing it for the %s form",
            self._marked,
            self._mode,
        )
        keys: list[_DeviceKey] = []
        for account, acct in self._accounts.items():
            keys.append((account, None))
            keys.extend((account, vid) for vid in acct.vehicles)
        self._clear_other.update(keys)
        for key in keys:
            # To the back of the queue: sent again after the clearing.
            self._due.pop(key, None)
            self._due[key] = None
        self._start_drainer()

    async def discovery_settled(self, timeout: float = 60.0) -> None:
        """Wait until no discovery is due (tests and benchmarks)."""
        async with asyncio.timeout(timeout):
            await self._discovery_idle.wait()

    # --- discovery pacing --------------------------------------------------
    def _discovery_due(self, keys: Iterable[_DeviceKey]) -> list[Message]:
        """Discovery of these devices is due: the messages that may go now (in
        the caller's batch); the rest is queued for the background drainer."""
        now: list[Message] = []
        for key in keys:
            if key in self._due:
                continue  # already queued: it will be built from the latest state
            if not self._due:
                messages = self._device_messages(key)
                if self._pacer.try_take(len(messages)):
                    self._clear_other.discard(key)
                    now.extend(messages)
                    continue
            self._due[key] = None
        self._start_drainer()
        return now

    def _start_drainer(self) -> None:
        if self._drainer is not None or not self._discovery:
            return
        if not self._due and self._marked == self._mode:
            return
        self._discovery_idle.clear()
        self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Send what is due at the pace, then the marker of our form."""
        try:
            while self._due or self._marked != self._mode:
                if self._due:
                    await self._sink.publish_many(await self._next_batch())
                    continue
                # Everything due went out: the broker holds our form now.
                self._marked = self._mode
                marker = encode({"mode": self._mode})
                await self._sink.publish_many([(self._topics.bridge_discovery, marker, True)])
        except self._unavailable as err:
            # The next connection queues everything again.
            _LOGGER.debug("MQTT unavailable, discovery waits for reconnect: %s", err)
        finally:
            self._drainer = None
            if not self._due:
                self._discovery_idle.set()

    async def _next_batch(self) -> list[Message]:
        """As many due devices as the pacer allows now (at least one, waiting
        for it if need be)."""
        batch: list[Message] = []
        while self._due:
            key = next(iter(self._due))
            messages = self._device_messages(key)
            if not self._pacer.try_take(len(messages)):
                if batch:
                    break
                await self._pacer.wait(len(messages))
                continue
            del self._due[key]
            self._clear_other.discard(key)
            batch.extend(messages)
        return batch

    def _device_messages(self, key: _DeviceKey) -> list[Message]:
        """A device's discovery in the configured form, built from its latest
        state, after the clearing of the other form when that is due."""
        account, vid = key
        acct = self._accounts.get(account)
        if acct is None or (vid is not None and vid not in acct.states):
            return []  # gone since it was queued
        messages: list[Message] = []
        if key in self._clear_other:
            clear = self._other_form_topics(account, acct, vid)
            messages += [(topic, b"", True) for topic in clear]
        if vid is None:
            messages += self._account_messages(account, acct)
        elif self._mode == "device":
            message = vehicle_device_discovery(
                self._topics,
                account,
                acct.provider,
                acct.capabilities,
                acct.states[vid],
                acct.alert_types,
            )
            messages.append((message.topic, encode(message.payload), True))
        else:
            messages += [
                (m.topic, encode(m.payload), True)
                for m in vehicle_discovery(
                    self._topics,
                    account,
                    acct.provider,
                    acct.capabilities,
                    acct.states[vid],
                    acct.alert_types,
                )
            ]
        return messages

    def _vehicle_config_topics(self, account: str, acct: _Account, vid: str) -> list[str]:
        if self._mode == "device":
            return [vehicle_discovery_topic(self._topics, account, vid)]
        return vehicle_discovery_topics(self._topics, account, acct.capabilities, vid)

    def _other_form_topics(self, account: str, acct: _Account, vid: str | None) -> list[str]:
        if vid is None:
            # The account's device: its configs in the other form.
            other = self._account_messages(account, acct, other_form=True)
            return [topic for topic, _payload, _retain in other]
        if self._mode == "device":
            return vehicle_discovery_topics(self._topics, account, acct.capabilities, vid)
        return [vehicle_discovery_topic(self._topics, account, vid)]

    # --- helpers -------------------------------------------------------------
    def _account_messages(
        self, account: str, acct: _Account, *, other_form: bool = False
    ) -> list[Message]:
        device_form = (self._mode == "device") != other_form
        if device_form:
            message = account_device_discovery(
                self._topics,
                account,
                acct.provider,
                acct.name,
                has_daily_budget=acct.has_daily_budget,
            )
            return [(message.topic, encode(message.payload), True)]
        messages = account_discovery(
            self._topics,
            account,
            acct.provider,
            acct.name,
            has_daily_budget=acct.has_daily_budget,
        )
        return [(m.topic, encode(m.payload), True) for m in messages]

    def _availability_message(self, account: str, vid: str, available: bool) -> Message:
        return (
            self._topics.vehicle_availability(account, vid),
            ONLINE if available else OFFLINE,
            True,
        )

    async def _send(self, messages: list[Message]) -> None:
        if not messages:
            return
        try:
            await self._sink.publish_many(messages)
        except self._unavailable as err:
            # Nothing is lost: the picture is kept and sent whole on reconnect.
            _LOGGER.debug(
                "MQTT unavailable, %d messages wait for reconnect: %s", len(messages), err
            )
