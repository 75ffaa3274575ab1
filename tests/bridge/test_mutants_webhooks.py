"""The webhook receiver's edges that mutation testing found untested (see
docs/mutants-webhooks-commander.md): limits at their exact size, bodies read in
several pieces, per-account log throttles, a stopped receiver, the HTTP log's
filter, and the counters /metrics reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bridge.providers import telemax, tracksafe365
from bridge.webhooks import LOG_BURST, LOG_WINDOW_S, WebhookReceiver, WebhookTarget, build_targets
from tests.bridge.test_webhooks import (
    TM_BODY,
    TM_PATH,
    TM_SECRET,
    TS_PATH,
    TS_SECRET,
    Inbox,
    _config,
    _pollers,
    raw_exchange,
    refusals,
    sign,
    ts_body,
    webhooks_config,
)
from tests.support.mqtt import free_port

HTTP_LOGGER = "bridge.webhooks.http"


@dataclass
class Receiving:
    receiver: WebhookReceiver
    ts: Inbox
    tm: Inbox
    clock: list[float]

    @property
    def port(self) -> int:
        return self.receiver.port

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}{path}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers or {}) as response,
        ):
            answer: dict[str, Any] = await response.json()
            return response.status, answer


@contextlib.asynccontextmanager
async def receiving(**options: Any) -> AsyncIterator[Receiving]:
    ts, tm, clock = Inbox(), Inbox(), [1000.0]
    targets = {
        TS_PATH: WebhookTarget(
            "ts", "tracksafe365", TS_SECRET, tracksafe365.webhook_alerts, ts.deliver
        ),
        TM_PATH: WebhookTarget(
            "au", "telemax", TM_SECRET, telemax.webhook_alerts, tm.deliver, "X-Telemax-Delivery"
        ),
    }
    receiver = WebhookReceiver(webhooks_config(**options), targets, port=0, clock=lambda: clock[0])
    await receiver.start()
    try:
        yield Receiving(receiver, ts, tm, clock)
    finally:
        await receiver.stop()


def padded(size: int) -> bytes:
    """A TrackSafe365 webhook body of exactly `size` bytes (JSON, trailing spaces)."""
    body = ts_body()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def chunked_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 request with a chunked body (no Content-Length), closing after."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Transfer-Encoding: chunked\r\n{head}\r\n"
        ).encode()
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )


# --- body limits ------------------------------------------------------------------------


async def test_a_body_of_exactly_max_body_without_length_is_accepted() -> None:
    async with receiving() as hooks:
        body = padded(4096)
        request = chunked_request(TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)})
        status, rest = await raw_exchange(hooks.port, request)
        assert status == 200
        assert b'"alerts": 1' in rest
        assert len(hooks.ts.batches) == 1


async def test_a_body_of_exactly_max_body_with_length_is_accepted() -> None:
    async with receiving() as hooks:
        body = padded(4096)
        status, answer = await hooks.post(
            TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)}
        )
        assert (status, answer) == (200, {"status": "ok", "alerts": 1})


async def test_a_large_body_read_in_several_pieces_is_signed_as_sent() -> None:
    # Over 64 KiB: read in more than one piece, which must be joined as they came.
    async with receiving(max_body=200_000) as hooks:
        body = padded(150_000)
        status, answer = await hooks.post(
            TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)}
        )
        assert (status, answer) == (200, {"status": "ok", "alerts": 1})


async def test_a_body_without_length_is_capped_by_its_total_not_by_each_piece() -> None:
    # Every piece read (at most 64 KiB) is under max_body; together they are over it.
    async with receiving(max_body=100_000) as hooks:
        body = padded(180_000)
        request = chunked_request(TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)})
        status, rest = await raw_exchange(hooks.port, request)
        assert status == 413
        assert b"body over 100000 bytes" in rest
        assert hooks.ts.batches == []


# --- signatures and config ------------------------------------------------------------


async def test_a_signature_header_that_is_not_utf8_is_a_bad_signature() -> None:
    async with receiving() as hooks:
        body = TM_BODY
        request = (
            (
                f"POST {TM_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n"
            ).encode()
            + b"X-Telemax-Signature: sha256=\xff\xfe"
            + b"0" * 60
            + b"\r\n\r\n"
            + body
        )
        status, rest = await raw_exchange(hooks.port, request)
        assert status == 401
        assert b"bad signature" in rest
        assert hooks.tm.batches == []


def test_an_account_of_a_provider_without_webhooks_is_told_which_have_them() -> None:
    config = _config({"accounts": {"depot": {"path": "/hooks/depot", "secret": "s3cret"}}})
    message = re.escape(
        "webhooks.accounts.depot: fleetize sends no webhooks (only telemax, tracksafe365 do)"
    )
    with pytest.raises(ValueError, match=f"^{message}$"):
        build_targets(config, _pollers())


# --- refusals in the log --------------------------------------------------------------


async def test_the_log_allows_a_new_burst_once_the_window_has_passed_exactly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with receiving() as hooks:
        for _ in range(LOG_BURST + 1):
            assert (await hooks.post(TS_PATH, ts_body()))[0] == 401
        assert len(refusals(caplog)) == LOG_BURST
        hooks.clock[0] += LOG_WINDOW_S
        assert (await hooks.post(TS_PATH, ts_body()))[0] == 401
        assert len(refusals(caplog)) == LOG_BURST + 1
        assert refusals(caplog)[-1].endswith("(1 more refused since the last line)")


async def test_a_burst_on_one_account_does_not_silence_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with receiving() as hooks:
        for _ in range(LOG_BURST + 5):
            assert (await hooks.post(TS_PATH, ts_body()))[0] == 401
        assert (await hooks.post(TM_PATH, b"{}"))[0] == 401
        lines = refusals(caplog)
        assert len(lines) == LOG_BURST + 1
        assert lines[-1] == "Webhook au: refused a request from 127.0.0.1: missing signature"


def test_a_http_log_line_without_an_exception_is_kept_as_it_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=HTTP_LOGGER)
    logging.getLogger(HTTP_LOGGER).info("Connection from %s closed", "127.0.0.1")
    (record,) = [r for r in caplog.records if r.name == HTTP_LOGGER]
    assert (record.levelname, record.getMessage()) == ("INFO", "Connection from 127.0.0.1 closed")


def test_a_http_log_line_names_its_exception_as_a_warning_without_quoting_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=HTTP_LOGGER)
    # Also an exception never raised (so without a traceback) is only named.
    error = ValueError("zz-hunter2-zz")
    logging.getLogger(HTTP_LOGGER).error(
        "Error handling request from %s", "10.0.0.7", exc_info=error
    )
    (record,) = [r for r in caplog.records if r.name == HTTP_LOGGER]
    line = logging.Formatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING Error handling request from 10.0.0.7: ValueError"
    assert "hunter2" not in caplog.text


# --- lifecycle and counters -----------------------------------------------------------


async def test_a_stopped_receiver_no_longer_listens() -> None:
    async with receiving() as hooks:
        port = hooks.port
        assert (await hooks.post("/nowhere", b"x"))[0] == 404
        await hooks.receiver.stop()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)


async def test_the_counters_count_each_refusal_once() -> None:
    async with receiving() as hooks:
        for _ in range(3):
            assert (await hooks.post("/wp-login.php", b"x"))[0] == 404
        head = f"POST {TS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n".encode()
        for _ in range(2):
            assert (await raw_exchange(hooks.port, head))[0] == 413
        assert (hooks.receiver.stats.not_found, hooks.receiver.stats.too_large) == (3, 2)


# --- answers and counters for every outcome ------------------------------------------


async def test_each_refusal_answers_what_went_wrong() -> None:
    async with receiving() as hooks:
        assert await hooks.post("/wp-login.php", b"x") == (
            404,
            {"status": "error", "error": "not found"},
        )
        url = f"http://127.0.0.1:{hooks.port}{TS_PATH}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 405
            assert await response.json() == {"status": "error", "error": "only POST"}
        head = f"POST {TM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
        status, rest = await raw_exchange(hooks.port, head, b'{"id": 1, ')
        assert status == 408
        assert rest.endswith(b'{"status": "error", "error": "request body too slow"}')
        hooks.tm.failing = True
        headers = {"X-Telemax-Signature": "sha256=" + sign(TM_SECRET, TM_BODY)}
        assert await hooks.post(TM_PATH, TM_BODY, headers) == (
            503,
            {"status": "error", "error": "not delivered, try again"},
        )


class _Seen(logging.Handler):
    """Sets `event` when the receiver logs anything about a request."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()


