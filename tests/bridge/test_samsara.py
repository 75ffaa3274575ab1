"""Samsara client: documented JSON in, SI-unit model out, and the HTTP rules.

A small aiohttp server replays scripted responses in the documented shapes (the
real aiohttp stack on both ends); the simulator-based tests live elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.errors import ProviderAuthError, ProviderConnectionError, ProviderRateLimitedError
from bridge.model import EngineState, PollPlan
from bridge.providers.http import RetryPolicy
from bridge.providers.samsara import SamsaraProvider, SamsaraSettings

TOKEN = "samsara-secret-token-123"

VEHICLES_PAGE_1 = {
    "data": [
        {
            "id": "112",
            "name": "Truck A7",
            "vin": "1FUJA6CK14LM94383",
            "licensePlate": "6SAM123",
            "make": "Ford",
            "model": "F150",
            "year": "2015",
            "externalIds": {"maintenanceId": "250020"},
            "someFutureField": {"nested": True},
        }
    ],
    "pagination": {"endCursor": "page2", "hasNextPage": True},
}
VEHICLES_PAGE_2 = {
    "data": [{"id": "113", "name": "Van 2"}],
    "pagination": {"endCursor": "", "hasNextPage": False},
}
FEED_GROUP_1 = {
    "data": [
        {
            "id": "112",
            "name": "Truck A7",
            "externalIds": {"maintenanceId": "250020"},
            "gps": [
                {
                    "time": "2020-01-27T07:06:20Z",
                    "latitude": 37.0,
                    "longitude": -122.0,
                    "headingDegrees": 10,
                    "speedMilesPerHour": 5,
                },
                {
                    "time": "2020-01-27T07:06:25Z",
                    "latitude": 37.456,
                    "longitude": -122.789,
                    "headingDegrees": 120,
                    "speedMilesPerHour": 48.5,
                    "isEcuSpeed": True,
                    "reverseGeo": {"formattedLocation": "Ponderosa Dr, Santa Clara, CA"},
                },
            ],
            "engineStates": [{"time": "2020-01-27T07:06:25Z", "value": "On"}],
            "fuelPercents": [{"time": "2020-01-27T07:06:00Z", "value": 54}],
        },
        {
            "id": "113",
            "name": "Van 2",
            "engineStates": [{"time": "2020-01-27T07:00:00Z", "value": "Idle"}],
        },
    ],
    "pagination": {"endCursor": "c1", "hasNextPage": False},
}
FEED_GROUP_2 = {
    "data": [
        {
            "id": "112",
            "obdOdometerMeters": [{"time": "2020-01-27T07:06:25Z", "value": 14010293}],
            "batteryMilliVolts": [{"time": "2020-01-27T07:06:25Z", "value": 14112}],
            "obdEngineSeconds": [{"time": "2020-01-27T07:06:25Z", "value": 9000000}],
        }
    ],
    "pagination": {"endCursor": "c2", "hasNextPage": False},
}
FEED_GROUP_3 = {
    "data": [
        {"id": "112", "gpsOdometerMeters": [{"time": "2020-01-27T07:06:25Z", "value": 99}]},
        {"id": "113", "gpsOdometerMeters": [{"time": "2020-01-27T07:00:00Z", "value": 2500}]},
    ],
    "pagination": {"endCursor": "c3", "hasNextPage": False},
}
EMPTY_FEED = {"data": [], "pagination": {"endCursor": "same", "hasNextPage": False}}


@dataclass
class Script:
    """Responses per path, served in order; the last one repeats."""

    routes: dict[str, list[tuple[int, Any, dict[str, str]]]] = field(default_factory=dict)
    requests: list[web.Request] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)

    def add(self, path: str, body: Any, status: int = 200, **headers: str) -> None:
        self.routes.setdefault(path, []).append((status, body, headers))

    def feed(self, types: str, body: Any, status: int = 200, **headers: str) -> None:
        self.add(f"feed:{types}", body, status, **headers)


@pytest.fixture
async def samsara() -> AsyncIterator[tuple[Script, str]]:
    script = Script()

    async def handler(request: web.Request) -> web.Response:
        script.requests.append(request)
        script.queries.append(dict(request.query))
        key = request.path
        if key.endswith("/stats/feed"):
            key = f"feed:{request.query.get('types')}"
        queue = script.routes.get(key)
        if not queue:
            return web.Response(status=404, text="404 page not found")
        status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    yield script, str(server.make_url(""))
    await server.close()


def standard(script: Script) -> None:
    script.add("/fleet/vehicles", VEHICLES_PAGE_1)
    script.add("/fleet/vehicles", VEHICLES_PAGE_2)
    script.feed("gps,engineStates,fuelPercents", FEED_GROUP_1)
    script.feed("gps,engineStates,fuelPercents", EMPTY_FEED)
    script.feed("obdOdometerMeters,batteryMilliVolts,obdEngineSeconds", FEED_GROUP_2)
    script.feed("obdOdometerMeters,batteryMilliVolts,obdEngineSeconds", EMPTY_FEED)
    script.feed("gpsOdometerMeters", FEED_GROUP_3)
    script.feed("gpsOdometerMeters", EMPTY_FEED)


class Sleeps(list[float]):
    async def __call__(self, delay: float) -> None:
        self.append(delay)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


def make(
    session: aiohttp.ClientSession, url: str, sleeps: Sleeps | None = None, **kwargs: Any
) -> SamsaraProvider:
    provider = SamsaraProvider(
        session, SamsaraSettings(token=TOKEN, base_url=url, **kwargs), retry=RetryPolicy()
    )
    if sleeps is not None:
        provider._http.sleep = sleeps
    return provider


async def test_first_poll_maps_documented_json_to_si_units(samsara, session) -> None:
    script, url = samsara
    standard(script)
    provider = make(session, url)
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    vehicles = {v.vehicle_id: v for v in update.vehicles}
    assert set(vehicles) == {"112", "113"}
    truck = vehicles["112"]
    assert truck.name == "Truck A7"
    assert (truck.vin, truck.plate, truck.make, truck.model, truck.year) == (
        "1FUJA6CK14LM94383",
        "6SAM123",
        "Ford",
        "F150",
        2015,
    )
    assert truck.position is not None
    # The newest of the two gps points wins.
    assert (truck.position.latitude, truck.position.longitude) == (37.456, -122.789)
    assert truck.position.heading == 120
    assert truck.position.address == "Ponderosa Dr, Santa Clara, CA"
    assert truck.speed_kmh == pytest.approx(78.1)  # 48.5 mph
    assert truck.moving is True
    assert truck.engine_state is EngineState.ON
    assert truck.ignition is True
    assert truck.fuel_percent == 54
    # OBD odometer in metres -> km; the GPS estimate (99 m) must not override it.
    assert truck.odometer_km == pytest.approx(14010.293)
    assert truck.battery_voltage == pytest.approx(14.112)
    assert truck.engine_hours == pytest.approx(2500.0)
    assert truck.last_seen is not None
    assert truck.last_seen.isoformat() == "2020-01-27T07:06:25+00:00"


async def test_missing_stats_stay_unknown_and_gps_odometer_is_the_fallback(
    samsara, session
) -> None:
    script, url = samsara
    standard(script)
    update = await make(session, url).poll(PollPlan(refresh_vehicles=True))
    van = next(v for v in update.vehicles if v.vehicle_id == "113")
    assert van.position is None
    assert van.speed_kmh is None
    assert van.moving is None
    assert van.fuel_percent is None
    assert van.engine_state is EngineState.IDLE
    assert van.ignition is True
    assert van.odometer_km == pytest.approx(2.5)


async def test_unchanged_feed_reports_no_vehicles(samsara, session) -> None:
    script, url = samsara
    standard(script)
    provider = make(session, url)
    await provider.poll(PollPlan(refresh_vehicles=True))
    update = await provider.poll(PollPlan())
    assert update.vehicles == []
    assert update.removed == []


async def test_cursor_is_sent_checkpointed_and_restored(samsara, session) -> None:
    script, url = samsara
    standard(script)
    provider = make(session, url)
    first = await provider.poll(PollPlan(refresh_vehicles=True))
    checkpoint = provider.checkpoint()
    assert checkpoint == {
        "obd_odometer": "112",
        "feed:gps,engineStates,fuelPercents": "c1",
        "feed:obdOdometerMeters,batteryMilliVolts,obdEngineSeconds": "c2",
        "feed:gpsOdometerMeters": "c3",
    }
    # A new process resumes from the persisted cursor, not from a fresh snapshot.
    script.queries.clear()
    restarted = make(session, url)
    restarted.restore(checkpoint, first.vehicles)
    update = await restarted.poll(PollPlan())
    feed_queries = [q for q in script.queries if "types" in q]
    assert {q["types"]: q.get("after") for q in feed_queries} == {
        "gps,engineStates,fuelPercents": "c1",
        "obdOdometerMeters,batteryMilliVolts,obdEngineSeconds": "c2",
        "gpsOdometerMeters": "c3",
    }
    assert update.vehicles == []


async def test_refused_cursor_restarts_from_a_fresh_snapshot(samsara, session) -> None:
    script, url = samsara
    script.add("/fleet/vehicles", VEHICLES_PAGE_2)
    script.feed("gps,engineStates,fuelPercents", {"message": "Invalid cursor"}, status=400)
    script.feed("gps,engineStates,fuelPercents", FEED_GROUP_1)
    provider = make(session, url, feed_groups=(("gps", "engineStates", "fuelPercents"),))
    provider.restore({"feed:gps,engineStates,fuelPercents": "expired"}, [])
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    feed_queries = [q for q in script.queries if "types" in q]
    assert [q.get("after") for q in feed_queries] == ["expired", None]
    assert {v.vehicle_id for v in update.vehicles} == {"112", "113"}
    assert provider.checkpoint() == {
        "feed:gps,engineStates,fuelPercents": "c1",
        "obd_odometer": "",
    }


async def test_vehicles_gone_from_the_list_are_reported_removed(samsara, session) -> None:
    script, url = samsara
    standard(script)
    provider = make(session, url)
    await provider.poll(PollPlan(refresh_vehicles=True))
    script.routes["/fleet/vehicles"] = [(200, VEHICLES_PAGE_2, {})]
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    assert update.removed == ["112"]


async def test_garbage_in_one_vehicle_does_not_spoil_the_others(samsara, session) -> None:
    script, url = samsara
    script.add("/fleet/vehicles", {"data": [], "pagination": {"hasNextPage": False}})
    body = json.loads(json.dumps(FEED_GROUP_1))
    body["data"][0]["gps"] = [{"time": "yesterday", "latitude": "north", "longitude": None}]
    body["data"][0]["fuelPercents"] = [{"time": "2020-01-27T07:06:00Z", "value": "lots"}]
    body["data"].insert(0, "not an object")
    body["data"].append({"name": "no id"})
    body["data"].append({"id": "114", "gps": [{"latitude": 91.0, "longitude": 0}]})
    script.feed("gps,engineStates,fuelPercents", body)
    provider = make(session, url, feed_groups=(("gps", "engineStates", "fuelPercents"),))
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    vehicles = {v.vehicle_id: v for v in update.vehicles}
    assert vehicles["112"].position is None
    assert vehicles["112"].fuel_percent is None
    assert vehicles["112"].engine_state is EngineState.ON
    assert vehicles["113"].engine_state is EngineState.IDLE
    assert vehicles["114"].position is None  # latitude out of range


async def test_429_waits_the_fractional_retry_after_then_succeeds(samsara, session) -> None:
    script, url = samsara
    script.add(
        "/fleet/vehicles", {"message": "slow down"}, status=429, **{"Retry-After": "0.40235"}
    )
    script.add("/fleet/vehicles", VEHICLES_PAGE_2)
    sleeps = Sleeps()
    provider = make(session, url, sleeps, feed_groups=(("gpsOdometerMeters",),))
    script.feed("gpsOdometerMeters", FEED_GROUP_3)
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    assert sleeps == [pytest.approx(0.40235)]
    assert {v.vehicle_id for v in update.vehicles} == {"112", "113"}


async def test_long_retry_after_is_handed_to_the_poller(samsara, session) -> None:
    script, url = samsara
    script.add("/fleet/vehicles", {"message": "slow down"}, status=429, **{"Retry-After": "120"})
    with pytest.raises(ProviderRateLimitedError) as caught:
        await make(session, url, Sleeps()).poll(PollPlan(refresh_vehicles=True))
    assert caught.value.retry_after == 120


async def test_5xx_text_bodies_back_off_exponentially(samsara, session) -> None:
    script, url = samsara
    for _ in range(3):
        script.add("/fleet/vehicles", "upstream connect error", status=503)
    script.add("/fleet/vehicles", VEHICLES_PAGE_2)
    script.feed("gpsOdometerMeters", EMPTY_FEED)
    sleeps = Sleeps()
    provider = make(session, url, sleeps, feed_groups=(("gpsOdometerMeters",),))
    await provider.poll(PollPlan(refresh_vehicles=True))
    assert len(sleeps) == 3
    # Jittered, but each delay's ceiling doubles: 1, 2, 4 s.
    for delay, ceiling in zip(sleeps, (1, 2, 4), strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_5xx_that_never_ends_is_a_connection_error(samsara, session) -> None:
    script, url = samsara
    script.add("/fleet/vehicles", "internal error", status=500)
    with pytest.raises(ProviderConnectionError, match="HTTP 500"):
        await make(session, url, Sleeps()).poll(PollPlan(refresh_vehicles=True))


async def test_401_is_an_auth_error_that_never_echoes_the_token(samsara, session) -> None:
    script, url = samsara
    script.add("/fleet/vehicles", {"message": "Unauthorized", "requestId": "x"}, status=401)
    with pytest.raises(ProviderAuthError) as caught:
        await make(session, url).poll(PollPlan(refresh_vehicles=True))
    assert TOKEN not in str(caught.value)
    assert "401" in str(caught.value)


async def test_bearer_token_and_version_header_are_sent(samsara, session) -> None:
    script, url = samsara
    standard(script)
    await make(session, url, api_version="2024-01-01").poll(PollPlan(refresh_vehicles=True))
    request = script.requests[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["X-Samsara-Version"] == "2024-01-01"
    assert request.headers["User-Agent"].startswith("fleet-telematics-bridge/")
    assert script.queries[0]["limit"] == "512"


async def test_feed_pages_are_followed_while_has_next_page(samsara, session) -> None:
    script, url = samsara
    script.add("/fleet/vehicles", VEHICLES_PAGE_2)
    # Samsara may answer short or empty pages while hasNextPage is true.
    script.feed(
        "gps,engineStates,fuelPercents",
        {"data": [], "pagination": {"endCursor": "p1", "hasNextPage": True}},
    )
    script.feed("gps,engineStates,fuelPercents", FEED_GROUP_1)
    provider = make(session, url, feed_groups=(("gps", "engineStates", "fuelPercents"),))
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    feed_queries = [q for q in script.queries if "types" in q]
    assert [q.get("after") for q in feed_queries] == [None, "p1"]
    assert update.more is False
    assert any(v.vehicle_id == "112" and v.position for v in update.vehicles)


def test_eu_region_and_feed_group_limit() -> None:
    from bridge.providers.samsara import BASE_URLS

    assert BASE_URLS["eu"] == "https://api.eu.samsara.com"
    with pytest.raises(ValueError, match="1 to 3 types"):
        SamsaraProvider(
            None,  # type: ignore[arg-type]
            SamsaraSettings(token="t", feed_groups=(("a", "b", "c", "d"),)),
        )
