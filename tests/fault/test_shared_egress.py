"""FLEETIZE accounts behind one address, over a simulated day: zero #1055.

FLEETIZE counts its 60 s spacing per source address: every account of a bridge
shares it (the simulator counts it per client IP, as documented, and all of
these come from 127.0.0.1). A real `fleet-bridge run` process (forked, SIGKILLed,
restarted: tests/fault/virtual_time.py puts it on the simulator's clock) polls
2 or 5 accounts through one simulated day, while

- it is SIGKILLed at random moments: when idle, when a FLEETIZE call arrives
  (the ledger holds it, FLEETIZE never saw it), just after FLEETIZE answered
  (FLEETIZE counted it, the bridge never saw the answer); every restart polls
  every account at once, which is when the accounts collided before;
- refreshes arrive at random moments, for random accounts.

FLEETIZE must answer no #1055 (nor #1002) all day, every refresh is answered
(done, or refused with when the spacing frees up), and each account gets its
share of the calls. The same with three processes one after another on one
store (the restart of an upgrade or a reboot, not a kill).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.model import parse_time
from bridge.simulator.faults import Rule
from bridge.simulator.server import SimulatorServer
from tests.fault.conftest import ForkServer, Tally
from tests.fault.virtual_time import SharedClock
from tests.support.mqtt import Message, Mosquitto, Recorder

DAY_START = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)


def token(index: int) -> str:
    return f"fleetize-egress-token-{index}"


@pytest.fixture
async def fleetize_sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=0,
        telemax_vehicles=0,
        metrotec_vehicles=0,
        tracksafe365_vehicles=0,
        fleetize_vehicles=3,
        speed=0,
        seed=12,
        start=DAY_START,
        fleetize_tokens=[token(i) for i in range(5)],
    ) as server:
        yield server


def write_config(tmp_path: Path, mosquitto: Mosquitto, sim: SimulatorServer, accounts: int) -> Path:
    rows = "".join(
        f"  - id: f{i}\n"
        "    provider: fleetize\n"
        f"    token: {token(i)}\n"
        f"    base_url: {sim.fleetize_url}\n"
        "    offline_after: 86400\n"
        for i in range(accounts)
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mqtt: {{host: {mosquitto.host}, port: {mosquitto.port}, client_id: egress,"
        " discovery: false}\n"
        f"store: {{path: {tmp_path / 'store.sqlite'}}}\n"
        "log_level: info\n"
        f"accounts:\n{rows}"
    )
    config.chmod(0o600)
    return config


@dataclass
class Day:
    """Drives bridge processes through a simulated day, event to event: the
    clock moves to the earliest `next_poll` the accounts published once every
    account has said when it polls next (and every refresh was answered)."""

    sim: SimulatorServer
    recorder: Recorder
    forkserver: ForkServer
    clock: SharedClock
    config: Path
    log: Path
    accounts: list[str]
    rng: random.Random
    pid: int | None = None
    killed: list[int] = field(default_factory=list)
    processes: int = 0
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    answers: list[dict[str, Any]] = field(default_factory=list)
    kills: dict[str, int] = field(default_factory=dict)
    _seen: int = 0
    _wakeups: set[asyncio.Task[None]] = field(default_factory=set)

    def start(self) -> None:
        self._seen = len(self.recorder.messages)
        self.reports.clear()
        self.pending.clear()
        self.sim.faults.clear()
        self.pid = self.forkserver.spawn_virtual(self.config, self.log, self.clock.path)
        self.processes += 1

    def now(self) -> datetime:
        return self.sim.clock.now()

    def scan(self) -> None:
        for message in self.recorder.messages[self._seen :]:
            parts = message.topic.split("/")
            if len(parts) == 3 and parts[2] == "quota" and parts[1] in self.accounts:
                self.reports[parts[1]] = json.loads(message.payload)
            elif message.topic == "fleet/bridge/response/refresh":
                answer = json.loads(message.payload)
                if answer.get("transaction") in self.pending:
                    self.pending.discard(answer["transaction"])
                    self.answers.append(answer)
        self._seen = len(self.recorder.messages)

    def next_polls(self) -> list[datetime] | None:
        """Every account's next poll, once all lie ahead (None: not settled)."""
        self.scan()
        if self.pending or set(self.reports) != set(self.accounts):
            return None
        # A stopped account (FLEETIZE blocked its token) polls no more.
        running = [r for r in self.reports.values() if r.get("available") is not False]
        times = [parse_time(r.get("next_poll")) for r in running]
        if not times or any(t is None or t <= self.now() for t in times):
            return None if running else [self.now() + DAY]
        return [t for t in times if t is not None]

    async def settle(self) -> list[datetime] | None:
        """The next polls, or None when the process was killed meanwhile."""
        pid = self.pid
        try:
            await self.recorder.wait_for(
                lambda: pid in self.killed or self.next_polls() is not None, timeout=20
            )
        except AssertionError:
            print(f"not settled at {self.now()}: {self.reports}, refreshes {self.pending}")
            raise
        return None if pid in self.killed else self.next_polls()

    def on_kill(self, pid: int) -> None:
        self.killed.append(pid)
        # Wakes the wait on the recorder: a killed bridge publishes nothing more.
        task = asyncio.get_running_loop().create_task(
            self.recorder.add(Message("test/killed", b"", False))
        )
        self._wakeups.add(task)
        task.add_done_callback(self._wakeups.discard)

    def reap_and_restart(self, store: Path) -> None:
        assert self.pid is not None
        assert self.forkserver.reap(self.pid) == 9  # SIGKILL
        assert integrity(store) == "ok"
        self.start()

    async def run(self, until: datetime, client: aiomqtt.Client, store: Path) -> None:
        while self.now() < until:
            polls = await self.settle()
            if polls is None:
                self.reap_and_restart(store)
                continue
            roll = self.rng.random()
            if roll < 0.01:
                self.kills["idle"] = self.kills.get("idle", 0) + 1
                assert self.pid is not None
                self.sim.faults._kill(self.pid)
                continue
            if roll < 0.035 and not self.sim.faults.rules:
                after = self.rng.random() < 0.5
                mode = "answered" if after else "arrival"
                self.kills[mode] = self.kills.get(mode, 0) + 1
                self.sim.faults.add(Rule("kill", provider="fleetize", pid=self.pid, after=after))
            elif roll < 0.09:
                # At a random moment before the next poll (a user does not wait
                # for one): often within some account's spacing, often not.
                gap = (min(min(polls), until) - self.now()).total_seconds()
                moment = self.now() + timedelta(seconds=self.rng.uniform(0, gap))
                self.clock.advance_to(moment, self.pid)
                transaction = f"refresh-{uuid.uuid4().hex[:8]}"
                self.pending.add(transaction)
                body = {"transaction": transaction, "account": self.rng.choice(self.accounts)}
                await client.publish(
                    "fleet/bridge/request/refresh", json.dumps(body).encode(), qos=1
                )
                continue  # answered at this instant, before the clock moves
            self.clock.advance_to(min(min(polls), until), self.pid)

    async def stop(self) -> None:
        """A clean stop (SIGTERM), as between the processes of an upgrade."""
        assert self.pid is not None
        mark = self.recorder.mark()
        os.kill(self.pid, signal.SIGTERM)
        await self.recorder.wait_for(
            lambda: any(
                m.topic == "fleet/bridge/state" and m.payload == b"offline"
                for m in self.recorder.since(mark)
            ),
            timeout=30,
        )
        assert self.forkserver.reap(self.pid) == 0
        self.pid = None


