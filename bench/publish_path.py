"""The bridge's publishing path alone: `Publisher.vehicles_changed` to the broker.

    .venv/bin/python bench/publish_path.py [--vehicles 10000] [--profile]

No provider and no subscriber: the `Publisher` and `MqttLink` of the daemon in
this process, a real Mosquitto on loopback. Three rounds: every vehicle new
(state and availability; discovery off), every vehicle changed (one state each),
and nothing changed (the diff alone). Each is timed from the call to the last
acknowledgement from the broker. `--profile` prints a cProfile of the rounds.

The last line is machine-readable:
`vehicles=<n> new_s=<s> changed_s=<s> unchanged_s=<s>`
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleet import broker as fleet_broker

from bridge.config import MqttConfig
from bridge.model import Capability, EngineState, Position, VehicleState
from bridge.mqtt.client import MqttLink
from bridge.mqtt.publisher import Publisher
from bridge.mqtt.topics import Topics


def fleet(count: int, step: int) -> list[VehicleState]:
    at = datetime(2026, 11, 21, 10, 0, tzinfo=UTC) + timedelta(seconds=step)
    return [
        VehicleState(
            vehicle_id=f"2814749767{i:05d}",
            name=f"Truck {i:05d}",
            position=Position(41.8 + i * 1e-5 + step * 1e-4, -87.6, at, heading=120.0),
            speed_kmh=54.7,
            odometer_km=120345.2 + step,
            fuel_percent=63.0,
            engine_state=EngineState.ON,
            ignition=True,
            battery_voltage=14.2,
            engine_hours=3512.4,
            last_seen=at,
            online=True,
            vin="1FUJA6CK14LM94383",
            make="Freightliner",
            model="Cascadia",
            year=2019,
        )
        for i in range(count)
    ]


async def main(vehicles: int, profile: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    broker = fleet_broker(work)
    topics = Topics()
    link = MqttLink(
        MqttConfig(port=broker.port, client_id="bench"), state_topic=topics.bridge_state
    )
    publisher = Publisher(link, topics, discovery=False)
    publisher.register_account("bench", "samsara", frozenset(Capability))
    runner = asyncio.create_task(link.run())
    profiler = cProfile.Profile()
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        rounds = {}
        for name, states in (
            ("new", fleet(vehicles, 0)),
            ("changed", fleet(vehicles, 1)),
            ("unchanged", [replace(s) for s in fleet(vehicles, 1)]),
        ):
            if profile:
                profiler.enable()
            started = time.perf_counter()
            await publisher.vehicles_changed("bench", states)
            rounds[name] = time.perf_counter() - started
            if profile:
                profiler.disable()
            print(f"{name}: {vehicles} vehicles in {rounds[name]:.3f}s")
    finally:
        await link.close()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        broker.stop()
    if profile:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    print(
        f"vehicles={vehicles} new_s={rounds['new']:.3f} changed_s={rounds['changed']:.3f} "
        f"unchanged_s={rounds['unchanged']:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.vehicles, args.profile))
