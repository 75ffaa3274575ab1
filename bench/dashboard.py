"""The dashboard at fleet scale: first render, update lag, and what it costs the bridge.

    .venv/bin/python bench/dashboard.py [--vehicles 10000] [--rounds 5]

The fleet benchmarks' set-up (`fleet.py`): a Mosquitto of its own, the simulator
with the vehicles spread over a Samsara (60 %), a TrackSafe365 (20 %) and a
Metrotec (20 %) account, clock frozen, `fleet-bridge run` as a separate process
with the dashboard on (`http.dashboard: true`, discovery off), a paho
subscriber that timestamps every MQTT arrival, and Debian's headless Chromium
driven by Playwright.

- **first render**: a fresh browser context opens the page (the token in the
  link, as the demo prints it) and the page notes `performance.now()` two
  animation frames after it drew the snapshot of every vehicle on the map and
  the table: navigation start to painted, including the page's own load, the
  login, the WebSocket and the snapshot of 10,000 vehicles. Three loads; the
  slowest is reported.
- **rounds**: 10 % of each account's vehicles move a few metres, then each
  account is refreshed (`fleet/bridge/request/refresh`), one after the other,
  and the round ends when every moved vehicle's state has arrived on MQTT (and,
  with the page open, once the page drew every one of them), plus 0.5 s for
  anything late. The rounds run back to back, as fast as the providers'
  budgets allow (Samsara: one feed read per 5 s).
- **update lag**: per moved vehicle, from its state's arrival at the MQTT
  subscriber to the page drawing the diff that carried it (wall clock on both
  sides: the page's `Date.now()`, the subscriber's monotonic time shifted to
  wall time once). p99 over every vehicle of every round. "Without falling
  behind": the page must never have needed a second snapshot (the live channel
  resynchronises a page that cannot keep up) and the last round's lag must
  not exceed the first's by more than the coalescing window.
- **CPU ratio**: the bridge's CPU seconds (utime + stime) per 1,000 vehicle
  updates over the rounds with the page open, divided by the same over as many
  rounds before any page was opened, in the same bridge process.

Last line: `vehicles=<n> first_render_s=<s> update_lag_p99_s=<s> cpu_ratio=<x>`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fleet import (
    SHARES,
    Subscriber,
    TimedSimulator,
    config_yaml,
    cpu_seconds,
    is_vehicle_state,
    machine,
    refresh,
    simulator,
    start_bridge,
    stop_bridge,
    write_config,
)
from fleet import broker as fleet_broker
from playwright.async_api import Browser, Page, async_playwright

# (fleet.py has put the checkout on the path.)
from tests.support.mqtt import free_port
from tests.web.conftest import CHROMIUM_FLAGS, chromium_binary

TOKEN = "bench-dashboard-token-000000"
SHARE = 0.1
#: The live channel's coalescing window (bridge/web/live.py FLUSH_INTERVAL_S).
FLUSH_S = 0.25


def wall_offset() -> float:
    """Seconds to add to time.monotonic() for the wall clock (time.time())."""
    return time.time() - time.monotonic()


async def first_render(browser: Browser, url: str, vehicles: int) -> tuple[float, Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(f"{url}#token={TOKEN}")
    await page.wait_for_function(
        "n => window.fleet && window.fleet.firstRenderMs !== null"
        " && window.fleet.vehicles.size >= n",
        arg=vehicles,
        timeout=120_000,
        polling=50,
    )
    ms: float = await page.evaluate("() => window.fleet.firstRenderMs")
    return ms / 1000, page


async def one_round(
    sim: TimedSimulator, sub: Subscriber, step: int, page: Page | None
) -> tuple[int, dict[str, float], float]:
    """(vehicles moved, {key: MQTT arrival, monotonic}, round start, monotonic)."""
    started = time.monotonic()
    mark = sub.mark()
    moved: dict[str, list[str]] = {}
    for account in SHARES:
        moved[account] = sim.nudge(account, SHARE, step)
        await refresh(sub, account)
    wanted = {f"fleet/{account}/{vid}": account for account, ids in moved.items() for vid in ids}

    def arrived(_: list[Any]) -> bool:
        return wanted.keys() <= {a.topic for a in sub.arrivals[mark:]}

    await sub.wait(arrived, 120)
    arrivals: dict[str, float] = {}
    latitudes: dict[str, float] = {}
    for arrival in sub.since(mark):
        if arrival.topic in wanted and is_vehicle_state(arrival.topic):
            key = arrival.topic.removeprefix("fleet/")
            arrivals.setdefault(key, arrival.at)
            latitudes[key] = round(json.loads(arrival.payload)["latitude"], 6)
    if page is not None:
        # Until the page drew every moved vehicle at its new position.
        await page.wait_for_function(
            """want => Object.entries(want).every(([k, la]) => {
                const row = window.fleet.vehicles.get(k);
                return row && row.la === la;
            }) && window.fleet.applied.every(e => e.drawnAt !== null)""",
            arg=latitudes,
            timeout=120_000,
            polling=100,
        )
    await asyncio.sleep(0.5)  # anything the bridge does late counts too
    return sum(map(len, moved.values())), arrivals, started


async def rounds(
    sim: TimedSimulator, sub: Subscriber, pid: int, count: int, first_step: int, page: Page | None
) -> tuple[int, float, list[tuple[dict[str, float], float]]]:
    changed = 0
    cpu = 0.0
    seen: list[tuple[dict[str, float], float]] = []
    for step in range(first_step, first_step + count):
        before = cpu_seconds(pid)
        moved, arrivals, started = await one_round(sim, sub, step, page)
        cpu += cpu_seconds(pid) - before
        changed += moved
        seen.append((arrivals, started))
    return changed, cpu, seen


async def lags(page: Page, seen: list[tuple[dict[str, float], float]]) -> list[list[float]]:
    """Per round, each moved vehicle's lag: MQTT arrival to the page drawing it."""
    applied: list[dict[str, Any]] = await page.evaluate("() => window.fleet.applied")
    offset = wall_offset()
    result = []
    for arrivals, started in seen:
        start_wall = started + offset
        drawn: dict[str, float] = {}
        for entry in applied:
            if entry["appliedAt"] < start_wall or entry["drawnAt"] is None:
                continue
            for key in entry.get("keys", []):
                drawn.setdefault(key, entry["drawnAt"])
        result.append([drawn[key] - (at + offset) for key, at in arrivals.items()])
    return result


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def main(vehicles: int, count: int) -> None:
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-dashboard-"))
    broker = fleet_broker(work)
    sub = Subscriber("127.0.0.1", broker.port)
    sub.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    try:
        async with simulator(vehicles) as sim, async_playwright() as playwright:
            config = work / "config.yaml"
            text = config_yaml(sim, broker, work / "store.sqlite", mqtt_extra=", discovery: false")
            text += f"http: {{dashboard: true, port: {port}, token: {TOKEN}}}\n"
            write_config(config, text)
            started = time.monotonic()
            bridge = start_bridge(config)
            browser = await playwright.chromium.launch(
                executable_path=chromium_binary(), args=CHROMIUM_FLAGS, headless=True
            )
            try:
                await sub.wait(
                    lambda arrivals: (
                        len({a.topic for a in arrivals if is_vehicle_state(a.topic)}) >= vehicles
                    ),
                    300,
                )
                print(f"first poll of every account published: {time.monotonic() - started:.2f}s")
                await asyncio.sleep(1)

                base_changed, base_cpu, _ = await rounds(sim, sub, bridge.pid, count, 1, None)
                base = base_cpu / base_changed * 1000
                print(f"no page open: {base_changed} updates, {base:.3f} CPU s per 1,000")

                renders = []
                for _ in range(3):
                    seconds, page = await first_render(browser, url, vehicles)
                    renders.append(seconds)
                    await page.context.close()
                print("first render: " + ", ".join(f"{s:.2f}s" for s in renders))

                seconds, page = await first_render(browser, url, vehicles)
                await page.evaluate("() => { window.fleet.recordKeys = true; }")
                open_changed, open_cpu, seen = await rounds(
                    sim, sub, bridge.pid, count, count + 1, page
                )
                opened = open_cpu / open_changed * 1000
                print(f"page open: {open_changed} updates, {opened:.3f} CPU s per 1,000")
                per_round = await lags(page, seen)
                snapshots = await page.evaluate("() => window.fleet.snapshots")
                everything = [lag for each in per_round for lag in each]
                firsts, lasts = statistics.median(per_round[0]), statistics.median(per_round[-1])
                behind = snapshots > 1 or lasts > firsts + FLUSH_S
                print(
                    "update lag per round (median, p99): "
                    + ", ".join(f"{statistics.median(r):.3f}/{p99(r):.3f}s" for r in per_round)
                )
                print(
                    f"snapshots the page needed: {snapshots}; "
                    f"falling behind: {'yes' if behind else 'no'}"
                )
                await browser.close()
            finally:
                stop_bridge(bridge)
    finally:
        sub.stop()
        broker.stop()
    print(
        f"vehicles={vehicles} first_render_s={max(renders):.2f} "
        f"update_lag_p99_s={p99(everything):.3f} cpu_ratio={opened / base:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.vehicles, args.rounds))
