"""The bridge in-process against the Samsara simulator and a real Mosquitto.

What a Home Assistant or Node-RED user sees on the broker: discovery and state for
every vehicle, changes after vehicles move, silence for vehicles that did not
change, discovery again when Home Assistant restarts, and everything back after
the broker restarts with its retained messages wiped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.model import utc_now
from bridge.mqtt.discovery import descriptions_for, device_identifier
from bridge.providers.samsara import SamsaraProvider
from bridge.simulator.server import SimulatorServer
from tests.support.mqtt import Mosquitto, Recorder, record

ACCOUNT = "sim"
VEHICLES = 12
SAMSARA_KEYS = {d.key for d in descriptions_for(SamsaraProvider.capabilities)}


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    # speed=0: the simulated clock only moves when a test advances it.
    async with SimulatorServer(vehicles=VEHICLES, speed=0, seed=7) as server:
        yield server


def make_config(mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "bridge-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": ACCOUNT,
                    "provider": "samsara",
                    "token": "demo-samsara-token",
                    "base_url": simulator.samsara_url,
                    # Polls happen when the test asks for them, not on a timer.
                    "poll_interval": 3600,
                    "offline_after": 86400,
                }
            ],
        }
    )


@contextlib.asynccontextmanager
async def running(
    config: BridgeConfig, now: Callable[[], datetime] = utc_now
) -> AsyncIterator[Bridge]:
    bridge = Bridge(config, now=now)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    async with asyncio.timeout(10):
        await bridge.started.wait()
    try:
        yield bridge
    finally:
        stop.set()
        async with asyncio.timeout(15):
            await task


def state_topic(vehicle_id: str) -> str:
    return f"fleet/{ACCOUNT}/{vehicle_id}"


def discovery_topics(vehicle_id: str) -> set[str]:
    node = device_identifier(ACCOUNT, vehicle_id)
    return {
        f"homeassistant/{d.component}/{node}/{d.key}/config"
        for d in descriptions_for(SamsaraProvider.capabilities)
    }


def vehicle_ids(simulator: SimulatorServer) -> list[str]:
    return simulator.world.ids()


def state_of(recorder: Recorder, vehicle_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(recorder.retained[state_topic(vehicle_id)])
    return data


async def settle(recorder: Recorder, mosquitto: Mosquitto, bridge: Bridge) -> None:
    """Wait until everything the bridge published so far has reached the recorder.

    The bridge's publishes are acknowledged by the broker before a poll ends (and
    before its republish after connecting counts as done); a sentinel published
    after that reaches the recorder after them."""
    async with asyncio.timeout(15):
        await bridge.link.announced.wait()
    # Discovery is paced in the background: what is due has gone out too.
    await bridge.publisher.discovery_settled(15)
    mark = recorder.mark()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish("fleet/test/sentinel", b"x", qos=1)
    await recorder.wait_for(
        lambda: any(m.topic == "fleet/test/sentinel" for m in recorder.since(mark))
    )


async def test_every_vehicle_appears_with_discovery_and_its_state(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = vehicle_ids(simulator)
    async with running(make_config(mosquitto, simulator, tmp_path)) as bridge:
        await bridge.pollers[ACCOUNT].wait_polls(1)
        await recorder.wait_for(
            lambda: all(
                state_topic(v) in recorder.retained
                and discovery_topics(v) <= recorder.retained.keys()
                for v in ids
            )
        )
        assert recorder.retained["fleet/bridge/state"] == b"online"
        for vid in ids:
            truth = simulator.world.truth(vid)
            state = state_of(recorder, vid)
            assert state["name"] == truth.name
            assert state["vin"] == truth.vin
            assert state["latitude"] == pytest.approx(truth.latitude, abs=1e-6)
            assert state["longitude"] == pytest.approx(truth.longitude, abs=1e-6)
            # The simulator speaks mph, the bridge km/h.
            assert state["speed_kmh"] == pytest.approx(truth.speed_mph * 1.609344, abs=0.06)
            assert state["online"] is True
            assert recorder.retained[f"{state_topic(vid)}/availability"] == b"online"
            node = device_identifier(ACCOUNT, vid)
            tracker = json.loads(
                recorder.retained[f"homeassistant/device_tracker/{node}/location/config"]
            )
            assert tracker["device"]["name"] == truth.name
            assert tracker["json_attributes_topic"] == state_topic(vid)

        def info() -> dict[str, Any]:
            data: dict[str, Any] = json.loads(recorder.retained.get("fleet/bridge/info", b"{}"))
            return data.get("accounts", {}).get(ACCOUNT, {})

        await recorder.wait_for(lambda: info().get("status") == "ok")
        assert info()["vehicles"] == VEHICLES
        assert info()["provider"] == "samsara"


async def test_moves_are_published_and_unchanged_vehicles_cost_nothing(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = vehicle_ids(simulator)
    async with running(make_config(mosquitto, simulator, tmp_path)) as bridge:
        poller = bridge.pollers[ACCOUNT]
        await poller.wait_polls(1)
        await recorder.wait_for(lambda: all(state_topic(v) in recorder.retained for v in ids))
        await settle(recorder, mosquitto, bridge)

        # Nothing happened at the provider: a poll publishes nothing at all.
        mark = recorder.mark()
        poller.request_poll()
        await poller.wait_polls(2)
        await settle(recorder, mosquitto, bridge)
        # (The account's quota topic counts the calls the poll made.)
        quiet = {"fleet/test/sentinel", f"fleet/{ACCOUNT}/quota"}
        assert [m.topic for m in recorder.since(mark) if m.topic not in quiet] == []

        # Ten simulated minutes later, the vehicles that drove have new states.
        before = {vid: state_of(recorder, vid) for vid in ids}
        simulator.clock.advance(600)
        mark = recorder.mark()
        poller.request_poll()
        await poller.wait_polls(3)
        await settle(recorder, mosquitto, bridge)
        changed = {m.topic for m in recorder.since(mark, f"fleet/{ACCOUNT}/")} - quiet
        truth_changed = {
            vid
            for vid in ids
            if simulator.world.truth(vid).latitude != before[vid]["latitude"]
            or simulator.world.truth(vid).speed_mph * 1.609344
            != pytest.approx(before[vid]["speed_kmh"], abs=0.06)
        }
        assert truth_changed, "the simulator should have moved some vehicles in 10 minutes"
        assert {state_topic(v) for v in truth_changed} <= changed
        for vid in truth_changed:
            truth = simulator.world.truth(vid)
            assert state_of(recorder, vid)["latitude"] == pytest.approx(truth.latitude, abs=1e-6)
        # Every message is one vehicle state (or a safety event that happened on the
        # way): no discovery or availability repeats.
        assert [t for t in changed if t.count("/") != 2 and not t.endswith("/alert")] == []


async def test_home_assistant_restart_gets_discovery_again(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = vehicle_ids(simulator)
    expected = set().union(*(discovery_topics(v) for v in ids))
    async with running(make_config(mosquitto, simulator, tmp_path)) as bridge:
        await bridge.pollers[ACCOUNT].wait_polls(1)
        await recorder.wait_for(lambda: expected <= recorder.retained.keys())
        mark = recorder.mark()
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as ha:
            await ha.publish("homeassistant/status", b"online", qos=1)
        await recorder.wait_for(
            lambda: expected <= {m.topic for m in recorder.since(mark, "homeassistant/")}
        )


async def test_bridge_recovers_after_the_broker_restarts_empty(
    mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = vehicle_ids(simulator)
    expected = {state_topic(v) for v in ids} | set().union(*(discovery_topics(v) for v in ids))
    async with running(make_config(mosquitto, simulator, tmp_path)) as bridge:
        async with record(mosquitto.host, mosquitto.port) as before:
            await before.wait_for(lambda: expected <= before.retained.keys())
        # Mosquitto runs without persistence: a restart wipes every retained message.
        mosquitto.stop()
        mosquitto.start()
        async with record(mosquitto.host, mosquitto.port) as after:
            await after.wait_for(
                lambda: (
                    expected <= after.retained.keys()
                    and after.retained.get("fleet/bridge/state") == b"online"
                ),
                timeout=30,
            )
        assert bridge.link.connections >= 2


async def test_clean_stop_says_offline_and_a_restart_resumes_from_the_store(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = make_config(mosquitto, simulator, tmp_path)
    ids = vehicle_ids(simulator)
    async with running(config) as bridge:
        await bridge.pollers[ACCOUNT].wait_polls(1)
        await recorder.wait_for(lambda: all(state_topic(v) in recorder.retained for v in ids))
    await recorder.wait_for(lambda: recorder.retained.get("fleet/bridge/state") == b"offline")

    # The restarted bridge sends its saved cursors: once they are refused (as
    # Samsara does after 30 days) it starts over from a fresh snapshot.
    simulator.samsara.expire_cursors()
    refused_before = simulator.samsara.counters.by_status[400]
    async with running(config) as bridge:
        poller = bridge.pollers[ACCOUNT]
        assert poller.health.vehicles == VEHICLES  # restored before any poll
        await poller.wait_polls(1)
        assert poller.health.status.value == "ok"
    assert simulator.samsara.counters.by_status[400] - refused_before == 3  # one per feed group


async def test_last_known_states_are_shown_after_a_restart_during_an_outage(
    mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = make_config(mosquitto, simulator, tmp_path)
    ids = vehicle_ids(simulator)
    async with running(config) as bridge:
        await bridge.pollers[ACCOUNT].wait_polls(1)
    # The broker forgets everything and the provider is down when the bridge returns.
    mosquitto.stop()
    mosquitto.start()
    simulator.samsara.fail_next(1000, status=503)
    async with running(config) as bridge, record(mosquitto.host, mosquitto.port) as rec:
        await rec.wait_for(lambda: all(state_topic(v) in rec.retained for v in ids))
        await bridge.pollers[ACCOUNT].wait_polls(1, timeout=60)
        assert bridge.pollers[ACCOUNT].health.status.value == "degraded"
        assert state_of(rec, ids[0])["name"] == simulator.world.truth(ids[0]).name


async def test_a_vehicle_removed_at_the_provider_loses_its_discovery(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = vehicle_ids(simulator)
    gone = ids[0]
    async with running(make_config(mosquitto, simulator, tmp_path)) as bridge:
        poller = bridge.pollers[ACCOUNT]
        await poller.wait_polls(1)
        await recorder.wait_for(lambda: discovery_topics(gone) <= recorder.retained.keys())
        simulator.world.remove_vehicle(gone)
        poller.request_poll(refresh_vehicles=True)
        await recorder.wait_for(
            lambda: (
                not (discovery_topics(gone) & recorder.retained.keys())
                and state_topic(gone) not in recorder.retained
            )
        )
        assert all(state_topic(v) in recorder.retained for v in ids[1:])


async def test_a_vehicle_that_stops_reporting_turns_offline(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    ids = vehicle_ids(simulator)
    clock = {"now": utc_now()}
    async with running(
        make_config(mosquitto, simulator, tmp_path), now=lambda: clock["now"]
    ) as bridge:
        poller = bridge.pollers[ACCOUNT]
        await poller.wait_polls(1)
        await recorder.wait_for(lambda: all(state_topic(v) in recorder.retained for v in ids))
        assert all(state_of(recorder, v)["online"] is True for v in ids)
        # A day and a bit later by the bridge's clock, with no report from anyone.
        clock["now"] += timedelta(seconds=86400 + 3600)
        poller.request_poll()
        await poller.wait_polls(2)
        await recorder.wait_for(lambda: all(state_of(recorder, v)["online"] is False for v in ids))


async def test_a_refused_token_stops_only_its_own_account(
    mosquitto: Mosquitto,
    recorder: Recorder,
    simulator: SimulatorServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(mosquitto, simulator, tmp_path)
    good = config.accounts[0]
    bad = good.model_copy(update={"id": "revoked"})
    object.__setattr__(bad, "token", type(good.token)("revoked-secret-token"))
    config = config.model_copy(update={"accounts": [bad, good]})
    ids = vehicle_ids(simulator)

    def info(account: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(recorder.retained.get("fleet/bridge/info", b"{}"))
        return data.get("accounts", {}).get(account, {})

    async with running(config) as bridge:
        await recorder.wait_for(
            lambda: (
                info("revoked").get("status") == "stopped"
                and info(ACCOUNT).get("status") == "ok"
                and all(state_topic(v) in recorder.retained for v in ids)
            )
        )
        assert bridge.pollers["revoked"].health.status.value == "stopped"
        assert "401" in info("revoked")["error"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "revoked" in errors[0].getMessage()
    assert "check its credentials" in errors[0].getMessage()
    assert "revoked-secret-token" not in caplog.text
    assert b"revoked-secret-token" not in b"".join(m.payload for m in recorder.messages)