def integrity(store: Path) -> str:
    if not store.exists():
        return "ok"
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        return "; ".join(str(row[0]) for row in db.execute("PRAGMA integrity_check"))


def shares(sim: SimulatorServer, accounts: int) -> list[int]:
    return [sim.fleetize.counters.by_token[token(i)] for i in range(accounts)]


def check_the_day(day: Day, sim: SimulatorServer, accounts: int, tally: Tally) -> list[int]:
    errors = sim.fleetize.error_counts
    calls = shares(sim, accounts)
    print(
        f"\n{accounts} FLEETIZE accounts on one egress, {day.processes} processes "
        f"(kills: {day.kills}): calls per account {calls}, "
        f"#1055 {errors[1055]}, #1002 {errors[1002]}, refreshes {len(day.answers)} "
        f"({sum(a['status'] == 'ok' for a in day.answers)} done)"
    )
    tally.violations += errors[1055] + errors[1002]
    assert errors[1055] == 0
    assert errors[1002] == 0
    assert sim.fleetize.stats()["violations"] == 0
    # Each account its share: its own day's budget, spent evenly.
    assert min(calls) >= 0.8 * max(calls), calls
    assert min(calls) >= 70, calls
    # Every refresh is answered: done, or refused with when the spacing frees up.
    assert day.pending == set()
    for answer in day.answers:
        if answer["status"] != "ok":
            assert answer["data"]["available_at"], answer
            assert "spacing" in answer["data"]["budget"] or "daily" in answer["data"]["budget"]
    return calls