async def test_the_counters_count_every_outcome_once_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge.webhooks")
    tm_headers = {"X-Telemax-Signature": "sha256=" + sign(TM_SECRET, TM_BODY)}
    slow = f"POST {TM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".encode()
    not_json = b"{not json"
    async with receiving() as hooks:
        for index in range(2):
            delivery = {**tm_headers, "X-Telemax-Delivery": f"dlv-{index}"}
            assert (await hooks.post(TM_PATH, TM_BODY, delivery))[0] == 200
            assert (await hooks.post(TM_PATH, TM_BODY, delivery))[1]["status"] == "duplicate"
            assert (await hooks.post(TM_PATH, TM_BODY))[0] == 401
            assert (await raw_exchange(hooks.port, slow, b"{"))[0] == 408
            bad = {"X-TS365-Signature": sign(TS_SECRET, not_json)}
            assert (await hooks.post(TS_PATH, not_json, bad))[0] == 400
            hooks.tm.failing = True
            assert (await hooks.post(TM_PATH, TM_BODY, tm_headers))[0] == 503
            hooks.tm.failing = False
        stats = hooks.receiver.stats
        counted = (stats.accepted, stats.duplicate, stats.unauthorized, stats.too_slow)
        assert counted == (2, 2, 2, 2)
        assert (stats.bad_request, stats.failed) == (2, 2)

        # A sender that hangs up mid-body is counted as a bad request too.
        seen = _Seen()
        logger = logging.getLogger("bridge.webhooks")
        logger.addHandler(seen)
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", hooks.port)
            writer.write(slow + b'{"id": 1')
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            async with asyncio.timeout(5):
                await seen.event.wait()
        finally:
            logger.removeHandler(seen)
        assert stats.bad_request == 3


