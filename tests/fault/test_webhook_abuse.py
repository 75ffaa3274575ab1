"""Webhook abuse while the bridge polls: bad signatures, replays, oversized and
slow bodies (slowloris) do not hold up polling, and a good delivery still gets in."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp

from bridge.simulator.server import SimulatorServer
from tests.bridge.test_webhooks import sign, ts_body
from tests.fault.conftest import SECRETS, Tally, make_config, poll_all, running
from tests.support.mqtt import Mosquitto, Recorder, free_port

SLOW_CLIENTS = 100


async def slow_body(port: int) -> None:
    """Headers promise 1 KiB; the body trickles in a byte at a time."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /hooks/ts HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n"
        b"X-TS365-Signature: sha256=00\r\n\r\n"
    )
    with contextlib.suppress(ConnectionError):
        for _ in range(1024):
            writer.write(b"{")
            await writer.drain()
            await asyncio.sleep(0.05)
    writer.close()


async def test_abuse_of_the_receiver_does_not_degrade_polling(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, sim: SimulatorServer, tally: Tally
) -> None:
    port = free_port()
    config = make_config(
        mosquitto,
        sim,
        tmp_path,
        webhooks={
            "enabled": True,
            "port": port,
            "read_timeout": 1,
            "max_body": 4096,
            "accounts": {"ts": {"path": "/hooks/ts", "secret": SECRETS["webhook"]}},
        },
    )
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        started = time.monotonic()
        await poll_all(bridge)
        quiet = time.monotonic() - started

        slow = [asyncio.create_task(slow_body(port)) for _ in range(SLOW_CLIENTS)]
        url = f"http://127.0.0.1:{port}/hooks/ts"
        statuses: list[int] = []
        async with aiohttp.ClientSession() as http:

            async def post(body: bytes, signature: str) -> None:
                async with http.post(
                    url, data=body, headers={"X-TS365-Signature": signature}
                ) as response:
                    statuses.append(response.status)

            abuse = [post(ts_body(), "sha256=" + "0" * 64) for _ in range(100)]
            abuse += [post(b"x" * 100_000, "sha256=00") for _ in range(20)]
            good = ts_body()
            abuse += [post(good, "sha256=" + sign(SECRETS["webhook"], good)) for _ in range(5)]
            started = time.monotonic()
            await asyncio.gather(poll_all(bridge), *abuse)
            busy = time.monotonic() - started
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        tally.injected("webhook abuse", SLOW_CLIENTS + 125)
        stats = bridge_receiver_stats(statuses)
        assert stats[401] == 100
        assert stats[413] == 20
        assert stats[200] == 5  # the good one once, then replays of the same alert
        # Polling under abuse: done, and not held up by seconds.
        assert busy < quiet + 5
        for poller in bridge.pollers.values():
            assert poller.health.status.value == "ok", poller.account


def bridge_receiver_stats(statuses: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {200: 0, 401: 0, 413: 0}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts
