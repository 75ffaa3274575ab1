"""FLEETIZE and Telemax through the whole bridge: quota on MQTT, refresh, blocked tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.config import BridgeConfig
from bridge.mqtt.discovery import device_identifier
from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import running
from tests.support.mqtt import Mosquitto, Recorder


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=2, fleetize_vehicles=4, telemax_vehicles=3, speed=0, seed=5
    ) as server:
        yield server


def config(
    mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path, *accounts: dict[str, Any]
) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "quota-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": list(accounts),
        }
    )


def fleetize(simulator: SimulatorServer) -> dict[str, Any]:
    return {
        "id": "depot",
        "provider": "fleetize",
        "token": "demo-fleetize-token",
        "base_url": simulator.fleetize_url,
        "offline_after": 86400,
    }


def telemax(simulator: SimulatorServer) -> dict[str, Any]:
    return {
        "id": "au",
        "provider": "telemax",
        "api_key": "demo-telemax-key",
        "base_url": simulator.telemax_url,
        "poll_interval": 3600,
        "offline_after": 86400,
    }


def json_of(recorder: Recorder, topic: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(recorder.retained.get(topic, b"{}"))
    return data


async def request(mosquitto: Mosquitto, command: str, payload: bytes) -> None:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish(f"fleet/bridge/request/{command}", payload, qos=1)


def responses(recorder: Recorder, command: str) -> list[dict[str, Any]]:
    return [
        json.loads(m.payload)
        for m in recorder.messages
        if m.topic == f"fleet/bridge/response/{command}"
    ]


async def test_fleetize_fleet_quota_and_a_refresh_that_would_break_the_spacing(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = simulator.fleetize_world.ids()
    async with running(config(mosquitto, simulator, tmp_path, fleetize(simulator))):
        await recorder.wait_for(
            lambda: (
                all(f"fleet/depot/{v}" in recorder.retained for v in ids)
                and json_of(recorder, "fleet/depot/quota").get("calls_left_today") == 89
            )
        )
        state = json_of(recorder, f"fleet/depot/{ids[0]}")
        assert state["problem"] in {
            "none",
            "replugged",
            "unplugged",
            "no_signal",
            "no_gps",
            "bad_gps",
        }
        assert state["status"] in {"driving", "stopped", "parked"}
        node = device_identifier("depot", ids[0])
        assert f"homeassistant/binary_sensor/{node}/fault/config" in recorder.retained
        assert f"homeassistant/sensor/{node}/engine_temperature/config" in recorder.retained
        quota = json_of(recorder, "fleet/depot/quota")
        assert quota["budgets"]["daily"]["used"] == 1
        assert quota["budgets"]["daily"]["limit"] == 100
        assert quota["next_poll"] is not None

        # A refresh now would be a second call within 60 s: answered, not sent.
        await request(mosquitto, "refresh", b'{"transaction": "t-1", "account": "depot"}')
        await recorder.wait_for(lambda: len(responses(recorder, "refresh")) == 1)
        answer = responses(recorder, "refresh")[0]
        assert answer["status"] == "error"
        assert answer["transaction"] == "t-1"
        assert "spacing" in answer["error"]
        assert answer["data"]["budget"].startswith("spacing")
        assert answer["data"]["available_at"].endswith("Z")
    assert simulator.fleetize.stats()["violations"] == 0
    assert simulator.fleetize.stats()["calls_today"] == 1


async def test_bad_refresh_requests_get_named_errors(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    cfg = config(mosquitto, simulator, tmp_path, fleetize(simulator), telemax(simulator))
    async with running(cfg) as bridge:
        await bridge.pollers["au"].wait_polls(1)
        cases = [
            (b"{not json", "payload: not valid JSON"),
            (b"\xff\xfe", "payload: not UTF-8 text"),
            (b"[1, 2]", "payload: must be a JSON object"),
            (b'{"transaction": "t", "account": "nope"}', "account: unknown account 'nope'"),
            (b'{"transaction": "t"}', "account: field required"),
            (b'{"account": "au", "colour": "red"}', "colour: unknown field"),
            (b"x" * (1024 * 1024), "payload: too large"),
        ]
        for payload, _ in cases:
            await request(mosquitto, "refresh", payload)
        await recorder.wait_for(lambda: len(responses(recorder, "refresh")) == len(cases))
        errors = [r["error"] for r in responses(recorder, "refresh")]
        for (_, expected), error in zip(cases, errors, strict=True):
            assert error.startswith(expected), error
        assert all(r["status"] == "error" for r in responses(recorder, "refresh"))

        # A good one still works afterwards, with the reserve if need be.
        await request(mosquitto, "refresh", b'{"transaction": 7, "account": "au"}')
        await recorder.wait_for(lambda: len(responses(recorder, "refresh")) == len(cases) + 1)
        good = responses(recorder, "refresh")[-1]
        assert good["status"] == "ok", good
        assert good["transaction"] == "7"
        assert good["data"]["vehicles"] == 3


async def test_a_blocked_fleetize_token_stops_that_account_and_says_what_to_do(
    mosquitto: Mosquitto,
    recorder: Recorder,
    simulator: SimulatorServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    simulator.fleetize.quota.blocked.add("demo-fleetize-token")
    telemax_ids = simulator.telemax_world.ids()
    cfg = config(mosquitto, simulator, tmp_path, fleetize(simulator), telemax(simulator))

    def status(account: str) -> dict[str, Any]:
        return json_of(recorder, "fleet/bridge/info").get("accounts", {}).get(account, {})

    async with running(cfg):
        await recorder.wait_for(
            lambda: (
                status("depot").get("status") == "stopped"
                and status("au").get("status") == "ok"
                and all(f"fleet/au/{v}" in recorder.retained for v in telemax_ids)
            )
        )
        assert "FLEETIZE support" in status("depot")["error"]
        await recorder.wait_for(
            lambda: (
                json_of(recorder, "fleet/depot/quota").get("available") is False
                and json_of(recorder, "fleet/au/quota").get("available") is True
            )
        )
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "depot" in errors[0]
    assert "support" in errors[0]
    # Exactly one call reached FLEETIZE: a blocked token is never tried again.
    assert simulator.fleetize.stats()["errors"] == {"1002": 1}


async def test_telemax_fleet_with_risk_scores_and_a_token_reused_after_restart(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = simulator.telemax_world.ids()
    cfg = config(mosquitto, simulator, tmp_path, telemax(simulator))
    async with running(cfg) as bridge:
        await bridge.pollers["au"].wait_polls(1)
        await recorder.wait_for(
            lambda: (
                all(f"fleet/au/{v}" in recorder.retained for v in ids)
                and "budgets" in json_of(recorder, "fleet/au/quota")
            )
        )
        state = json_of(recorder, f"fleet/au/{ids[0]}")
        assert state["fuel_percent"] is None or 0 <= state["fuel_percent"] <= 100
        assert state["reported_online"] in (True, False)
        node = device_identifier("au", ids[0])
        assert f"homeassistant/sensor/{node}/risk_score/config" in recorder.retained
        assert f"homeassistant/sensor/{node}/fuel_volume/config" in recorder.retained
        quota = json_of(recorder, "fleet/au/quota")
        assert quota["budgets"]["safety_score"]["used"] == 3  # one per vehicle
        assert quota["calls_left_today"] is None  # Telemax has no daily budget
    assert simulator.telemax.stats()["tokens_issued"] == 1
    async with running(cfg) as bridge:
        await bridge.pollers["au"].wait_polls(1)
        simulator.telemax.expire_tokens()
        bridge.pollers["au"].request_poll()
        await bridge.pollers["au"].wait_polls(2)
        assert bridge.pollers["au"].health.status.value == "ok"
    # No token is kept at rest: the restart logged in again (2); the expired
    # token was refused once (401), and a third login carried on.
    assert simulator.telemax.stats()["tokens_issued"] == 3
