"""Discovery at fleet scale is paced, and states never wait behind it.

The publisher and the MQTT link of the daemon against a real Mosquitto. The
pacer runs on a clock of the test's own that moves only when the pacer waits,
so the pace is checked on that timeline (no wall-clock assertion): counted at
the sending side per second of it, and every message counted on arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest

from bridge.config import MqttConfig
from bridge.model import Capability, Position, VehicleState
from bridge.mqtt.client import MqttLink, MqttUnavailableError
from bridge.mqtt.discovery import descriptions_for
from bridge.mqtt.publisher import Message, Pacer, Publisher, encode
from bridge.mqtt.topics import Topics
from bridge.providers.samsara import SamsaraProvider
from tests.support.mqtt import Mosquitto, Recorder

TOPICS = Topics()
RATE = 40.0
AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


class StepClock:
    """Time that passes only when the pacer sleeps (and, while `running` is
    clear, not at all: the pacer then waits)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.running = asyncio.Event()
        self.running.set()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await self.running.wait()
        self.now += seconds
        await asyncio.sleep(0)


class CountingLink:
    """The real link, noting how many messages left at which moment of the clock."""

    def __init__(self, link: MqttLink, clock: StepClock) -> None:
        self.link = link
        self.clock = clock
        self.sent: list[tuple[float, str]] = []

    async def publish_many(self, messages: Sequence[Message]) -> None:
        self.sent += [(self.clock.now, topic) for topic, _payload, _retain in messages]
        await self.link.publish_many(messages)


def vehicles(count: int, step: int = 0) -> list[VehicleState]:
    return [
        VehicleState(
            vehicle_id=f"v{i:04d}",
            name=f"Truck {i:04d}",
            position=Position(59.43 + step * 1e-4, 24.75 + i * 1e-4, AT),
            speed_kmh=float(step),
            last_seen=AT,
            online=True,
        )
        for i in range(count)
    ]


@contextlib.asynccontextmanager
async def connected(mosquitto: Mosquitto) -> AsyncIterator[MqttLink]:
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port, client_id="pacing-test")
    link = MqttLink(config, state_topic=TOPICS.bridge_state)
    runner = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(10):
            await link.connected.wait()
        yield link
    finally:
        await link.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def peak_per_second(sent: list[tuple[float, str]]) -> int:
    """Most messages sent within any one second of the clock."""
    times = sorted(t for t, _topic in sent)
    peak, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


@pytest.mark.parametrize("mode", ["entity", "device"])
async def test_home_assistant_restart_gets_discovery_at_the_configured_pace(
    mosquitto: Mosquitto, recorder: Recorder, mode: str
) -> None:
    clock = StepClock()
    fleet = vehicles(60)
    async with connected(mosquitto) as link:
        sink = CountingLink(link, clock)
        publisher = Publisher(
            sink,
            TOPICS,
            discovery_mode=mode,  # type: ignore[arg-type]
            pacer=Pacer(RATE, clock=clock, sleep=clock.sleep),
            unavailable=MqttUnavailableError,
        )
        publisher.register_account("acct", "samsara", SamsaraProvider.capabilities)
        await publisher.vehicles_changed("acct", fleet)
        await publisher.discovery_settled()
        first = [t for _at, t in sink.sent if t.startswith("homeassistant/")]
        per_device = 1 if mode == "device" else len(descriptions_for(SamsaraProvider.capabilities))
        assert len(first) == len(fleet) * per_device

        # Home Assistant restarts: everything again, at the pace.
        sink.sent.clear()
        clock.now += 10.0  # the bucket is full again
        mark = recorder.mark()
        clock.running.clear()
        await publisher.republish_discovery()
        # With most of the discovery still due, a poll's states go out at once.
        await publisher.vehicles_changed("acct", vehicles(60, step=1))
        states_sent_at = [at for at, t in sink.sent if t.startswith("fleet/acct/")]
        assert len(states_sent_at) == len(fleet)
        clock.running.set()
        await publisher.discovery_settled()

        discovery = [(at, t) for at, t in sink.sent if t.startswith("homeassistant/")]
        of_vehicles = [(at, t) for at, t in discovery if "/fleet_acct/" not in t]
        assert len(of_vehicles) == len(first)
        assert len(discovery) > len(first)  # and the account's own device
        # At most one second's worth in a burst, then `RATE` a second.
        assert peak_per_second(discovery) <= 2 * RATE
        duration = max(at for at, _t in discovery) - min(at for at, _t in discovery)
        assert duration >= (len(discovery) - RATE - per_device) / RATE
        assert max(states_sent_at) < max(at for at, _t in discovery)
        # Every message reached the broker and a subscriber.
        await recorder.wait_for(
            lambda: (
                len(recorder.since(mark, "homeassistant/")) >= len(discovery)
                and len(recorder.since(mark, "fleet/acct/")) >= len(fleet)
            )
        )
        marker = json.loads(recorder.retained["fleet/bridge/discovery"])
        assert marker == {"mode": mode}


async def test_a_small_fleet_gets_its_discovery_before_its_states(
    mosquitto: Mosquitto, recorder: Recorder
) -> None:
    async with connected(mosquitto) as link:
        publisher = Publisher(link, TOPICS, unavailable=MqttUnavailableError)
        publisher.register_account("acct", "samsara", frozenset(Capability))
        mark = recorder.mark()
        await publisher.vehicles_changed("acct", vehicles(3))
        await recorder.wait_for(lambda: len(recorder.since(mark, "fleet/acct/")) >= 6)
        topics = [m.topic for m in recorder.since(mark)]
        first_state = topics.index("fleet/acct/v0000")
        assert any(t.startswith("homeassistant/") for t in topics[:first_state])


def test_payloads_are_compact_utf8_json() -> None:
    data = {"name": "Sõiduk 7, Tõnismägi", "speed": 54.7, "n": None, "ok": True, "ids": [1, 2]}
    assert encode(data) == json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    state = vehicles(1)[0].to_json()
    assert json.loads(encode(state)) == state
