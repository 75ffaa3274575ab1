"""Fixtures of the fault, crash and security suite.

Every test here runs the bridge against the simulators and a real Mosquitto and
injects faults; `tally` counts what was injected and what was checked, and the
session ends with one line of totals (the closing note of docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.mqtt.client import Backoff
from bridge.providers import default_budgets
from bridge.providers.http import RetryPolicy
from bridge.quota import BudgetKind
from bridge.simulator import tracksafe365_keys
from bridge.simulator.server import SimulatorServer
from tests.support.mqtt import Mosquitto, Recorder, mosquitto, recorder

__all__ = ["mosquitto", "recorder"]

# Secrets made for this session: long, random, each one greppable on its own.
SECRETS = {
    "samsara": "samsara-" + secrets.token_hex(16),
    "fleetize": "fleetize-" + secrets.token_hex(16),
    "telemax": "telemax-" + secrets.token_hex(16),
    "metrotec_password": "metrotec-" + secrets.token_hex(16),
    "tracksafe365": "ts365_live_" + secrets.token_hex(16),
    "webhook": "hook-" + secrets.token_hex(16),
    # Characters that JSON and URLs escape: an echo of it is not the secret as is.
    "mqtt": "mqtt-" + secrets.token_hex(16) + '/"+&= ?%',
}
METROTEC_USER = "fleet-ops"
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, mid-morning


@dataclass
class Tally:
    """What the whole suite injected and found (printed at the end of the session)."""

    faults: int = 0
    commands_accepted: int = 0
    commands_answered: int = 0
    duplicates: int = 0
    #: Answers sent again, identical, after a kill between the broker taking
    #: them and the journal saying so (QoS 1's at-least-once; see reliability.md).
    redelivered: int = 0
    violations: int = 0
    secrets_found: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def injected(self, kind: str, count: int = 1) -> None:
        self.faults += count
        self.by_kind[kind] = self.by_kind.get(kind, 0) + count


_TALLY = Tally()


@pytest.fixture
def tally() -> Tally:
    return _TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TALLY.faults and not _TALLY.commands_accepted:
        return
    t = _TALLY
    terminalreporter.write_line(
        f"fault suite: {t.faults} faults injected, {t.commands_accepted} commands accepted "
        f"and {t.commands_answered} answered, {t.duplicates} duplicates "
        f"({t.redelivered} identical answers redelivered after a kill), "
        f"{t.violations} quota violations, {t.secrets_found} secrets found"
    )
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(t.by_kind.items()))
    terminalreporter.write_line(f"fault suite: injected by kind: {kinds}")


class ForkServer:
    """`python -m tests.fault.forkserver`: forks a bridge process in milliseconds."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fault.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, line: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def spawn(self, config: Path, log: Path) -> int:
        return int(self._ask(f"spawn {config} {log}"))

    def spawn_virtual(self, config: Path, log: Path, clock: Path) -> int:
        """A bridge on the clock the test moves (tests/fault/virtual_time.py)."""
        return int(self._ask(f"spawn-virtual {config} {log} {clock}"))

    def reap(self, pid: int) -> int:
        return int(self._ask(f"reap {pid}"))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


@pytest.fixture
def forkserver() -> Iterator[ForkServer]:
    server = ForkServer()
    yield server
    server.close()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """Every provider, on a frozen simulated clock the bridge shares."""
    async with SimulatorServer(
        vehicles=4,
        speed=0,
        seed=5,
        start=START,
        samsara_tokens=(SECRETS["samsara"],),
        fleetize_tokens=(SECRETS["fleetize"],),
        telemax_api_keys=(SECRETS["telemax"],),
        metrotec_users={METROTEC_USER: SECRETS["metrotec_password"]},
        tracksafe365_keys=[tracksafe365_keys.make_key(SECRETS["tracksafe365"])],
        fleetize_vehicles=3,
        telemax_vehicles=3,
        metrotec_vehicles=3,
        tracksafe365_vehicles=3,
    ) as server:
        yield server


