"""Every retained topic of ours comes back after the broker lost it: after a broker
restart without persistence, after a bridge restart followed by one, and on the
`republish` request (Home Assistant's republish button). The image entity's URL
topic only ever carries a URL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.mqtt.client import Backoff
from bridge.simulator.server import SimulatorServer
from tests.fault.conftest import make_config, poll_all, running, sim
from tests.support.mqtt import Mosquitto, Recorder, record

__all__ = ["sim"]  # the fault suite's simulators (every provider, a frozen clock)

ALLOW = {
    "allow": [
        {"accounts": ["mt"], "vehicles": ["*"], "commands": ["lights"]},
        {"accounts": ["sam"], "vehicles": ["*"], "commands": ["snapshot"]},
    ]
}


async def request(mosquitto: Mosquitto, name: str, body: dict[str, Any]) -> None:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish(f"fleet/bridge/request/{name}", json.dumps(body).encode(), qos=1)


def ours(recorder: Recorder) -> dict[str, bytes]:
    """The retained topics of the bridge, as the broker holds them."""
    return {
        topic: payload
        for topic, payload in recorder.retained.items()
        if payload
        and topic.startswith(("fleet/", "homeassistant/"))
        and not topic.startswith("fleet/test/")
    }


async def held(mosquitto: Mosquitto) -> dict[str, bytes]:
    """What the broker holds retained of ours: what a new subscriber gets first
    (a sentinel published after subscribing arrives after all of it)."""
    async with record(mosquitto.host, mosquitto.port) as fresh:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.publish("fleet/test/sentinel", b"x", qos=1)
        await fresh.wait_for(lambda: any(m.topic == "fleet/test/sentinel" for m in fresh.messages))
        # Only what the broker replayed as retained (a live answer may slip in).
        replayed = {m.topic for m in fresh.messages if m.retain}
        return {t: p for t, p in ours(fresh).items() if t in replayed}


async def lights_on(mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer) -> str:
    vehicle = sim.metrotec_world.ids()[0]
    await request(
        mosquitto,
        "lights",
        {"transaction": "l-1", "account": "mt", "vehicle": vehicle, "state": "ON"},
    )
    topic = f"fleet/mt/{vehicle}/lights"
    await recorder.wait_for(lambda: topic in recorder.retained)
    return topic


async def wiped(mosquitto: Mosquitto) -> None:
    """The broker restarts empty (no persistence): every retained message is gone."""
    mosquitto.stop()
    mosquitto.start()


async def everything_back(mosquitto: Mosquitto, before: dict[str, bytes]) -> dict[str, bytes]:
    async with record(mosquitto.host, mosquitto.port) as after:
        try:
            await after.wait_for(lambda: set(before) <= set(ours(after)), timeout=30)
        except AssertionError:
            missing = sorted(set(before) - set(ours(after)))
            raise AssertionError(f"not sent again: {missing}") from None
        return ours(after)


@pytest.fixture
def config(mosquitto: Mosquitto, sim: SimulatorServer, tmp_path: Path) -> Any:
    return make_config(mosquitto, sim, tmp_path, commands=ALLOW)


async def test_every_retained_topic_survives_a_wiped_broker(
    config: Any, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer
) -> None:
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        lights = await lights_on(mosquitto, recorder, sim)
        await bridge.publisher.discovery_settled(30)
        before = await held(mosquitto)
        assert lights in before
        bridge.link._backoff = Backoff(initial=0.2, maximum=0.2, current=0.2)
        await wiped(mosquitto)
        after = await everything_back(mosquitto, before)
    assert json.loads(after[lights])["requested"] == "ON"


async def test_the_last_command_survives_a_bridge_restart_then_a_wiped_broker(
    config: Any, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer
) -> None:
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        lights = await lights_on(mosquitto, recorder, sim)
        last_command = recorder.retained[lights]
    # A new bridge process: it learns what it published before from the broker.
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        await bridge.publisher.discovery_settled(30)
        before = await held(mosquitto)
        assert before[lights] == last_command
        bridge.link._backoff = Backoff(initial=0.2, maximum=0.2, current=0.2)
        await wiped(mosquitto)
        after = await everything_back(mosquitto, before)
    assert after[lights] == last_command


def unmoving(retained: dict[str, bytes]) -> dict[str, bytes]:
    return {
        t: p for t, p in retained.items() if not t.endswith("/quota") and t != "fleet/bridge/info"
    }


async def test_republish_request_sends_everything_again(
    config: Any, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer
) -> None:
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        lights = await lights_on(mosquitto, recorder, sim)
        await bridge.publisher.discovery_settled(30)
        before = await held(mosquitto)
        assert lights in before
        # Data loss the bridge cannot see (a broker restored from an old backup,
        # someone clearing topics): every retained message of ours deleted.
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for topic in before:
                await client.publish(topic, b"", qos=1, retain=True)
        assert await held(mosquitto) == {}

        mark = recorder.mark()
        await request(mosquitto, "republish", {"transaction": "r-1"})
        await recorder.wait_for(
            lambda: any(m.topic == "fleet/bridge/response/republish" for m in recorder.since(mark))
        )
        (answer,) = [
            json.loads(m.payload)
            for m in recorder.since(mark)
            if m.topic == "fleet/bridge/response/republish"
        ]
        assert answer["status"] == "ok"
        assert answer["transaction"] == "r-1"
        assert answer["data"]["vehicles"] == sum(len(w.ids()) for w in sim.all_worlds.values())
        try:
            await recorder.wait_for(lambda: set(before) <= set(ours(recorder)), timeout=30)
        except AssertionError:
            missing = sorted(set(before) - set(ours(recorder)))
            raise AssertionError(f"not sent again: {missing}") from None
        await bridge.publisher.discovery_settled(30)
        after = await held(mosquitto)
        assert set(after) == set(before)
        # Quota use moves on meanwhile (the lights are followed up): the rest is
        # exactly what was there.
        assert unmoving(after) == unmoving(before)

        # A wrong request says which field, and sends nothing again.
        mark = recorder.mark()
        await request(mosquitto, "republish", {"transaction": "r-2", "account": "mt"})
        await recorder.wait_for(
            lambda: any(m.topic == "fleet/bridge/response/republish" for m in recorder.since(mark))
        )
        refused = json.loads(next(m.payload for m in recorder.since(mark) if "response" in m.topic))
        assert refused["status"] == "error"
        assert "account" in refused["error"]


async def test_the_image_url_topic_only_ever_carries_a_url(
    config: Any, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer
) -> None:
    vehicle = sim.world.ids()[0]
    snapshot = f"fleet/sam/{vehicle}/snapshot"
    url_topic = f"{snapshot}/url"
    async with running(config, sim) as bridge:
        await poll_all(bridge, "sam")
        await request(
            mosquitto,
            "snapshot",
            {"transaction": "s-1", "account": "sam", "vehicle": vehicle, "camera": "road"},
        )
        await recorder.wait_for(lambda: snapshot in recorder.retained)
        assert json.loads(recorder.retained[snapshot])["status"] == "pending"
        assert url_topic not in recorder.retained  # pending: no URL, nothing sent
        sim.clock.advance(60)  # the provider's media turns available
        await recorder.wait_for(lambda: url_topic in recorder.retained)
        url = json.loads(recorder.retained[url_topic])
        assert url == {"url": json.loads(recorder.retained[snapshot])["url"]}
        assert url["url"].startswith(sim.base_url)
    every = [json.loads(m.payload) for m in recorder.messages if m.topic == url_topic]
    assert every
    assert all(set(m) == {"url"} and m["url"] for m in every)
