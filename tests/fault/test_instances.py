"""Three `fleet-bridge run` instances on one PostgreSQL, killed and paused.

Real processes (forked, SIGKILLed, SIGSTOPped), a real PostgreSQL and a real
Mosquitto; the simulators on the wall clock. The FLEETIZE spacing is shortened
to 3 s on both sides (60 s in production) so that a test minute holds twenty
spacing periods: what is tested is that the five accounts behind one address
never collide, whichever instance holds them, not the length of the period.

- Every few seconds one instance is SIGKILLed and a new one started, while
  commands (Metrotec tasks and lights) arrive through the shared subscription
  at whichever instance the broker picks: every command is carried out once and
  answered, no task is created twice, FLEETIZE answers no #1055, and every
  account is polled again by its new holder.
- An instance paused past its lease (SIGSTOP) and resumed makes no call: the
  store refuses what it tries, and the accounts stay with their new holder.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest

from bridge.simulator.server import SimulatorServer
from tests.fault.conftest import SECRETS, ForkServer, Tally
from tests.support.mqtt import Mosquitto, Recorder
from tests.support.postgres import Postgres, postgres

__all__ = ["postgres"]

FLEETIZE = [f"fleetize-instances-{i}-" + SECRETS["fleetize"][-12:] for i in range(5)]
METROTEC = {
    f"depot-{i}": f"metrotec-pw-{i}-" + SECRETS["metrotec_password"][-12:] for i in range(3)
}
SPACING_S = 3.0
LEASE_S = 3.0


@pytest.fixture
async def live_sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=0,
        seed=12,
        speed=1.0,
        fleetize_tokens=FLEETIZE,
        metrotec_users=METROTEC,
        fleetize_vehicles=2,
        metrotec_vehicles=2,
        telemax_vehicles=0,
        tracksafe365_vehicles=0,
    ) as server:
        server.fleetize.quota.min_interval_ms = round(SPACING_S * 1000)
        yield server


def write_config(
    path: Path, pg: Postgres, mosquitto: Mosquitto, sim: SimulatorServer, fleetize: int = 5
) -> Path:
    lines = [
        f"mqtt: {{host: {mosquitto.host}, port: {mosquitto.port}, client_id: inst}}",
        f"store: {{url: '{pg.url}', lease_time: {LEASE_S}}}",
        "log_level: debug",
        "accounts:",
    ]
    for index, token in enumerate(FLEETIZE[:fleetize]):
        lines += [
            f"  - id: fz{index}",
            "    provider: fleetize",
            f"    token: {token}",
            f"    base_url: {sim.fleetize_url}",
            "    offline_after: 86400",
            "    quota:",
            "      budgets:",
            f"        spacing: {{period: {SPACING_S}}}",
            "        daily: {limit: 100000}",
        ]
    for index, (user, password) in enumerate(METROTEC.items()):
        lines += [
            f"  - id: mt{index}",
            "    provider: metrotec",
            f"    username: {user}",
            f"    password: {password}",
            f"    base_url: {sim.metrotec_url}",
            "    poll_interval: 10",
            "    offline_after: 86400",
        ]
    lines += [
        "commands:",
        "  allow:",
        "    - {accounts: ['*'], vehicles: ['*'], commands: [lights, task/create]}",
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class Fleet:
    """The instances alive, started and killed through the fork server."""

    def __init__(self, forkserver: ForkServer, config: Path, logs: Path) -> None:
        self.forkserver = forkserver
        self.config = config
        self.logs = logs
        self.pids: list[int] = []
        self.started = 0

    def start(self) -> int:
        self.started += 1
        pid = self.forkserver.spawn(self.config, self.logs / f"instance-{self.started}.log")
        self.pids.append(pid)
        return pid

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.forkserver.reap(pid)
        self.pids.remove(pid)

    def stop_all(self) -> None:
        for pid in list(self.pids):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
        for pid in list(self.pids):
            self.forkserver.reap(pid)
        self.pids.clear()


def cluster(recorder: Recorder) -> dict[str, Any]:
    payload = recorder.retained.get("fleet/bridge/info")
    return json.loads(payload) if payload else {}


def holders(recorder: Recorder) -> dict[str, str | None]:
    return {a: row.get("instance") for a, row in cluster(recorder).get("accounts", {}).items()}


def pid_of(instance: str) -> int:
    return int(instance.rsplit("-", 2)[1])


def all_held_by(recorder: Recorder, pids: list[int]) -> bool:
    found = holders(recorder)
    expected = {a for a in found if a.startswith("fz")} | {f"mt{i}" for i in range(len(METROTEC))}
    return (
        set(found) == expected
        and bool(found)
        and all(owner is not None and pid_of(owner) in pids for owner in found.values())
    )


def settled(recorder: Recorder, pids: list[int]) -> bool:
    """Every account held by an instance alive, and every instance alive holding
    its share: the moment a kill takes something away. (Killing an instance that
    has not yet taken its share proves nothing, and under load, a test that does
    not wait for this kills eight newcomers in a second, with no instance left
    subscribed to hear the commands sent meanwhile.)"""
    return all_held_by(recorder, pids) and {
        pid_of(owner or "") for owner in holders(recorder).values()
    } == set(pids)


def answers(recorder: Recorder) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for message in recorder.messages:
        if message.topic.startswith("fleet/bridge/response/") and message.payload:
            data = json.loads(message.payload)
            found.setdefault(str(data.get("transaction")), []).append(data)
    return found


def metrotec_vehicles(recorder: Recorder, account: str) -> list[str]:
    prefix = f"fleet/{account}/"
    return sorted(
        t[len(prefix) :]
        for t in recorder.retained
        if t.startswith(prefix) and "/" not in t[len(prefix) :] and t != f"{prefix}quota"
    )


def journal(pg: Postgres) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.url) as conn:
        return conn.execute(
            "SELECT key, command, status, answered_at IS NOT NULL, response FROM command_journal"
            " ORDER BY key"
        ).fetchall()


def ledger_calls(pg: Postgres, scope_like: str) -> int:
    with psycopg.connect(pg.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM quota_ledger WHERE scope LIKE %s", (scope_like,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fleetize", [2, 5])
async def test_three_instances_killed_one_by_one_lose_and_double_nothing(
    fleetize: int,
    postgres: Postgres,
    mosquitto: Mosquitto,
    recorder: Recorder,
    live_sim: SimulatorServer,
    forkserver: ForkServer,
    tmp_path: Path,
    tally: Tally,
) -> None:
    config = write_config(tmp_path / "config.yaml", postgres, mosquitto, live_sim, fleetize)
    fleet = Fleet(forkserver, config, tmp_path)
    tokens = FLEETIZE[:fleetize]
    rng = random.Random(12)
    sent: dict[str, dict[str, Any]] = {}
    takeovers: list[float] = []
    try:
        for _ in range(3):
            fleet.start()
        await recorder.wait_for(
            lambda: (
                settled(recorder, fleet.pids) and len(cluster(recorder).get("instances", {})) == 3
            ),
            timeout=60,
        )
        await recorder.wait_for(
            lambda: all(len(metrotec_vehicles(recorder, f"mt{i}")) == 2 for i in range(3)),
            timeout=60,
        )
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for round_ in range(8):
                for _ in range(3):
                    account = f"mt{rng.randrange(3)}"
                    vehicle = rng.choice(metrotec_vehicles(recorder, account))
                    transaction = f"r{round_}-{uuid.uuid4().hex[:8]}"
                    if rng.random() < 0.5:
                        name = "task/create"
                        body: dict[str, Any] = {
                            "account": account,
                            "vehicle": vehicle,
                            "order_ref": f"order-{transaction}",
                            "latitude": 52.1,
                            "longitude": 4.3,
                            "start_time": "2026-12-08T08:00:00Z",
                            "stop_time": "2026-12-08T09:00:00Z",
                            "description": "delivery",
                        }
                    else:
                        name = "lights"
                        body = {"account": account, "vehicle": vehicle, "state": "ON"}
                    sent[transaction] = {"command": name, **body}
                    await client.publish(
                        f"fleet/bridge/request/{name}",
                        json.dumps({"transaction": transaction, **body}),
                        qos=1,
                    )
                victim = rng.choice(fleet.pids)
                killed_at = time.monotonic()
                fleet.kill(victim)
                tally.injected("sigkill")
                fleet.start()
                await recorder.wait_for(lambda: all_held_by(recorder, fleet.pids), timeout=60)
                takeovers.append(time.monotonic() - killed_at)
                await recorder.wait_for(lambda: settled(recorder, fleet.pids), timeout=60)
        try:
            await recorder.wait_for(lambda: set(answers(recorder)) >= set(sent), timeout=120)
            # The five accounts behind one address take turns on the spacing, by
            # whichever instance holds them last: each gets its turn.
            await recorder.wait_for(
                lambda: all(live_sim.fleetize.counters.by_token[t] > 0 for t in tokens),
                timeout=120,
            )
        except AssertionError:
            missing = set(sent) - set(answers(recorder))
            raise AssertionError(
                f"not answered: {missing}; journal: {journal(postgres)}; answers: "
                f"{answers(recorder)}; sent: {sent}"
            ) from None
    finally:
        running_until = recorder.mark()
        fleet.stop_all()

    # Home Assistant saw one bridge all along: what its entities' availability
    # follows never went offline through eight kills.
    offline = [
        m.topic
        for m in recorder.messages[:running_until]
        if m.payload == b"offline"
        and (m.topic == "fleet/bridge/state" or m.topic.endswith("/availability"))
    ]
    assert offline == []
    got = answers(recorder)
    lost = set(sent) - set(got)
    # An answer is sent once; again only after a kill in the instant between the
    # broker taking it and the journal saying so, and then the same answer.
    changed = {
        tx: a for tx, a in got.items() if len({json.dumps(x, sort_keys=True) for x in a}) > 1
    }
    orders = Counter(task.order_ref for task in live_sim.metrotec.tasks)
    created = {f"order-{tx}" for tx, body in sent.items() if body["command"] == "task/create"}
    fleetize = live_sim.fleetize.stats()
    print(
        f"instances: commands={len(sent)} answered={len(got)} takeover_max_s={max(takeovers):.1f}"
        f" fleetize_calls={sum(live_sim.fleetize.counters.by_token.values())}"
        f" errors={fleetize['errors']}"
    )
    tally.commands_accepted += len(sent)
    tally.commands_answered += len(set(sent) & set(got))
    tally.redelivered += sum(len(a) - 1 for a in got.values())
    tally.duplicates += sum(n > 1 for n in orders.values()) + len(changed)
    tally.violations += fleetize["violations"]
    assert lost == set()
    assert changed == {}, json.dumps(changed)
    assert all(a[0]["status"] == "ok" for tx, a in got.items() if tx in sent), got
    assert {ref for ref in orders if ref in created} == created
    assert all(orders[ref] == 1 for ref in created)
    assert fleetize["errors"].get("1055", 0) == 0
    assert fleetize["errors"].get("1002", 0) == 0
    assert fleetize["violations"] == 0
    # Every FLEETIZE call is in the shared ledger: none was made unrecorded (the
    # daily budget's rows, per account: the spacing's are pruned after seconds;
    # a kill between recording a call and sending it leaves one more row).
    assert ledger_calls(postgres, "fleetize:account:%") >= sum(
        live_sim.fleetize.counters.by_token.values()
    )
    assert all(live_sim.fleetize.counters.by_token[token] > 0 for token in tokens)


@pytest.mark.timeout(300)
async def test_an_instance_paused_past_its_lease_makes_no_call_when_resumed(
    postgres: Postgres,
    mosquitto: Mosquitto,
    recorder: Recorder,
    live_sim: SimulatorServer,
    forkserver: ForkServer,
    tmp_path: Path,
    tally: Tally,
) -> None:
    config = write_config(tmp_path / "config.yaml", postgres, mosquitto, live_sim)
    fleet = Fleet(forkserver, config, tmp_path)
    try:
        first = fleet.start()
        await recorder.wait_for(lambda: all_held_by(recorder, [first]), timeout=60)
        second = fleet.start()
        # The joiner takes its share: both hold some.
        await recorder.wait_for(
            lambda: (
                all_held_by(recorder, fleet.pids)
                and {pid_of(o or "") for o in holders(recorder).values()} == {first, second}
            ),
            timeout=60,
        )
        paused = pid_of(holders(recorder)["fz0"] or "")
        other = second if paused == first else first
        os.kill(paused, signal.SIGSTOP)
        tally.injected("sigstop")
        await recorder.wait_for(lambda: all_held_by(recorder, [other]), timeout=60)
        calls = sum(live_sim.fleetize.counters.by_token.values())
        # The new holder polls FLEETIZE again (its turn on the shared spacing).
        await recorder.wait_for(
            lambda: sum(live_sim.fleetize.counters.by_token.values()) > calls + 1, timeout=30
        )
        os.kill(paused, signal.SIGCONT)
        # Resumed, it finds its leases gone and says it holds nothing.
        own = next(
            t
            for t in recorder.retained
            if t.startswith("fleet/bridge/instance/") and t.endswith("/info") and f"-{paused}-" in t
        )
        await recorder.wait_for(
            lambda: json.loads(recorder.retained[own]).get("accounts") == {}, timeout=60
        )
        # (Alive again, it then takes a share anew, under new leases.)
    finally:
        fleet.stop_all()
    fleetize = live_sim.fleetize.stats()
    assert fleetize["errors"].get("1055", 0) == 0
    assert fleetize["violations"] == 0
    assert ledger_calls(postgres, "fleetize:account:%") >= sum(
        live_sim.fleetize.counters.by_token.values()
    )
