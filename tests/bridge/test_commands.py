"""The command channel against a real Mosquitto: every rejection path, and exactly-once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.config import BridgeConfig
from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import running
from tests.support.mqtt import Mosquitto, Recorder


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=3, speed=0, seed=9) as server:
        yield server


def make_config(
    mosquitto: Mosquitto,
    simulator: SimulatorServer,
    tmp_path: Path,
    allow: list[dict[str, Any]] | None = None,
) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "cmd-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": "fleet",
                    "provider": "samsara",
                    "token": "demo-samsara-token",
                    "base_url": simulator.samsara_url,
                    "poll_interval": 3600,
                }
            ],
            "commands": {
                "allow": allow
                if allow is not None
                else [{"accounts": ["fleet"], "vehicles": ["*"], "commands": ["snapshot"]}]
            },
        }
    )


async def publish(mosquitto: Mosquitto, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish(topic, payload, qos=1)


def answers(recorder: Recorder, command: str) -> list[dict[str, Any]]:
    return [
        json.loads(m.payload)
        for m in recorder.messages
        if m.topic == f"fleet/bridge/response/{command}"
    ]


async def test_every_bad_command_gets_its_own_named_error_and_nothing_is_sent(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = simulator.world.ids()[0]
    cases: list[tuple[str, bytes, str]] = [
        ("snapshot", b"{not json", "payload: not valid JSON"),
        ("snapshot", b"\x89PNG\r\n\x1a\n\x00\x00", "payload: not UTF-8 text"),
        ("snapshot", b"x" * (1024 * 1024), "payload: too large"),
        ("snapshot", b'"road"', "payload: must be a JSON object"),
        ("snapshot", b'{"transaction": "a1", "vehicle": "x"}', "account: field required"),
        (
            "snapshot",
            json.dumps({"account": "fleet", "vehicle": vehicle, "camera": "rear"}).encode(),
            "camera: input should be 'road' or 'driver'",
        ),
        (
            "snapshot",
            json.dumps({"account": "nope", "vehicle": vehicle}).encode(),
            "account: unknown account 'nope'",
        ),
        (
            "snapshot",
            json.dumps({"account": "fleet", "vehicle": "ghost"}).encode(),
            "vehicle: unknown vehicle 'ghost' in account 'fleet'",
        ),
        (
            "lights",
            json.dumps({"account": "fleet", "vehicle": vehicle, "state": "ON"}).encode(),
            "command: samsara cannot do 'lights'",
        ),
        (
            "task/create",
            json.dumps({"account": "fleet", "vehicle": vehicle}).encode(),
            "order_ref: field required",
        ),
        (
            "task/create",
            json.dumps(
                {
                    "account": "fleet",
                    "vehicle": vehicle,
                    "order_ref": "A-1",
                    "latitude": 41.9,
                    "longitude": -87.6,
                    "start_time": "2026-11-21T10:00:00Z",
                    "stop_time": "2026-11-21T09:00:00Z",
                }
            ).encode(),
            "stop_time: must be after start_time",
        ),
        (
            "task/create",
            json.dumps(
                {
                    "account": "fleet",
                    "vehicle": vehicle,
                    "order_ref": "A-1",
                    "latitude": 41.9,
                    "longitude": -87.6,
                    "start_time": "2026-11-21T10:00:00Z",
                    "stop_time": "2026-11-21T11:00:00Z",
                }
            ).encode(),
            "command: samsara cannot do 'task/create'",
        ),
        (
            "snapshot",
            json.dumps({"account": "fleet", "vehicle": vehicle, "colour": "red"}).encode(),
            "colour: unknown field",
        ),
    ]
    async with running(make_config(mosquitto, simulator, tmp_path)) as bridge:
        await bridge.pollers["fleet"].wait_polls(1)
        for command, payload, _ in cases:
            await publish(mosquitto, f"fleet/bridge/request/{command}", payload)
        await recorder.wait_for(
            lambda: (
                sum(len(answers(recorder, c)) for c in ("snapshot", "lights", "task/create"))
                == len(cases)
            )
        )
        seen = {c: iter(answers(recorder, c)) for c in ("snapshot", "lights", "task/create")}
        for command, _, expected in cases:
            answer = next(seen[command])
            assert answer["status"] == "error"
            assert answer["error"].startswith(expected), (expected, answer["error"])
        # The bridge kept serving: a refresh still works afterwards.
        await publish(mosquitto, "fleet/bridge/request/refresh", b'{"transaction": "r"}')
        await recorder.wait_for(lambda: len(answers(recorder, "refresh")) == 1)
        assert answers(recorder, "refresh")[0]["status"] == "ok"
    assert simulator.samsara.counters.by_path.get("/cameras/media/retrieval", 0) == 0


async def test_writes_are_denied_unless_the_config_allows_them(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = simulator.world.ids()[0]
    async with running(make_config(mosquitto, simulator, tmp_path, allow=[])) as bridge:
        await bridge.pollers["fleet"].wait_polls(1)
        # What Home Assistant's button sends, on the vehicle's own topic.
        await publish(mosquitto, f"fleet/fleet/{vehicle}/set", b'{"snapshot": {"camera": "road"}}')
        await recorder.wait_for(lambda: len(answers(recorder, "snapshot")) == 1)
    answer = answers(recorder, "snapshot")[0]
    assert answer["status"] == "error"
    assert "not allowed" in answer["error"]
    assert "commands.allow" in answer["error"]


def snapshot_request(vehicle: str, transaction: str) -> bytes:
    return json.dumps(
        {"transaction": transaction, "account": "fleet", "vehicle": vehicle, "camera": "road"}
    ).encode()


async def test_a_snapshot_is_taken_once_and_its_url_published(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = simulator.world.ids()[0]
    topic = f"fleet/fleet/{vehicle}/snapshot"
    async with running(make_config(mosquitto, simulator, tmp_path)) as bridge:
        await bridge.pollers["fleet"].wait_polls(1)
        # The same transaction twice (a client retry, a QoS 1 redelivery).
        await publish(mosquitto, "fleet/bridge/request/snapshot", snapshot_request(vehicle, "s-1"))
        await publish(mosquitto, "fleet/bridge/request/snapshot", snapshot_request(vehicle, "s-1"))
        await recorder.wait_for(lambda: len(answers(recorder, "snapshot")) == 2)
        first, second = answers(recorder, "snapshot")
        assert first == second
        assert first["status"] == "ok"
        assert first["data"]["state"] == "pending"
        assert json.loads(recorder.retained[topic])["status"] == "pending"
        # The provider's media turns available as simulated time passes.
        simulator.clock.advance(60)
        await recorder.wait_for(
            lambda: json.loads(recorder.retained.get(topic, b"{}")).get("status") == "confirmed"
        )
        snapshot = json.loads(recorder.retained[topic])
        assert snapshot["url"].startswith(simulator.base_url)
        assert snapshot["camera"] == "road"
    assert simulator.samsara.stats()["media_retrievals"] == 1


async def test_a_command_accepted_before_a_crash_is_finished_after_the_restart(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    from bridge.store import JournalEntry, Store

    vehicle = simulator.world.ids()[0]
    config = make_config(mosquitto, simulator, tmp_path)
    # What a crash between "accepted" and "sent to the provider" leaves behind.
    with Store(config.store.path) as store:
        store.journal_accept(
            JournalEntry(
                key="fleet/before-crash",
                command="snapshot",
                account="fleet",
                vehicle=vehicle,
                order_ref=None,
                transaction_id="before-crash",
                body=json.dumps({"account": "fleet", "vehicle": vehicle, "camera": "road"}),
                status="accepted",
                handle=None,
                response=None,
                created_at=0.0,
                updated_at=0.0,
            )
        )
    async with running(config):
        await recorder.wait_for(lambda: len(answers(recorder, "snapshot")) == 1)
    answer = answers(recorder, "snapshot")[0]
    assert answer["transaction"] == "before-crash"
    assert answer["status"] == "ok"
    assert simulator.samsara.stats()["media_retrievals"] == 1
    with Store(config.store.path) as store:
        entry = store.journal_get("fleet/before-crash")
        assert entry is not None
        assert entry.status in ("pending", "confirmed")
