"""Command round trip: MQTT publish to MQTT response, and duplicates reaching the provider.

    .venv/bin/python bench/commands.py [--commands 1000]

A real Mosquitto on a free port, the Metrotec simulator, the bridge in-process. A
client sends `fleet/bridge/request/lights` commands one after another, each
published twice with the same transaction (a client retry), and times publish to
first response. The simulator's own latency for the same call (creating a light
event over HTTP, measured directly) is subtracted. Duplicates are light events the
simulator created beyond one per transaction: the target is 0.

The last line is machine-readable: `p50_ms=<x> p99_ms=<y> duplicates=<n>`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.app import Bridge  # noqa: E402
from bridge.config import BridgeConfig  # noqa: E402
from bridge.providers.http import USER_AGENT  # noqa: E402
from bridge.providers.metrotec import API_VERSION  # noqa: E402
from bridge.simulator.server import SimulatorServer  # noqa: E402
from tests.support.mqtt import Mosquitto  # noqa: E402


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def simulator_latency(sim: SimulatorServer, vehicle: str, samples: int) -> list[float]:
    """The simulator's own time for the call a light command makes."""
    headers = {
        "Authorization": "Bearer demo-metrotec-key",
        "Accept": f"application/json; version={API_VERSION}",
        "User-Agent": USER_AGENT,
    }
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            started = time.perf_counter()
            async with session.post(
                f"{sim.metrotec_url}/objects/events/",
                json={"object_id": vehicle, "eventType": 4, "description": "ON"},
                headers=headers,
            ) as response:
                await response.read()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def main(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-commands-"))
    broker = Mosquitto(work)  # set_tcp_nodelay true, as docs/commands.md recommends
    broker.start()
    try:
        async with SimulatorServer(vehicles=1, metrotec_vehicles=5, speed=0, seed=2) as sim:
            vehicle = sim.metrotec_world.ids()[0]
            config = BridgeConfig.model_validate(
                {
                    "mqtt": {"host": "127.0.0.1", "port": broker.port, "client_id": "bench"},
                    "store": {"path": str(work / "store.sqlite")},
                    "log_level": "warning",
                    "accounts": [
                        {
                            "id": "bench",
                            "provider": "metrotec",
                            "api_key": "demo-metrotec-key",
                            "base_url": sim.metrotec_url,
                            "poll_interval": 3600,
                            # The benchmark measures the bridge, not the default
                            # 60-a-minute budget chosen for an unpublished limit.
                            "quota": {"budgets": {"per_account": {"limit": 100_000}}},
                        }
                    ],
                    "commands": {"allow": [{"accounts": ["bench"], "commands": ["lights"]}]},
                }
            )
            bridge = Bridge(config)
            stop = asyncio.Event()
            runner = asyncio.create_task(bridge.run(stop))
            await asyncio.wait_for(bridge.started.wait(), 10)
            await bridge.pollers["bench"].wait_polls(1)
            await asyncio.wait_for(bridge.link.announced.wait(), 10)

            async with aiomqtt.Client(
                "127.0.0.1",
                broker.port,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            ) as client:
                await client.subscribe("fleet/bridge/response/lights", qos=1)
                answers: dict[str, asyncio.Future[dict[str, Any]]] = {}

                async def consume() -> None:
                    async for message in client.messages:
                        data = json.loads(message.payload)  # type: ignore[arg-type]
                        future = answers.get(data.get("transaction"))
                        if future is not None and not future.done():
                            future.set_result(data)

                consumer = asyncio.create_task(consume())
                round_trips = []
                events_before = sim.metrotec.stats()["events"]["created"]
                for i in range(count):
                    transaction = f"bench-{i}"
                    answers[transaction] = asyncio.get_running_loop().create_future()
                    state = "ON" if i % 2 else "OFF"
                    payload = json.dumps(
                        {
                            "transaction": transaction,
                            "account": "bench",
                            "vehicle": vehicle,
                            "state": state,
                        }
                    )
                    started = time.perf_counter()
                    await client.publish("fleet/bridge/request/lights", payload, qos=1)
                    # The retry: same transaction, must not reach the provider again.
                    await client.publish("fleet/bridge/request/lights", payload, qos=1)
                    answer = await asyncio.wait_for(answers[transaction], 30)
                    round_trips.append((time.perf_counter() - started) * 1000)
                    if answer["status"] != "ok":
                        raise SystemExit(f"command {i} failed: {answer}")
                created = sim.metrotec.stats()["events"]["created"] - events_before
                consumer.cancel()
            stop.set()
            await runner

            sim_ms = await simulator_latency(sim, vehicle, 200)
            sim_p50 = statistics.median(sim_ms)
            p50 = percentile(round_trips, 0.50) - sim_p50
            p99 = percentile(round_trips, 0.99) - sim_p50
            duplicates = created - count
            print(f"commands: {count}, each published twice with one transaction")
            print(
                f"round trip publish->response: p50 {percentile(round_trips, 0.5):.2f} ms, "
                f"p99 {percentile(round_trips, 0.99):.2f} ms"
            )
            print(f"simulator's own latency (create light event): p50 {sim_p50:.2f} ms")
            print(f"light events created at the provider: {created}")
            print(f"p50_ms={p50:.2f} p99_ms={p99:.2f} duplicates={duplicates}")
    finally:
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.commands))
