"""`fleet-bridge demo`: simulators, an embedded broker and the bridge, in one process.

Nothing to install beyond the package: the broker is `bridge.demo_broker`, a small
MQTT 3.1.1 broker of our own (why not amqtt: see that module). Port 1883 is used
when free; users often run a broker there already, so the demo then takes a free
port and says which. It listens on loopback unless `--host` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.demo_broker import DemoBroker
from bridge.simulator.server import SimulatorServer

_LOGGER = logging.getLogger(__name__)

DEMO_ACCOUNT = "demo-samsara"
# The simulator's own credentials, not secrets.
DEMO_TOKEN = "demo-samsara-token"
DEMO_FLEETIZE_TOKEN = "demo-fleetize-token"
DEMO_TELEMAX_KEY = "demo-telemax-key"
DEMO_METROTEC_KEY = "demo-metrotec-key"
DEMO_TRACKSAFE_KEY = "ts365_test_demo"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[None]:
    async with DemoBroker(host, port):
        yield


#: The dashboard's port when free (the webhook receiver's default is 8742).
DASHBOARD_PORT = 8743


def new_token() -> str:
    """A dashboard token for one demo run."""
    return secrets.token_urlsafe(24)


def dashboard_section(port: int, token: str | None, host: str = "127.0.0.1") -> dict[str, Any]:
    """The demo's `http:`: the dashboard where the demo listens (loopback unless
    `--host` says otherwise), with a token made for this run (the demo's own
    credential, like the simulator's: printed, never logged)."""
    if token is None:
        return {"dashboard": False}
    return {"dashboard": True, "metrics": True, "host": host, "port": port, "token": token}


def demo_config(
    broker_port: int,
    simulator: SimulatorServer,
    store: Path,
    http: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
) -> BridgeConfig:
    # The simulated clock runs fast: a day passes in hours, so nobody goes
    # "offline" for lack of reports in the demo.
    common = {"offline_after": 86400}
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": _local(host), "port": broker_port, "client_id": "fleet-bridge-demo"},
            "store": {"path": str(store)},
            "accounts": [
                {
                    "id": DEMO_ACCOUNT,
                    "provider": "samsara",
                    "token": DEMO_TOKEN,
                    "base_url": simulator.samsara_url,
                    "poll_interval": 5,
                    **common,
                },
                {
                    "id": "demo-fleetize",
                    "provider": "fleetize",
                    "token": DEMO_FLEETIZE_TOKEN,
                    "base_url": simulator.fleetize_url,
                    **common,
                },
                {
                    "id": "demo-telemax",
                    "provider": "telemax",
                    "api_key": DEMO_TELEMAX_KEY,
                    "base_url": simulator.telemax_url,
                    "poll_interval": 15,
                    **common,
                },
                {
                    "id": "demo-metrotec",
                    "provider": "metrotec",
                    "api_key": DEMO_METROTEC_KEY,
                    "base_url": simulator.metrotec_url,
                    "poll_interval": 15,
                    **common,
                },
                {
                    "id": "demo-tracksafe365",
                    "provider": "tracksafe365",
                    "api_key": DEMO_TRACKSAFE_KEY,
                    "base_url": simulator.tracksafe365_url,
                    "sandbox_url": simulator.tracksafe365_sandbox_url,
                    "poll_interval": 15,
                    **common,
                },
            ],
            # The demo lets every command through, so the switches and buttons in
            # Home Assistant do something; a real config allows only what it needs.
            "commands": {"allow": [{"commands": ["*"]}]},
            "http": http or {"dashboard": False},
        }
    )


def _local(host: str) -> str:
    """Where the demo's own clients connect to a broker bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host


def _text(payload: bytes) -> str:
    """A payload as a person reads it: text as text, the rest as hex."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(payload)} bytes> {payload[:40].hex()}"
    return text if len(text) <= 160 else text[:157] + "..."


