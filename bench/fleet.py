"""What the fleet-scale benchmarks share: a broker, a timed simulator, the bridge as
a process, and a subscriber that timestamps every arrival.

Clocks: every timestamp is `time.monotonic()` (CLOCK_MONOTONIC on Linux), which
is one clock for every process on the machine, so a time taken in the bridge's
process, in a bare publisher's process and in this one can be subtracted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bridge.simulator import tracksafe365_keys  # noqa: E402
from bridge.simulator.server import SimulatorServer  # noqa: E402
from tests.support.mqtt import Mosquitto  # noqa: E402

#: The accounts of the fleet benchmarks and their share of the vehicles.
SHARES = {"samsara": 0.6, "tracksafe365": 0.2, "metrotec": 0.2}
PREFIXES = {"samsara": "/samsara", "tracksafe365": "/tracksafe365", "metrotec": "/metrotec"}


def machine() -> str:
    """One line: cores, CPU model, Python: what the figures came from."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


def broker(work: Path) -> Mosquitto:
    """A Mosquitto of our own that never drops a message for a slow subscriber
    (by default it queues at most 1,000 QoS 1 messages per client)."""
    mosquitto = Mosquitto(work, extra_config="max_queued_messages 0\n")
    mosquitto.start()
    return mosquitto


def split(vehicles: int) -> dict[str, int]:
    counts = {name: int(vehicles * share) for name, share in SHARES.items()}
    counts["samsara"] += vehicles - sum(counts.values())
    return counts


class TimedSimulator(SimulatorServer):
    """The simulator, noting when it handed each provider's responses to aiohttp."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.responses: dict[str, list[float]] = defaultdict(list)

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def timed(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            response = await handler(request)
            for name, prefix in PREFIXES.items():
                if request.path.startswith(prefix):
                    self.responses[name].append(time.monotonic())
            return response

        app.middlewares.append(timed)
        return app

    def last_response(self, provider: str, before: float) -> float:
        return max(t for t in self.responses[provider] if t <= before)

    def nudge(self, provider: str, share: float = 1.0, step: int = 0) -> list[str]:
        """Move `share` of a fleet's vehicles a few metres: they all change."""
        world = self.all_worlds[provider]
        ids = world.ids()
        chosen = ids[: round(len(ids) * share)]
        delta = 0.0005 if step % 2 == 0 else -0.0005
        for vid in chosen:
            truth = world.truth(vid)
            world.set_vehicle(vid, latitude=truth.latitude + delta)
        return chosen


def simulator(vehicles: int) -> TimedSimulator:
    counts = split(vehicles)
    return TimedSimulator(
        vehicles=counts["samsara"],
        tracksafe365_vehicles=counts["tracksafe365"],
        metrotec_vehicles=counts["metrotec"],
        fleetize_vehicles=1,
        telemax_vehicles=1,
        speed=0,
        seed=3,
    )


def config_yaml(
    sim: SimulatorServer, broker: Mosquitto, store: Path, *, mqtt_extra: str = ""
) -> str:
    accounts = {
        "samsara": (
            f"provider: samsara, token: demo-samsara-token, base_url: '{sim.samsara_url}', "
            "safety_events: false"
        ),
        "tracksafe365": (
            f"provider: tracksafe365, api_key: {tracksafe365_keys.DEFAULT_LIVE_KEY}, "
            f"base_url: '{sim.tracksafe365_url}', plan: growth"
        ),
        "metrotec": (
            f"provider: metrotec, username: demo, password: demo-metrotec-password, "
            f"base_url: '{sim.metrotec_url}'"
        ),
    }
    lines = [
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, client_id: bench{mqtt_extra}}}",
        f"store: {{path: {store}}}",
        "log_level: warning",
        "accounts:",
    ]
    for name, account in accounts.items():
        # Polls only when the benchmark asks (refresh), never on a timer.
        lines.append(f"  - {{id: {name}, {account}, poll_interval: 3600, offline_after: 864000}}")
    return "\n".join(lines) + "\n"


