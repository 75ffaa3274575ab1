"""Vehicle updates per second at fleet scale, against a bare paho publisher.

    .venv/bin/python bench/throughput.py [--vehicles 10000] [--steady-rounds 3]

A real Mosquitto on loopback, the simulator with `--vehicles` vehicles spread over
a Samsara (60 %), a TrackSafe365 (20 %) and a Metrotec (20 %) account, the bridge
as a process (`fleet-bridge run`, discovery off: the discovery benchmark is
`discovery.py`), and a paho subscriber in a thread of this process that
timestamps every arrival.

- **full update**: every vehicle of an account moves a few metres in the
  simulator, the benchmark asks the bridge for a refresh of that account, and
  times from the simulator handing the poll's last HTTP response to aiohttp
  ("provider response received", give or take loopback) to the last of that
  account's state messages arriving at the subscriber. The accounts go one
  after the other; `full_update_s` is the sum of the three spans, so it is the
  bridge's own time for all the vehicles and excludes the providers' time.
- **bare publisher**: the very messages the bridge delivered in the full update,
  published by `bare_publisher.py` (paho, QoS 1, retained, 100 in flight, its own
  process) to the same broker; first publish call to last arrival.
  `raw_ratio` = bridge time / bare publisher time.
- **steady state**: 10 % of each account's vehicles move, one refresh per
  account: the bridge's CPU seconds (utime + stime from /proc) per 1,000 vehicle
  updates, and every MQTT message the bridge sent per changed vehicle (vehicle
  topics and discovery; the account's quota and the refresh answer are counted
  apart).
- the bridge's resident memory (VmRSS) at the end.

The last two lines are machine-readable:
`steady_changed=<n> cpu_s_per_1000=<x> msgs_per_changed=<x> account_msgs_per_poll=<x>`
`vehicles=<n> updates_per_s=<x> raw_ratio=<x> full_update_s=<s> rss_mb=<m>`
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleet import (
    ROOT,
    SHARES,
    Subscriber,
    TimedSimulator,
    config_yaml,
    cpu_seconds,
    is_vehicle_state,
    machine,
    refresh,
    rss_mb,
    simulator,
    start_bridge,
    stop_bridge,
    write_config,
)
from fleet import (
    broker as fleet_broker,
)


def bare_publish(port: int, messages: list[tuple[str, bytes]], work: Path) -> float:
    """Start time of the bare publisher's run (monotonic), after it finished."""
    path = work / "messages.txt"
    with path.open("wb") as file:
        for topic, payload in messages:
            file.write(topic.encode() + b"\t" + payload + b"\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bare_publisher.py"), str(port), str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.split("start=")[1].split()[0])


async def full_update(
    sim: TimedSimulator, sub: Subscriber, counts: dict[str, int], step: int
) -> tuple[float, list[tuple[str, bytes]]]:
    total = 0.0
    delivered: list[tuple[str, bytes]] = []
    for account in SHARES:
        moved = sim.nudge(account, 1.0, step)
        mark = sub.mark()

        def complete(
            _: list[object], account: str = account, mark: int = mark, moved: list[str] = moved
        ) -> bool:
            mine = [a for a in sub.arrivals[mark:] if a.topic.startswith(f"fleet/{account}/")]
            return sum(1 for a in mine if is_vehicle_state(a.topic)) >= len(moved)

        await refresh(sub, account)
        await sub.wait(complete, 60)
        states = [
            a
            for a in sub.since(mark)
            if a.topic.startswith(f"fleet/{account}/") and is_vehicle_state(a.topic)
        ]
        first, last = states[0].at, states[-1].at
        received = sim.last_response(account, before=first)
        span = last - received
        print(
            f"  {account}: {len(states)} of {counts[account]} vehicles; last response to "
            f"first state {first - received:.3f}s, to last state {span:.3f}s"
        )
        total += span
        delivered += [(a.topic, a.payload) for a in states]
    return total, delivered


async def steady(
    sim: TimedSimulator, sub: Subscriber, pid: int, rounds: int
) -> tuple[int, float, float, float]:
    changed = vehicle_messages = account_messages = 0
    cpu = 0.0
    for step in range(rounds):
        for account in SHARES:
            moved = sim.nudge(account, 0.1, step + 1)
            mark = sub.mark()
            before = cpu_seconds(pid)
            await refresh(sub, account)
            after = cpu_seconds(pid)

            def complete(
                _: list[object], account: str = account, mark: int = mark, moved: list[str] = moved
            ) -> bool:
                arrived = {a.topic for a in sub.arrivals[mark:]}
                return all(f"fleet/{account}/{v}" in arrived for v in moved)

            await sub.wait(complete, 30)
            await asyncio.sleep(0.5)  # anything sent late would count too
            cpu += after - before
            changed += len(moved)
            for a in sub.since(mark):
                if a.topic.startswith("fleet/bridge/"):
                    continue  # the refresh's own request and answer
                if a.topic == f"fleet/{account}/quota":
                    account_messages += 1
                else:
                    vehicle_messages += 1
    polls = rounds * len(SHARES)
    return changed, cpu, vehicle_messages / changed, account_messages / polls


async def main(vehicles: int, steady_rounds: int) -> None:
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    broker = fleet_broker(work)
    sub = Subscriber("127.0.0.1", broker.port)
    sub.start()
    try:
        async with simulator(vehicles) as sim:
            counts = {name: len(sim.all_worlds[name]) for name in SHARES}
            config = work / "config.yaml"
            write_config(
                config,
                config_yaml(sim, broker, work / "store.sqlite", mqtt_extra=", discovery: false"),
            )
            started = time.monotonic()
            bridge = start_bridge(config)
            try:
                await sub.wait(
                    lambda arrivals: (
                        len({a.topic for a in arrivals if is_vehicle_state(a.topic)}) >= vehicles
                    ),
                    180,
                )
                print(f"first poll of every account published: {time.monotonic() - started:.2f}s")
                await asyncio.sleep(1)

                bridge_s, delivered = await full_update(sim, sub, counts, 0)
                mark = sub.mark()
                start = bare_publish(broker.port, delivered, work)
                await sub.wait(lambda arrivals: len(arrivals) - mark >= len(delivered), 60)
                raw_s = sub.since(mark)[len(delivered) - 1].at - start
                print(
                    f"full update: {len(delivered)} vehicles, bridge {bridge_s:.3f}s, "
                    f"bare paho publisher {raw_s:.3f}s"
                )

                changed, cpu, per_vehicle, per_poll = await steady(
                    sim, sub, bridge.pid, steady_rounds
                )
                memory = rss_mb(bridge.pid)
            finally:
                stop_bridge(bridge)
    finally:
        sub.stop()
        broker.stop()
    print(
        f"steady_changed={changed} cpu_s_per_1000={cpu / changed * 1000:.3f} "
        f"msgs_per_changed={per_vehicle:.2f} account_msgs_per_poll={per_poll:.2f}"
    )
    print(
        f"vehicles={vehicles} updates_per_s={len(delivered) / bridge_s:.0f} "
        f"raw_ratio={bridge_s / raw_s:.2f} full_update_s={bridge_s:.3f} rss_mb={memory:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--steady-rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.vehicles, args.steady_rounds))
