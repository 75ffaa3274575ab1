"""Vehicles published per second, simulator to subscriber, and the bridge's memory.

    .venv/bin/python bench/publish_rate.py [--vehicles 1000]

Starts a real Mosquitto on a free port, the Samsara simulator (clock frozen, then
advanced by hand), and `fleet-bridge run` as a separate process, then subscribes
to `fleet/+/+` and times:

- the first full publish: every vehicle's state delivered, from the bridge's start
  and from its first message to its last (the publish rate);
- a change round: the simulated clock moves on, the next poll publishes only the
  vehicles that changed;
- the bridge's resident memory (VmRSS from /proc) after both.

The last line is machine-readable:
`vehicles=<n> updates_per_s=<x> full_update_s=<s> changed=<n> change_round_s=<s> rss_mb=<m>`
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.simulator.server import SimulatorServer  # noqa: E402
from tests.support.mqtt import Mosquitto  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Counter:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.first: float | None = None
        self.last: float = 0.0
        self.event = asyncio.Event()
        self.arrived = asyncio.Event()
        self.target = 0

    def reset(self, target: int) -> None:
        self.arrivals, self.first, self.last, self.target = {}, None, 0.0, target
        self.event.clear()

    def add(self, topic: str) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.arrivals[topic] = now
        self.arrived.set()
        if len(self.arrivals) >= self.target:
            self.event.set()


async def main(vehicles: int, poll_interval: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    broker = Mosquitto(work)
    broker.start()
    counter = Counter()
    counter.reset(vehicles)
    try:
        async with SimulatorServer(vehicles=vehicles, speed=0, seed=3) as sim:
            config = work / "config.yaml"
            config.write_text(
                f"mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: bench}}\n"
                f"store: {{path: {work / 'store.sqlite'}}}\n"
                "log_level: warning\n"
                "accounts:\n"
                f"  - {{id: bench, provider: samsara, token: demo-samsara-token, "
                f"base_url: '{sim.samsara_url}', poll_interval: {poll_interval}, "
                "offline_after: 86400}\n"
            )
            config.chmod(0o600)  # the bridge refuses secrets others can read
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, max_queued_incoming_messages=0
            ) as sub:
                await sub.subscribe("fleet/bench/+", qos=0)

                async def consume() -> None:
                    async for message in sub.messages:
                        # The account's quota topic shares the level; count vehicles only.
                        if message.payload and not str(message.topic).endswith("/quota"):
                            counter.add(str(message.topic))

                consumer = asyncio.create_task(consume())
                started = time.perf_counter()
                bridge = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bridge", "run", "--config", str(config), cwd=ROOT
                )
                try:
                    await asyncio.wait_for(counter.event.wait(), 120)
                    assert counter.first is not None
                    full_from_start = counter.last - started
                    publish_span = counter.last - counter.first
                    rate = vehicles / publish_span if publish_span else float("inf")
                    print(
                        f"first full publish: {vehicles} vehicles in {full_from_start:.2f}s from "
                        f"process start; {publish_span:.3f}s first to last message "
                        f"({rate:.0f} vehicles/s)"
                    )

                    # One simulated minute: vehicles that drove get new states.
                    sim.clock.advance(60)
                    sim.world.update()
                    counter.reset(1)
                    await asyncio.wait_for(counter.event.wait(), poll_interval * 3 + 30)
                    # The round is complete once no message came for half a poll interval.
                    while True:
                        counter.arrived.clear()
                        try:
                            await asyncio.wait_for(counter.arrived.wait(), poll_interval / 2)
                        except TimeoutError:
                            break
                    round_count = len(counter.arrivals)
                    assert counter.first is not None
                    round_span = counter.last - counter.first
                    print(
                        f"change round: {round_count} changed vehicles published in "
                        f"{round_span:.3f}s"
                    )
                    memory = rss_mb(bridge.pid)
                    print(f"bridge resident memory: {memory:.1f} MB")
                    print(
                        f"vehicles={vehicles} updates_per_s={rate:.0f} "
                        f"full_update_s={publish_span:.3f} changed={round_count} "
                        f"change_round_s={round_span:.3f} rss_mb={memory:.1f}"
                    )
                finally:
                    bridge.terminate()
                    await bridge.wait()
                    consumer.cancel()
    finally:
        broker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.vehicles, args.poll_interval))
