"""The TrackSafe365 simulator: keys bound to their environment, scopes named in
403s, the refused `?api_key=`, cursor pagination, live data, safety events,
snapshot tasks with fetchable images, and rate limits per plan.

Every test runs a real `SimulatorServer` with a frozen clock (speed 0). The minute
limits run on an injected monotonic clock, the daily ones on the simulated clock.
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
from bridge.simulator.server import banner
from bridge.simulator.tracksafe365_keys import SCOPES, ApiKey, Plan, make_key

START = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)
LIVE, TEST, RESTRICTED = "ts365_live_demo", "ts365_test_demo", "ts365_rk_demo"
KMH_PER_MPH = 1.609344


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
        telemax_vehicles=1,
        metrotec_vehicles=1,
        tracksafe365_vehicles=6,
        speed=0,
        start=START,
        monotonic=monotonic,
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def call(
    session: aiohttp.ClientSession,
    url: str,
    key: str | None = LIVE,
    *,
    method: str = "GET",
    body: Any = None,
    **params: str,
) -> Reply:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with session.request(method, url, headers=headers, params=params, json=body) as resp:
        return Reply(resp.status, dict(resp.headers), await resp.read())


def assert_error(reply: Reply, status: int, code: str | None = None) -> str:
    assert reply.status == status, reply.body
    body = reply.json()
    assert set(body) == {"code", "message"}
    if code is not None:
        assert body["code"] == code
    message: str = body["message"]
    return message


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- keys, environments, scopes -------------------------------------------------------


async def test_each_key_works_only_on_its_environment(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    production, sandbox = server.tracksafe365_url, server.tracksafe365_sandbox_url
    assert production.endswith("/tracksafe365/v2")
    assert sandbox.endswith("/tracksafe365/sandbox/v2")
    path = "/fleet/vehicles"
    assert (await call(session, sandbox + path, TEST)).status == 200
    assert (await call(session, production + path, LIVE)).status == 200
    assert (await call(session, production + path, RESTRICTED)).status == 200
    assert_error(await call(session, production + path, TEST), 401, "wrong_environment")
    assert_error(await call(session, sandbox + path, LIVE), 401, "wrong_environment")
    assert_error(await call(session, sandbox + path, RESTRICTED), 401, "wrong_environment")
    for key in (None, "ts365_live_stolen", "ts365_test_", "sk_live_demo"):
        assert_error(await call(session, production + path, key), 401)
    # One fleet behind both.
    ours = (await call(session, sandbox + path, TEST)).json()
    assert ours == (await call(session, production + path, LIVE)).json()
    assert server.tracksafe365.wrong_environment == 3


async def test_a_missing_scope_is_named_in_the_403(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.tracksafe365_url
    vehicle = server.tracksafe365_world.ids()[0]
    for path, scope in (("/safety/events", "safety:read"), ("/safety/dms/events", "safety:read")):
        message = assert_error(await call(session, url + path, RESTRICTED), 403)
        assert scope in message
    snapshot = await call(session, url + "/media/snapshots", RESTRICTED, method="POST",
                          body={"vehicleId": vehicle})  # fmt: skip
    assert "media:read" in assert_error(snapshot, 403, "insufficient_scope")
    assert (await call(session, url + "/safety/events", LIVE)).status == 200
    stats = await (await session.get(server.base_url + "/_sim/stats")).json()
    assert stats["tracksafe365"]["forbidden_by_scope"] == {"safety:read": 2, "media:read": 1}
    assert server.tracksafe365.snapshots == {}


async def test_keys_with_other_scopes_can_be_configured(session: aiohttp.ClientSession) -> None:
    keys = [make_key("ts365_rk_cams", ("media:read",)), make_key("ts365_live_ops", SCOPES)]
    async with SimulatorServer(
        vehicles=1, tracksafe365_vehicles=2, speed=0, start=START, tracksafe365_keys=keys
    ) as server:
        url = server.tracksafe365_url + "/fleet/vehicles"
        assert "fleet:read" in assert_error(await call(session, url, "ts365_rk_cams"), 403)
        assert (await call(session, url, "ts365_live_ops")).status == 200
        assert_error(await call(session, url, LIVE), 401)  # the demo keys are gone
    with pytest.raises(ValueError, match="prefix"):
        make_key("live_demo")


async def test_a_key_in_the_query_string_is_never_accepted(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.tracksafe365_sandbox_url + "/fleet/vehicles"
    alone = await call(session, url, None, api_key=TEST)
    assert "Authorization" in assert_error(alone, 401, "api_key_query_removed")
    both = await call(session, url, TEST, api_key=TEST)
    assert_error(both, 400, "api_key_query_removed")
    assert (await call(session, url, TEST)).status == 200
    stats = await (await session.get(server.base_url + "/_sim/stats")).json()
    assert stats["tracksafe365"]["api_key_query_attempts"] == 2


# --- lists and live data ------------------------------------------------------------------


async def test_vehicles_come_in_cursor_pages_of_at_most_500(
    session: aiohttp.ClientSession,
) -> None:
    async with SimulatorServer(
        vehicles=1, tracksafe365_vehicles=620, speed=0, start=START
    ) as server:
        url = server.tracksafe365_url + "/fleet/vehicles"
        world = server.tracksafe365_world

        async def every(**params: str) -> list[int]:
            sizes, listed, cursor = [], [], ""
            while True:
                extra = {"cursor": cursor} if cursor else {}
                body = (await call(session, url, **params, **extra)).json()
                sizes.append(len(body["data"]))
                listed += [v["id"] for v in body["data"]]
                cursor = body["pagination"]["endCursor"]
                if not body["pagination"]["hasNextPage"]:
                    assert cursor == ""
                    assert listed == world.ids()
                    return sizes
                assert cursor

        assert await every() == [100] * 6 + [20]  # default 100
        assert await every(limit="500") == [500, 120]
        for bad in ("501", "0", "ten"):
            assert_error(await call(session, url, limit=bad), 400)
        assert_error(await call(session, url, cursor="garbage"), 400, "invalid_cursor")
        first = (await call(session, url, limit="10")).json()
        await session.post(server.base_url + "/_sim/tracksafe365/expire-cursors")
        stale = await call(session, url, cursor=first["pagination"]["endCursor"])
        assert_error(stale, 400, "invalid_cursor")

        vehicle = first["data"][3]
        assert set(vehicle) == {"id", "name", "vin", "licensePlate", "tags"}
        assert vehicle["id"].startswith("veh_")
        chosen = ",".join(v["id"] for v in first["data"][:3])
        assert [v["id"] for v in (await call(session, url, vehicleIds=chosen)).json()["data"]] == (
            chosen.split(",")
        )
        tag = vehicle["tags"][0]["id"]
        tagged = (await call(session, url, tagIds=tag, limit="500")).json()["data"]
        assert len(tagged) > 100
        assert all(v["tags"][0]["id"] == tag for v in tagged)
        one = await call(session, f"{url}/{vehicle['id']}")
        assert one.json() == {"data": vehicle}
        assert_error(await call(session, f"{url}/veh_nope"), 404)


async def test_locations_stats_and_dashcams_match_the_fleet(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    server.clock.advance(30 * 60)
    url = server.tracksafe365_url
    world = server.tracksafe365_world
    truths = {t.vehicle_id: t for t in world.truths()}
    locations = (await call(session, url + "/fleet/locations")).json()["data"]
    assert [item["vehicleId"] for item in locations] == world.ids()
    for item in locations:
        truth, where = truths[item["vehicleId"]], item["location"]
        assert (where["latitude"], where["longitude"]) == (truth.latitude, truth.longitude)
        assert where["speedMilesPerHour"] * KMH_PER_MPH == pytest.approx(truth.speed_kmh, abs=0.02)
        assert parse(where["time"]) == truth.position_time
    running = {v for v, t in truths.items() if t.engine != "off"}
    assert running
    active = (await call(session, url + "/fleet/vehicles/locations")).json()["data"]
    assert {item["vehicleId"] for item in active} == running

    stats = (await call(session, url + "/fleet/vehicles/stats")).json()["data"]
    for item in stats:
        truth = truths[item["vehicleId"]]
        if truth.has_obd:
            assert item["odometerMeters"] == pytest.approx(truth.obd_odometer_m, abs=1000)
            assert item["fuelPercent"] == truth.fuel_percent
            assert item["engineHours"] > 0
        else:
            assert item["engineHours"] is item["fuelPercent"] is None

    cams = (await call(session, url + "/devices/dashcams")).json()["data"]
    assert {c["vehicleId"] for c in cams if c["online"]} >= running
    server.tracksafe365_world.park_all()
    server.clock.advance(16 * 60)  # asleep 15 minutes after the ignition went off
    cams = (await call(session, url + "/devices/dashcams")).json()["data"]
    assert not any(c["online"] for c in cams)


async def test_safety_and_dms_events_come_from_finished_trips(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    server.clock.advance(8 * 3600)
    url = server.tracksafe365_url
    now = server.clock.now()
    events = (await call(session, url + "/safety/events")).json()["data"]
    assert events
    kinds = {"harsh_braking", "harsh_acceleration", "harsh_cornering", "speeding"}
    assert {e["type"] for e in events} <= kinds
    times = [parse(e["time"]) for e in events]
    assert times == sorted(times)
    assert all(now - timedelta(days=1) <= t <= now for t in times)
    for event in events:
        if event["type"] == "speeding":
            assert event["speedMilesPerHour"] * KMH_PER_MPH > 95
    dms = (await call(session, url + "/safety/dms/events")).json()["data"]
    assert {e["type"] for e in dms} <= {"drowsiness", "distraction", "phone_use", "seatbelt"}
    assert all(e["durationSeconds"] > 0 for e in dms)

    vehicle = events[0]["vehicleId"]
    own = (await call(session, url + "/safety/events", vehicleIds=vehicle)).json()["data"]
    assert own == [e for e in events if e["vehicleId"] == vehicle]
    paged, cursor = [], ""
    while True:
        body = (await call(session, url + "/safety/events", limit="2", cursor=cursor)).json()
        paged += body["data"]
        cursor = body["pagination"]["endCursor"]
        if not body["pagination"]["hasNextPage"]:
            break
    assert paged == events
    window = {"startTime": iso(now - timedelta(hours=2)), "endTime": iso(now)}
    recent = (await call(session, url + "/safety/events", **window)).json()["data"]
    assert recent == [e for e in events if parse(e["time"]) >= now - timedelta(hours=2)]
    assert_error(await call(session, url + "/safety/events", startTime="yesterday"), 400)


# --- snapshots ----------------------------------------------------------------------


async def awake_vehicle(server: SimulatorServer, session: aiohttp.ClientSession) -> str:
    """A vehicle whose dashcam is online (moving simulated time on until one is)."""
    for _ in range(24):
        cams = (await call(session, server.tracksafe365_url + "/devices/dashcams")).json()
        online = [cam["vehicleId"] for cam in cams["data"] if cam["online"]]
        if online:
            return online[0]
        server.clock.advance(300)
    raise AssertionError("no dashcam came online")


async def test_a_snapshot_goes_pending_processing_completed_with_a_fetchable_jpeg(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.tracksafe365_url + "/media/snapshots"
    vehicle = await awake_vehicle(server, session)
    start = server.clock.now()
    created = await call(session, url, method="POST", body={"vehicleId": vehicle,
                                                            "camera": "driver"})  # fmt: skip
    assert created.status == 201
    task = created.json()["data"]
    assert (task["status"], task["vehicleId"], task["camera"]) == ("pending", vehicle, "driver")
    assert task["imageUrl"] is None
    poll = f"{url}/{task['taskId']}"
    image_url = server.base_url + f"/tracksafe365/media/{task['taskId']}.jpg"
    async with session.get(image_url) as early:
        assert early.status == 404  # nothing to fetch yet

    server.clock.advance(3)
    assert (await call(session, poll)).json()["data"]["status"] == "processing"
    server.clock.advance(6)
    assert (await call(session, poll)).json()["data"]["status"] == "processing"
    server.clock.advance(1)
    done = (await call(session, poll)).json()["data"]
    assert done["status"] == "completed"
    assert done["imageUrl"] == image_url
    assert parse(done["completedAt"]) == start + timedelta(seconds=10)
    assert done["error"] is None
    async with session.get(done["imageUrl"]) as image:  # no key: an image entity fetches it
        assert image.status == 200
        assert image.content_type == "image/jpeg"
        data = await image.read()
    assert data[:3] == b"\xff\xd8\xff"
    assert data.endswith(b"\xff\xd9")
    assert b"\xff\xc0" in data  # a baseline frame
    stats = server.tracksafe365.stats()["snapshots"]
    assert stats == {"requested": 1, "completed": 1, "failed": 0, "pending": 0}


async def test_snapshots_fail_when_the_dashcam_sleeps_when_told_and_now_and_then(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.tracksafe365_url + "/media/snapshots"
    world = server.tracksafe365_world
    asleep = world.ids()[0]
    world.park(asleep)
    server.clock.advance(16 * 60)
    awake = await awake_vehicle(server, session)
    assert awake != asleep

    async def snapshot(vehicle: str) -> dict[str, Any]:
        reply = await call(session, url, method="POST", body={"vehicleId": vehicle})
        assert reply.status == 201, reply.body
        task: dict[str, Any] = reply.json()["data"]
        return task

    offline = await snapshot(asleep)
    switch = await session.post(server.base_url + "/_sim/tracksafe365/fail-snapshots?on=1")
    assert (await switch.json()) == {"fail_snapshots": True}
    forced = await snapshot(awake)
    await session.post(server.base_url + "/_sim/tracksafe365/fail-snapshots?on=0")
    fine = [await snapshot(awake) for _ in range(8)]  # the 3rd to 10th
    server.clock.advance(10)
    results = []
    for task in (offline, forced, *fine):
        body = (await call(session, f"{url}/{task['taskId']}")).json()["data"]
        results.append((body["status"], (body["error"] or {}).get("code")))
        if body["status"] == "failed":
            assert body["imageUrl"] is None
            assert body["error"]["message"]
            async with session.get(
                server.base_url + f"/tracksafe365/media/{task['taskId']}.jpg"
            ) as image:
                assert image.status == 404
    assert results == [
        ("failed", "dashcam_offline"),
        ("failed", "capture_failed"),
        *[("completed", None)] * 7,
        ("failed", "capture_failed"),  # every tenth fails on its own
    ]
    stats = server.tracksafe365.stats()["snapshots"]
    assert (stats["completed"], stats["failed"]) == (7, 3)

    for body in ({}, {"vehicleId": awake, "camera": "rear"}, [awake]):
        assert_error(await call(session, url, method="POST", body=body), 400)
    assert_error(await call(session, url, method="POST", body={"vehicleId": "veh_x"}), 404)
    assert_error(await call(session, url + "/snap_missing"), 404)
    assert_error(await call(session, url, method="DELETE"), 405)


# --- rate limits ---------------------------------------------------------------------


@pytest.mark.parametrize(("key", "limit"), [(TEST, 60), (LIVE, 300)])
async def test_the_per_minute_limit_follows_the_keys_plan(
    server: SimulatorServer,
    session: aiohttp.ClientSession,
    monotonic: FakeMonotonic,
    key: str,
    limit: int,
) -> None:
    base = server.tracksafe365_sandbox_url if key == TEST else server.tracksafe365_url
    url = base + "/fleet/vehicles"
    step = 50 / limit  # all within 50 s
    for _ in range(limit):
        assert (await call(session, url, key, limit="1")).status == 200
        monotonic.now += step
    refused = await call(session, url, key, limit="1")
    message = assert_error(refused, 429, "rate_limit_exceeded")
    assert f"{limit} requests per minute" in message
    # The first request leaves the window 60 s after it came, at 1060.
    assert refused.headers["Retry-After"] == str(int(-(-(1060 - monotonic.now) // 1)))
    if key == LIVE:  # per key: the restricted key has its own count
        assert (await call(session, url, RESTRICTED, limit="1")).status == 200
    monotonic.now = 1060.0
    assert (await call(session, url, key, limit="1")).status == 200
    assert (await call(session, url, key, limit="1")).status == 429
    assert server.tracksafe365.throttled == {"minute": 2}


async def test_the_daily_limit_runs_on_the_simulated_utc_day(
    session: aiohttp.ClientSession,
) -> None:
    tiny = ApiKey("ts365_live_tiny", frozenset(SCOPES), Plan("Tiny", 100, 3))
    async with SimulatorServer(
        vehicles=1, tracksafe365_vehicles=1, speed=0, start=START, tracksafe365_keys=[tiny]
    ) as server:
        url = server.tracksafe365_url + "/fleet/vehicles"
        for _ in range(3):
            assert (await call(session, url, tiny.key)).status == 200
        refused = await call(session, url, tiny.key)
        assert "3 requests per day" in assert_error(refused, 429)
        assert refused.headers["Retry-After"] == str(18 * 3600)  # 06:00 -> midnight UTC
        server.clock.advance(18 * 3600 - 1)
        assert (await call(session, url, tiny.key)).status == 429
        server.clock.advance(1)
        assert (await call(session, url, tiny.key)).status == 200
        assert server.tracksafe365.throttled == {"day": 2}


async def test_injected_faults_and_the_banner(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.tracksafe365_url + "/fleet/vehicles"
    reply = await session.post(
        server.base_url + "/_sim/tracksafe365/fail", params={"status": "429", "retry_after": "2.5"}
    )
    assert reply.status == 200
    throttled = await call(session, url)
    assert_error(throttled, 429)
    assert throttled.headers["Retry-After"] == "3"
    server.tracksafe365.fail_next(status=503)
    assert_error(await call(session, url), 503, "internal_error")
    assert (await call(session, url)).status == 200
    assert_error(await call(session, server.tracksafe365_url + "/fleet/trucks"), 404)

    line = banner(server)
    assert f"Metrotec: base_url={server.metrotec_url} username=demo" in line
    assert "password=demo-metrotec-password api_key=demo-metrotec-key" in line
    assert f"TrackSafe365: base_url={server.tracksafe365_url} " in line
    assert f"sandbox_url={server.tracksafe365_sandbox_url}" in line
    for key in (LIVE, TEST, f"{RESTRICTED} (production, fleet:read)"):
        assert key in line
    assert server.metrotec_url.endswith("/metrotec/api")
