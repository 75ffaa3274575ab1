"""PostgreSQL away while the bridge polls: restarted, and cut in the middle of a poll.

A real PostgreSQL of the test's own, stopped under a running bridge (its store,
`store.url`) and started again. While it is away the bridge makes no call (it
could not record one), says so on MQTT and in the log, and resumes by itself;
no call is made unrecorded and no state is lost, also when the database goes
away between a provider's answer and the saving of what it brought.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.simulator.server import SimulatorServer
from tests.fault.conftest import Tally, accounts, fast, poll_all
from tests.support.mqtt import Mosquitto, Recorder
from tests.support.postgres import Postgres, postgres

__all__ = ["postgres"]


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for a condition nothing announces (a provider's counter)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (a counter: no event to wait on)
            await asyncio.sleep(0.02)


def rows(pg: Postgres, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.url) as conn:
        return conn.execute(sql).fetchall()


def fleetize_requests(sim: SimulatorServer) -> int:
    return sum(sim.fleetize.counters.by_token.values())


def recorded_fleetize_calls(pg: Postgres) -> int:
    # The daily budget's rows (per account) live a day: every call is there.
    return int(
        rows(pg, "SELECT count(*) FROM quota_ledger WHERE scope LIKE 'fleetize:account:%'")[0][0]
    )


def instance_info(recorder: Recorder, bridge: Bridge) -> dict[str, Any]:
    assert bridge.instance is not None
    payload = recorder.retained.get(bridge.topics.instance_info(bridge.instance))
    return json.loads(payload) if payload else {}


@pytest.mark.timeout(180)
async def test_the_store_restarted_and_cut_mid_poll_loses_nothing(
    postgres: Postgres,
    mosquitto: Mosquitto,
    recorder: Recorder,
    sim: SimulatorServer,
    tmp_path: Path,
    tally: Tally,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows_of = {row["id"]: row for row in accounts(sim)}
    # Room for an answer held back long enough to stop the database under it.
    rows_of["fz"]["request_timeout"] = 10
    config = BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "outage"},
            "store": {"url": postgres.url, "lease_time": 3},
            "accounts": [rows_of["fz"], rows_of["mt"]],
        }
    )
    bridge = Bridge(config, now=sim.clock.now)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    try:
        async with asyncio.timeout(30):
            await bridge.started.wait()
            await bridge.link.subscribed.wait()
            assert bridge.cluster is not None
            while set(bridge.pollers) != {"fz", "mt"}:
                await bridge.cluster.wait_beats(bridge.cluster.beats + 1)
        fast(bridge)
        await poll_all(bridge)
        await recorder.wait_for(
            lambda: len(instance_info(recorder, bridge).get("accounts", {})) == 2
        )
        assert fleetize_requests(sim) == recorded_fleetize_calls(postgres) >= 1

        # 1. Stopped: no call, and the bridge says why.
        postgres.stop()
        tally.injected("store outage")
        before = (fleetize_requests(sim), sim.metrotec.counters.total)
        sim.clock.advance(61)
        await poll_all(bridge)
        await poll_all(bridge)
        assert (fleetize_requests(sim), sim.metrotec.counters.total) == before
        for poller in bridge.pollers.values():
            assert "store unreachable" in (poller.health.last_error or "")
        await recorder.wait_for(
            lambda: instance_info(recorder, bridge).get("store") == "unreachable", timeout=30
        )
        info = instance_info(recorder, bridge)
        assert all("store unreachable" in (a["error"] or "") for a in info["accounts"].values())
        assert any("Store unreachable" in r.getMessage() for r in caplog.records)

        # 2. Back: polls resume by themselves, the accounts stay held here.
        postgres.start()
        await recorder.wait_for(
            lambda: instance_info(recorder, bridge).get("store") == "ok", timeout=30
        )
        sim.clock.advance(61)
        await poll_all(bridge)
        assert all(p.health.last_error is None for p in bridge.pollers.values())
        assert fleetize_requests(sim) == recorded_fleetize_calls(postgres) == before[0] + 1
        assert sim.metrotec.counters.total > before[1]

        # 3. Cut between FLEETIZE's answer and the saving of what it brought.
        sim.fleetize.latency = 2.0
        sim.clock.advance(61)
        recorded = recorded_fleetize_calls(postgres)
        poller = bridge.pollers["fz"]
        polls = poller.health.polls
        poller.request_poll()
        # The call is recorded before it leaves: then it is on its way, for 2 s.
        try:
            await until(lambda: recorded_fleetize_calls(postgres) > recorded)
        except TimeoutError:
            raise AssertionError(f"no FLEETIZE call: {poller.health}") from None
        postgres.stop("immediate")
        tally.injected("store cut mid-poll")
        await poller.wait_polls(polls + 1, timeout=30)
        assert "store unreachable" in (poller.health.last_error or "")
        published = {
            t: json.loads(p)
            for t, p in recorder.retained.items()
            if t.startswith("fleet/fz/") and t.count("/") == 2 and not t.endswith("/quota")
        }
        sim.fleetize.latency = 0.0
        postgres.start()
        sim.clock.advance(61)
        await until(lambda: poller.health.last_error is None, timeout=60)
        saved = dict(
            rows(postgres, "SELECT vehicle_id, state FROM vehicle_state WHERE account='fz'")
        )
        # What was published before the cut is in the store now (the poll after it
        # read it again from the saved cursor), and every call is in the ledger.
        assert len(saved) == len(published) == 3
        assert fleetize_requests(sim) == recorded_fleetize_calls(postgres)
        assert bridge.fatal is None
        assert not task.done()
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(task, return_exceptions=True)
