"""Startup with a warm store: process start to every vehicle's state delivered.

    .venv/bin/python bench/startup.py [--vehicles 10000]

The fleet, broker, bridge process and subscriber of `throughput.py` (see
`fleet.py`) with the daemon's defaults (discovery on, per entity, paced). A first
run fills the store (the simulator's clock is frozen, so it stays current) and
stops cleanly. The broker is restarted, which wipes every retained message
(Mosquitto runs without persistence here), so every state the subscriber gets
comes from the new process. Then the bridge starts again on the warm store and
is timed from process start to its first state message and to the last of the
vehicles' states (the store's, sent on connect before any poll has finished).

The last line is machine-readable:
`vehicles=<n> first_state_s=<s> startup_s=<s> cold_start_s=<s>`
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from fleet import (
    Subscriber,
    broker,
    config_yaml,
    is_vehicle_state,
    machine,
    simulator,
    start_bridge,
    stop_bridge,
    write_config,
)


async def run_until_published(config: Path, sub: Subscriber, vehicles: int) -> tuple[float, float]:
    """Seconds from process start to the first and to the last vehicle state."""
    mark = sub.mark()
    started = time.monotonic()
    bridge = start_bridge(config)
    try:

        def published(_: object) -> bool:
            return len({a.topic for a in sub.since(mark) if is_vehicle_state(a.topic)}) >= vehicles

        await sub.wait(published, 300)
        states = [a for a in sub.since(mark) if is_vehicle_state(a.topic)]
        seen: set[str] = set()
        last = 0.0
        for arrival in states:
            if arrival.topic not in seen:
                seen.add(arrival.topic)
                last = arrival.at
        # The poll finishes and the store is written before a clean stop.
        await asyncio.sleep(3)
    finally:
        stop_bridge(bridge)
    return states[0].at - started, last - started


async def main(vehicles: int) -> None:
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    mosquitto = broker(work)
    try:
        async with simulator(vehicles) as sim:
            config = write_config(
                work / "config.yaml", config_yaml(sim, mosquitto, work / "store.sqlite")
            )
            sub = Subscriber("127.0.0.1", mosquitto.port)
            sub.start()
            try:
                _, cold = await run_until_published(config, sub, vehicles)
            finally:
                sub.stop()
            print(f"cold start (empty store): every state {cold:.2f}s after process start")
            mosquitto.stop()
            mosquitto.start()  # no retained message left
            sub = Subscriber("127.0.0.1", mosquitto.port)
            sub.start()
            try:
                first, last = await run_until_published(config, sub, vehicles)
            finally:
                sub.stop()
            print(
                f"warm store: first state {first:.2f}s, every state {last:.2f}s after process start"
            )
    finally:
        mosquitto.stop()
    print(
        f"vehicles={vehicles} first_state_s={first:.2f} startup_s={last:.2f} "
        f"cold_start_s={cold:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.vehicles))
