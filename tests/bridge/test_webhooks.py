"""The webhook receiver: signatures, replays, limits, bursts, and (through a real
Mosquitto) one publication per event whether it is polled, pushed, or both, also
across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config import BridgeConfig, WebhooksConfig
from bridge.model import Alert, AlertType
from bridge.mqtt.discovery import device_identifier
from bridge.poller import AccountPoller
from bridge.providers import telemax, tracksafe365
from bridge.simulator import SimulatorServer
from bridge.webhooks import (
    LOG_BURST,
    WebhookReceiver,
    WebhookTarget,
    build_targets,
)
from tests.bridge.test_alerts_tracksafe_telemax import DMS_EVENT, START, sim_events, sim_records
from tests.bridge.test_bridge_mqtt import running, settle
from tests.support.mqtt import Mosquitto, Recorder

TS_SECRET = "ts-hook-secret-0123456789"
TM_SECRET = "tm-hook-secret-9876543210"
TS_PATH, TM_PATH = "/hooks/ts", "/hooks/au"
LOGGER = "bridge.webhooks"
TELEMAX_RECORD = {
    "id": 30000051,
    "vehicleId": 40003,
    "type": "Speeding",
    "time": "2025-03-03T16:12:37",
    "details": "100 km/h",
}


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def ts_body(event: dict[str, Any] = DMS_EVENT) -> bytes:
    return json.dumps({"type": "dms_event.created", "data": event}).encode()


TM_BODY = json.dumps(TELEMAX_RECORD).encode()
Pusher = Callable[[str, Any], Awaitable[dict[str, Any]]]


@dataclass
class Inbox:
    """Stands in for AccountPoller.deliver_alerts."""

    batches: list[list[Alert]] = field(default_factory=list)
    failing: bool = False

    async def deliver(self, alerts: list[Alert]) -> int:
        if self.failing:
            raise ConnectionError("MQTT is down")
        self.batches.append(alerts)
        return len(alerts)


@dataclass
class Hooks:
    receiver: WebhookReceiver
    ts: Inbox
    tm: Inbox
    session: aiohttp.ClientSession
    clock: list[float]

    @property
    def port(self) -> int:
        return self.receiver.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.post(self.url(path), data=body, headers=headers or {}) as r:
            return r.status, await r.json()


def webhooks_config(**options: Any) -> WebhooksConfig:
    return WebhooksConfig.model_validate({"max_body": 4096, "read_timeout": 0.5, **options})


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    ts, tm, clock = Inbox(), Inbox(), [1000.0]
    targets = {
        TS_PATH: WebhookTarget(
            "ts",
            "tracksafe365",
            TS_SECRET,
            tracksafe365.webhook_alerts,
            ts.deliver,
            delivery_header="X-TS365-Delivery",
        ),
        TM_PATH: WebhookTarget(
            "au", "telemax", TM_SECRET, telemax.webhook_alerts, tm.deliver, "X-Telemax-Delivery"
        ),
    }
    receiver = WebhookReceiver(webhooks_config(), targets, port=0, clock=lambda: clock[0])
    await receiver.start()
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            yield Hooks(receiver, ts, tm, session, clock)
    finally:
        await receiver.stop()


async def raw_exchange(port: int, *parts: bytes) -> tuple[int, bytes]:
    """Send `parts` on one connection and read the answer until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            rest = await reader.read()
    finally:
        writer.close()
    return int(status_line.split()[1]), rest


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "refused" in r.getMessage()
    ]


