"""The FLEETIZE simulator counts its 60 s spacing per source address, as FLEETIZE
documents ("API requests from the same IP address are limited to one request per
60 seconds"): two tokens from one address share it, another address has its own.
A block (#1002) after repeated violations falls on the token that violated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from bridge.simulator import SimulatorServer

START = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
TOKENS = ("token-north", "token-south")


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=0,
        fleetize_vehicles=2,
        telemax_vehicles=0,
        speed=0,
        start=START,
        fleetize_tokens=TOKENS,
    ) as srv:
        yield srv


async def call(server: SimulatorServer, token: str, address: str = "127.0.0.1") -> str:
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(f"{server.fleetize_url}/devicelist", data={"apitoken": token}) as resp,
    ):
        return (await resp.text())[:12]


async def test_two_tokens_from_one_address_share_the_spacing(server: SimulatorServer) -> None:
    assert not (await call(server, TOKENS[0])).startswith("ERROR")
    server.clock.advance(30)
    assert await call(server, TOKENS[1]) == "ERROR #1055 "
    # From another address the same token is not held back.
    server.clock.advance(60)
    assert not (await call(server, TOKENS[0])).startswith("ERROR")
    assert not (await call(server, TOKENS[1], "127.0.0.2")).startswith("ERROR")
    assert server.fleetize.quota.violations == {TOKENS[1]: 1}


async def test_the_block_falls_on_the_token_that_kept_violating(
    server: SimulatorServer,
) -> None:
    assert not (await call(server, TOKENS[0])).startswith("ERROR")
    for _ in range(2):
        server.clock.advance(1)
        assert await call(server, TOKENS[1]) == "ERROR #1055 "
    server.clock.advance(1)
    assert await call(server, TOKENS[1]) == "ERROR #1002 "
    assert server.fleetize.quota.is_blocked(TOKENS[1])
    assert not server.fleetize.quota.is_blocked(TOKENS[0])
    server.clock.advance(61)
    assert not (await call(server, TOKENS[0])).startswith("ERROR")
