"""Home Assistant discovery for a large fleet: per entity against per device, and paced.

    .venv/bin/python bench/discovery.py [--vehicles 10000] [--window 40]

The fleet, broker, bridge process and subscriber of `throughput.py` (see
`fleet.py`), with discovery on. For each form (`mqtt.discovery_mode: entity`,
then `device`):

- **unpaced** (`discovery_rate: 100000`): message count, bytes and time from the
  first to the last discovery message of the first start; then Home Assistant
  announces `online` on `homeassistant/status` and the republish is timed the
  same way, with its peak messages per second (1 s buckets at the subscriber):
  what a broker and Home Assistant would get without pacing.
- **paced** (the default `discovery_rate`, 300/s): the first start again. States
  arrive at once; discovery trickles. Five seconds in, 10 % of the Metrotec
  vehicles move and a refresh is asked for: its states' latency shows that the
  poller does not wait behind the discovery queue. Peak and mean discovery
  messages per second over `--window` seconds (the whole queue in the device
  form, where it drains in about 35 s; its first `--window` seconds in the
  per-entity form, whose queue takes minutes), and then, in the device form,
  a Home Assistant restart's republish, timed whole.

The last line is machine-readable:
`vehicles=<n> entity_msgs=<n> entity_s=<s> device_msgs=<n> device_s=<s>
 unpaced_peak_per_s=<n> paced_peak_per_s=<n> paced_rate=<x> republish_device_s=<s>
 state_latency_s=<s>` (one line)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

from fleet import (
    Arrival,
    Subscriber,
    broker,
    config_yaml,
    is_vehicle_state,
    machine,
    refresh,
    simulator,
    start_bridge,
    stop_bridge,
    write_config,
)


def discovery(arrivals: list[Arrival]) -> list[Arrival]:
    return [a for a in arrivals if a.topic.startswith("homeassistant/") and a.payload]


def peak_per_second(arrivals: list[Arrival]) -> int:
    if not arrivals:
        return 0
    start = arrivals[0].at
    return max(Counter(int(a.at - start) for a in arrivals).values())


async def quiet(sub: Subscriber, prefix: str, seconds: float, timeout: float) -> None:
    """Until no message under `prefix` came for `seconds`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mark = sub.mark()
        await asyncio.sleep(seconds)
        if not any(a.topic.startswith(prefix) for a in sub.since(mark)):
            return
    raise TimeoutError(f"{prefix} still busy after {timeout}s")


async def unpaced(vehicles: int, mode: str) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    mosquitto = broker(work)
    sub = Subscriber("127.0.0.1", mosquitto.port)
    sub.start()
    figures: dict[str, float] = {}
    try:
        async with simulator(vehicles) as sim:
            config = write_config(
                work / "config.yaml",
                config_yaml(
                    sim,
                    mosquitto,
                    work / "store.sqlite",
                    mqtt_extra=f", discovery_mode: {mode}, discovery_rate: 100000",
                ),
            )
            bridge = start_bridge(config)
            try:
                await sub.wait(
                    lambda arrivals: (
                        len({a.topic for a in arrivals if is_vehicle_state(a.topic)}) >= vehicles
                    ),
                    300,
                )
                await quiet(sub, "homeassistant/", 2.0, 600)
                first = discovery(sub.arrivals)
                figures["msgs"] = len(first)
                figures["bytes"] = sum(len(a.payload) for a in first)
                figures["s"] = first[-1].at - first[0].at
                print(
                    f"{mode}, unpaced, first start: {len(first)} discovery messages, "
                    f"{figures['bytes'] / 1e6:.1f} MB, {figures['s']:.2f}s first to last"
                )
                mark = sub.mark()
                sub.publish("homeassistant/status", "online")
                await sub.wait(lambda _: len(discovery(sub.since(mark))) >= len(first), 600)
                again = discovery(sub.since(mark))
                figures["republish_s"] = again[-1].at - again[0].at
                figures["peak"] = peak_per_second(again)
                print(
                    f"{mode}, unpaced, Home Assistant restart: {len(again)} messages in "
                    f"{figures['republish_s']:.2f}s, peak {figures['peak']:.0f} messages/s"
                )
            finally:
                stop_bridge(bridge)
    finally:
        sub.stop()
        mosquitto.stop()
    return figures


