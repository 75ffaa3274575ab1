"""The provider simulator: a faithful Samsara over a plausible simulated fleet.

Every test runs a real `SimulatorServer` on a free port with a frozen clock
(speed 0) and moves simulated time by hand, so nothing waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.model import EngineState, PollPlan
from bridge.providers.http import RetryPolicy
from bridge.providers.samsara import SamsaraProvider, SamsaraSettings
from bridge.simulator import SimClock, SimulatorServer, World, serve_forever
from bridge.simulator.geo import on_land

START = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
TOKEN = "demo-samsara-token"
FEED = "/fleet/vehicles/stats/feed"
GROUP_MOTION = ("gps", "engineStates", "fuelPercents")
GROUP_ECU = ("obdOdometerMeters", "batteryMilliVolts", "obdEngineSeconds")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
ENGINE_NAMES = {"off": "Off", "on": "On", "idle": "Idle"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@asynccontextmanager
async def simulator(vehicles: int = 20, **kwargs: Any) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=vehicles, speed=0, start=START, **kwargs) as server:
        yield server


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with simulator() as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(
    session: aiohttp.ClientSession,
    url: str,
    *,
    token: str | None = TOKEN,
    method: str = "GET",
    **params: str,
) -> Reply:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with session.request(method, url, headers=headers, params=params) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


async def read_feed(
    session: aiohttp.ClientSession,
    server: SimulatorServer,
    types: tuple[str, ...],
    after: str | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Every page of one feed pass: the entries and the cursor for the next pass."""
    entries: list[dict[str, Any]] = []
    while True:
        params = {"types": ",".join(types)}
        if after:
            params["after"] = after
        reply = await call(session, server.samsara_url + FEED, **params)
        assert reply.status == 200, reply.body
        body = reply.json()
        entries.extend(body["data"])
        after = body["pagination"]["endCursor"]
        assert isinstance(after, str)
        assert after
        if not body["pagination"]["hasNextPage"]:
            return entries, after


