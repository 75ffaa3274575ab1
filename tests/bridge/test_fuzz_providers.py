"""Provider payloads fuzzed from what the simulators serve (the documented shapes).

Each provider client polls its simulator while every answer is mutated: values
of the wrong type, missing keys, huge arrays, deep nesting, bytes that are not
UTF-8, cut-off bodies. A poll either works or fails with the provider error the
poller understands; nothing else escapes, and the next clean poll works again
(a parse error is contained to that poll).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from bridge.config import BridgeConfig
from bridge.errors import ProviderError, QuotaExhaustedError
from bridge.model import PollPlan, Priority
from bridge.providers import create_provider
from bridge.quota import Quota
from bridge.simulator.faults import Rule
from bridge.simulator.server import SimulatorServer
from bridge.store import Store

ROUNDS = 24
MUTATIONS = [
    Rule("wrong_types", rate=0.15),
    Rule("wrong_types", rate=0.5),
    Rule("huge", rate=5000),
    Rule("deep", depth=20_000),
    Rule("non_utf8"),
    Rule("truncate"),
]


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=3, speed=0, seed=4) as server:
        yield server


def settings_for(sim: SimulatorServer, provider: str) -> object:
    account = {
        "samsara": {"token": "demo-samsara-token", "base_url": sim.samsara_url},
        "fleetize": {"token": "demo-fleetize-token", "base_url": sim.fleetize_url},
        "telemax": {"api_key": "demo-telemax-key", "base_url": sim.telemax_url},
        "metrotec": {"api_key": "demo-metrotec-key", "base_url": sim.metrotec_url},
        "tracksafe365": {
            "api_key": "ts365_test_" + "0" * 24,
            "sandbox_url": sim.tracksafe365_sandbox_url,
        },
    }[provider]
    config = BridgeConfig.model_validate(
        {"accounts": [{"id": "f", "provider": provider, "request_timeout": 2, **account}]}
    )
    return config.accounts[0].provider_settings()


@pytest.mark.parametrize("provider", ["samsara", "fleetize", "telemax", "metrotec", "tracksafe365"])
async def test_mutated_answers_fail_one_poll_at_most(sim: SimulatorServer, provider: str) -> None:
    if provider == "tracksafe365":
        from bridge.simulator.tracksafe365_keys import default_keys

        sandbox = next(k for k in default_keys() if k.environment == "sandbox")
        settings = settings_for(sim, provider)
        settings = type(settings)(**{**vars_of(settings), "api_key": sandbox.key})
    else:
        settings = settings_for(sim, provider)
    with Store(":memory:") as store:
        quota = Quota("f", (), store)  # no budgets: the fuzzing is about parsing
        async with aiohttp.ClientSession() as session:
            client = create_provider(provider, session, settings, quota)
            http = client._http  # type: ignore[attr-defined]
            http.retry.attempts = 1
            outcomes: dict[str, int] = {}
            for round_ in range(ROUNDS):
                rule = MUTATIONS[round_ % len(MUTATIONS)]
                sim.faults.add(
                    Rule(
                        rule.kind,
                        provider=provider,
                        rate=rule.rate,
                        depth=rule.depth,
                        seed=round_,
                        count=-1,
                    )
                )
                reset_limits(sim)
                plan = PollPlan(
                    refresh_vehicles=True, priority=Priority.POLL, now=datetime.now(UTC)
                )
                try:
                    update = await client.poll(plan)
                    outcomes["ok"] = outcomes.get("ok", 0) + 1
                    assert all(v.vehicle_id for v in update.vehicles)
                except (ProviderError, QuotaExhaustedError) as err:
                    outcomes[type(err).__name__] = outcomes.get(type(err).__name__, 0) + 1
                sim.faults.clear()
                # The next clean poll works: nothing of the bad answer stuck.
                reset_limits(sim)
                await client.poll(
                    PollPlan(refresh_vehicles=True, priority=Priority.POLL, now=datetime.now(UTC))
                )
            await client.close()
    assert sum(outcomes.values()) == ROUNDS


def vars_of(settings: object) -> dict[str, object]:
    from dataclasses import asdict, is_dataclass

    assert is_dataclass(settings)
    return asdict(settings)  # type: ignore[arg-type]


def reset_limits(sim: SimulatorServer) -> None:
    """The simulators' own rate limits are not what this test is about."""
    sim.fleetize.control_actions()["reset-quota"]({})
    sim.telemax.control_actions()["reset-limits"]({})
    sim.tracksafe365.control_actions()["reset-limits"]({})
    sim.samsara.limiter.reset()
    sim.samsara.safety_limiter.reset()
