"""docs/node-red-*.json in a real Node-RED, against a real Mosquitto, the bridge and
the demo's simulator: each works as exported once its broker is set."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.demo import DEMO_METROTEC_KEY
from bridge.simulator.server import SimulatorServer
from tests.nodered.conftest import load_flow
from tests.support.mqtt import Mosquitto

ACCOUNT = "demo-metrotec"  # the demo's own account, as the flow names it


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    # The demo's world (seed 1): the flow's vehicle 001HAQ is in it.
    async with SimulatorServer(vehicles=3, speed=0) as server:
        yield server


@contextlib.asynccontextmanager
async def bridge(
    mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path
) -> AsyncIterator[Bridge]:
    config = BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "nr-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": ACCOUNT,
                    "provider": "metrotec",
                    "api_key": DEMO_METROTEC_KEY,
                    "base_url": simulator.metrotec_url,
                    "poll_interval": 3600,
                    "offline_after": 86400,
                }
            ],
            "commands": {"allow": [{"commands": ["*"]}]},
        }
    )
    running = Bridge(config)
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    async with asyncio.timeout(20):
        await running.started.wait()
    try:
        yield running
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task


async def inject(url: str, node: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/inject/{node}") as resp:
        assert resp.status == 200, await resp.text()


async def test_the_task_flow_creates_the_task_once_and_gets_the_answer(
    node_red: Any, mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path
) -> None:
    flows = load_flow("node-red-task-flow.json", mosquitto.host, mosquitto.port)
    inject_node = next(n for n in flows if n["type"] == "inject")
    order_ref = "ORDER-2026-0042"
    assert order_ref in inject_node["payload"]
    async with bridge(mosquitto, simulator, tmp_path) as running:
        await running.pollers[ACCOUNT].wait_polls(1)
        red, debug = await node_red(flows)
        await red.wait_log("Connected to broker")
        await inject(red.url, inject_node["id"])
        await debug.wait_for(lambda: len(debug.of("task created")) == 1)
        answer = debug.of("task created")[0]
        assert answer["status"] == "ok", answer
        assert answer["transaction"] == f"nr-{order_ref}"
        assert debug.of("refused (field: reason)") == []
        # Clicked again: the same order_ref, answered again, still one task.
        await inject(red.url, inject_node["id"])
        await debug.wait_for(lambda: len(debug.of("task created")) == 2)
    tasks = [t for t in simulator.metrotec.tasks if t.order_ref == order_ref]
    assert len(tasks) == 1
    assert tasks[0].object_id == "001HAQ"


async def test_the_depot_flow_shows_every_vehicle(
    node_red: Any, mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path
) -> None:
    flows = load_flow("node-red-depot-flow.json", mosquitto.host, mosquitto.port)
    ids = simulator.metrotec_world.ids()
    async with bridge(mosquitto, simulator, tmp_path) as running:
        await running.pollers[ACCOUNT].wait_polls(1)
        _red, debug = await node_red(flows)

        def table() -> list[dict[str, Any]]:
            shown = debug.of("depot table")
            return shown[-1] if shown else []

        await debug.wait_for(lambda: len(table()) == len(ids))
        rows = {row["vehicle"]: row for row in table()}
        assert set(rows) == set(ids)
        for vid, row in rows.items():
            truth = simulator.metrotec_world.vehicle(vid)
            assert row["account"] == ACCOUNT
            assert row["name"] == truth.identity.name
            assert row["latitude"] is not None
            assert "alert" in row
