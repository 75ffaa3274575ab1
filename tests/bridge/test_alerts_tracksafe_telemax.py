"""Alerts from TrackSafe365 (safety and DMS events) and Telemax (alert records):
polled from the simulators (frozen clock moved by hand) and parsed from webhook
bodies, into the one normalized Alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.errors import ProviderDataError
from bridge.model import Alert, AlertType, PollPlan, Severity, format_time, parse_time
from bridge.providers import telemax, tracksafe365
from bridge.providers.telemax import TelemaxProvider, TelemaxSettings
from bridge.providers.tracksafe365 import TracksafeProvider, TracksafeSettings
from bridge.simulator import SimulatorServer

START = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
LIVE, RESTRICTED = "ts365_live_demo", "ts365_rk_demo"
TELEMAX_KEY = "demo-telemax-key"
KMH_PER_MPH = 1.609344
EVENT_PATHS = ("/v2/safety/events", "/v2/safety/dms/events")


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=1,
        fleetize_vehicles=1,
        telemax_vehicles=8,
        metrotec_vehicles=1,
        tracksafe365_vehicles=8,
        speed=0,
        start=START,
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def tracksafe(
    session: aiohttp.ClientSession, server: SimulatorServer, key: str = LIVE, **options: Any
) -> TracksafeProvider:
    return TracksafeProvider(
        session, TracksafeSettings(api_key=key, base_url=server.tracksafe365_url, **options)
    )


def telemax_provider(
    session: aiohttp.ClientSession, server: SimulatorServer, **options: Any
) -> TelemaxProvider:
    return TelemaxProvider(
        session, TelemaxSettings(api_key=TELEMAX_KEY, base_url=server.telemax_url, **options)
    )


async def poll(provider: Any, server: SimulatorServer, **plan: Any) -> list[Alert]:
    update = await provider.poll(PollPlan(now=server.clock.now(), **plan))
    alerts: list[Alert] = update.alerts
    return alerts


async def sim_events(
    session: aiohttp.ClientSession, server: SimulatorServer, path: str, start: datetime
) -> list[dict[str, Any]]:
    """What the simulator lists for [start, now), asked directly."""
    params = {
        "startTime": format_time(start) or "",
        "endTime": format_time(server.clock.now()) or "",
        "include_media": "true",
    }
    headers = {"Authorization": f"Bearer {LIVE}"}
    async with session.get(server.tracksafe365_url + path, params=params, headers=headers) as r:
        assert r.status == 200
        data: list[dict[str, Any]] = (await r.json())["data"]
        return data


async def sim_records(
    session: aiohttp.ClientSession, server: SimulatorServer, start: datetime
) -> list[dict[str, Any]]:
    url = server.telemax_url
    async with session.post(
        url + "/api/v2/authentication/token/api-key", data={"apiKey": TELEMAX_KEY}
    ) as r:
        token = (await r.json())["access_token"]
    params = {
        "from": format_time(start) or "",
        "to": format_time(server.clock.now()) or "",
        "pageSize": "500",
    }
    async with session.get(
        f"{url}/api/v2/companies/1042/alert-records",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 200
        items: list[dict[str, Any]] = (await r.json())["items"]
        return items


def event_paths(server: SimulatorServer) -> dict[str, int]:
    counts = server.tracksafe365.counters.by_path
    return {path: counts[path] for path in EVENT_PATHS if counts[path]}


# --- TrackSafe365 -------------------------------------------------------------------


async def test_tracksafe365_events_become_normalized_alerts(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = tracksafe(session, server, alert_lookback=6 * 3600)
    # The first poll of a run publishes vehicles only (their event entities first).
    assert await poll(provider, server, refresh_vehicles=True) == []
    assert event_paths(server) == {}
    server.clock.advance(6 * 3600)
    alerts = await poll(provider, server)
    # Two calls, one per endpoint, for the whole window.
    assert event_paths(server) == dict.fromkeys(EVENT_PATHS, 1)

    start = server.clock.now() - timedelta(hours=6)
    safety = await sim_events(session, server, "/safety/events", start)
    dms = await sim_events(session, server, "/safety/dms/events", start)
    assert {e["type"] for e in safety} >= {"speeding", "harsh_braking"}
    assert {e["type"] for e in dms} >= {"seatbelt", "distraction"}
    by_id = {alert.alert_id: alert for alert in alerts}
    assert sorted(by_id) == sorted(e["id"] for e in safety + dms)
    severities = {"low": Severity.INFO, "medium": Severity.WARNING, "high": Severity.CRITICAL}
    for event in safety + dms:
        alert = by_id[event["id"]]
        assert alert.type is AlertType(event["type"])  # the vocabulary shares the names
        assert alert.vehicle_id == event["vehicleId"]
        assert alert.time == parse_time(event["time"])
        assert alert.severity is severities[event["severity"]]
        assert alert.driver == event["driver"]["name"]
        assert alert.position is not None
        assert alert.position.latitude == event["location"]["latitude"]
        assert alert.position.longitude == event["location"]["longitude"]
        assert alert.media_url == event["media"][0]["url"]
        assert alert.details["provider_type"] == event["type"]
        assert alert.details["speed_kmh"] == pytest.approx(
            event["speedMilesPerHour"] * KMH_PER_MPH, abs=0.1
        )
        if "durationSeconds" in event:
            assert alert.details["duration_s"] == event["durationSeconds"]
    assert {a.type for a in alerts} <= TracksafeProvider.alert_types
    assert AlertType.OTHER not in {a.type for a in alerts}
    payload = by_id[dms[0]["id"]].to_json()
    assert payload["event_type"] == dms[0]["type"]
    assert payload["media_url"].endswith(".mp4")


async def test_tracksafe365_reads_events_at_most_every_interval(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = tracksafe(session, server, alert_interval=120)
    await poll(provider, server, refresh_vehicles=True)
    server.clock.advance(60)
    await poll(provider, server)
    assert event_paths(server) == dict.fromkeys(EVENT_PATHS, 1)
    server.clock.advance(60)
    await poll(provider, server)
    assert event_paths(server) == dict.fromkeys(EVENT_PATHS, 1)
    server.clock.advance(60)
    await poll(provider, server)
    assert event_paths(server) == dict.fromkeys(EVENT_PATHS, 2)


async def test_tracksafe365_window_resumes_from_the_checkpoint_after_a_restart(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    first = tracksafe(session, server)
    await poll(first, server, refresh_vehicles=True)
    server.clock.advance(3600)
    await poll(first, server)
    stopped_at = server.clock.now()
    checkpoint = first.checkpoint()
    assert checkpoint == {
        "safety_events_until": stopped_at.isoformat(),
        "dms_events_until": stopped_at.isoformat(),
    }

    # Down for five hours: the window starts before the stop, not an hour ago.
    server.clock.advance(5 * 3600)
    second = tracksafe(session, server)
    second.restore(checkpoint, [])
    assert await poll(second, server, refresh_vehicles=True) == []
    alerts = await poll(second, server)
    overlap = stopped_at - timedelta(hours=1)
    expected = [
        e["id"]
        for path in ("/safety/events", "/safety/dms/events")
        for e in await sim_events(session, server, path, overlap)
    ]
    assert sorted(a.alert_id for a in alerts) == sorted(expected)
    an_hour_ago = server.clock.now() - timedelta(hours=1)
    assert any(a.time < an_hour_ago for a in alerts), "found only what a fresh start finds"
    assert second.checkpoint()["safety_events_until"] == server.clock.now().isoformat()


async def test_tracksafe365_without_safety_read_keeps_positions_and_logs_once(
    server: SimulatorServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    provider = tracksafe(session, server, RESTRICTED)  # fleet:read only
    caplog.set_level(logging.INFO, logger="bridge.providers.tracksafe365")
    await poll(provider, server, refresh_vehicles=True)
    for _ in range(3):
        server.clock.advance(600)
        update = await provider.poll(PollPlan(now=server.clock.now()))
        assert update.alerts == []
        assert update.vehicles  # positions keep coming
    assert server.tracksafe365.forbidden["safety:read"] == 1  # not asked again for an hour
    server.clock.advance(3600)
    await poll(provider, server)
    assert server.tracksafe365.forbidden["safety:read"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "safety:read" in warnings[0]
    assert "positions keep coming" in warnings[0]


def test_tracksafe365_unknown_types_and_missing_fields() -> None:
    alert = tracksafe365.event_alert(
        {
            "id": "evt_1",
            "vehicleId": "veh_1",
            "type": "harshCornering",
            "time": "2025-03-03T10:00:00Z",
        }
    )
    assert alert is not None
    assert alert.type is AlertType.HARSH_CORNERING
    assert alert.severity is Severity.WARNING  # the type's default
    assert (alert.driver, alert.position, alert.media_url) == (None, None, None)

    other = tracksafe365.event_alert(
        {
            "id": "evt_2",
            "vehicle": {"id": "veh_2"},
            "type": "Cigarette Detected",
            "time": "2025-03-03T10:00:00Z",
            "driverName": "Ann",
            "location": {"latitude": 91, "longitude": 0},
            "mediaUrl": "javascript:alert(1)",
        }
    )
    assert other is not None
    assert other.type is AlertType.OTHER
    assert other.details["provider_type"] == "Cigarette Detected"
    assert other.severity is Severity.INFO
    assert other.driver == "Ann"
    assert other.position is None  # latitude out of range
    assert other.media_url is None  # only http(s) links

    drowsy = tracksafe365.event_alert(
        {"id": "e", "vehicleId": "v", "type": "drowsiness", "time": "2025-03-03T10:00:00Z"}
    )
    assert drowsy is not None
    assert drowsy.severity is Severity.CRITICAL
    for broken in (
        {"vehicleId": "v", "time": "2025-03-03T10:00:00Z"},
        {"id": "e", "vehicleId": "v"},
    ):
        assert tracksafe365.event_alert(broken) is None


DMS_EVENT = {
    "id": "evt_0000400001",
    "vehicleId": "veh_78dde6c4",
    "type": "phone_use",
    "time": "2025-03-03T10:00:11Z",
    "severity": "high",
    "location": {"latitude": 41.777473, "longitude": -87.822323},
    "speedMilesPerHour": 23.2,
    "driver": {"id": "drv_00004", "name": "Driver 0004"},
    "durationSeconds": 19,
    "media": [{"type": "video", "camera": "driver", "url": "https://cdn.example/e.mp4"}],
}


def test_tracksafe365_webhook_bodies() -> None:
    envelope = {"id": "wh_1", "type": "dms_event.created", "data": DMS_EVENT}
    (alert,) = tracksafe365.webhook_alerts(json.dumps(envelope).encode())
    assert alert == tracksafe365.event_alert(DMS_EVENT)
    assert alert.type is AlertType.PHONE_USE
    assert alert.severity is Severity.CRITICAL
    assert alert.driver == "Driver 0004"
    assert alert.media_url == "https://cdn.example/e.mp4"

    second = {**DMS_EVENT, "id": "evt_2", "type": "speeding"}
    listed = tracksafe365.webhook_alerts(json.dumps({"data": [DMS_EVENT, second]}).encode())
    assert [a.type for a in listed] == [AlertType.PHONE_USE, AlertType.SPEEDING]
    assert tracksafe365.webhook_alerts(json.dumps([DMS_EVENT]).encode()) == [alert]
    assert tracksafe365.webhook_alerts(json.dumps(DMS_EVENT).encode()) == [alert]
    # Other subscriptions carry no alert: accepted, nothing to publish.
    trip = {"type": "trip.completed", "data": {"id": "trip_1"}}
    assert tracksafe365.webhook_alerts(json.dumps(trip).encode()) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json at all", "not JSON"),
        (b"\xff\xfe secret-ish", "not JSON"),
        (b'{"hello": "world"}', "no event"),
        (b'{"type": "safety_event.created", "data": 42}', "neither an event nor a list"),
        (b'{"data": {"vehicleId": "veh_1", "type": "speeding"}}', "lacks id, vehicleId or time"),
    ],
)
def test_tracksafe365_webhook_garbage_is_a_data_error(body: bytes, problem: str) -> None:
    with pytest.raises(ProviderDataError, match=problem) as caught:
        tracksafe365.webhook_alerts(body)
    assert "hello" not in str(caught.value)
    assert "secret-ish" not in str(caught.value)


# --- Telemax -----------------------------------------------------------------------------


async def test_telemax_alert_records_become_normalized_alerts(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = telemax_provider(session, server, alert_lookback=6 * 3600)
    assert await poll(provider, server) == []
    assert server.telemax.counters.by_path["/api/v2/companies/1042/alert-records"] == 0
    server.clock.advance(6 * 3600)
    alerts = await poll(provider, server)
    assert server.telemax.counters.by_path["/api/v2/companies/1042/alert-records"] == 1

    records = await sim_records(session, server, server.clock.now() - timedelta(hours=6))
    assert {r["type"] for r in records} == {"Speeding", "HarshBraking"}
    by_id = {alert.alert_id: alert for alert in alerts}
    assert sorted(by_id) == sorted(str(r["id"]) for r in records)
    kinds = {"Speeding": AlertType.SPEEDING, "HarshBraking": AlertType.HARSH_BRAKING}
    for record in records:
        alert = by_id[str(record["id"])]
        assert alert.type is kinds[record["type"]]
        assert alert.vehicle_id == str(record["vehicleId"])
        # No zone on the wire: UTC.
        assert alert.time == datetime.fromisoformat(record["time"]).replace(tzinfo=UTC)
        assert alert.severity is Severity.WARNING
        assert alert.details == {"provider_type": record["type"], "description": record["details"]}
    assert {a.type for a in alerts} <= TelemaxProvider.alert_types
    assert provider.checkpoint()["alerts_until"] == server.clock.now().isoformat()

    # A restart resumes the window from the checkpoint.
    restarted = telemax_provider(session, server)
    restarted.restore(provider.checkpoint(), [])
    assert restarted.checkpoint()["alerts_until"] == server.clock.now().isoformat()


def test_telemax_record_types_and_webhook_bodies() -> None:
    record = {
        "id": 30000051,
        "vehicleId": 40003,
        "type": "Speeding",
        "time": "2025-03-03T16:12:37",
        "details": "100 km/h",
    }
    (alert,) = telemax.webhook_alerts(json.dumps(record).encode())
    assert alert.alert_id == "30000051"
    assert alert.vehicle_id == "40003"
    assert alert.time == datetime(2025, 3, 3, 16, 12, 37, tzinfo=UTC)
    assert alert.type is AlertType.SPEEDING
    for envelope in ({"data": record}, {"items": [record]}, {"alerts": [record]}, [record]):
        assert telemax.webhook_alerts(json.dumps(envelope).encode()) == [alert]

    cases = {
        "harsh_braking": AlertType.HARSH_BRAKING,
        "Geofence Exit": AlertType.GEOZONE_EXIT,
        "PANIC": AlertType.PANIC,
        "DoorOpened": AlertType.OTHER,
    }
    for raw, kind in cases.items():
        mapped = telemax.record_alert({**record, "type": raw})
        assert mapped is not None
        assert mapped.type is kind
        assert mapped.details["provider_type"] == raw
    panic = telemax.record_alert({**record, "type": "Panic", "lat": -33.9, "lng": 151.2})
    assert panic is not None
    assert panic.severity is Severity.CRITICAL
    assert panic.position is not None
    assert (panic.position.latitude, panic.position.longitude) == (-33.9, 151.2)
    assert telemax.record_alert({**record, "type": "DoorOpened"}) in telemax.webhook_alerts(
        json.dumps({**record, "type": "DoorOpened"}).encode()
    )

    for body, problem in (
        (b"<xml/>", "not JSON"),
        (b'"just text"', "no alert record"),
        (b'{"data": [{"id": 1}]}', "lacks id, vehicleId or time"),
    ):
        with pytest.raises(ProviderDataError, match=problem):
            telemax.webhook_alerts(body)