def assert_nothing_leaked(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    for secret in (TS_SECRET, TM_SECRET, "Driver 0004", "phone_use", "100 km/h", *secrets):
        assert secret not in caplog.text


# --- signatures ----------------------------------------------------------------------


async def test_good_signatures_are_delivered(hooks: Hooks) -> None:
    body = ts_body()
    for signature in (sign(TS_SECRET, body), "sha256=" + sign(TS_SECRET, body).upper()):
        status, answer = await hooks.post(TS_PATH, body, {"X-TS365-Signature": signature})
        assert (status, answer) == (200, {"status": "ok", "alerts": 1})
    assert [[a.type for a in batch] for batch in hooks.ts.batches] == [[AlertType.PHONE_USE]] * 2

    signature = "sha256=" + sign(TM_SECRET, TM_BODY)
    status, answer = await hooks.post(TM_PATH, TM_BODY, {"X-Telemax-Signature": signature})
    assert (status, answer) == (200, {"status": "ok", "alerts": 1})
    (alert,) = hooks.tm.batches[0]
    assert (alert.alert_id, alert.vehicle_id, alert.type) == ("30000051", "40003", "speeding")


def _bad_signatures() -> list[tuple[str, str, dict[str, str], str]]:
    body = ts_body()
    good_ts, good_tm = sign(TS_SECRET, body), sign(TM_SECRET, TM_BODY)
    return [
        (TS_PATH, "missing", {}, "missing signature"),
        (TS_PATH, "empty", {"X-TS365-Signature": ""}, "missing signature"),
        (TS_PATH, "wrong secret", {"X-TS365-Signature": sign("guess", body)}, "bad signature"),
        (TS_PATH, "truncated", {"X-TS365-Signature": good_ts[:32]}, "bad signature"),
        (TS_PATH, "one digit off", {"X-TS365-Signature": good_ts[:-1] + "0"}, "bad signature"),
        (TS_PATH, "other body", {"X-TS365-Signature": sign(TS_SECRET, b"{}")}, "bad signature"),
        (TS_PATH, "prefix only", {"X-TS365-Signature": "sha256="}, "bad signature"),
        (TS_PATH, "wrong header", {"X-Telemax-Signature": good_ts}, "missing signature"),
        (TM_PATH, "bare hex", {"X-Telemax-Signature": good_tm}, "bad signature"),
        (TM_PATH, "truncated", {"X-Telemax-Signature": "sha256=" + good_tm[:-2]}, "bad signature"),
        (TM_PATH, "sha1 scheme", {"X-Telemax-Signature": "sha1=" + good_tm}, "bad signature"),
        (TM_PATH, "not hex", {"X-Telemax-Signature": "sha256=zzzz\u00e9"}, "bad signature"),
    ]


@pytest.mark.parametrize(
    ("path", "case", "headers", "reason"),
    _bad_signatures(),
    ids=[f"{p.rsplit('/', 1)[1]}-{c}" for p, c, _, _ in _bad_signatures()],
)
async def test_bad_signatures_are_refused_and_logged_without_the_payload(
    hooks: Hooks,
    caplog: pytest.LogCaptureFixture,
    path: str,
    case: str,
    headers: dict[str, str],
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = ts_body() if path == TS_PATH else TM_BODY
    status, answer = await hooks.post(path, body, headers)
    assert (status, answer) == (401, {"status": "error", "error": reason})
    assert hooks.ts.batches == hooks.tm.batches == []
    (line,) = refusals(caplog)
    account = "ts" if path == TS_PATH else "au"
    assert line == f"Webhook {account}: refused a request from 127.0.0.1: {reason}"
    assert_nothing_leaked(caplog, *(v for v in headers.values() if len(v) > 8))
    assert hooks.receiver.stats.unauthorized == 1


async def test_a_replayed_delivery_is_ignored(hooks: Hooks) -> None:
    headers = {
        "X-Telemax-Signature": "sha256=" + sign(TM_SECRET, TM_BODY),
        "X-Telemax-Delivery": "dlv-1",
    }
    assert await hooks.post(TM_PATH, TM_BODY, headers) == (200, {"status": "ok", "alerts": 1})
    assert await hooks.post(TM_PATH, TM_BODY, headers) == (200, {"status": "duplicate"})
    assert len(hooks.tm.batches) == 1
    # Delivery ids are the account's own: another account's "dlv-1" is new.
    ts_headers = {"X-TS365-Signature": sign(TS_SECRET, ts_body()), "X-TS365-Delivery": "dlv-1"}
    assert (await hooks.post(TS_PATH, ts_body(), ts_headers))[1]["status"] == "ok"
    # A new id for the same body passes on: the store's alert ids catch that one.
    headers["X-Telemax-Delivery"] = "dlv-2"
    assert (await hooks.post(TM_PATH, TM_BODY, headers))[1]["status"] == "ok"
    assert len(hooks.tm.batches) == 2


async def test_replay_memory_is_bounded(hooks: Hooks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.webhooks.MAX_DELIVERY_IDS", 3)
    signature = "sha256=" + sign(TM_SECRET, TM_BODY)
    for delivery in ("a", "b", "c", "d"):
        headers = {"X-Telemax-Signature": signature, "X-Telemax-Delivery": delivery}
        assert (await hooks.post(TM_PATH, TM_BODY, headers))[1]["status"] == "ok"
    for delivery, expected in (("d", "duplicate"), ("b", "duplicate"), ("a", "ok")):
        headers = {"X-Telemax-Signature": signature, "X-Telemax-Delivery": delivery}
        assert (await hooks.post(TM_PATH, TM_BODY, headers))[1]["status"] == expected


async def test_a_failed_delivery_asks_for_a_retry(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {
        "X-Telemax-Signature": "sha256=" + sign(TM_SECRET, TM_BODY),
        "X-Telemax-Delivery": "dlv-9",
    }
    hooks.tm.failing = True
    status, answer = await hooks.post(TM_PATH, TM_BODY, headers)
    assert status == 503
    assert answer["status"] == "error"
    hooks.tm.failing = False
    # Not remembered as delivered: the retry with the same id goes through.
    assert await hooks.post(TM_PATH, TM_BODY, headers) == (200, {"status": "ok", "alerts": 1})
    assert_nothing_leaked(caplog)


async def test_a_signed_body_that_is_no_payload_is_a_400(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"password": "hunter2-in-the-body"'
    status, answer = await hooks.post(TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)})
    assert (status, answer) == (
        400,
        {"status": "error", "error": "TrackSafe365 webhook: the body is not JSON"},
    )
    body = b'{"data": [{"id": 1}]}'
    headers = {"X-Telemax-Signature": "sha256=" + sign(TM_SECRET, body)}
    status, answer = await hooks.post(TM_PATH, body, headers)
    assert status == 400
    assert "lacks id, vehicleId or time" in answer["error"]
    assert hooks.ts.batches == hooks.tm.batches == []
    assert len(refusals(caplog)) == 2
    assert_nothing_leaked(caplog, "hunter2")


# --- HTTP limits ------------------------------------------------------------------------


async def test_unknown_paths_and_other_methods(hooks: Hooks) -> None:
    body = ts_body()
    headers = {"X-TS365-Signature": sign(TS_SECRET, body)}
    assert (await hooks.post("/hooks/other", body, headers))[0] == 404
    assert (await hooks.post(TS_PATH + "/", body, headers))[0] == 404
    async with hooks.session.get(hooks.url(TS_PATH)) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    assert hooks.ts.batches == []


async def test_an_oversized_body_is_refused_before_it_is_read(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    # Only the headers are sent: a receiver that waited for the 10 MB would hang.
    head = (
        f"POST {TS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    ).encode()
    status, rest = await raw_exchange(hooks.port, head)
    assert status == 413
    assert b"body over 4096 bytes" in rest
    assert refusals(caplog) == [
        "Webhook ts: refused a request from 127.0.0.1: body over 4096 bytes"
    ]


async def test_a_body_without_length_is_capped_while_read(hooks: Hooks) -> None:
    head = (f"POST {TM_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"x" * 5000  # one chunk past max_body, its end never sent
    status, _ = await raw_exchange(hooks.port, head, f"{len(chunk):x}\r\n".encode() + chunk)
    assert status == 413
    assert hooks.receiver.stats.too_large == 1
    assert hooks.tm.batches == []


async def test_a_slow_body_is_cut_off(hooks: Hooks, caplog: pytest.LogCaptureFixture) -> None:
    head = (f"POST {TM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").encode()
    status, _ = await raw_exchange(hooks.port, head, b'{"id": 1, ')  # and then nothing
    assert status == 408
    assert refusals(caplog) == [
        "Webhook au: refused a request from 127.0.0.1: body not received within 0.5s"
    ]
    # Still serving.
    headers = {"X-Telemax-Signature": "sha256=" + sign(TM_SECRET, TM_BODY)}
    assert (await hooks.post(TM_PATH, TM_BODY, headers))[0] == 200


async def test_a_malformed_request_is_logged_without_quoting_it(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    head = f"POST {TM_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    status, _ = await raw_exchange(hooks.port, head, b"5\r\nabcde\r\nzz-hunter2-zz\r\n")
    assert status == 400
    (line,) = [r for r in caplog.records if r.name == "bridge.webhooks.http"]
    assert line.levelno == logging.WARNING
    assert line.getMessage().endswith("from 127.0.0.1: BadHttpMessage")
    assert "hunter2" not in caplog.text
    assert hooks.tm.batches == []


async def test_a_burst_of_bad_requests_does_not_stop_good_ones(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    body = ts_body()

    async def bad(index: int) -> int:
        kind = index % 4
        if kind == 3:
            return (await hooks.post("/wp-login.php", b"x"))[0]
        headers = {} if kind == 0 else {"X-TS365-Signature": sign(f"guess-{index}", body)}
        if kind == 2:
            headers["X-TS365-Signature"] = "sha256=" + "0" * 64
        return (await hooks.post(TS_PATH, body, headers))[0]

    statuses = await asyncio.gather(*(bad(i) for i in range(200)))
    assert statuses.count(401) == 150
    assert statuses.count(404) == 50
    assert hooks.ts.batches == []

    async with asyncio.timeout(2):
        status, answer = await hooks.post(
            TS_PATH, body, {"X-TS365-Signature": sign(TS_SECRET, body)}
        )
    assert (status, answer) == (200, {"status": "ok", "alerts": 1})

    # The log is not flooded: a burst is summarised on the next line it allows.
    assert len(refusals(caplog)) == LOG_BURST
    hooks.clock[0] += 61
    assert (await hooks.post(TS_PATH, body))[0] == 401
    assert refusals(caplog)[-1].endswith(
        f"missing signature ({150 - LOG_BURST} more refused since the last line)"
    )
    assert_nothing_leaked(caplog)


# --- targets from the config -------------------------------------------------------------


def _config(webhooks: dict[str, Any]) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "accounts": [
                {"id": "ts", "provider": "tracksafe365", "api_key": "ts365_live_demo"},
                {"id": "au", "provider": "telemax", "api_key": "demo-telemax-key"},
                {"id": "depot", "provider": "fleetize", "token": "demo-fleetize-token"},
            ],
            "webhooks": webhooks,
        }
    )


def _pollers() -> dict[str, AccountPoller]:
    async def deliver(alerts: list[Alert]) -> int:
        return len(alerts)

    def poller(provider: str) -> AccountPoller:
        fake = SimpleNamespace(provider=SimpleNamespace(name=provider), deliver_alerts=deliver)
        return cast(AccountPoller, fake)

    return {"ts": poller("tracksafe365"), "au": poller("telemax"), "depot": poller("fleetize")}


def test_build_targets_matches_accounts_to_their_provider() -> None:
    config = _config(
        {
            "accounts": {
                "ts": {"path": TS_PATH, "secret": TS_SECRET, "delivery_header": "X-Id"},
                "au": {"path": TM_PATH, "secret": TM_SECRET},
            }
        }
    )
    pollers = _pollers()
    targets = build_targets(config, pollers)
    assert sorted(targets) == [TM_PATH, TS_PATH]
    ts, au = targets[TS_PATH], targets[TM_PATH]
    assert (ts.account, ts.provider, ts.secret, ts.delivery_header) == (
        "ts",
        "tracksafe365",
        TS_SECRET,
        "X-Id",
    )
    assert ts.parse is tracksafe365.webhook_alerts
    assert ts.deliver == pollers["ts"].deliver_alerts
    assert (au.provider, au.delivery_header, au.parse) == (
        "telemax",
        "X-Telemax-Delivery",
        telemax.webhook_alerts,
    )
    assert TS_SECRET not in repr(ts)


@pytest.mark.parametrize(
    ("webhooks", "pollers", "message"),
    [
        (
            {"accounts": {"depot": {"path": "/hooks/depot", "secret": "s3cret"}}},
            None,
            "webhooks.accounts.depot: fleetize sends no webhooks",
        ),
        (
            {
                "accounts": {
                    "ts": {"path": "/hooks/same", "secret": "s3cret"},
                    "au": {"path": "/hooks/same", "secret": "s3cret"},
                }
            },
            None,
            "webhooks.accounts.au: path /hooks/same is used by ts too",
        ),
        (
            {"accounts": {"ts": {"path": TS_PATH, "secret": "s3cret"}}},
            {},
            "webhooks.accounts.ts: no such account is running",
        ),
    ],
)
def test_build_targets_names_the_account_it_cannot_serve(
    webhooks: dict[str, Any], pollers: dict[str, AccountPoller] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build_targets(_config(webhooks), _pollers() if pollers is None else pollers)


# --- through the bridge and a real broker -----------------------------------------------


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=1,
        fleetize_vehicles=1,
        telemax_vehicles=16,
        metrotec_vehicles=1,
        tracksafe365_vehicles=16,
        speed=0,
        start=START,
    ) as server:
        # Five simulated hours of driving: events in the last hour to find.
        server.clock.advance(5 * 3600)
        yield server


def bridge_config(mosquitto: Mosquitto, simulator: SimulatorServer, tmp_path: Path) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "hooks-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": "ts",
                    "provider": "tracksafe365",
                    "api_key": "ts365_live_demo",
                    "base_url": simulator.tracksafe365_url,
                    "offline_after": 86400,
                },
                {
                    "id": "au",
                    "provider": "telemax",
                    "api_key": "demo-telemax-key",
                    "base_url": simulator.telemax_url,
                    "offline_after": 86400,
                },
            ],
            # Started by the test itself (on a free port), not by the bridge.
            "webhooks": {
                "enabled": False,
                "accounts": {
                    "ts": {"path": TS_PATH, "secret": TS_SECRET},
                    "au": {"path": TM_PATH, "secret": TM_SECRET},
                },
            },
        }
    )


def alert_ids(recorder: Recorder, account: str, since: int = 0) -> list[str]:
    return [
        json.loads(m.payload)["id"]
        for m in recorder.since(since, f"fleet/{account}/")
        if m.topic.endswith("/alert")
    ]


@contextlib.asynccontextmanager
async def receiving(config: BridgeConfig, bridge: Bridge) -> AsyncIterator[Pusher]:
    receiver = WebhookReceiver(config.webhooks, build_targets(config, bridge.pollers), port=0)
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as session:

            async def push(account: str, payload: Any) -> dict[str, Any]:
                body = json.dumps(payload).encode()
                if account == "ts":
                    path, headers = TS_PATH, {"X-TS365-Signature": sign(TS_SECRET, body)}
                else:
                    signature = "sha256=" + sign(TM_SECRET, body)
                    path, headers = TM_PATH, {"X-Telemax-Signature": signature}
                url = f"http://127.0.0.1:{receiver.port}{path}"
                async with session.post(url, data=body, headers=headers) as response:
                    assert response.status == 200
                    answer: dict[str, Any] = await response.json()
                    return answer

            yield push
    finally:
        await receiver.stop()


async def poll_again(bridge: Bridge) -> None:
    """One more poll of every account after the first (which reads no alerts)."""
    for poller in bridge.pollers.values():
        await poller.wait_polls(1)
        target = poller.health.polls + 1
        poller.request_poll()
        await poller.wait_polls(target)


async def test_an_event_polled_and_pushed_is_published_once_also_after_a_restart(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    config = bridge_config(mosquitto, simulator, tmp_path)
    clock = simulator.clock
    # What the second poll of a run reads: the last hour (the first reads none).
    hour_ago = clock.now() - timedelta(hours=1)
    async with aiohttp.ClientSession() as session:
        ts_events = [
            event
            for path in ("/safety/events", "/safety/dms/events")
            for event in await sim_events(session, simulator, path, hour_ago)
        ]
        tm_records = await sim_records(session, simulator, hour_ago)
    assert len(ts_events) >= 2
    assert len(tm_records) >= 2
    pushed_ts, pushed_tm = ts_events[0], tm_records[0]
    asked = simulator.tracksafe365.counters.by_path["/v2/safety/events"]
    envelope = {"type": "safety_event.created", "data": pushed_ts}

    async with running(config, now=clock.now) as bridge:
        for poller in bridge.pollers.values():
            await poller.wait_polls(1)
        async with receiving(config, bridge) as push:
            # Pushed before any poll reads events: published at once.
            assert await push("ts", envelope) == {"status": "ok", "alerts": 1}
            assert await push("au", pushed_tm) == {"status": "ok", "alerts": 1}
            await recorder.wait_for(
                lambda: (
                    alert_ids(recorder, "ts") == [pushed_ts["id"]]
                    and alert_ids(recorder, "au") == [str(pushed_tm["id"])]
                )
            )
            (message,) = [m for m in recorder.messages if m.topic.endswith("/alert")][:1]
            assert message.topic == f"fleet/ts/{pushed_ts['vehicleId']}/alert"
            assert not message.retain
            payload = json.loads(message.payload)
            assert payload["event_type"] == pushed_ts["type"]
            assert payload["driver"] == pushed_ts["driver"]["name"]
            assert payload["media_url"] == pushed_ts["media"][0]["url"]
            assert payload["stale"] is False

            # The next polls find it again with the rest: only the rest is new.
            await poll_again(bridge)
            await settle(recorder, mosquitto, bridge)
            assert sorted(alert_ids(recorder, "ts")) == sorted(e["id"] for e in ts_events)
            assert sorted(alert_ids(recorder, "au")) == sorted(str(r["id"]) for r in tm_records)
            # A provider's retry (a new delivery id) brings nothing new either.
            assert await push("ts", envelope) == {"status": "ok", "alerts": 0}
            assert await push("au", {"data": tm_records}) == {"status": "ok", "alerts": 0}

        node = device_identifier("ts", pushed_ts["vehicleId"])
        event_entity = json.loads(recorder.retained[f"homeassistant/event/{node}/alert/config"])
        assert event_entity["event_types"] == sorted(
            t.value for t in tracksafe365.TracksafeProvider.alert_types
        )
        await settle(recorder, mosquitto, bridge)
    mark = recorder.mark()

    # Restarted on the same store: polls and pushes of the same events publish nothing.
    async with running(config, now=clock.now) as bridge:
        await poll_again(bridge)
        async with receiving(config, bridge) as push:
            assert await push("ts", envelope) == {"status": "ok", "alerts": 0}
            assert await push("au", pushed_tm) == {"status": "ok", "alerts": 0}
        await settle(recorder, mosquitto, bridge)
        assert bridge.pollers["ts"].health.polls >= 2
    assert alert_ids(recorder, "ts", mark) == []
    assert alert_ids(recorder, "au", mark) == []
    # One read per run: the second poll of each.
    assert simulator.tracksafe365.counters.by_path["/v2/safety/events"] == asked + 2


async def test_the_bridge_starts_the_receiver_when_enabled(
    mosquitto: Mosquitto, recorder: Recorder, simulator: SimulatorServer, tmp_path: Path
) -> None:
    from tests.support.mqtt import free_port

    config = bridge_config(mosquitto, simulator, tmp_path)
    port = free_port()
    webhooks = config.webhooks.model_copy(update={"enabled": True, "port": port})
    config = config.model_copy(update={"webhooks": webhooks})
    body = ts_body()
    async with running(config) as bridge, aiohttp.ClientSession() as session:
        await bridge.pollers["ts"].wait_polls(1)
        url = f"http://127.0.0.1:{port}{TS_PATH}"
        headers = {"X-TS365-Signature": sign(TS_SECRET, body)}
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 200
            assert (await response.json())["alerts"] == 1
        await recorder.wait_for(lambda: DMS_EVENT["id"] in alert_ids(recorder, "ts"))
