"""Unchanged vehicles cost nothing: with a provider that lists the whole fleet
on every poll (Telemax), and at the publisher's own comparison.

Samsara's feed answers only what changed, so a Samsara test never exercises the
publisher's comparison. The provider clients that list whole fleets keep a diff
of their own (a restart restores it from the store), so the publisher's is the
last line: it is what stands between a command confirmation or an `online`
re-check that changes nothing and a message per vehicle. The publisher test
below fails when that comparison is removed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.config import BridgeConfig
from bridge.model import Position, VehicleState
from bridge.mqtt.publisher import Message, Publisher
from bridge.mqtt.topics import Topics
from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import running, settle
from tests.support.mqtt import Mosquitto, Recorder

ACCOUNT = "au"


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=2, speed=0, seed=7) as server:
        yield server


def config(mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "diff-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": ACCOUNT,
                    "provider": "telemax",
                    "api_key": "demo-telemax-key",
                    "base_url": simulator.telemax_url,
                    "poll_interval": 3600,
                    "offline_after": 86400,
                }
            ],
        }
    )


def vehicle_topics(recorder: Recorder, mark: int) -> list[str]:
    """Vehicle state topics (fleet/<account>/<vehicle>) published since `mark`."""
    return [
        m.topic
        for m in recorder.since(mark, f"fleet/{ACCOUNT}/")
        if m.topic.count("/") == 2 and m.topic != f"fleet/{ACCOUNT}/quota"
    ]


async def test_a_whole_fleet_listing_sends_only_the_vehicles_that_changed(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = simulator.telemax_world.ids()
    async with running(config(mosquitto, simulator, tmp_path)) as bridge:
        poller = bridge.pollers[ACCOUNT]
        await poller.wait_polls(1)
        await recorder.wait_for(lambda: len(set(vehicle_topics(recorder, 0))) == len(ids))
        await settle(recorder, mosquitto, bridge)

        # The simulated clock stands still: Telemax lists every vehicle again,
        # unchanged, and the broker sees none of them.
        mark = recorder.mark()
        poller.request_poll()
        await poller.wait_polls(2)
        await settle(recorder, mosquitto, bridge)
        assert vehicle_topics(recorder, mark) == []

        # Ten simulated minutes on, some vehicles drove: each state sent differs
        # from the one the broker held, none is sent twice.
        before = {v: recorder.retained[f"fleet/{ACCOUNT}/{v}"] for v in ids}
        simulator.clock.advance(600)
        mark = recorder.mark()
        poller.request_poll()
        await poller.wait_polls(3)
        await settle(recorder, mosquitto, bridge)
        sent = vehicle_topics(recorder, mark)
        assert sent, "some vehicle should have changed in ten minutes"
        assert len(sent) == len(set(sent))
        for topic in sent:
            assert recorder.retained[topic] != before[topic.rsplit("/", 1)[1]]


class Sink:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def publish_many(self, messages: Sequence[Message]) -> None:
        self.sent.extend(messages)


def state(vehicle_id: str, latitude: float = 59.43) -> VehicleState:
    at = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    return VehicleState(
        vehicle_id=vehicle_id,
        name=f"Truck {vehicle_id}",
        position=Position(latitude=latitude, longitude=24.75, time=at),
        speed_kmh=0.0,
        last_seen=at,
    )


async def test_the_publisher_sends_a_state_only_when_it_differs() -> None:
    sink = Sink()
    publisher = Publisher(sink, Topics("fleet"), discovery=False)
    publisher.register_account("a", "telemax", frozenset())
    fleet = [state(str(n)) for n in range(5)]
    assert await publisher.vehicles_changed("a", fleet) == 5
    first = len(sink.sent)

    # The same fleet again, as new but equal objects: nothing to send.
    assert await publisher.vehicles_changed("a", [replace(s) for s in fleet]) == 0
    assert len(sink.sent) == first

    # One vehicle moved: its state, and only it.
    fleet[2] = state("2", latitude=59.44)
    assert await publisher.vehicles_changed("a", fleet) == 1
    assert [(topic, retain) for topic, _payload, retain in sink.sent[first:]] == [
        ("fleet/a/2", True)
    ]
    assert json.loads(sink.sent[-1][1])["latitude"] == 59.44
