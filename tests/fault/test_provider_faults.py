"""Provider faults injected in the simulators, five accounts in one bridge.

For each fault, one account is made sick while the others keep being polled:
the sick one turns `degraded`, its vehicles turn unavailable once its data is
older than `staleness`, and it recovers by itself when the fault ends. The
healthy accounts' polls complete all along, and no provider's published limit
is exceeded on the clock the bridge and the simulators share.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bridge.poller import AccountStatus
from bridge.simulator.faults import Rule
from bridge.simulator.server import SimulatorServer
from tests.fault.conftest import (
    Tally,
    availability,
    make_config,
    poll_all,
    quota_violations,
    running,
    vehicle_topics,
)
from tests.support.mqtt import Mosquitto, Recorder

STALENESS = 120
ACCOUNTS = {
    "sam": "samsara",
    "fz": "fleetize",
    "tmx": "telemax",
    "mt": "metrotec",
    "ts": "tracksafe365",
}

FAULTS: list[tuple[str, Rule]] = [
    ("timeout", Rule("hang", seconds=1.5, count=-1)),
    ("connection reset", Rule("reset", count=-1)),
    ("500 with a text body", Rule("status", status=500, body="Internal error, sorry", count=-1)),
    ("502 html", Rule("status", status=502, body="<html>Bad gateway</html>", count=-1)),
    ("429 storm with Retry-After", Rule("status", status=429, retry_after=1, count=-1)),
    ("429 storm without Retry-After", Rule("status", status=429, count=-1)),
    ("truncated JSON", Rule("truncate", count=-1)),
    ("invalid JSON", Rule("garbage", count=-1)),
    ("not UTF-8", Rule("non_utf8", count=-1)),
    ("fields of the wrong type", Rule("wrong_types", rate=0.5, seed=3, count=-1)),
    ("deep nesting", Rule("deep", depth=50_000, count=-1)),
]


def staleness_overrides() -> dict[str, dict[str, float]]:
    return {name: {"staleness": STALENESS} for name in ACCOUNTS}


async def everything_available(recorder: Recorder, sim: SimulatorServer) -> None:
    await recorder.wait_for(
        lambda: all(
            len(availability(recorder, name)) == len(sim.all_worlds[provider])
            and set(availability(recorder, name).values()) == {b"online"}
            for name, provider in ACCOUNTS.items()
        )
    )


@pytest.mark.parametrize(("case", "rule"), FAULTS, ids=[c for c, _ in FAULTS])
async def test_a_sick_account_goes_unavailable_recovers_and_never_stalls_the_others(
    case: str,
    rule: Rule,
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    sim: SimulatorServer,
    tally: Tally,
) -> None:
    # Each case makes a different account sick, round robin, so every provider's
    # client meets several kinds of fault.
    index = [c for c, _ in FAULTS].index(case)
    sick = list(ACCOUNTS)[index % len(ACCOUNTS)]
    healthy = [name for name in ACCOUNTS if name != sick]
    config = make_config(mosquitto, sim, tmp_path, account_overrides=staleness_overrides())
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        await everything_available(recorder, sim)

        rule.provider = ACCOUNTS[sick]
        sim.faults.add(rule)
        injected_before = sim.faults.total_injected
        # Polls go on while the fault lasts; the healthy accounts are not held up.
        for _ in range(2):
            sim.clock.advance(61)
            await poll_all(bridge)
            for name in healthy:
                assert bridge.pollers[name].health.status is AccountStatus.OK, name
        sick_poller = bridge.pollers[sick]
        # Past `staleness` without fresh data (failing, or waiting out a budget a
        # failed attempt spent): the sick account's vehicles are unavailable, and
        # only those. Values of the wrong type may be read around instead.
        if not (
            case == "fields of the wrong type" and sick_poller.health.status is AccountStatus.OK
        ):
            assert sick_poller.stale, sick_poller.health
            await recorder.wait_for(
                lambda: set(availability(recorder, sick).values()) == {b"offline"}
            )
        for name in healthy:
            assert set(availability(recorder, name).values()) == {b"online"}, name
        tally.injected(case, sim.faults.total_injected - injected_before)

        # The fault ends: the account recovers by itself at its next polls.
        sim.faults.clear()
        for _ in range(2):
            sim.clock.advance(61)
            await poll_all(bridge)
        assert sick_poller.health.status is AccountStatus.OK, sick_poller.health
        assert not sick_poller.stale
        await everything_available(recorder, sim)
        for name, provider in ACCOUNTS.items():
            assert len(vehicle_topics(recorder, name)) == len(sim.all_worlds[provider]), name

    violations = quota_violations(sim, config)
    tally.violations += len(violations)
    assert violations == []


async def test_a_vehicle_that_vanishes_and_comes_back(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer, tally: Tally
) -> None:
    config = make_config(mosquitto, sim, tmp_path)
    async with running(config, sim) as bridge:
        await poll_all(bridge, "tmx")
        world = sim.telemax_world
        gone = world.ids()[0]
        await recorder.wait_for(lambda: gone in vehicle_topics(recorder, "tmx"))

        world.hide_vehicle(gone)
        tally.injected("vehicle vanished")
        sim.clock.advance(61)
        bridge.pollers["tmx"].request_poll(refresh_vehicles=True)
        await bridge.pollers["tmx"].wait_polls(bridge.pollers["tmx"].health.polls + 1)
        # Gone from the provider's list: its state and discovery are cleared.
        await recorder.wait_for(lambda: gone not in vehicle_topics(recorder, "tmx"))
        assert not any(gone in t for t in recorder.retained if t.startswith("homeassistant/"))

        world.show_vehicle(gone)
        sim.clock.advance(61)
        bridge.pollers["tmx"].request_poll(refresh_vehicles=True)
        await bridge.pollers["tmx"].wait_polls(bridge.pollers["tmx"].health.polls + 1)
        await recorder.wait_for(
            lambda: (
                gone in vehicle_topics(recorder, "tmx")
                and recorder.retained.get(f"fleet/tmx/{gone}/availability") == b"online"
                and any(gone in t for t in recorder.retained if t.startswith("homeassistant/"))
            )
        )
    assert quota_violations(sim, config) == []


async def test_a_clock_jump_forward_and_a_day_rollover_during_an_outage(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer, tally: Tally
) -> None:
    # 23:50 on the provider's day (UTC): FLEETIZE's 100 calls a day are counted
    # by day on both sides.
    midnight = (sim.clock.now() + timedelta(days=1)).replace(hour=0, minute=0)
    sim.clock.advance((midnight - sim.clock.now()).total_seconds() - 600)
    config = make_config(
        mosquitto, sim, tmp_path, account_overrides={"fz": {"staleness": STALENESS}}
    )
    async with running(config, sim) as bridge:
        fz = bridge.pollers["fz"]
        await poll_all(bridge)
        assert fz.health.status is AccountStatus.OK
        # The provider goes down before midnight and comes back after it.
        sim.faults.add(Rule("status", provider="fleetize", status=503, count=-1))
        for _ in range(4):
            sim.clock.advance(300)  # 23:55, 00:00, 00:05, 00:10
            await poll_all(bridge)
        assert fz.health.status is AccountStatus.DEGRADED
        assert fz.stale
        tally.injected("day rollover mid-outage", sim.faults.total_injected)
        sim.faults.clear()
        sim.clock.advance(61)
        await poll_all(bridge)
        assert fz.health.status is AccountStatus.OK
        await recorder.wait_for(lambda: set(availability(recorder, "fz").values()) == {b"online"})
        # The new day's budget: what the outage spent yesterday is not counted.
        left = fz.quota.calls_left_today()
        assert left is not None
        assert left >= 80
        assert sim.fleetize.stats()["calls_today"] <= 2

        # A clock jump: six hours forward at once (a host that slept, an NTP step).
        sim.clock.advance(6 * 3600)
        tally.injected("clock jump")
        await poll_all(bridge)
        for poller in bridge.pollers.values():
            assert poller.health.status is AccountStatus.OK, poller.account
    violations = quota_violations(sim, config)
    tally.violations += len(violations)
    assert violations == []
    assert sim.fleetize.stats()["blocked"] is False