@pytest.mark.parametrize("accounts", [2, 5])
async def test_a_day_of_shared_spacing_with_kills_and_refreshes(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    fleetize_sim: SimulatorServer,
    forkserver: ForkServer,
    tally: Tally,
    accounts: int,
) -> None:
    sim = fleetize_sim
    clock = SharedClock(tmp_path / "clock", sim.clock)
    store = tmp_path / "store.sqlite"
    day = Day(
        sim,
        recorder,
        forkserver,
        clock,
        write_config(tmp_path, mosquitto, sim, accounts),
        tmp_path / "bridge.log",
        [f"f{i}" for i in range(accounts)],
        random.Random(accounts),
    )
    sim.faults.on_kill = day.on_kill
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        day.start()
        try:
            await day.run(DAY_START + DAY, client, store)
        finally:
            if day.pid is not None and day.pid not in day.killed:
                sim.faults._kill(day.pid)
                forkserver.reap(day.pid)
            clock.close()
    tally.injected("SIGKILL", sum(day.kills.values()))
    check_the_day(day, sim, accounts, tally)
    assert sum(day.kills.values()) >= 5, day.kills
    assert len(day.answers) >= 10
    assert integrity(store) == "ok"


async def test_a_day_in_three_processes_one_after_another(
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    fleetize_sim: SimulatorServer,
    forkserver: ForkServer,
    tally: Tally,
) -> None:
    """Each process polls a third of the day and is stopped cleanly; the next one
    resumes the shared spacing and the daily budgets from the store."""
    sim = fleetize_sim
    accounts = 5
    clock = SharedClock(tmp_path / "clock", sim.clock)
    store = tmp_path / "store.sqlite"
    day = Day(
        sim,
        recorder,
        forkserver,
        clock,
        write_config(tmp_path, mosquitto, sim, accounts),
        tmp_path / "bridge.log",
        [f"f{i}" for i in range(accounts)],
        random.Random(3),
    )
    # No kills here: refreshes only (the roll never lands below 0.035).
    day.rng = _NoKills(day.rng)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        try:
            for third in range(1, 4):
                day.start()
                await day.run(DAY_START + DAY * third / 3, client, store)
                await day.stop()
        finally:
            if day.pid is not None:
                sim.faults._kill(day.pid)
                forkserver.reap(day.pid)
            clock.close()
    assert day.processes == 3
    check_the_day(day, sim, accounts, tally)
    assert integrity(store) == "ok"


class _NoKills(random.Random):
    """Rolls above the kill thresholds: refreshes and plain steps only."""

    def __init__(self, inner: random.Random) -> None:
        super().__init__()
        self._inner = inner

    def random(self) -> float:
        return 0.035 + self._inner.random() * 0.965

    def choice(self, seq: Any) -> Any:
        return self._inner.choice(seq)
