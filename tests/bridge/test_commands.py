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
        await store.journal_accept(
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
        entry = await store.journal_get("fleet/before-crash")
        assert entry is not None
        assert entry.status in ("pending", "confirmed")


@pytest.fixture
async def metrotec_sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=1, metrotec_vehicles=3, speed=0, seed=4) as server:
        yield server


def metrotec_config(
    mosquitto: Mosquitto,
    simulator: SimulatorServer,
    tmp_path: Path,
    quota: dict[str, Any] | None = None,
) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "mt-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": "tallinn",
                    "provider": "metrotec",
                    "api_key": "demo-metrotec-key",
                    "base_url": simulator.metrotec_url,
                    "poll_interval": 3600,
                    "quota": quota or {},
                }
            ],
            "commands": {
                "allow": [
                    {"accounts": ["tallinn"], "commands": ["lights", "task/create", "task/update"]}
                ],
                "lights_timeout": 60,
            },
        }
    )


async def test_lights_stay_pending_until_the_device_has_switched_them(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    lights_topic = f"fleet/tallinn/{vehicle}/lights"

    def lights() -> dict[str, Any]:
        data: dict[str, Any] = json.loads(recorder.retained.get(lights_topic, b"{}"))
        return data

    def lights_on() -> bool | None:
        state: dict[str, Any] = json.loads(recorder.retained.get(f"fleet/tallinn/{vehicle}", b"{}"))
        return state.get("lights_on")

    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        # What Home Assistant's switch sends when turned on.
        await publish(mosquitto, f"fleet/tallinn/{vehicle}/set", b'{"lights": "ON"}')
        await recorder.wait_for(lambda: lights().get("status") == "pending")
        assert lights()["requested"] == "ON"
        assert lights_on() is not True
        assert metrotec_sim.metrotec.stats()["events"]["pending"] == 1
        # The device executes the event: Metrotec marks it handled.
        metrotec_sim.clock.advance(30)
        await recorder.wait_for(
            lambda: lights().get("status") == "confirmed" and lights_on() is True
        )
    assert metrotec_sim.metrotec.stats()["events"]["created"] == 1


async def test_a_task_with_a_known_order_ref_is_created_once(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[1]
    task = {
        "account": "tallinn",
        "vehicle": vehicle,
        "order_ref": "ORDER-2026-0042",
        "latitude": 59.437,
        "longitude": 24.7536,
        "start_time": "2026-11-23T08:00:00Z",
        "stop_time": "2026-11-23T10:00:00Z",
        "description": "Pallets for the harbour",
    }
    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        # Two different transactions, one order: the order_ref is the key.
        for transaction in ("n-1", "n-2"):
            payload = json.dumps({**task, "transaction": transaction}).encode()
            await publish(mosquitto, "fleet/bridge/request/task/create", payload)
        await recorder.wait_for(lambda: len(answers(recorder, "task/create")) == 2)
        first, second = answers(recorder, "task/create")
        assert first["status"] == "ok", first
        assert first["data"]["order_ref"] == "ORDER-2026-0042"
        assert second["data"] == first["data"]
        update = {
            "transaction": "u-1",
            "account": "tallinn",
            "order_ref": "ORDER-2026-0042",
            "status": "cancelled",
        }
        await publish(mosquitto, "fleet/bridge/request/task/update", json.dumps(update).encode())
        await recorder.wait_for(lambda: len(answers(recorder, "task/update")) == 1)
        assert answers(recorder, "task/update")[0]["status"] == "ok"
    stats = metrotec_sim.metrotec.stats()["tasks"]
    assert stats["created"] == 1
    assert stats["duplicate_order_refs"] == 0


async def test_a_command_does_not_wait_for_a_slow_poll(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        # Every Metrotec answer now takes 0.5 s: a poll (three calls) takes 1.5 s.
        metrotec_sim.metrotec.latency = 0.5
        await publish(mosquitto, "fleet/bridge/request/refresh", b'{"transaction": "poll"}')
        lights = {"transaction": "l", "account": "tallinn", "vehicle": vehicle, "state": "ON"}
        await publish(mosquitto, "fleet/bridge/request/lights", json.dumps(lights).encode())
        await recorder.wait_for(
            lambda: answers(recorder, "refresh") and answers(recorder, "lights"), timeout=30
        )
        order = [
            m.topic
            for m in recorder.messages
            if m.topic in ("fleet/bridge/response/refresh", "fleet/bridge/response/lights")
        ]
        assert order == ["fleet/bridge/response/lights", "fleet/bridge/response/refresh"]
        assert answers(recorder, "lights")[0]["status"] == "ok"
        assert answers(recorder, "refresh")[0]["status"] == "ok"


async def test_a_command_past_the_budget_is_answered_with_when_it_frees_up(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    # The first poll spends 6 calls (vehicle list, geozones, positions, fuel, tasks,
    # alarm log): one left, and no reserve.
    quota = {"reserve": 0, "budgets": {"per_account": {"limit": 7, "period": 3600}}}
    config = metrotec_config(mosquitto, metrotec_sim, tmp_path, quota)
    async with running(config) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        for transaction in ("q-1", "q-2"):
            body = {
                "transaction": transaction,
                "account": "tallinn",
                "vehicle": vehicle,
                "state": "ON",
            }
            await publish(mosquitto, "fleet/bridge/request/lights", json.dumps(body).encode())
            await recorder.wait_for(
                lambda t=transaction: any(
                    a["transaction"] == t for a in answers(recorder, "lights")
                )
            )
    first, second = answers(recorder, "lights")
    assert first["status"] == "ok"
    assert second["status"] == "error"
    assert second["error"].startswith("not sent: per_account")
    assert second["data"]["available_at"].endswith("Z")
    assert metrotec_sim.metrotec.stats()["events"]["created"] == 1
