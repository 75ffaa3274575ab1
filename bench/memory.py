"""The bridge's resident memory at 1,000 and 10,000 vehicles, and per vehicle.

    .venv/bin/python bench/memory.py [--sizes 1000 10000]

For each size, the fleet, broker, bridge process and subscriber of
`throughput.py` (see `fleet.py`) with the daemon's defaults (discovery on, per
entity, paced). The bridge's VmRSS (from /proc) is read once every vehicle's
state was delivered, after a full update (every vehicle moved and was published
again, one account after the other) and after a Home Assistant restart
(`online` on `homeassistant/status`: the whole discovery queued again) with
`--drain` seconds of it sent. The figure is the largest of the three.

The last line is machine-readable:
`rss_1000_mb=<m> rss_10000_mb=<m> per_vehicle_kb=<k>`
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from fleet import (
    SHARES,
    Subscriber,
    broker,
    config_yaml,
    is_vehicle_state,
    machine,
    refresh,
    rss_mb,
    simulator,
    start_bridge,
    stop_bridge,
    write_config,
)


async def measure(vehicles: int, drain: float) -> float:
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    mosquitto = broker(work)
    sub = Subscriber("127.0.0.1", mosquitto.port)
    sub.start()
    try:
        async with simulator(vehicles) as sim:
            config = write_config(
                work / "config.yaml", config_yaml(sim, mosquitto, work / "store.sqlite")
            )
            bridge = start_bridge(config)
            try:
                await sub.wait(
                    lambda arrivals: (
                        len({a.topic for a in arrivals if is_vehicle_state(a.topic)}) >= vehicles
                    ),
                    300,
                )
                first = rss_mb(bridge.pid)
                for account in SHARES:
                    moved = set(sim.nudge(account, 1.0, 1))
                    mark = sub.mark()
                    await refresh(sub, account)
                    await sub.wait(
                        lambda _, moved=moved, mark=mark, account=account: (
                            {f"fleet/{account}/{v}" for v in moved}
                            <= {a.topic for a in sub.since(mark)}
                        ),
                        120,
                    )
                updated = rss_mb(bridge.pid)
                sub.publish("homeassistant/status", "online")
                await asyncio.sleep(drain)
                restarted = rss_mb(bridge.pid)
            finally:
                stop_bridge(bridge)
    finally:
        sub.stop()
        mosquitto.stop()
    print(
        f"{vehicles} vehicles: {first:.1f} MB after the first publish, {updated:.1f} MB after "
        f"a full update, {restarted:.1f} MB during a Home Assistant restart's republish"
    )
    return max(first, updated, restarted)


async def main(sizes: list[int], drain: float) -> None:
    print(f"machine: {machine()}")
    figures = {size: await measure(size, drain) for size in sizes}
    small, large = min(sizes), max(sizes)
    per_vehicle = (figures[large] - figures[small]) / (large - small) * 1024
    print(f"per vehicle: {per_vehicle:.1f} KB ({small} to {large} vehicles)")
    print(
        " ".join(f"rss_{n}_mb={m:.1f}" for n, m in figures.items())
        + f" per_vehicle_kb={per_vehicle:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--drain", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.drain))