async def test_a_refused_body_is_logged_with_the_parsers_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with receiving() as hooks:
        body = b"{not json"
        assert (await hooks.post(TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)}))[
            0
        ] == 400
        assert refusals(caplog) == [
            "Webhook ts: refused a request from 127.0.0.1: "
            "TrackSafe365 webhook: the body is not JSON"
        ]


async def test_a_failed_delivery_is_logged_naming_the_account_and_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with receiving() as hooks:
        hooks.tm.failing = True
        headers = {"X-Telemax-Signature": "sha256=" + sign(TM_SECRET, TM_BODY)}
        assert (await hooks.post(TM_PATH, TM_BODY, headers))[0] == 503
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert lines == ["Webhook au: delivering 1 alerts failed: ConnectionError"]


# --- where it listens -------------------------------------------------------------------


def _targets() -> dict[str, WebhookTarget]:
    inbox = Inbox()
    return {
        TS_PATH: WebhookTarget(
            "ts", "tracksafe365", TS_SECRET, tracksafe365.webhook_alerts, inbox.deliver
        )
    }


async def _listens(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@pytest.mark.parametrize(
    ("config_host", "override", "listening", "not_listening"),
    [
        ("127.0.0.2", None, "127.0.0.2", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.1"),
    ],
)
async def test_the_receiver_listens_on_the_host_it_is_given_or_the_configs(
    config_host: str, override: str | None, listening: str, not_listening: str
) -> None:
    receiver = WebhookReceiver(webhooks_config(host=config_host), _targets(), host=override, port=0)
    await receiver.start()
    try:
        assert await _listens(listening, receiver.port)
        assert not await _listens(not_listening, receiver.port)
    finally:
        await receiver.stop()


async def test_the_port_given_overrides_the_configs() -> None:
    port = free_port()
    receiver = WebhookReceiver(webhooks_config(host="127.0.0.1"), _targets(), port=port)
    assert receiver.port == port
    unstarted = WebhookReceiver(webhooks_config(port=9911), _targets())
    assert unstarted.port == 9911
    await receiver.start()
    try:
        assert receiver.port == port
        assert await _listens("127.0.0.1", port)
    finally:
        await receiver.stop()


async def test_the_receiver_writes_no_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with receiving() as hooks:
        assert (await hooks.post("/wp-login.php", b"x"))[0] == 404
        body = ts_body()
        assert (await hooks.post(TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)}))[
            0
        ] == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiohttp")] == []


def test_a_target_of_a_provider_without_a_signature_scheme_is_refused_by_path() -> None:
    inbox = Inbox()
    target = WebhookTarget(
        "depot", "fleetize", "s3cret", tracksafe365.webhook_alerts, inbox.deliver
    )
    with pytest.raises(
        ValueError, match=r"^webhook /hooks/depot: no signature scheme for fleetize$"
    ):
        WebhookReceiver(webhooks_config(), {"/hooks/depot": target})


async def test_the_receiver_says_where_it_listens_and_for_whom(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.webhooks")
    async with receiving() as hooks:
        port = hooks.port
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert lines == [
        f"Webhook receiver listening on 127.0.0.1:{port} for au (/hooks/au), ts (/hooks/ts)"
    ]
