"""The FLEETIZE simulator: form POSTs, text errors, exact limits and documented quirks.

Every test runs a real `SimulatorServer` with a frozen clock (speed 0). FLEETIZE's
limits run on the simulated clock, so spacing calls is `server.clock.advance(60)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest

from bridge.simulator import SimClock, SimulatorServer, World
from bridge.simulator.fleetize import ERRORS
from bridge.simulator.fleetize_json import DEVICE_FIELDS, ERROR_TEXTS
from bridge.simulator.vehicle import Phase

START = datetime(2025, 3, 3, 6, 0, tzinfo=UTC)  # a Monday
TOKEN = "demo-fleetize-token"
INVALID_TOKEN = "ERROR #1000 - INVALID API TOKEN"
THRESHOLD = (
    "ERROR #1055 - QUERY-THRESHOLD EXCEEDED - PLEASE REDUCE QUERY-INTERVAL, "
    "OTHERWISE YOUR TOKEN WILL BE BLOCKED"
)
BLOCKED = "ERROR #1002 - QUERY-THRESHOLD EXCEEDED - API TOKEN BLOCKED"
DAILY = "ERROR #1056 - DAILY QUERY LIMIT REACHED"


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=2, fleetize_vehicles=6, telemax_vehicles=1, speed=0, start=START
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession,
    server: SimulatorServer,
    action: str = "devicelist",
    *,
    token: str | None = TOKEN,
    **params: str,
) -> tuple[int, str]:
    form = params | ({"apitoken": token} if token is not None else {})
    async with session.post(f"{server.fleetize_url}/{action}", data=form) as resp:
        return resp.status, await resp.text()


def lenient(text: str) -> Any:
    """What a defensive client must do: drop the stray commas, then parse (the
    simulator writes no commas inside its strings)."""
    return json.loads(re.sub(r",\s*([}\]])", r"\1", re.sub(r",(\s*,)+", ",", text)))


def unthrottled(server: SimulatorServer) -> None:
    """For tests about the data, not the limits: no 60 s spacing."""
    server.fleetize.quota.min_interval_ms = 0


def now_s(server: SimulatorServer) -> int:
    return server.clock.now_ms() // 1000


# --- authentication and errors ----------------------------------------------------------


async def test_a_missing_or_wrong_token_answers_error_1000_as_text(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    url = server.fleetize_url + "/devicelist"
    replies = [
        await post(session, server, token=None),
        await post(session, server, token="wrong"),
        await post(session, server, token=TOKEN + " "),
    ]
    # The token must be a POST form parameter: a query string or a JSON body is no token.
    async with session.get(url, params={"apitoken": TOKEN}) as resp:
        replies.append((resp.status, await resp.text()))
    async with session.post(url, json={"apitoken": TOKEN}) as resp:
        replies.append((resp.status, await resp.text()))
        assert resp.headers["Content-Type"].startswith("text/plain")
    assert replies == [(200, INVALID_TOKEN)] * 5
    assert server.fleetize.error_counts[1000] == 5
    # Refused tokens use no quota and start no 60 s counter.
    assert server.fleetize.quota.calls_today() == 0
    status, body = await post(session, server)
    assert status == 200
    assert isinstance(lenient(body), list)

    server.fleetize.error_status = 403  # if an account's service answers errors so
    assert await post(session, server, token="wrong") == (403, INVALID_TOKEN)


# --- the exact limits ----------------------------------------------------------------------


async def test_calls_within_60_s_answer_1055_and_restart_the_counter(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    server.fleetize.quota.block_after = 99  # this test is about the spacing alone
    timeline = [
        (0, "ok"),
        (59, THRESHOLD),  # one second short
        (60, "ok"),  # 60 s after the violating call: allowed again
        (30, THRESHOLD),
        (30, THRESHOLD),  # 60 s after the last good call, but only 30 after the violation
        (60, "ok"),
    ]
    for step, expected in timeline:
        server.clock.advance(step)
        status, body = await post(session, server)
        assert status == 200
        if expected == "ok":
            assert not body.startswith("ERROR"), body
        else:
            assert body == expected
    assert server.fleetize.error_counts[1055] == 3
    assert sum(server.fleetize.quota.violations.values()) == 3
    assert server.fleetize.quota.calls_today() == 3  # refused calls use no quota
    assert server.fleetize.action_counts["devicelist"] == 3


async def test_repeated_violations_block_the_token_until_support_unblocks_it(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    # Violations spread wider than an hour do not block.
    for _ in range(3):
        assert not (await post(session, server))[1].startswith("ERROR")
        server.clock.advance(30)
        assert (await post(session, server))[1] == THRESHOLD
        server.clock.advance(40 * 60)
    assert not server.fleetize.quota.is_blocked(TOKEN)

    # Three within an hour do: the third answers #1002, and so does everything after.
    assert not (await post(session, server))[1].startswith("ERROR")
    server.clock.advance(1)
    assert (await post(session, server))[1] == THRESHOLD
    server.clock.advance(1)
    assert (await post(session, server))[1] == BLOCKED
    assert server.fleetize.quota.is_blocked(TOKEN)
    for wait in (60, 2 * 3600, 2 * 86400):
        server.clock.advance(wait)
        assert (await post(session, server))[1] == BLOCKED
        assert (await post(session, server, "device", device="481"))[1] == BLOCKED
    stats = await session.get(server.base_url + "/_sim/stats")
    body = await stats.json()
    assert body["fleetize"]["blocked"] is True
    assert body["fleetize"]["errors"]["1002"] == 7

    unblocked = await session.post(server.base_url + "/_sim/fleetize/unblock")
    assert (await unblocked.json()) == {"blocked": False}
    server.clock.advance(60)
    assert not (await post(session, server))[1].startswith("ERROR")


async def test_the_101st_call_of_a_utc_day_is_refused_until_midnight(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    server.clock.advance(16 * 3600)  # 22:00 UTC
    for _ in range(100):
        status, body = await post(session, server)
        assert status == 200
        assert not body.startswith("ERROR")
        server.clock.advance(60)
    assert server.clock.now() == START + timedelta(hours=17, minutes=40)
    assert (await post(session, server))[1] == DAILY
    server.clock.advance(19 * 60)  # 23:59: still the same UTC day
    assert (await post(session, server))[1] == DAILY
    server.clock.advance(60)  # midnight UTC: a new budget
    assert not (await post(session, server))[1].startswith("ERROR")
    assert server.fleetize.quota.calls_today() == 1
    assert server.fleetize.error_counts[1056] == 2
    assert ERRORS[1056] == DAILY


# --- devicelist ------------------------------------------------------------------------


async def test_devicelist_serves_the_documented_fields_units_and_quirks(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    status, body = await post(session, server)
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)  # the trailing commas of the documentation's example
    assert ",}" in body
    assert '.png",,"device_mileage"' in body  # as in the documentation's example
    devices = lenient(body)
    world = server.fleetize_world
    assert [d["device_id"] for d in devices] == [int(i) for i in world.ids()]
    now = now_s(server)
    phases = set()
    for device in devices:
        assert list(device) == list(DEVICE_FIELDS)
        vehicle = world.vehicle(str(device["device_id"]))
        truth = world.truth(vehicle.vehicle_id)
        phases.add(truth.phase)
        assert isinstance(device["device_imei"], int)
        assert len(str(device["device_imei"])) == 15
        assert device["device_name"] == truth.name
        assert unquote(device["device_portrait"]).startswith("http://track.fleetize.com/")
        assert "%2F" in device["device_portrait"]
        assert int(device["device_mileage"]) == int(vehicle.odometer_m // 1000)  # km
        assert device["location"] == f"{truth.latitude:.5f},{truth.longitude:.5f}"
        assert device["device_angle"] == truth.heading
        assert 0 < float(device["device_voltage_internal"]) < 5
        assert device["device_voltage_external"] == pytest.approx(truth.battery_mv / 1000)
        if truth.speed_kmh == 0:
            assert device["device_speed"] == "0"  # a string, as the service sends it
        else:
            assert device["device_speed"] == round(truth.speed_kmh)  # km/h, not mph
        expected_status = {"parked": 1, "driving": 2, "leaving": 3, "arrived": 3}[truth.phase]
        assert device["status_code"] == expected_status
        assert device["status_text"] == {1: "offline", 2: "active", 3: "inactive"}[expected_status]
        assert device["online_timestamp"] <= device["heartbeat_timestamp"] <= now
        assert device["device_upm"] == 0 if truth.engine == "off" else device["device_upm"] > 500
        assert 0 <= device["error_code"] <= 5
    assert {"parked", "driving"} <= phases
    mileages = [d["device_mileage"] for d in devices]
    assert any(isinstance(m, str) for m in mileages)
    assert any(isinstance(m, int) for m in mileages)

    # With the quirks off: valid JSON, numbers as numbers.
    server.fleetize.quirks = False
    server.clock.advance(60)
    clean = json.loads((await post(session, server))[1])
    assert all(isinstance(d["device_mileage"], int) for d in clean)
    assert all(isinstance(d["device_speed"], int) for d in clean)


async def test_scope_and_activity_after_shrink_the_answer(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    unthrottled(server)
    full = lenient((await post(session, server))[1])
    scoped = lenient((await post(session, server, scope="device_id;location;no_such_field;"))[1])
    assert [set(d) for d in scoped] == [{"device_id", "location"}] * len(full)
    assert [d["location"] for d in scoped] == [d["location"] for d in full]

    onlines = sorted({d["online_timestamp"] for d in full})
    assert len(onlines) > 2
    cut = onlines[len(onlines) // 2]
    recent = lenient((await post(session, server, activity_after=str(cut)))[1])
    assert {d["device_id"] for d in recent} == {
        d["device_id"] for d in full if d["online_timestamp"] > cut
    }
    assert 0 < len(recent) < len(full)
    assert (await post(session, server, activity_after=str(now_s(server))))[1] == "[]"


async def test_devices_report_documented_fault_codes_over_time(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    seen: dict[int, set[int]] = {}
    for _ in range(36):  # every 20 minutes for 12 hours
        for device in lenient((await post(session, server))[1]):
            code = device["error_code"]
            seen.setdefault(code, set()).add(device["device_id"])
            if code:
                assert device["error_text"] == ERROR_TEXTS[code]
                assert device["error_code_time"] <= now_s(server)
            else:
                assert device["error_text"] is None
                assert device["error_code_time"] is None
        server.clock.advance(20 * 60)
    faults = set(seen) - {0}
    assert len(faults) >= 3, seen
    assert len(seen[0]) == len(server.fleetize_world)

    # A test can pin a fault: unplugged means no vehicle voltage.
    unthrottled(server)
    reply = await session.post(
        server.base_url + "/_sim/fleetize/error", params={"device": "483", "code": "2"}
    )
    assert reply.status == 200
    (device,) = [d for d in lenient((await post(session, server))[1]) if d["device_id"] == 483]
    assert (device["error_code"], device["device_voltage_external"]) == (2, 0.0)
    assert device["error_code_time"] == now_s(server)


# --- device and its routes -------------------------------------------------------------


async def test_device_answers_the_routes_of_a_utc_day(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    unthrottled(server)
    server.clock.advance(30 * 3600)  # Tuesday 12:00
    world = server.fleetize_world
    world.update()
    monday = int(START.timestamp()) + 3600  # any time of the day will do
    vehicle = max(world.vehicles(), key=lambda v: len(v.trip_log))
    trips = [t for t in vehicle.trip_history() if t.start_ms // 1000 // 86400 == monday // 86400]
    assert len(trips) >= 2

    status, body = await post(
        session, server, "device", device=vehicle.vehicle_id, time=str(monday)
    )
    assert status == 200
    answer = lenient(body)
    assert answer["device"]["device_id"] == int(vehicle.vehicle_id)
    assert answer["device"]["timestamp"] == monday - monday % 86400
    routes = answer["routes"]
    assert len(routes) == len(trips)
    for route, trip in zip(routes, trips, strict=True):
        assert route["origin_timestamp"] == str(trip.start_ms // 1000)  # a string
        assert route["destination_timestamp"] == str(trip.end_ms // 1000 if trip.end_ms else 0)
        assert isinstance(route["origin_mileage"], int)
        driven = route["destination_mileage"] - route["origin_mileage"]
        assert driven == pytest.approx(trip.distance_m / 1000, abs=1)  # km
        points = [p.split(",") for p in route["route_points"].split(";")]
        assert all(len(p) == 3 for p in points)
        assert ",".join(points[0][:2]) == route["origin_location"]
        assert ",".join(points[-1][:2]) == route["destination_location"]
        assert max(int(p[2]) for p in points) < 130  # km/h
        assert 0 < route["average_speed"] < 130
        assert {p["type"] for p in route["route_pause"]} <= {1, 2}
        assert route["pause_duration"] == sum(
            p["end_timestamp"] - p["start_timestamp"] for p in route["route_pause"]
        )

    # Without `time`: the day of the latest activity, today.
    latest = lenient((await post(session, server, "device", device=vehicle.vehicle_id))[1])
    today = now_s(server) - now_s(server) % 86400
    assert all(int(r["origin_timestamp"]) >= today for r in latest["routes"])
    assert latest["routes"]
    scoped = lenient(
        (await post(session, server, "device", device=vehicle.vehicle_id, scope="status_code"))[1]
    )
    assert list(scoped["device"]) == ["status_code"]
    for bad in ("999", ""):
        assert (await post(session, server, "device", device=bad))[1].startswith("ERROR #1003")


# --- faults, fleets, work hours -----------------------------------------------------------


async def test_injected_faults_answer_instead_and_use_no_quota(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    reply = await session.post(server.base_url + "/_sim/fleetize/fail", params={"status": "503"})
    assert reply.status == 200
    assert (await post(session, server))[0] == 503
    assert server.fleetize.quota.calls_today() == 0
    assert not (await post(session, server))[1].startswith("ERROR")


async def test_each_provider_serves_a_fleet_of_its_own(session: aiohttp.ClientSession) -> None:
    async with SimulatorServer(
        vehicles=3, fleetize_vehicles=4, telemax_vehicles=2, speed=0, start=START
    ) as server:
        assert server.fleetize_url == server.base_url + "/fleetize/v2"
        assert server.telemax_url == server.base_url + "/telemax"
        worlds = server.worlds
        assert [len(worlds[name]) for name in ("samsara", "fleetize", "telemax")] == [3, 4, 2]
        # No vehicle id, name or VIN is shared between two fleets.
        for key in ("vehicle_id", "name", "vin"):
            values = [getattr(t, key) for w in worlds.values() for t in w.truths()]
            assert len(set(values)) == len(values) == 9, key
        assert server.fleetize_world.clock is server.telemax_world.clock is server.clock

        devices = lenient((await post(session, server))[1])
        assert [str(d["device_id"]) for d in devices] == server.fleetize_world.ids()
        async with session.get(
            server.base_url + "/_sim/vehicles", params={"provider": "fleetize"}
        ) as resp:
            listed = [v["vehicle_id"] for v in (await resp.json())["vehicles"]]
        assert listed == server.fleetize_world.ids()
        async with session.post(
            server.base_url + "/_sim/vehicles", params={"provider": "telemax"}
        ) as resp:
            assert resp.status == 201
        assert [len(worlds[name]) for name in ("samsara", "fleetize", "telemax")] == [3, 4, 3]
        async with session.get(server.base_url + "/_sim/stats") as resp:
            stats = await resp.json()
        assert stats["fleetize"]["vehicles"] == 4
        assert stats["telemax"]["vehicles"] == 3
        assert stats["fleetize"]["by_action"] == {"devicelist": 1}


async def test_with_work_hours_vehicles_drive_only_by_day(session: aiohttp.ClientSession) -> None:
    night = datetime(2025, 3, 3, 2, 0, tzinfo=UTC)
    async with SimulatorServer(
        vehicles=8, fleetize_vehicles=8, speed=0, start=night, work_hours={"fleetize": (7, 17)}
    ) as server:
        unthrottled(server)

        async def statuses() -> set[int]:
            return {d["status_code"] for d in lenient((await post(session, server))[1])}

        assert await statuses() == {1}  # all parked at 02:00
        assert any(t.phase == "driving" for t in server.world.truths())  # Samsara has no hours
        server.clock.advance(6 * 3600)  # 08:00
        assert 2 in await statuses()
        server.clock.advance(12 * 3600)  # 20:00
        assert await statuses() == {1}


def test_work_hours_hold_all_week_and_a_week_stays_cheap() -> None:
    clock = SimClock(datetime(2025, 3, 3, tzinfo=UTC), speed=0)
    world = World(10, seed=3, clock=clock, work_hours=(7, 17), history_days=8)
    clock.advance(7 * 86400)
    world.update()
    for vehicle in world.vehicles():
        starts = [t.start_ms // 3_600_000 % 24 for t in vehicle.trip_history()]
        assert len(starts) >= 7 * 4
        assert all(7 <= hour < 17 for hour in starts)
        days = {t.start_ms // 86_400_000 for t in vehicle.trip_history()}
        assert len(days) == 7
        assert vehicle.phase is Phase.PARKED  # midnight
    with pytest.raises(ValueError, match="work hours"):
        World(1, work_hours=(9, 9))
