"""Two accounts with one Samsara token spend from one 150 requests/s: the
simulator (150/s per token, as documented) never answers 429. Tokens of one
organisation spend from its 200/s (the simulator has no organisation limit:
the count of calls says it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from bridge.errors import QuotaExhaustedError
from bridge.model import PollPlan
from bridge.providers import create_provider, default_budgets
from bridge.providers.samsara import SamsaraSettings
from bridge.quota import MemoryLedger, QuotaBook, Scopes
from bridge.simulator.server import SimulatorServer

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
TOKENS = ("samsara-shared-token", "samsara-other-token")


class Frozen:
    """One instant for both sides: the simulator's rate limiter and the quota."""

    def monotonic(self) -> float:
        return 1000.0

    def now(self) -> datetime:
        return NOW


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=3, speed=0, start=NOW, samsara_tokens=TOKENS, monotonic=Frozen().monotonic
    ) as server:
        yield server


async def poll_until_refused(providers: list[object]) -> int:
    """Poll the accounts in turn within one second until the quota refuses each."""
    polls, refused = 0, set()
    while len(refused) < len(providers):
        for index, provider in enumerate(providers):
            if index in refused:
                continue
            try:
                await provider.poll(PollPlan(refresh_vehicles=polls < 2, now=NOW))  # type: ignore[attr-defined]
                polls += 1
            except QuotaExhaustedError:
                refused.add(index)
    return polls


@pytest.mark.parametrize(
    ("tokens", "organisation", "most"),
    [
        ((TOKENS[0], TOKENS[0]), None, 150),  # one token: its 150/s between them
        ((TOKENS[0], TOKENS[1]), None, 300),  # two tokens: 150/s each
        ((TOKENS[0], TOKENS[1]), "acme", 200),  # of one organisation: 200/s for all
    ],
)
async def test_accounts_with_one_token_share_its_150_per_second(
    sim: SimulatorServer, tokens: tuple[str, str], organisation: str | None, most: int
) -> None:
    clock = Frozen()
    book = QuotaBook(MemoryLedger())
    async with aiohttp.ClientSession() as session:
        providers = []
        for index, token in enumerate(tokens):
            quota = book.quota(
                f"acct-{index}",
                default_budgets("samsara"),
                Scopes.of("samsara", token, organisation=organisation),
                now=clock.now,
            )
            settings = SamsaraSettings(token=token, base_url=sim.samsara_url, safety_events=False)
            providers.append(create_provider("samsara", session, settings, quota))
        await poll_until_refused(providers)
        for provider in providers:
            await provider.close()
    calls = sum(sim.samsara.counters.by_token[token] for token in set(tokens))
    assert sim.samsara.counters.rate_limited == 0  # never a 429
    # The token's budget is spent whole (by both accounts together), not twice.
    assert most - 3 <= calls <= most
