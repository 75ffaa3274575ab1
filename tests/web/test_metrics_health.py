"""/metrics and /healthz against the simulator and a real Mosquitto (no browser).

/metrics is read back with prometheus-client's own parser, and its counters are
checked against what the other side counted: the simulator's request counters,
the pollers' polls, the answers on MQTT, the webhook receiver's verdicts.
/healthz follows the broker going away and coming back, and tells a provider's
quota (a 429 hold) from a provider that fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import running, settle
from tests.support.mqtt import Mosquitto, Recorder, free_port

TOKEN = "metrics-scraper-token-0042"
HOOK_SECRET = "telemax-hook-secret-123456"
HOOK_PATH = "/hooks/telemax"


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=3,
        fleetize_vehicles=2,
        telemax_vehicles=2,
        metrotec_vehicles=2,
        tracksafe365_vehicles=1,
        speed=0,
        seed=4,
    ) as server:
        yield server


def account(kind: str, server: SimulatorServer, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "samsara": {
            "provider": "samsara",
            "token": "demo-samsara-token",
            "base_url": server.samsara_url,
            "safety_events": False,
        },
        "fleetize": {
            "provider": "fleetize",
            "token": "demo-fleetize-token",
            "base_url": server.fleetize_url,
        },
        "telemax": {
            "provider": "telemax",
            "api_key": "demo-telemax-key",
            "base_url": server.telemax_url,
        },
        "metrotec": {
            "provider": "metrotec",
            "api_key": "demo-metrotec-key",
            "base_url": server.metrotec_url,
        },
    }[kind]
    poll = {} if kind == "fleetize" else {"poll_interval": 3600}
    return {"id": kind, **base, **poll, "offline_after": 864000, **extra}


def make_config(
    mosquitto: Mosquitto,
    tmp_path: Path,
    accounts: list[dict[str, Any]],
    http: dict[str, Any],
    **sections: Any,
) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "metrics-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": accounts,
            "http": {"host": "127.0.0.1", "port": free_port(), **http},
            **sections,
        }
    )


def url(bridge: Bridge, path: str) -> str:
    assert bridge.web is not None
    return f"{bridge.web.url}{path}"


async def get(bridge: Bridge, path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(bridge, path), headers=headers) as response,
    ):
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels (prometheus-client's parser)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_counters_match_what_the_simulator_and_mqtt_counted(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = make_config(
        mosquitto,
        tmp_path,
        [account(kind, simulator) for kind in ("samsara", "metrotec", "telemax")],
        {"metrics": True, "metrics_public": False, "token": TOKEN},
        commands={"allow": [{"accounts": ["metrotec"], "commands": ["lights"]}]},
        webhooks={
            "enabled": True,
            "port": free_port(),
            "accounts": {"telemax": {"path": HOOK_PATH, "secret": HOOK_SECRET}},
        },
    )
    async with running(config, now=simulator.clock.now) as bridge:
        for poller in bridge.pollers.values():
            await poller.wait_polls(1)
        samsara = bridge.pollers["samsara"]
        for _ in range(2):
            simulator.clock.advance(10)
            samsara.request_poll()
            await samsara.wait_polls(samsara.health.polls + 1)
        # Commands: one that reaches the device (pending), two refused.
        metrotec_vehicle = simulator.metrotec_world.ids()[0]
        requests = [
            ("lights", {"account": "metrotec", "vehicle": metrotec_vehicle, "state": "ON"}),
            ("lights", {"account": "metrotec", "vehicle": "ghost", "state": "ON"}),
            ("snapshot", {"account": "samsara", "vehicle": simulator.world.ids()[0]}),
        ]
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for index, (name, body) in enumerate(requests):
                payload = json.dumps({**body, "transaction": f"m-{index}"})
                await client.publish(f"fleet/bridge/request/{name}", payload, qos=1)
        await recorder.wait_for(
            lambda: (
                sum(m.topic.startswith("fleet/bridge/response/") for m in recorder.messages) == 3
            )
        )
        # Webhooks: one signed delivery, one without a signature.
        record = {"id": 777, "vehicleId": simulator.telemax_world.ids()[0], "type": "Speeding"}
        body = json.dumps({**record, "time": "2025-03-03T16:12:37"}).encode()
        signature = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        hook = f"http://127.0.0.1:{config.webhooks.port}{HOOK_PATH}"
        async with aiohttp.ClientSession() as session:
            for headers in ({"X-Telemax-Signature": f"sha256={signature}"}, {}):
                async with session.post(hook, data=body, headers=headers) as response:
                    assert response.status in (200, 401)
        await settle(recorder, mosquitto, bridge)

        assert (await get(bridge, "metrics"))[0] == 401  # metrics_public: false
        status, text = await get(bridge, "metrics", TOKEN)
        assert status == 200
        found = samples(text)
        counters = {"samsara": simulator.samsara, "metrotec": simulator.metrotec}
        counters["telemax"] = simulator.telemax
        for name, poller in bridge.pollers.items():
            polls = sum(
                value
                for (metric, labels), value in found.items()
                if metric == "fleet_bridge_polls_total" and ("account", name) in labels
            )
            assert polls == poller.health.polls, name
            # Every call the bridge made, the simulator received: and no other.
            calls = found[("fleet_bridge_provider_calls_total", (("account", name),))]
            assert calls == counters[name].counters.total, name
            vehicles = sum(
                value
                for (metric, labels), value in found.items()
                if metric == "fleet_bridge_vehicles" and ("account", name) in labels
            )
            assert vehicles == len(bridge.publisher.states(name)), name
            quota = json.loads(recorder.retained[bridge.topics.account_quota(name)])
            for budget, usage in quota["budgets"].items():
                key = ("fleet_bridge_budget_limit", (("account", name), ("budget", budget)))
                assert found[key] == usage["limit"]

        # Every Samsara poll either went out or waited for its budget (on a busy
        # machine the planner's own poll can fall inside the feed's 5 s pause).
        def polls(result: str) -> float:
            return found.get(
                ("fleet_bridge_polls_total", (("account", "samsara"), ("result", result))), 0.0
            )

        assert polls("ok") >= 2
        assert polls("ok") + polls("quota_wait") == samsara.health.polls

        def commands(command: str, outcome: str) -> float:
            key = (
                "fleet_bridge_commands_total",
                (("command", command), ("outcome", outcome), ("source", "mqtt")),
            )
            return found.get(key, 0.0)

        assert commands("lights", "pending") == 1
        assert commands("lights", "rejected") == 1
        assert commands("snapshot", "rejected") == 1
        assert bridge.webhooks is not None
        for verdict in ("accepted", "unauthorized"):
            key = ("fleet_bridge_webhook_deliveries_total", (("verdict", verdict),))
            assert found[key] == getattr(bridge.webhooks.stats, verdict) == 1
        assert found[("fleet_bridge_mqtt_connected", ())] == 1
        state_messages = [
            m for m in recorder.messages if m.topic.count("/") == 2 and "/quota" not in m.topic
        ]
        assert found[("fleet_bridge_published_messages_total", ())] >= len(state_messages) > 0
        assert found[("fleet_bridge_publish_seconds_count", ())] > 0
        # No dashboard configured: only the operators' endpoints.
        assert (await get(bridge, "", TOKEN))[0] == 404
        assert (await get(bridge, "api/state", TOKEN))[0] == 404


async def test_healthz_follows_the_broker_and_tells_quota_from_failure(
    mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = make_config(
        mosquitto,
        tmp_path,
        [account("samsara", simulator), account("fleetize", simulator)],
        {"metrics": True},
    )
    async with running(config, now=simulator.clock.now) as bridge:
        for poller in bridge.pollers.values():
            await poller.wait_polls(1)
        await bridge.link.announced.wait()
        assert await get(bridge, "healthz") == (200, "ok\n")

        bridge.link.attempt_failed.clear()
        mosquitto.stop()
        await bridge.link.attempt_failed.wait()
        status, text = await get(bridge, "healthz")
        assert (status, text) == (503, "mqtt: not connected to the broker\n")
        mosquitto.start()
        await bridge.link.connected.wait()
        assert (await get(bridge, "healthz"))[0] == 200

        # FLEETIZE answers 429 with Retry-After: held by the provider's quota, healthy.
        fleetize = bridge.pollers["fleetize"]
        simulator.fleetize.fail_next(1, status=429, retry_after=3600)
        simulator.clock.advance(61)
        fleetize.request_poll()
        await fleetize.wait_polls(fleetize.health.polls + 1)
        assert fleetize.health.status.value == "degraded"
        assert await get(bridge, "healthz") == (200, "ok\n")

        # Samsara fails for itself (a 422: not retried, no hold): 503, naming the
        # account, not the error text.
        samsara = bridge.pollers["samsara"]
        simulator.samsara.fail_next(1, status=422)
        simulator.clock.advance(10)
        samsara.request_poll()
        await samsara.wait_polls(samsara.health.polls + 1)
        status, text = await get(bridge, "healthz")
        assert status == 503
        assert text == "account samsara: degraded, 1 polls failed in a row\n"


async def test_healthz_names_an_account_whose_credentials_are_refused(
    mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path
) -> None:
    wrong = "wrong-samsara-token-31337"
    config = make_config(
        mosquitto, tmp_path, [account("samsara", simulator, token=wrong)], {"metrics": True}
    )
    async with running(config, now=simulator.clock.now) as bridge:
        await bridge.pollers["samsara"].wait_polls(1)
        status, text = await get(bridge, "healthz")
        assert status == 503
        assert "account samsara: stopped" in text
        assert wrong not in text
        _, metrics = await get(bridge, "metrics")
        key = ("fleet_bridge_account_status", (("account", "samsara"), ("status", "stopped")))
        assert samples(metrics)[key] == 1