def write_config(path: Path, text: str) -> Path:
    """The bridge refuses a config with secrets that others can read."""
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class Arrival:
    topic: str
    at: float
    payload: bytes


@dataclass
class Subscriber:
    """paho in its own thread: every message on `topics`, with its arrival time."""

    host: str
    port: int
    topics: tuple[str, ...] = ("fleet/#", "homeassistant/#")
    arrivals: list[Arrival] = field(default_factory=list)
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        client.max_queued_messages_set(0)
        subscribed = threading.Event()

        def on_connect(c: paho.Client, *_: Any) -> None:
            for topic in self.topics:
                c.subscribe(topic, qos=1)
            subscribed.set()

        def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
            arrival = Arrival(message.topic, time.monotonic(), message.payload)
            if "/bridge/response/" in message.topic:
                self.responses[message.topic].append(json.loads(message.payload))
            with self._lock:
                self.arrivals.append(arrival)
                self._lock.notify_all()

        client.on_connect = on_connect
        client.on_message = on_message
        client.connect(self.host, self.port)
        client.loop_start()
        self._client = client
        if not subscribed.wait(10):
            raise RuntimeError("the subscriber did not connect")
        time.sleep(0.2)  # SUBACKs (and any retained messages) before anything is timed

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def mark(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def since(self, mark: int) -> list[Arrival]:
        with self._lock:
            return self.arrivals[mark:]

    async def wait(self, predicate: Callable[[list[Arrival]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if predicate(self.arrivals):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out; {len(self.arrivals)} messages so far")
            await asyncio.sleep(0.02)

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)


def is_vehicle_state(topic: str, accounts: Iterable[str] = SHARES) -> bool:
    """`fleet/<account>/<vehicle>`: one state object per vehicle."""
    parts = topic.split("/")
    return len(parts) == 3 and parts[0] == "fleet" and parts[1] in accounts and parts[2] != "quota"


def start_bridge(config: Path) -> subprocess.Popen[bytes]:
    """`fleet-bridge run`; with FLEET_BENCH_PROFILE=<file>, under py-spy (raw
    folded stacks in <file>, for flamegraph.pl or speedscope)."""
    bridge = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config", str(config)], cwd=ROOT
    )
    profile = os.environ.get("FLEET_BENCH_PROFILE")
    if profile:
        spy = Path(sys.executable).with_name("py-spy")
        _profilers[bridge.pid] = subprocess.Popen(
            [str(spy), "record", "-r", "250", "-f", "raw", "-o", profile, "--pid", str(bridge.pid)]
        )
    return bridge


_profilers: dict[int, subprocess.Popen[bytes]] = {}


def stop_bridge(bridge: subprocess.Popen[bytes]) -> None:
    profiler = _profilers.pop(bridge.pid, None)
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)
    bridge.terminate()
    try:
        bridge.wait(30)
    except subprocess.TimeoutExpired:
        bridge.kill()
        bridge.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def refresh(sub: Subscriber, account: str, timeout: float = 60) -> dict[str, Any]:
    """Ask the bridge to poll `account` now; wait (and retry) until it did."""
    topic = "fleet/bridge/response/refresh"
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        transaction = f"bench-{account}-{time.monotonic_ns()}"
        sub.publish(
            "fleet/bridge/request/refresh",
            json.dumps({"transaction": transaction, "account": account}),
        )

        def answered(_: list[Arrival], transaction: str = transaction) -> bool:
            return any(r.get("transaction") == transaction for r in sub.responses[topic])

        await sub.wait(answered, max(1.0, deadline - time.monotonic()))
        answer = next(r for r in sub.responses[topic] if r.get("transaction") == transaction)
        if answer.get("status") == "ok":
            return answer
        if time.monotonic() > deadline:
            raise RuntimeError(f"refresh of {account} failed: {answer}")
        # A budget (e.g. Samsara's 5 s between feed reads) says when to come back.
        await asyncio.sleep(1.0)
