"""The Telemax simulator: form login, token lifetime, paging, records, sliding-window
limits with their headers, and the documented safety-score preset bug.

Every test runs a real `SimulatorServer` with a frozen clock (speed 0). Token
lifetime runs on the simulated clock; the rate limits on an injected monotonic
clock, moved by hand.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.simulator import SimulatorServer
from bridge.simulator.traffic import SlidingWindowLimiter
from bridge.simulator.vehicle import Phase, SimVehicle

START = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
API_KEY = "demo-telemax-key"
LOGIN = "/api/v2/authentication/token/api-key"
COMPANY = 1042
ERROR_KEYS = {"type", "code", "description", "requestId", "docUrl"}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def server(monotonic: FakeMonotonic) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=1,
        fleetize_vehicles=1,
        telemax_vehicles=6,
        speed=0,
        start=START,
        monotonic=monotonic,
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def login(session: aiohttp.ClientSession, server: SimulatorServer, **kwargs: Any) -> Reply:
    kwargs = kwargs or {"data": {"apiKey": API_KEY}}
    async with session.post(server.telemax_url + LOGIN, **kwargs) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


async def token_of(session: aiohttp.ClientSession, server: SimulatorServer) -> str:
    reply = await login(session, server)
    assert reply.status == 200, reply.body
    token: str = reply.json()["access_token"]
    return token


async def get(
    session: aiohttp.ClientSession,
    server: SimulatorServer,
    path: str,
    token: str | None,
    **params: str,
) -> Reply:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(server.telemax_url + path, headers=headers, params=params) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def utc(text: str) -> datetime:
    assert not text.endswith("Z"), text  # Telemax sends UTC without a zone
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def assert_error(reply: Reply, status: int, code: str | None = None) -> None:
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == ERROR_KEYS
    assert body["description"]
    assert body["docUrl"].startswith("https://")
    if code is not None:
        assert body["code"] == code
    for name in RATE_HEADERS:
        assert reply.headers[name].isdigit()


# --- authentication ------------------------------------------------------------------


async def test_login_takes_a_form_body_and_refuses_json(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    assert_error(await login(session, server, json={"apiKey": API_KEY}), 415)
    assert_error(await login(session, server, data={"apiKey": "stolen"}), 401, "invalid_api_key")
    assert_error(await login(session, server, data={"key": API_KEY}), 400)
    async with session.get(server.telemax_url + LOGIN) as resp:
        assert resp.status == 405
    reply = await login(session, server)
    assert reply.status == 200
    body = reply.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("bearer", 86399)
    assert body["access_token"].count(".") == 2  # JWT-like, opaque to clients
    assert reply.headers["X-RateLimit-Limit"] == "60"
    companies = await get(session, server, "/api/v2/companies", body["access_token"])
    assert companies.status == 200
    assert companies.json() == {
        "items": [{"Id": COMPANY, "Name": "Demo Transport Pty Ltd", "ParentId": None}],
        "currentPage": 1,
        "numberOfPages": 1,
        "totalResults": 1,
        "lastResultIndex": 1,
    }


async def test_tokens_expire_after_86399_simulated_seconds(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    token = await token_of(session, server)
    path = "/api/v2/companies"
    assert_error(await get(session, server, path, None), 401)
    assert_error(await get(session, server, path, "forged.token.here"), 401, "invalid_token")
    server.clock.advance(86398)
    assert (await get(session, server, path, token)).status == 200
    server.clock.advance(1)
    assert_error(await get(session, server, path, token), 401, "token_expired")

    fresh = await token_of(session, server)
    assert (await get(session, server, path, fresh)).status == 200
    expired = await session.post(server.base_url + "/_sim/telemax/expire-tokens")
    assert expired.status == 200
    assert_error(await get(session, server, path, fresh), 401, "token_expired")
    assert server.telemax.counters.by_status[401] == 4


# --- data ------------------------------------------------------------------------------


async def test_fleet_positions_come_in_pages_of_at_most_500(
    session: aiohttp.ClientSession,
) -> None:
    async with SimulatorServer(
        vehicles=1, fleetize_vehicles=1, telemax_vehicles=1201, speed=0, start=START
    ) as server:
        token = await token_of(session, server)
        path = f"/api/v2/companies/{COMPANY}/vehicles/last-position"
        default = (await get(session, server, path, token)).json()
        assert (len(default["items"]), default["numberOfPages"]) == (50, 25)
        listed: list[int] = []
        for page, size, last_index in ((1, 500, 500), (2, 500, 1000), (3, 201, 1201)):
            body = (await get(session, server, path, token, page=str(page), pageSize="500")).json()
            assert len(body["items"]) == size
            assert (body["currentPage"], body["numberOfPages"], body["totalResults"]) == (
                page,
                3,
                1201,
            )
            assert body["lastResultIndex"] == last_index
            listed += [item["id"] for item in body["items"]]
        assert listed == [int(i) for i in server.telemax_world.ids()]
        beyond = (await get(session, server, path, token, page="4", pageSize="500")).json()
        assert beyond["items"] == []
        for bad in ({"pageSize": "501"}, {"pageSize": "0"}, {"page": "0"}, {"page": "one"}):
            assert_error(await get(session, server, path, token, **bad), 400)
        assert_error(await get(session, server, "/api/v2/companies/7/vehicles", token), 404)


async def test_position_records_carry_telemax_fields_and_units(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    token = await token_of(session, server)
    server.clock.advance(20 * 60)
    fleet = (
        await get(session, server, f"/api/v2/companies/{COMPANY}/vehicles/last-position", token)
    ).json()
    world = server.telemax_world
    assert fleet["totalResults"] == len(world) == 6
    moving = 0
    for record in fleet["items"]:
        assert list(record) == [
            "id", "utcTime", "lat", "lng", "speed", "course", "ignition", "odometer",
            "voltage", "engineHours", "deviceId", "deviceName", "imei", "vin",
            "lastMovementTime", "fuelLevel", "fuelVolume", "address", "isOnline",
        ]  # fmt: skip
        vehicle = world.vehicle(str(record["id"]))
        truth = world.truth(vehicle.vehicle_id)
        assert utc(record["utcTime"]) == truth.position_time
        assert (record["lat"], record["lng"]) == (truth.latitude, truth.longitude)
        assert record["speed"] == truth.speed_kmh  # km/h
        moving += record["speed"] > 0
        assert record["ignition"] is (truth.engine != "off")
        assert record["odometer"] == pytest.approx(vehicle.odometer_m / 1000, abs=0.06)  # km
        assert record["voltage"] == pytest.approx(truth.battery_mv / 1000)
        assert (record["deviceName"], record["vin"]) == (truth.name, truth.vin)
        assert len(record["imei"]) == 15
        assert utc(record["lastMovementTime"]) <= server.clock.now()
        if truth.has_obd:
            assert record["fuelLevel"] == truth.fuel_percent  # %
            assert record["fuelVolume"] == pytest.approx(vehicle.fuel_l, abs=0.06)  # litres
        else:
            assert record["fuelLevel"] is record["fuelVolume"] is None  # no OBD, no fuel
        assert record["isOnline"] is True
        single = await get(session, server, f"/api/v2/vehicles/{record['id']}/last-position", token)
        assert single.json() == record
    assert moving
    assert_error(await get(session, server, "/api/v2/vehicles/1/last-position", token), 404)


# --- rate limits --------------------------------------------------------------------------

WINDOWS = [
    # (name, path, limit); 'vehicle-last-position' only binds once overall allows more.
    ("overall", "/api/v2/companies", 60),
    ("fleet-last-position", f"/api/v2/companies/{COMPANY}/vehicles/last-position", 20),
    ("vehicle-last-position", "/api/v2/vehicles/40001/last-position", 120),
    ("safety-score", "/api/v2/safety-score/40001?intervalType=3", 30),
    ("replay", "/api/v2/replay/40001?from=2025-03-03T00:00:00&to=2025-03-03T06:00:00", 20),
    ("vehicles-list", f"/api/v2/companies/{COMPANY}/vehicles", 60),
]


@pytest.mark.parametrize(("window", "path", "limit"), WINDOWS)
async def test_each_sliding_window_answers_429_with_retry_after_and_recovers(
    server: SimulatorServer,
    session: aiohttp.ClientSession,
    monotonic: FakeMonotonic,
    window: str,
    path: str,
    limit: int,
) -> None:
    if limit >= 60 and window != "overall":
        # Let the endpoint's own window bind before the overall one does.
        server.telemax.limiters["overall"] = SlidingWindowLimiter(1000, 60, clock=monotonic)
    token = await token_of(session, server)
    url = server.telemax_url + path

    async def call(with_token: str = token) -> Reply:
        headers = {"Authorization": f"Bearer {with_token}"}
        async with session.get(url, headers=headers) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    for index in range(limit):
        reply = await call()
        assert reply.status == 200, reply.body
        assert reply.headers["X-RateLimit-Limit"] == str(limit)
        assert reply.headers["X-RateLimit-Remaining"] == str(limit - index - 1)
        assert reply.headers["X-RateLimit-Reset"] == str(60 - int(index * 0.25))
        monotonic.now += 0.25
    refused = await call()
    assert_error(refused, 429, "rate_limit_exceeded")
    # The oldest request leaves the window 60 s after it came: at 1060.
    expected_wait = 1060 - monotonic.now
    assert refused.headers["Retry-After"] == str(int(-(-expected_wait // 1)))
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Limit"] == str(limit)
    assert server.telemax.throttled == {window: 1}
    assert server.telemax.counters.rate_limited == 1

    if window != "overall":  # other endpoints still answer
        assert (await get(session, server, "/api/v2/companies", token)).status == 200
    other = await token_of(session, server)  # the limits are per token
    assert (await call(other)).status == 200

    monotonic.now = 1060.0  # the first request has left the window: one slot, only one
    assert (await call()).status == 200
    assert (await call()).status == 429
    monotonic.now = 1060.0 + limit * 0.25
    assert (await call()).status == 200


async def test_rate_limit_headers_are_on_every_response(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    token = await token_of(session, server)
    replies = [
        await get(session, server, "/api/v2/companies", token),
        await get(session, server, "/api/v2/no-such-thing", token),
        await get(session, server, "/api/v2/companies", "bad-token"),
        await login(session, server, json={"apiKey": API_KEY}),
    ]
    server.telemax.fail_next(status=503)
    replies.append(await get(session, server, "/api/v2/companies", token))
    assert [r.status for r in replies] == [200, 404, 401, 415, 503]
    for reply in replies:
        assert all(reply.headers[name].isdigit() for name in RATE_HEADERS), reply.headers
    assert replies[0].headers["X-RateLimit-Remaining"] == "59"
    assert replies[1].headers["X-RateLimit-Remaining"] == "58"  # counted: valid token


# --- safety score, replay, alerts ---------------------------------------------------------


async def driving_vehicle(server: SimulatorServer) -> SimVehicle:
    """Advance until a vehicle is mid-trip after finishing at least one trip today."""
    world = server.telemax_world
    for _ in range(100):
        server.clock.advance(5 * 60)
        world.update()
        for vehicle in world.vehicles():
            if vehicle.phase is Phase.DRIVING and vehicle.trip_log:
                return vehicle
    raise AssertionError("no vehicle drove")


async def test_safety_score_presets_extend_finish_into_the_future_as_documented(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    token = await token_of(session, server)
    vehicle = await driving_vehicle(server)
    path = f"/api/v2/safety-score/{vehicle.vehicle_id}"
    now = server.clock.now()
    midnight = now.replace(hour=0, minute=0, second=0)

    explicit = await get(session, server, path, token, start=iso(midnight), finish=iso(now))
    assert explicit.status == 200
    scores = explicit.json()
    finished = [t for t in vehicle.trip_history() if t.done]
    assert len(scores) == len(finished) + 1  # and the trip so far, ending at `finish`
    for score, trip in zip(scores, vehicle.trip_history(), strict=True):
        assert set(score) == {
            "startTime", "endTime", "riskLevel", "riskScore", "duration", "distance"
        }  # fmt: skip
        assert utc(score["startTime"]) <= utc(score["endTime"]) <= now
        assert score["duration"] == (utc(score["endTime"]) - utc(score["startTime"])).seconds
        assert score["distance"] == pytest.approx(trip.distance_m / 1000, abs=0.01)  # km
        assert 0 <= score["riskScore"] <= 100
        low, high = {"Low": (0, 34), "Medium": (35, 69), "High": (70, 100)}[score["riskLevel"]]
        assert low <= score["riskScore"] <= high

    preset = (await get(session, server, path, token, intervalType="2")).json()
    # Same trips, but the one going on "ends" at the end of tomorrow: the bug.
    assert [s["startTime"] for s in preset] == [s["startTime"] for s in scores]
    assert preset[:-1] == scores[:-1]
    assert utc(preset[-1]["endTime"]) == midnight + timedelta(days=2)
    assert preset[-1]["duration"] > 86400
    server.telemax.preset_bug = False
    fixed = (await get(session, server, path, token, intervalType="2")).json()
    assert utc(fixed[-1]["endTime"]) == midnight + timedelta(days=1)
    assert (await get(session, server, path, token, intervalType="1")).json() == []

    bad_queries: list[dict[str, str]] = [
        {"start": iso(now), "finish": iso(midnight)},  # finish before start
        {"start": "yesterday", "finish": iso(now)},
        {"start": iso(midnight)},  # half a range
        {},
        {"intervalType": "9"},
    ]
    for params in bad_queries:
        assert_error(await get(session, server, path, token, **params), 400)
    assert_error(
        await get(session, server, "/api/v2/safety-score/12", token, intervalType="2"), 404
    )


async def test_replay_pages_trips_with_positions_and_alerts_list_events(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    token = await token_of(session, server)
    vehicle = await driving_vehicle(server)
    server.clock.advance(4 * 3600)
    server.telemax_world.update()
    now = server.clock.now()
    window = {"from": iso(START - timedelta(hours=1)), "to": iso(now)}
    replay = await get(session, server, f"/api/v2/replay/{vehicle.vehicle_id}", token, **window)
    assert replay.status == 200
    body = replay.json()
    trips = vehicle.trip_history()
    assert body["totalResults"] == len(trips) >= 2
    for item, trip in zip(body["items"], trips, strict=True):
        assert utc(item["startTime"]) == datetime.fromtimestamp(trip.start_ms // 1000, UTC)
        assert len(item["positions"]) == len(trip.points)
        assert item["distance"] == pytest.approx(trip.distance_m / 1000, abs=0.01)
    paged = await get(
        session, server, f"/api/v2/replay/{vehicle.vehicle_id}", token, pageSize="1", **window
    )
    assert (len(paged.json()["items"]), paged.json()["numberOfPages"]) == (1, len(trips))
    assert_error(await get(session, server, f"/api/v2/replay/{vehicle.vehicle_id}", token), 400)

    alerts = await get(session, server, f"/api/v2/companies/{COMPANY}/alert-records", token)
    items = alerts.json()["items"]
    assert items
    ids = {int(i) for i in server.telemax_world.ids()}
    for alert in items:
        assert set(alert) == {"id", "vehicleId", "type", "time", "details"}
        assert alert["vehicleId"] in ids
        assert alert["type"] in {"Speeding", "HarshBraking"}
        assert now - timedelta(days=1) <= utc(alert["time"]) <= now
    assert [a["time"] for a in items] == sorted(a["time"] for a in items)


async def test_injected_faults_and_the_control_api(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    token = await token_of(session, server)
    reply = await session.post(
        server.base_url + "/_sim/telemax/fail", params={"status": "429", "retry_after": "2.5"}
    )
    assert reply.status == 200
    throttled = await get(session, server, "/api/v2/companies", token)
    assert_error(throttled, 429)
    assert throttled.headers["Retry-After"] == "3"  # whole seconds
    assert (await get(session, server, "/api/v2/companies", token)).status == 200
    stats = await (await session.get(server.base_url + "/_sim/stats")).json()
    assert stats["telemax"]["by_status"] == {"200": 2, "429": 1}
    assert stats["telemax"]["tokens_issued"] == 1
    missing = await session.post(server.base_url + "/_sim/telemax/no-such-switch")
    assert missing.status == 404


async def test_the_banner_names_every_provider_and_its_credentials() -> None:
    from bridge.simulator.server import banner

    async with SimulatorServer(vehicles=1, fleetize_vehicles=2, telemax_vehicles=3) as server:
        line = banner(server)
        assert f"base_url={server.samsara_url} token=demo-samsara-token" in line
        assert f"FLEETIZE: base_url={server.fleetize_url} apitoken=demo-fleetize-token" in line
        assert f"Telemax: base_url={server.telemax_url} apiKey=demo-telemax-key" in line
