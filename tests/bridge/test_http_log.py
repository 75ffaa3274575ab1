"""`--log-level debug` logs every provider request: method, URL with credentials
redacted, status and time; never a token, a key or a body."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from bridge.providers.http import HttpClient, RetryPolicy, redact_url

SECRET = "s3cret-token-value"


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    failures = [503]

    async def handler(request: web.Request) -> web.Response:
        if failures:
            return web.Response(status=failures.pop(), text="upstream connect error")
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app) as srv:
        yield srv


async def no_sleep(_: float) -> None:
    return None


async def test_every_attempt_is_logged_at_debug_without_secrets(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge.providers.http")
    async with aiohttp.ClientSession() as session:
        client = HttpClient(session, "fleetize", retry=RetryPolicy(attempts=3), sleep=no_sleep)
        url = URL(str(server.make_url("/v2/devicelist")))
        await client.request(
            "POST",
            url,
            headers={"Authorization": f"Bearer {SECRET}"},
            params={"apitoken": SECRET, "scope": "device_id"},
            form={"apitoken": SECRET},
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.providers.http"]
    requests = [line for line in lines if "/v2/devicelist" in line]
    assert len(requests) == 2, lines  # the 503 and its retry
    assert "POST" in requests[0]
    assert "-> 503 in " in requests[0]
    assert " ms" in requests[0]
    assert "-> 200 in " in requests[1]
    assert "apitoken=***" in requests[1]
    assert "scope=device_id" in requests[1]
    assert SECRET not in caplog.text


async def test_nothing_is_logged_above_debug(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.providers.http")
    async with aiohttp.ClientSession() as session:
        client = HttpClient(session, "telemax", sleep=no_sleep)
        await client.request("GET", URL(str(server.make_url("/api/v2/companies"))))
    assert not [r for r in caplog.records if "/api/v2/companies" in r.getMessage()]


def test_redacted_urls_keep_what_helps_and_drop_credentials() -> None:
    url = URL("https://user:pw@api.example.com/media/1.jpg?expires=5&signature=abc&api_key=k")
    text = redact_url(url, {"limit": "5"})
    assert text == "https://api.example.com/media/1.jpg?expires=5&signature=***&api_key=***&limit=5"