def _summary(topic: str, payload: bytes) -> str:
    try:
        data: dict[str, Any] = json.loads(payload)
    except ValueError:
        return f"{topic}  {_text(payload)}"
    if isinstance(data, dict) and "budgets" in data:
        left = data.get("calls_left_today")
        budget = "" if left is None else f"{left} API calls left today, "
        return f"{topic}  {budget}next poll {data.get('next_poll')} ({data.get('reason')})"
    if not isinstance(data, dict) or "name" not in data:
        return f"{topic}  {_text(payload)}"
    parts = [str(data["name"])]
    if data.get("speed_kmh") is not None:
        parts.append(f"{data['speed_kmh']:.0f} km/h")
    if data.get("engine_state"):
        parts.append(f"engine {data['engine_state']}")
    if data.get("fuel_percent") is not None:
        parts.append(f"fuel {data['fuel_percent']:.0f}%")
    if data.get("latitude") is not None:
        parts.append(f"at {data['latitude']:.4f},{data['longitude']:.4f}")
    return f"{topic}  " + ", ".join(parts)


async def _watch(host: str, port: int) -> None:
    """Print every message on the broker, the way a `#` subscriber sees it
    (discovery configs are summed up: hundreds of them would hide the rest)."""
    while True:
        try:
            async with aiomqtt.Client(host, port, identifier="fleet-bridge-demo-watch") as client:
                await client.subscribe("#", qos=0)
                configs = 0
                async for message in client.messages:
                    payload = message.payload
                    topic = str(message.topic)
                    if topic.startswith("homeassistant/") and topic.endswith("/config"):
                        configs += 1
                        if configs % 100 == 1:
                            print(
                                f"{topic}  (Home Assistant discovery, {configs} so far)", flush=True
                            )
                        continue
                    print(
                        _summary(topic, payload) if payload else f"{topic}  (cleared)", flush=True
                    )
        except aiomqtt.MqttError:
            await asyncio.sleep(1)


async def run_demo(
    stop: asyncio.Event,
    *,
    vehicles: int = 10,
    speed: float = 10.0,
    broker_port: int = 1883,
    host: str = "127.0.0.1",
    quiet: bool = False,
    ready: asyncio.Event | None = None,
    dashboard: bool = True,
    http_port: int = DASHBOARD_PORT,
    token: str | None = None,
) -> int:
    """Run until `stop`; returns the MQTT port used. `token`: the dashboard's
    (default: one made now; the caller has it redacted from the logs)."""
    port = broker_port if broker_port and port_is_free(host, broker_port) else free_port(host)
    web_port = http_port if http_port and port_is_free(host, http_port) else free_port(host)
    if dashboard and token is None:
        token = new_token()
    if not dashboard:
        token = None
    with tempfile.TemporaryDirectory(prefix="fleet-bridge-demo-") as tmp:
        async with (
            SimulatorServer(vehicles=vehicles, speed=speed, host=host) as simulator,
            embedded_broker(host, port),
        ):
            config = demo_config(
                port,
                simulator,
                Path(tmp) / "demo.sqlite",
                dashboard_section(web_port, token, host),
                host,
            )
            # The link carries the token after '#': browsers never send that part.
            web = (
                [f"  dashboard    http://{host}:{web_port}/#token={token}  (this run's own token)"]
                if token
                else []
            )
            taken = "" if port == broker_port else f" ({broker_port} was taken, so a free port)"
            print(
                "\n".join(
                    [
                        "fleet-bridge demo",
                        f"  simulator    {simulator.base_url}  (Samsara {vehicles}, FLEETIZE "
                        f"{len(simulator.fleetize_world)}, Telemax {len(simulator.telemax_world)}, "
                        f"Metrotec {len(simulator.metrotec_world)}, TrackSafe365 "
                        f"{len(simulator.tracksafe365_world)} vehicles; clock x{speed:g})",
                        f"  MQTT broker  {host}:{port}  (embedded){taken}",
                        *web,
                        f"  watch it     mosquitto_sub -h {host} -p {port} -t 'fleet/#' -v",
                        f"  Home Assistant: add the MQTT integration with broker {host}, port "
                        f"{port}; vehicles appear as devices",
                        f"  try a command  mosquitto_pub -h {host} -p {port} -t "
                        '\'fleet/bridge/request/lights\' -m \'{"account": "demo-metrotec", '
                        f'"vehicle": "{simulator.metrotec_world.ids()[0]}", '
                        '"state": "ON", "transaction": "1"}\'',
                        "  Ctrl-C stops it.",
                        "",
                    ]
                ),
                flush=True,
            )
            bridge = Bridge(config)
            watcher = None if quiet else asyncio.create_task(_watch(_local(host), port))
            if ready is not None:
                ready.set()
            try:
                await bridge.run(stop)
            finally:
                if watcher is not None:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
    return port