async def paced(vehicles: int, mode: str, window: float) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    mosquitto = broker(work)
    sub = Subscriber("127.0.0.1", mosquitto.port)
    sub.start()
    figures: dict[str, float] = {}
    try:
        async with simulator(vehicles) as sim:
            config = write_config(
                work / "config.yaml",
                config_yaml(
                    sim, mosquitto, work / "store.sqlite", mqtt_extra=f", discovery_mode: {mode}"
                ),
            )
            started = time.monotonic()
            bridge = start_bridge(config)
            try:
                await sub.wait(
                    lambda arrivals: (
                        len({a.topic for a in arrivals if is_vehicle_state(a.topic)}) >= vehicles
                    ),
                    300,
                )
                states_at = time.monotonic() - started
                await asyncio.sleep(5)
                moved = sim.nudge("metrotec", 0.1, 1)
                mark = sub.mark()
                asked = time.monotonic()
                await refresh(sub, "metrotec")
                expected = {f"fleet/metrotec/{v}" for v in moved}
                await sub.wait(lambda _: expected <= {a.topic for a in sub.since(mark)}, 60)
                latency = max(a.at for a in sub.since(mark) if a.topic in expected) - asked
                figures["state_latency_s"] = latency
                remaining = window - (time.monotonic() - started)
                if remaining > 0:
                    await asyncio.sleep(remaining)
                seen = discovery(sub.arrivals)
                span = seen[-1].at - seen[0].at
                figures["peak"] = peak_per_second(seen)
                figures["rate"] = (len(seen) - 1) / span if span else 0.0
                print(
                    f"{mode}, paced: every state in {states_at:.2f}s from process start; "
                    f"{len(seen)} discovery messages in the first {window:.0f}s, "
                    f"{figures['rate']:.0f}/s on average, peak {figures['peak']:.0f} in one "
                    f"second; a refresh during it: {len(moved)} states in {latency:.3f}s"
                )
                if mode == "device":
                    await quiet(sub, "homeassistant/", 2.0, 600)
                    mark = sub.mark()
                    sub.publish("homeassistant/status", "online")
                    await sub.wait(lambda _: len(discovery(sub.since(mark))) >= vehicles, 600)
                    await quiet(sub, "homeassistant/", 2.0, 600)
                    again = discovery(sub.since(mark))
                    figures["republish_s"] = again[-1].at - again[0].at
                    figures["republish_peak"] = peak_per_second(again)
                    print(
                        f"{mode}, paced, Home Assistant restart: {len(again)} messages in "
                        f"{figures['republish_s']:.1f}s, peak {figures['republish_peak']:.0f}/s"
                    )
            finally:
                stop_bridge(bridge)
    finally:
        sub.stop()
        mosquitto.stop()
    return figures


async def main(vehicles: int, window: float) -> None:
    print(f"machine: {machine()}")
    entity = await unpaced(vehicles, "entity")
    device = await unpaced(vehicles, "device")
    paced_entity = await paced(vehicles, "entity", window)
    paced_device = await paced(vehicles, "device", window)
    latency = max(paced_entity["state_latency_s"], paced_device["state_latency_s"])
    print(
        f"vehicles={vehicles} entity_msgs={entity['msgs']:.0f} entity_s={entity['s']:.2f} "
        f"device_msgs={device['msgs']:.0f} device_s={device['s']:.2f} "
        f"unpaced_peak_per_s={max(entity['peak'], device['peak']):.0f} "
        f"paced_peak_per_s={max(paced_entity['peak'], paced_device['republish_peak']):.0f} "
        f"paced_rate={paced_entity['rate']:.0f} "
        f"republish_device_s={paced_device['republish_s']:.1f} "
        f"state_latency_s={latency:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=40.0)
    args = parser.parse_args()
    asyncio.run(main(args.vehicles, args.window))