def feed_time(value: str) -> datetime:
    assert RFC3339_UTC.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def by_id(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = {entry["id"]: entry for entry in entries}
    assert len(result) == len(entries), "a vehicle appears twice in one pass"
    return result


# --- authentication, paths, parameters ------------------------------------------


async def test_requests_without_a_valid_token_get_a_json_401(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.samsara_url + "/fleet/vehicles"
    for reply in (
        await call(session, url, token=None),
        await call(session, url, token="not-a-token"),
        await call(session, url, token=TOKEN + "x"),
    ):
        assert reply.status == 401
        assert set(reply.json()) == {"message", "requestId"}
    basic = await session.get(url, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status == 401
    assert server.samsara.counters.by_status[401] == 4
    assert (await call(session, url)).status == 200


async def test_unknown_paths_are_404_and_wrong_methods_405(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    missing = await call(session, server.samsara_url + "/fleet/trucks")
    assert missing.status == 404
    assert "message" in missing.json()
    wrong_method = await call(session, server.samsara_url + "/fleet/vehicles", method="POST")
    assert wrong_method.status == 405
    assert wrong_method.headers["Allow"] == "GET"
    assert (await call(session, server.base_url + "/nothing-here")).status == 404


async def test_feed_refuses_missing_unknown_or_more_than_three_types(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    for path in (FEED, "/fleet/vehicles/stats"):
        url = server.samsara_url + path
        for params in (
            {},
            {"types": ""},
            {"types": "gps,engineStates,fuelPercents,obdOdometerMeters"},
            {"types": "gps,speedingEvents"},
        ):
            reply = await call(session, url, **params)
            assert reply.status == 400, (path, params)
            assert reply.json()["message"]
    assert (await call(session, server.samsara_url + FEED, types="gps,gps,gps,gps")).status == 200


# --- the vehicle list and pagination ----------------------------------------------


async def test_600_vehicles_come_in_pages_of_at_most_512(session: aiohttp.ClientSession) -> None:
    async with simulator(vehicles=600) as server:
        url = server.samsara_url + "/fleet/vehicles"
        first = (await call(session, url)).json()
        assert len(first["data"]) == 512
        assert first["pagination"]["hasNextPage"] is True
        second = (await call(session, url, after=first["pagination"]["endCursor"])).json()
        assert len(second["data"]) == 88
        assert second["pagination"] == {"endCursor": "", "hasNextPage": False}
        listed = [v["id"] for v in first["data"] + second["data"]]
        assert listed == server.world.ids()
        assert len(set(listed)) == 600

        pages, after = 0, None
        while True:
            params = {"limit": "100"} | ({"after": after} if after else {})
            body = (await call(session, url, **params)).json()
            pages += 1
            if not body["pagination"]["hasNextPage"]:
                break
            after = body["pagination"]["endCursor"]
        assert pages == 6
        for bad in ("513", "0", "ten"):
            reply = await call(session, url, limit=bad)
            assert reply.status == 400
            assert reply.json()["message"]

        # The feed pages the same way, and a pass with nothing new is empty.
        entries, cursor = await read_feed(session, server, GROUP_MOTION)
        assert [e["id"] for e in entries] == server.world.ids()
        again, _ = await read_feed(session, server, GROUP_MOTION, cursor)
        assert again == []


async def test_vehicle_list_describes_each_vehicle_as_samsara_does(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    body = (await call(session, server.samsara_url + "/fleet/vehicles")).json()
    assert body["pagination"]["hasNextPage"] is False
    for item, truth in zip(body["data"], server.world.truths(), strict=True):
        assert item["id"] == truth.vehicle_id
        assert item["id"].isdigit()
        assert item["name"] == truth.name
        assert re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", item["vin"])
        assert item["year"] == str(truth.year)  # a string, as Samsara sends it
        assert (item["licensePlate"], item["make"], item["model"]) == (
            truth.plate,
            truth.make,
            truth.model,
        )
        assert item["externalIds"]["samsara.vin"] == truth.vin
    assert body["data"][0]["name"] == "Truck 0001"


# --- the stats feed ---------------------------------------------------------------


async def test_first_feed_pass_reports_every_vehicle_in_samsara_units(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    entries, cursor = await read_feed(session, server, GROUP_MOTION)
    truths = {t.vehicle_id: t for t in server.world.truths()}
    assert set(by_id(entries)) == set(truths)
    for entry in entries:
        truth = truths[entry["id"]]
        assert entry["name"] == truth.name
        assert set(entry) == {"id", "name", "externalIds", *GROUP_MOTION}
        (gps,) = entry["gps"]
        (engine,) = entry["engineStates"]
        (fuel,) = entry["fuelPercents"]
        assert (gps["latitude"], gps["longitude"]) == (truth.latitude, truth.longitude)
        assert gps["speedMilesPerHour"] == pytest.approx(truth.speed_kmh / 1.609344, abs=0.006)
        assert 0 <= gps["headingDegrees"] < 360
        assert gps["reverseGeo"]["formattedLocation"] == truth.address
        assert feed_time(gps["time"]) == truth.position_time <= START
        assert engine["value"] == ENGINE_NAMES[truth.engine]
        assert fuel["value"] == truth.fuel_percent
        assert isinstance(fuel["value"], int)
        feed_time(engine["time"])
        feed_time(fuel["time"])
    speeds = [e["gps"][0]["speedMilesPerHour"] for e in entries]
    assert any(s > 0 for s in speeds), "a new fleet should have vehicles on the road"
    assert max(speeds) < 70, "mph, not km/h"

    # Nothing moved: the next pass is empty, and stays empty.
    for _ in range(2):
        again, cursor = await read_feed(session, server, GROUP_MOTION, cursor)
        assert again == []


async def test_vehicles_without_obd_report_only_the_gps_odometer(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    entries, _ = await read_feed(session, server, (*GROUP_ECU[:2], "gpsOdometerMeters"))
    truths = {t.vehicle_id: t for t in server.world.truths()}
    without_obd = {vid for vid, t in truths.items() if not t.has_obd}
    assert 0 < len(without_obd) < len(truths) / 5
    for entry in entries:
        truth = truths[entry["id"]]
        assert entry["gpsOdometerMeters"][0]["value"] == truth.gps_odometer_m
        assert entry["batteryMilliVolts"][0]["value"] == truth.battery_mv
        if truth.has_obd:
            assert entry["obdOdometerMeters"][0]["value"] == truth.obd_odometer_m
        else:
            assert "obdOdometerMeters" not in entry
        millivolts = entry["batteryMilliVolts"][0]["value"]
        assert (
            (14_100 <= millivolts <= 14_400)
            if truth.engine != "off"
            else (12_200 <= millivolts <= 12_700)
        )


async def test_after_ten_minutes_moving_vehicles_report_new_positions(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    snapshot, cursor = await read_feed(session, server, GROUP_MOTION)
    before = by_id(snapshot)
    driving = {t.vehicle_id for t in server.world.truths() if t.phase == "driving"}
    assert driving

    server.clock.advance(600)
    changed = by_id((await read_feed(session, server, GROUP_MOTION, cursor))[0])

    assert driving <= set(changed)
    truths = {t.vehicle_id: t for t in server.world.truths()}
    for vid, entry in changed.items():
        for name in set(entry) & set(GROUP_MOTION):
            times = [feed_time(point["time"]) for point in entry[name]]
            assert times == sorted(times)
            assert all(START < t <= START + timedelta(minutes=10) for t in times)
        if "gps" in entry:
            last = entry["gps"][-1]
            assert (last["latitude"], last["longitude"]) == (
                truths[vid].latitude,
                truths[vid].longitude,
            )
    moved = [
        vid
        for vid in driving
        if (changed[vid]["gps"][-1]["latitude"], changed[vid]["gps"][-1]["longitude"])
        != (before[vid]["gps"][0]["latitude"], before[vid]["gps"][0]["longitude"])
    ]
    assert moved
    assert any(len(entry.get("gps", [])) > 1 for entry in changed.values())


async def test_a_parked_fleet_only_reports_a_gps_ping_every_ten_minutes(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    server.world.park_all()
    motion, motion_cursor = await read_feed(session, server, GROUP_MOTION)
    _, ecu_cursor = await read_feed(session, server, GROUP_ECU)
    parked_at = {e["id"]: (e["gps"][0]["latitude"], e["gps"][0]["longitude"]) for e in motion}
    assert {e["engineStates"][0]["value"] for e in motion} == {"Off"}
    assert {e["gps"][0]["speedMilesPerHour"] for e in motion} == {0}

    server.clock.advance(30 * 60)
    pings, motion_cursor = await read_feed(session, server, GROUP_MOTION, motion_cursor)
    assert len(pings) == len(server.world)
    for entry in pings:
        assert set(entry) == {"id", "name", "externalIds", "gps"}
        points = entry["gps"]
        assert len(points) == 3
        times = [feed_time(p["time"]) for p in points]
        assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(minutes=10)] * 2
        for point in points:
            assert (point["latitude"], point["longitude"]) == parked_at[entry["id"]]
            assert point["speedMilesPerHour"] == 0
    assert (await read_feed(session, server, GROUP_ECU, ecu_cursor))[0] == []

    # Let go, and the routine resumes within the hour.
    server.world.release()
    server.clock.advance(60 * 60)
    resumed, _ = await read_feed(session, server, GROUP_MOTION, motion_cursor)
    started = [e for e in resumed if "engineStates" in e]
    assert len(started) == len(server.world)


async def test_forced_changes_show_up_even_with_a_frozen_clock(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    _, cursor = await read_feed(session, server, GROUP_MOTION)
    vid = server.world.ids()[4]
    server.world.set_vehicle(vid, latitude=41.9, longitude=-87.7, fuel_percent=42)
    (entry,), cursor = await read_feed(session, server, GROUP_MOTION, cursor)
    assert entry["id"] == vid
    assert (entry["gps"][-1]["latitude"], entry["gps"][-1]["longitude"]) == (41.9, -87.7)
    assert entry["fuelPercents"] == [{"time": "2025-03-03T06:00:00Z", "value": 42}]
    assert "engineStates" not in entry
    assert (await read_feed(session, server, GROUP_MOTION, cursor))[0] == []


async def test_added_vehicles_appear_and_removed_ones_disappear(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    _, cursor = await read_feed(session, server, GROUP_MOTION)
    new_id = server.world.add_vehicle()
    gone = server.world.ids()[0]
    server.world.remove_vehicle(gone)
    listed = [
        v["id"]
        for v in (await call(session, server.samsara_url + "/fleet/vehicles")).json()["data"]
    ]
    assert new_id in listed
    assert gone not in listed
    (entry,), _ = await read_feed(session, server, GROUP_MOTION, cursor)
    assert entry["id"] == new_id
    assert set(GROUP_MOTION) <= set(entry)


async def test_expired_or_garbage_cursors_are_refused_and_a_fresh_start_works(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    _, cursor = await read_feed(session, server, GROUP_MOTION)
    list_cursor = (await call(session, server.samsara_url + "/fleet/vehicles", limit="5")).json()[
        "pagination"
    ]["endCursor"]
    server.samsara.expire_cursors()
    for after in (cursor, "garbage!!", "Zm9vLmJhcg", list_cursor):
        reply = await call(session, server.samsara_url + FEED, types="gps", after=after)
        assert reply.status == 400
        assert reply.json()["message"] == "Invalid or expired cursor"
        assert reply.json()["requestId"]
    fresh, _ = await read_feed(session, server, GROUP_MOTION)
    assert len(fresh) == len(server.world)


# --- rate limiting and faults -------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_more_than_150_requests_a_second_get_429_with_fractional_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    time = FakeMonotonic()
    async with simulator(
        vehicles=2, monotonic=time, samsara_tokens=(TOKEN, "second-token")
    ) as server:
        url = server.samsara_url + "/fleet/vehicles"
        for _ in range(150):
            assert (await call(session, url, limit="1")).status == 200
            time.now += 0.001
        refused = await call(session, url, limit="1")
        assert refused.status == 429
        assert float(refused.headers["Retry-After"]) == pytest.approx(0.85, abs=1e-4)
        assert "." in refused.headers["Retry-After"]
        assert refused.json()["message"]
        # The limit is per token.
        assert (await call(session, url, token="second-token")).status == 200
        # One second after the first request, one slot is free again: only one.
        time.now = 1000.0 + 1
        assert (await call(session, url)).status == 200
        again = await call(session, url)
        assert again.status == 429
        assert float(again.headers["Retry-After"]) == pytest.approx(0.001, abs=1e-4)

        counters = server.samsara.counters
        assert counters.rate_limited == 2
        assert counters.by_path["/fleet/vehicles"] == 154
        assert counters.by_token[TOKEN] == 153


async def test_injected_faults_fail_the_next_requests_like_samsara(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.samsara_url + "/fleet/vehicles"
    server.samsara.fail_next(2, status=500)
    for _ in range(2):
        failed = await call(session, url)
        assert failed.status == 500
        assert failed.headers["Content-Type"].startswith("text/plain")
        with pytest.raises(json.JSONDecodeError):
            failed.json()
    assert (await call(session, url)).status == 200

    server.samsara.fail_next(status=429, retry_after=0.25)
    throttled = await call(session, url)
    assert (throttled.status, throttled.headers["Retry-After"]) == (429, "0.25000")

    control = await call(
        session, server.base_url + "/_sim/samsara/fail", method="POST", status="503"
    )
    assert control.status == 200
    unavailable = await call(session, url)
    assert unavailable.status == 503
    assert unavailable.body.decode().startswith("upstream connect error")
    assert (await call(session, url)).status == 200


# --- camera stills ------------------------------------------------------------------

MEDIA = "/cameras/media/retrieval"


async def media_call(
    session: aiohttp.ClientSession,
    server: SimulatorServer,
    method: str = "GET",
    body: Any = None,
    **params: str,
) -> Reply:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = server.samsara_url + MEDIA
    async with session.request(method, url, headers=headers, json=body, params=params) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


def still_request(vehicle_id: str, *inputs: str) -> dict[str, Any]:
    at = "2025-03-03T05:59:00Z"
    return {"vehicleId": vehicle_id, "startTime": at, "endTime": at,
            "inputs": list(inputs), "mediaType": "image"}  # fmt: skip


async def test_a_camera_still_goes_from_pending_to_available_with_an_expiring_url(
    session: aiohttp.ClientSession,
) -> None:
    time = FakeMonotonic()
    async with simulator(vehicles=4, monotonic=time) as server:
        vehicle_id = server.world.ids()[0]
        inputs = ("dashcamRoadFacing", "dashcamDriverFacing", "analog1")
        created = await media_call(session, server, "POST", still_request(vehicle_id, *inputs))
        assert created.status == 200
        retrieval_id = created.json()["data"]["retrievalId"]

        async def media() -> list[dict[str, Any]]:
            time.now += 0.25  # a client that keeps under 5 status calls a second
            reply = await media_call(session, server, retrievalId=retrieval_id)
            assert reply.status == 200, reply.body
            entries: list[dict[str, Any]] = reply.json()["data"]["media"]
            assert [m["input"] for m in entries] == list(inputs)
            for entry in entries:
                assert (entry["vehicleId"], entry["mediaType"]) == (vehicle_id, "image")
                assert feed_time(entry["startTime"]) == START - timedelta(minutes=1)
                assert ("urlInfo" in entry) is (entry["status"] == "available")
            return entries

        # Not picked up by the device yet: pending, whatever the input.
        assert [m["status"] for m in await media()] == ["pending"] * 3
        server.clock.advance(5)
        assert [m["status"] for m in await media()] == ["pending", "pending", "invalid"]
        server.clock.advance(24)
        assert [m["status"] for m in await media()] == ["pending", "pending", "invalid"]
        server.clock.advance(1)
        road, driver, analog = await media()
        assert (road["status"], driver["status"], analog["status"]) == (
            "available", "available", "invalid"
        )  # fmt: skip
        assert feed_time(road["availableAtTime"]) == START + timedelta(seconds=30)
        expiry = feed_time(road["urlInfo"]["urlExpiryTime"])
        assert expiry == server.clock.now() + timedelta(hours=8)
        images = []
        for entry in (road, driver):
            async with session.get(entry["urlInfo"]["url"]) as image:  # no token: signed
                assert image.status == 200
                assert image.content_type == "image/jpeg"
                images.append(await image.read())
        assert all(i.startswith(b"\xff\xd8") and i.endswith(b"\xff\xd9") for i in images)
        assert images[0] != images[1]  # road and cabin

        url = road["urlInfo"]["url"]
        async with session.get(url.replace("signature=", "signature=0")) as forged:
            assert forged.status == 403
        server.clock.advance(8 * 3600)
        async with session.get(url) as stale:
            assert stale.status == 403
            assert "Request has expired" in await stale.text()
        fresh, _, _ = await media()  # every poll signs a new URL
        async with session.get(fresh["urlInfo"]["url"]) as again:
            assert again.status == 200

        # Every fourth vehicle has no driver-facing camera.
        no_cabin = server.world.ids()[3]
        other = await media_call(session, server, "POST",
                                 still_request(no_cabin, "dashcamDriverFacing"))  # fmt: skip
        server.clock.advance(30)
        time.now += 1
        reply = await media_call(session, server, retrievalId=other.json()["data"]["retrievalId"])
        assert [m["status"] for m in reply.json()["data"]["media"]] == ["invalid"]
        assert server.samsara.stats()["media_downloads"] == 3


async def test_media_retrieval_checks_requests_and_has_limits_of_its_own(
    session: aiohttp.ClientSession,
) -> None:
    time = FakeMonotonic()
    async with simulator(vehicles=2, monotonic=time) as server:
        vehicle_id = server.world.ids()[0]
        good = still_request(vehicle_id, "dashcamRoadFacing")
        refused_bodies: list[Any] = [
            [],
            {**good, "inputs": []},
            {**good, "inputs": ["rearCamera"]},
            {**good, "mediaType": "videoHighRes"},
            {**good, "startTime": "yesterday"},
            {**good, "endTime": "2025-03-03T05:00:00Z"},  # before the start
            {key: value for key, value in good.items() if key != "vehicleId"},
        ]
        for body in refused_bodies:
            reply = await media_call(session, server, "POST", body)
            assert reply.status == 400, body
            assert set(reply.json()) == {"message", "requestId"}
        assert (await media_call(session, server, "POST", {**good, "vehicleId": "1"})).status == 404
        assert (await media_call(session, server)).status == 400
        assert (await media_call(session, server, retrievalId="nope")).status == 404
        wrong = await media_call(session, server, "DELETE")
        assert (wrong.status, wrong.headers["Allow"]) == (405, "GET, POST")

        # Status: 5 a second per token.
        retrieval_id = (await media_call(session, server, "POST", good)).json()["data"][
            "retrievalId"
        ]
        time.now += 1
        for _ in range(5):
            assert (await media_call(session, server, retrievalId=retrieval_id)).status == 200
            time.now += 0.1
        refused = await media_call(session, server, retrievalId=retrieval_id)
        assert refused.status == 429
        assert float(refused.headers["Retry-After"]) == pytest.approx(0.5, abs=1e-4)
        assert (await call(session, server.samsara_url + "/fleet/vehicles")).status == 200

        # Create: 100 a minute per token; refused requests count too.
        used = len(refused_bodies) + 2  # and the unknown vehicle and the good one
        for _ in range(100 - used):
            assert (await media_call(session, server, "POST", good)).status == 200
            time.now += 0.05
        refused = await media_call(session, server, "POST", good)
        assert refused.status == 429
        assert float(refused.headers["Retry-After"]) == pytest.approx(1060 - time.now, abs=1e-3)
        time.now = 1060.0
        assert (await media_call(session, server, "POST", good)).status == 200
        assert len(server.samsara.retrievals) == 1 + (100 - used) + 1


# --- a whole day ----------------------------------------------------------------------


async def test_a_simulated_day_stays_plausible(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    groups = (GROUP_MOTION, GROUP_ECU, ("gpsOdometerMeters",))
    cursors: dict[tuple[str, ...], str | None] = dict.fromkeys(groups)
    last: dict[tuple[str, str], tuple[datetime, Any]] = {}
    fuel_rises = 0

    def check(vid: str, name: str, point: dict[str, Any]) -> None:
        nonlocal fuel_rises
        when = feed_time(point["time"])
        value: Any = point.get("value")
        if name == "gps":
            assert 41.4 < point["latitude"] < 42.3
            assert -88.4 < point["longitude"] < -87.2
            assert on_land(point["latitude"], point["longitude"])
            assert 0 <= point["speedMilesPerHour"] < 70
            assert 0 <= point["headingDegrees"] < 360
        elif name == "engineStates":
            assert value in {"Off", "On", "Idle"}
        elif name == "fuelPercents":
            assert 0 <= value <= 100
            if (vid, name) in last and value > last[vid, name][1]:
                fuel_rises += 1
        elif name == "batteryMilliVolts":
            assert 12_200 <= value <= 14_400
        if (vid, name) in last:
            previous_time, previous = last[vid, name]
            assert when >= previous_time
            if name in ("obdOdometerMeters", "gpsOdometerMeters", "obdEngineSeconds"):
                assert value >= previous
        last[vid, name] = (when, value)

    for _ in range(48):
        for group in groups:
            entries, cursors[group] = await read_feed(session, server, group, cursors[group])
            for entry in entries:
                for name in set(entry) & set(group):
                    for point in entry[name]:
                        check(entry["id"], name, point)
        server.clock.advance(30 * 60)

    truths = server.world.truths()
    assert all(t.trips >= 3 and t.distance_m > 20_000 for t in truths), "every vehicle drove"
    assert sum(t.refuels for t in truths) >= 1
    assert fuel_rises >= 1, "a refuel shows as a rising fuel level"


def test_same_seed_same_fleet_however_the_clock_is_driven() -> None:
    one_jump = World(8, seed=7, clock=SimClock(START, speed=0))
    small_steps = World(8, seed=7, clock=SimClock(START, speed=0))
    one_jump.clock.advance(4 * 3600)
    for _ in range(48):
        small_steps.clock.advance(300)
        small_steps.update()
    assert one_jump.truths() == small_steps.truths()
    other_seed = World(8, seed=8, clock=SimClock(START, speed=0))
    assert [t.vin for t in other_seed.truths()] != [t.vin for t in one_jump.truths()]


# --- safety events stream ---------------------------------------------------------------

SAFETY = "/safety-events/stream"


async def read_safety(
    session: aiohttp.ClientSession,
    server: SimulatorServer,
    start: str,
    after: str = "",
    time: FakeMonotonic | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Every page from `after` on: the events and the cursor to poll with next
    (each request 0.2 s after the last on `time`: 5 a second are allowed)."""
    events: list[dict[str, Any]] = []
    while True:
        if time is not None:
            time.now += 0.2
        params = {"startTime": start, "includeAsset": "true", "includeDriver": "true"}
        if after:
            params["after"] = after
        reply = await call(session, server.samsara_url + SAFETY, **params)
        assert reply.status == 200, reply.body
        body = reply.json()
        events += body["data"]
        after = body["pagination"]["endCursor"]
        assert after  # also on the last page: the stream goes on from it
        if not body["pagination"]["hasNextPage"]:
            return events, after


async def test_safety_events_are_drawn_from_the_trips_and_streamed_with_a_cursor(
    session: aiohttp.ClientSession,
) -> None:
    time = FakeMonotonic()
    async with simulator(vehicles=20, monotonic=time) as server:
        server.samsara.page_limit = 3
        missing = await call(session, server.samsara_url + SAFETY)
        assert missing.status == 400
        assert "startTime" in missing.json()["message"]
        server.clock.advance(3600)
        start = "2025-03-03T06:00:00Z"
        events, cursor = await read_safety(session, server, start, time=time)
        assert len(events) > 3  # more than one page of 3
        assert len({e["id"] for e in events}) == len(events)
        created = [feed_time(e["createdAtTime"]) for e in events]
        assert created == sorted(created)
        now = server.clock.now()
        for event in events:
            vehicle = server.world.vehicle(event["asset"]["id"])
            assert event["asset"]["name"] == vehicle.identity.name
            assert event["driver"]["name"]
            (label,) = event["behaviorLabels"]
            assert label["source"] == "automated"
            happened = feed_time(event["startMs"])
            assert START <= happened < feed_time(event["createdAtTime"]) <= now
            # Each event is a fix of one of the vehicle's trips.
            fixes = {
                (p.time_ms, p.latitude, p.longitude)
                for trip in vehicle.trip_history()
                for p in trip.points
            }
            location = event["location"]
            key = (int(happened.timestamp() * 1000), location["latitude"], location["longitude"])
            assert key in fixes
            assert location["address"]["city"] == "Chicago"
            assert event["media"][0]["input"] == "dashcamRoadFacing"

        # Polling on: nothing new while the clock stands, then only what is new.
        again, cursor = await read_safety(session, server, start, cursor, time)
        assert again == []
        server.clock.advance(3600)
        fresh, cursor = await read_safety(session, server, start, cursor, time)
        assert fresh
        assert not {e["id"] for e in fresh} & {e["id"] for e in events}
        assert min(feed_time(e["createdAtTime"]) for e in fresh) > now

        # The cursor belongs to its startTime; expired cursors are refused.
        time.now += 1
        url = server.samsara_url + SAFETY
        other = await call(session, url, startTime="2025-03-03T06:30:00Z", after=cursor)
        assert other.status == 400
        assert other.json()["message"] == "Parameters differ from previous paginated request"
        control = server.base_url + "/_sim/samsara/expire-safety-cursors"
        async with session.post(control) as resp:
            assert (resp.status, await resp.json()) == (200, {"safety_cursor_generation": 1})
        expired = await call(session, url, startTime=start, after=cursor)
        assert expired.status == 400
        assert expired.json()["message"] == "Invalid or expired cursor"
        # Without asking for them, names are left out (as Samsara does).
        bare = (await call(session, url, startTime=start)).json()["data"][0]
        assert "name" not in bare["asset"]
        assert set(bare["driver"]) == {"id"}


async def test_safety_events_are_the_same_however_the_stream_is_read(
    session: aiohttp.ClientSession,
) -> None:
    eager_time, lazy_time = FakeMonotonic(), FakeMonotonic()
    async with (
        simulator(vehicles=16, monotonic=eager_time) as eager,
        simulator(vehicles=16, monotonic=lazy_time) as lazy,
    ):
        start = "2025-03-03T06:00:00Z"
        cursor = ""
        seen: list[dict[str, Any]] = []
        for _ in range(12):
            eager.clock.advance(300)
            events, cursor = await read_safety(session, eager, start, cursor, eager_time)
            seen += events
        lazy.clock.advance(3600)
        at_once, _ = await read_safety(session, lazy, start, time=lazy_time)
        assert seen
        assert [e["id"] for e in seen] == [e["id"] for e in at_once]


async def test_the_safety_stream_has_a_limit_of_five_a_second_and_media_without_token(
    session: aiohttp.ClientSession,
) -> None:
    time = FakeMonotonic()
    async with simulator(vehicles=8, monotonic=time) as server:
        server.clock.advance(3600)
        url = server.samsara_url + SAFETY
        start = "2025-03-03T06:00:00Z"
        for _ in range(5):
            assert (await call(session, url, startTime=start)).status == 200
        refused = await call(session, url, startTime=start)
        assert refused.status == 429
        assert float(refused.headers["Retry-After"]) == pytest.approx(1.0)
        # Only this endpoint: the feed still answers.
        assert (await call(session, server.samsara_url + FEED, types="gps")).status == 200
        time.now += 1.0
        reply = await call(session, url, startTime=start)
        assert reply.status == 200
        media = reply.json()["data"][0]["media"][0]["url"]
        image = await call(session, media, token=None)
        assert (image.status, image.headers["Content-Type"]) == (200, "image/jpeg")
        assert image.body.startswith(b"\xff\xd8")
        unknown = await call(session, media.replace("dashcamRoadFacing", "analog1"), token=None)
        assert unknown.status == 404


# --- the bridge's Samsara client against the simulator -------------------------------


async def test_samsara_provider_reads_the_simulator(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = SamsaraProvider(
        session,
        SamsaraSettings(token=TOKEN, base_url=server.samsara_url),
        retry=RetryPolicy(backoff_base=0.0),
    )

    def assert_matches_truth(states: list[Any], expected: int) -> None:
        assert len(states) == expected
        for state in states:
            truth = server.world.truth(state.vehicle_id)
            assert state.position is not None
            assert (state.position.latitude, state.position.longitude) == (
                truth.latitude,
                truth.longitude,
            )
            assert state.speed_kmh == pytest.approx(truth.speed_mph * 1.609344, abs=0.06)
            assert state.engine_state is EngineState(truth.engine.value)
            assert state.fuel_percent == truth.fuel_percent
            odometer_m = truth.obd_odometer_m if truth.has_obd else truth.gps_odometer_m
            assert odometer_m is not None
            assert state.odometer_km == pytest.approx(odometer_m / 1000)
            assert state.battery_voltage == pytest.approx(truth.battery_mv / 1000)

    update = await provider.poll(PollPlan(refresh_vehicles=True))
    assert {s.vehicle_id for s in update.vehicles} == set(server.world.ids())
    assert_matches_truth(update.vehicles, len(server.world))
    first = next(s for s in update.vehicles if s.vehicle_id == server.world.ids()[0])
    truth = server.world.truth(first.vehicle_id)
    assert (first.name, first.vin, first.plate, first.year) == (
        truth.name,
        truth.vin,
        truth.plate,
        truth.year,
    )

    server.clock.advance(600)
    server.samsara.fail_next(status=503)  # retried by the client
    update = await provider.poll(PollPlan())
    moving = [t for t in server.world.truths() if t.phase == "driving"]
    assert 0 < len(update.vehicles) <= len(server.world)
    assert {t.vehicle_id for t in moving} <= {s.vehicle_id for s in update.vehicles}
    assert_matches_truth(update.vehicles, len(update.vehicles))

    server.samsara.expire_cursors()
    server.clock.advance(60)
    update = await provider.poll(PollPlan())
    assert_matches_truth(update.vehicles, len(update.vehicles))

    gone = server.world.ids()[1]
    server.world.remove_vehicle(gone)
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    assert update.removed == [gone]


async def test_samsara_provider_keeps_the_obd_odometer_after_a_restart(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    settings = SamsaraSettings(token=TOKEN, base_url=server.samsara_url)
    before = SamsaraProvider(session, settings)
    update = await before.poll(PollPlan(refresh_vehicles=True))
    vid = next(t.vehicle_id for t in server.world.truths() if t.has_obd)
    after = SamsaraProvider(session, settings)
    after.restore(before.checkpoint(), update.vehicles)
    truth = server.world.truth(vid)
    # Samsara reports the two odometers independently; here only the GPS one moves.
    server.world.set_vehicle(vid, gps_odometer_m=truth.gps_odometer_m + 500)
    (state,) = (await after.poll(PollPlan())).vehicles
    assert truth.obd_odometer_m is not None
    assert state.odometer_km == pytest.approx(truth.obd_odometer_m / 1000)


# --- the server and its control API ----------------------------------------------------


async def test_control_api_drives_the_simulator_over_http(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    control = server.base_url + "/_sim"
    advanced = await call(session, control + "/advance", method="POST", seconds="600")
    assert advanced.json()["now"] == "2025-03-03T06:10:00Z"
    assert server.clock.now() == START + timedelta(minutes=10)

    vehicles = (await call(session, control + "/vehicles")).json()["vehicles"]
    assert [v["vehicle_id"] for v in vehicles] == server.world.ids()
    assert {"latitude", "speed_mph", "fuel_percent", "engine", "obd_odometer_m"} <= set(vehicles[0])

    added = await call(session, control + "/vehicles", method="POST")
    assert added.status == 201
    assert added.json()["id"] in server.world
    assert (
        await call(session, control + f"/vehicles/{added.json()['id']}", method="DELETE")
    ).status == 204
    assert (await call(session, control + "/vehicles/nope", method="DELETE")).status == 404

    _, cursor = await read_feed(session, server, ("gps",))
    await call(session, control + "/samsara/expire-cursors", method="POST")
    refused = await call(session, server.samsara_url + FEED, types="gps", after=cursor)
    assert refused.status == 400

    parked = await call(session, control + "/park-all", method="POST")
    assert parked.status == 200
    assert {t.phase for t in server.world.truths()} == {"parked"}

    stats = (await call(session, control + "/stats")).json()
    assert stats["vehicles"] == len(server.world)
    assert stats["samsara"]["by_path"][FEED] == 2
    assert stats["samsara"]["by_status"]["400"] == 1
    assert stats["samsara"]["cursor_generation"] == 1

    for bad in (
        await call(session, control + "/advance", method="POST", seconds="soon"),
        await call(session, control + "/advance", method="POST"),
        await call(session, control + "/samsara/fail", method="POST", status="200"),
    ):
        assert bad.status == 400
    assert (await call(session, control + "/nope/fail", method="POST")).status == 404


async def test_server_reports_its_urls_and_releases_the_port() -> None:
    server = SimulatorServer(vehicles=1, speed=0, start=START)
    with pytest.raises(RuntimeError):
        _ = server.base_url
    async with server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.samsara_url == server.base_url + "/samsara"
    async with SimulatorServer(vehicles=1, speed=0, port=server.port) as again:
        assert again.port == server.port


async def test_serve_forever_announces_one_line_and_stops_when_told(
    session: aiohttp.ClientSession,
) -> None:
    lines: list[str] = []
    ready, stop = asyncio.Event(), asyncio.Event()

    def announce(line: str) -> None:
        lines.append(line)
        ready.set()

    task = asyncio.create_task(serve_forever(port=0, vehicles=3, announce=announce, stop=stop))
    async with asyncio.timeout(5):
        await ready.wait()
    (line,) = lines
    samsara_url = re.search(r"base_url=(\S+)", line)
    assert samsara_url
    assert "token=demo-samsara-token" in line
    reply = await call(session, samsara_url.group(1) + "/fleet/vehicles")
    assert len(reply.json()["data"]) == 3
    stop.set()
    async with asyncio.timeout(5):
        await task


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_the_simulator_process_exits_cleanly_on_a_signal(
    sig: signal.Signals, session: aiohttp.ClientSession
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge.simulator",
        "--port",
        "0",
        "--vehicles",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(10):
            assert process.stdout is not None
            line = (await process.stdout.readline()).decode()
        base_url = re.search(r"at (http://\S+)", line)
        assert base_url, line
        assert (await call(session, base_url.group(1) + "/_sim/stats")).status == 200
        process.send_signal(sig)
        async with asyncio.timeout(10):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