def accounts(sim: SimulatorServer, **overrides: Any) -> list[dict[str, Any]]:
    """One account per provider, polled only when a test asks (poll_interval 3600)."""
    common = {"poll_interval": 3600, "offline_after": 86400, "request_timeout": 1}
    rows: list[dict[str, Any]] = [
        {
            "id": "sam",
            "provider": "samsara",
            "token": SECRETS["samsara"],
            "base_url": sim.samsara_url,
            **common,
        },
        {
            "id": "fz",
            "provider": "fleetize",
            "token": SECRETS["fleetize"],
            "base_url": sim.fleetize_url,
            "offline_after": 86400,
            "request_timeout": 1,
        },
        {
            "id": "tmx",
            "provider": "telemax",
            "api_key": SECRETS["telemax"],
            "base_url": sim.telemax_url,
            **common,
        },
        {
            "id": "mt",
            "provider": "metrotec",
            "username": METROTEC_USER,
            "password": SECRETS["metrotec_password"],
            "base_url": sim.metrotec_url,
            **common,
        },
        {
            "id": "ts",
            "provider": "tracksafe365",
            "api_key": SECRETS["tracksafe365"],
            "base_url": sim.tracksafe365_url,
            **common,
        },
    ]
    for row in rows:
        row.update(overrides.get(row["id"], {}))
    return rows


def make_config(
    mosquitto: Mosquitto, sim: SimulatorServer, tmp_path: Path, **extra: Any
) -> BridgeConfig:
    data: dict[str, Any] = {
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "fault-bridge"},
        "store": {"path": str(tmp_path / "store.sqlite")},
        "accounts": accounts(sim, **extra.pop("account_overrides", {})),
    }
    data.update(extra)
    return BridgeConfig.model_validate(data)


def fast(bridge: Bridge) -> None:
    """Real-time waits shortened: reconnects and in-request retries. Time that
    matters to quotas and staleness is the simulated clock's, which tests move."""
    bridge.link._backoff = Backoff(initial=0.05, maximum=0.2, current=0.05)
    for poller in bridge.pollers.values():
        http = poller.provider._http  # type: ignore[attr-defined]
        http.retry = RetryPolicy(
            attempts=2, backoff_base=0.01, backoff_max=0.02, max_retry_after=0.05
        )


@contextlib.asynccontextmanager
async def running(config: BridgeConfig, sim: SimulatorServer) -> AsyncIterator[Bridge]:
    """The bridge in-process on the simulator's clock, with fast retries."""
    bridge = Bridge(config, now=sim.clock.now)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    async with asyncio.timeout(10):
        await bridge.started.wait()
        # Commands a test publishes must find the bridge subscribed.
        await bridge.link.subscribed.wait()
    fast(bridge)
    try:
        yield bridge
    finally:
        stop.set()
        async with asyncio.timeout(20):
            with contextlib.suppress(Exception):
                await task


async def poll_all(bridge: Bridge, *names: str) -> None:
    """One more poll of each named account (all when none), and wait for it."""
    pollers = [bridge.pollers[n] for n in names] if names else list(bridge.pollers.values())
    targets = [(p, p.health.polls + 1) for p in pollers]
    for poller, _ in targets:
        poller.request_poll()
    await asyncio.gather(*(p.wait_polls(n, timeout=20) for p, n in targets))


def availability(recorder: Recorder, account: str) -> dict[str, bytes]:
    prefix = f"fleet/{account}/"
    return {
        t[len(prefix) : -len("/availability")]: p
        for t, p in recorder.retained.items()
        if t.startswith(prefix) and t.endswith("/availability")
    }


def quota_violations(sim: SimulatorServer, config: BridgeConfig) -> list[str]:
    """Budgets of the providers' published limits exceeded at the simulator, on
    the clock both sides share (and FLEETIZE's own violation counter)."""
    problems: list[str] = []
    for account in config.accounts:
        for budget in default_budgets(account.provider):
            if budget.kind is not BudgetKind.WINDOW or budget.endpoints:
                continue
            most = sim.faults.max_in_window(account.provider, budget.period, simulated=True)
            if most > budget.limit:
                problems.append(f"{account.id}: {most} > {budget.limit} in {budget.period}s")
    fleetize = sim.fleetize.stats()
    if fleetize.get("violations"):
        problems.append(f"fleetize: {fleetize['violations']} violations")
    return problems


def vehicle_topics(recorder: Recorder, account: str) -> dict[str, dict[str, Any]]:
    prefix = f"fleet/{account}/"
    found: dict[str, dict[str, Any]] = {}
    for topic, payload in recorder.retained.items():
        rest = topic[len(prefix) :] if topic.startswith(prefix) else ""
        if rest and "/" not in rest and rest != "quota":
            found[rest] = json.loads(payload)
    return found
