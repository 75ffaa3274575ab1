"""The broker goes away while polls and commands go on, and comes back empty.

The outage lasts 1 s, 30 s and 5 min on the clock the bridge and the simulators
share: the broker is really down for about a second while the simulated clock
moves on and the bridge keeps polling. (A real five-minute outage, with the
production reconnect backoff of 1 s to 60 s, is `-m slow`; CI does not run it.)
Mosquitto runs without persistence, so the restart wipes every retained message.
Afterwards every vehicle's state, availability and discovery are back, and the
command accepted before the outage is answered exactly once and reached the
provider once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import aiomqtt
import pytest

from bridge.mqtt.client import Backoff
from bridge.simulator.server import SimulatorServer
from tests.fault.conftest import Tally, make_config, poll_all, running, vehicle_topics
from tests.support.mqtt import Mosquitto, Recorder, record

ALLOW = {"allow": [{"accounts": ["mt"], "vehicles": ["*"], "commands": ["lights"]}]}


async def outage(
    seconds: float,
    real_pause: float,
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    sim: SimulatorServer,
    tally: Tally,
    backoff: Backoff | None = None,
) -> None:
    config = make_config(mosquitto, sim, tmp_path, commands=ALLOW)
    vehicle = sim.metrotec_world.ids()[0]
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        await recorder.wait_for(lambda: len(vehicle_topics(recorder, "mt")) == 3)
        # A command whose provider call is under way when the broker goes.
        sim.metrotec.latency = 0.3
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.publish(
                "fleet/bridge/request/lights",
                json.dumps(
                    {"transaction": "before", "account": "mt", "vehicle": vehicle, "state": "ON"}
                ).encode(),
                qos=1,
            )
        await sim.faults.wait_for_request("metrotec", "/objects/events/")
        # Reconnects slower than the recorder below, so that it hears everything.
        bridge.link._backoff = backoff or Backoff(initial=0.5, maximum=0.5, current=0.5)
        mosquitto.stop()
        tally.injected(f"broker down {seconds:g}s")
        sim.metrotec.latency = 0.0
        # Polls go on while the broker is away; vehicles move meanwhile.
        steps = max(1, min(int(seconds // 30), 10))
        for _ in range(steps):
            sim.clock.advance(seconds / steps)
            await poll_all(bridge)
        if real_pause:
            await asyncio.sleep(real_pause)  # the slow variant: a real outage
        assert not bridge.link.connected.is_set()
        mosquitto.start()
        async with record(mosquitto.host, mosquitto.port) as after:
            await after.wait_for(
                lambda: (
                    after.retained.get("fleet/bridge/state") == b"online"
                    and all(
                        len(vehicle_topics(after, name)) == len(sim.all_worlds[p])
                        and all(
                            after.retained.get(f"fleet/{name}/{v}/availability") == b"online"
                            for v in vehicle_topics(after, name)
                        )
                        for name, p in (("sam", "samsara"), ("mt", "metrotec"), ("tmx", "telemax"))
                    )
                    and any(t.startswith("homeassistant/device_tracker/") for t in after.retained)
                    and any(m.topic == "fleet/bridge/response/lights" for m in after.messages)
                ),
                timeout=30 + real_pause,
            )
            # The vehicles' states are the ones polled during the outage.
            for vid in sim.metrotec_world.ids():
                state = vehicle_topics(after, "mt")[vid]
                assert state["latitude"] == pytest.approx(
                    sim.metrotec_world.truth(vid).latitude, abs=1e-4
                )
            # The command after the outage works too.
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                await client.publish(
                    "fleet/bridge/request/lights",
                    json.dumps(
                        {
                            "transaction": "after",
                            "account": "mt",
                            "vehicle": vehicle,
                            "state": "OFF",
                        }
                    ).encode(),
                    qos=1,
                )
            await after.wait_for(
                lambda: any(
                    json.loads(m.payload).get("transaction") == "after"
                    for m in after.since(0, "fleet/bridge/response/")
                )
            )
            answers = [
                json.loads(m.payload)
                for m in after.messages
                if m.topic.startswith("fleet/bridge/response/")
            ]
    before = [a for a in answers if a.get("transaction") == "before"]
    assert len(before) == 1, answers
    assert before[0]["status"] == "ok"
    # Each command reached the provider once.
    assert len(sim.faults.requests("metrotec", "/objects/events/")) == 2
    tally.commands_accepted += 2
    tally.commands_answered += 2


@pytest.mark.parametrize("seconds", [1, 30, 300], ids=["1s", "30s", "5min"])
async def test_broker_outage_loses_nothing(
    seconds: float,
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    sim: SimulatorServer,
    tally: Tally,
) -> None:
    await outage(seconds, 0.0, tmp_path, mosquitto, recorder, sim, tally)


@pytest.mark.slow
async def test_a_real_five_minute_outage_with_the_production_backoff(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer, tally: Tally
) -> None:
    await outage(300, 300.0, tmp_path, mosquitto, recorder, sim, tally, backoff=Backoff())


def claimed(store: Path, account: str) -> set[str]:
    """The alert ids the bridge has claimed (seen) for an account."""
    with contextlib.closing(sqlite3.connect(store)) as db:
        rows = db.execute("SELECT alert_id FROM alert_seen WHERE account=?", (account,))
        return {row[0] for row in rows}


def alert_messages(recorder: Recorder) -> list[dict[str, object]]:
    return [
        json.loads(m.payload)
        for m in recorder.messages
        if m.topic.startswith("fleet/ts/") and m.topic.endswith("/alert")
    ]


@pytest.mark.parametrize("restart", [False, True], ids=["reconnect", "restart"])
async def test_alerts_found_while_the_broker_is_down_are_published_once_it_is_back(
    restart: bool,
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    sim: SimulatorServer,
    tally: Tally,
) -> None:
    from bridge.store import Store

    config = make_config(mosquitto, sim, tmp_path)
    async with running(config, sim) as bridge:
        await poll_all(bridge, "ts")
        bridge.link._backoff = Backoff(initial=0.2, maximum=0.2, current=0.2)
        mosquitto.stop()
        tally.injected("broker down with alerts")
        # Hours of driving: TrackSafe365 reports safety events meanwhile. (A poll
        # already under way when the clock moved reads them at the next one.)
        sim.clock.advance(3 * 3600)
        assert bridge.store is not None
        held: set[str] = set()
        for _ in range(3):
            await poll_all(bridge, "ts")
            held = claimed(config.store.path, "ts")
            if held:
                break
        assert held, "the simulator reported no alert in three hours"
        if not restart:
            mosquitto.start()
            async with record(mosquitto.host, mosquitto.port) as after:
                await after.wait_for(lambda: len(alert_messages(after)) >= len(held))
                # One more poll (no new alerts): nothing is sent a second time.
                await poll_all(bridge, "ts")
                await after.wait_for(lambda: bridge.link.connected.is_set())
                seen = alert_messages(after)
    if restart:
        # The process stops before the broker is back: the alerts wait in the store.
        mosquitto.start()
        async with record(mosquitto.host, mosquitto.port) as after:
            async with running(config, sim):
                await after.wait_for(lambda: len(alert_messages(after)) >= len(held))
            seen = alert_messages(after)
    ids = [str(a["id"]) for a in seen]
    assert sorted(ids) == sorted(held), "each held alert published exactly once"
    # Published two hours after the first of them happened: marked stale.
    assert any(a["stale"] for a in seen)
    with Store(config.store.path) as store:
        assert await store.alerts_undelivered("ts") == []


async def test_an_answer_lost_with_the_broker_in_the_instant_of_a_kill_is_sent_again(
    tmp_path: Path, mosquitto: Mosquitto, sim: SimulatorServer, tally: Tally
) -> None:
    """The journal marks an answer sent only once the broker has taken it: an
    answer in flight when the bridge dies, on a broker that dies with it, goes
    out after the restart (marked before the publish, it would never go)."""
    import signal

    from bridge.app import Bridge

    config = make_config(mosquitto, sim, tmp_path, commands=ALLOW)
    vehicle = sim.metrotec_world.ids()[0]
    bridge = Bridge(config, now=sim.clock.now)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    async with asyncio.timeout(10):
        await bridge.started.wait()
        await bridge.link.connected.wait()
    await poll_all(bridge, "mt")
    sim.metrotec.latency = 0.3
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.publish(
            "fleet/bridge/request/lights",
            json.dumps({"transaction": "lost", "account": "mt", "vehicle": vehicle, "state": "ON"}),
            qos=1,
        )
    await sim.faults.wait_for_request("metrotec", "/objects/events/")
    # The broker freezes as the answer is handed to it: no acknowledgement.
    process = mosquitto._process
    assert process is not None
    sending = asyncio.Event()
    publish = bridge.link.publish

    async def freezing(topic: str, payload: bytes | str, *, retain: bool) -> None:
        if topic == "fleet/bridge/response/lights":
            process.send_signal(signal.SIGSTOP)
            sending.set()
        await publish(topic, payload, retain=retain)

    bridge.link.publish = freezing  # type: ignore[method-assign]
    async with asyncio.timeout(20):
        await sending.wait()
    # The bridge and the broker die in that instant: the answer never arrives.
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    process.kill()
    process.wait()
    tally.injected("kill with an answer in flight")
    mosquitto.start()
    async with record(mosquitto.host, mosquitto.port) as after, running(config, sim):
        await after.wait_for(
            lambda: any(
                json.loads(m.payload).get("transaction") == "lost"
                for m in after.since(0, "fleet/bridge/response/lights")
            )
        )
    (answer,) = [
        json.loads(m.payload) for m in after.messages if m.topic == "fleet/bridge/response/lights"
    ]
    assert answer["status"] == "ok"
    # Sent again, not carried out again.
    assert len(sim.faults.requests("metrotec", "/objects/events/")) == 1
    tally.commands_accepted += 1
    tally.commands_answered += 1
