"""The Metrotec simulator: header rules, both ways to log in, position records with
longitude in Xpos around Tallinn, fuel tanks, light and reporting-interval events
that take effect only once handled, route tasks (unique order_ref, updates,
progress with their vehicle), geozones and the alarm log.

Every test runs a real `SimulatorServer` with a frozen clock (speed 0) and moves
simulated time by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bridge.simulator import SimulatorServer, geo
from bridge.simulator.metrotec_alarms import ALARM_NAMES, ALARM_ZONE_ENTER, ALARM_ZONE_EXIT
from bridge.simulator.metrotec_json import _eet_with_eu_summer_time, local_clock

START = datetime(2025, 7, 3, 6, 0, tzinfo=UTC)  # summer: Tallinn is UTC+3
HEADERS = {"Accept": "application/json; version=1.1.0", "User-Agent": "FleetBridgeTests/1.0"}
LOGIN = {"username": "demo", "password": "demo-metrotec-password"}
API_KEY = "demo-metrotec-key"
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
POSITION_FIELDS = [
    "ID", "objectID", "Xpos", "Ypos", "Counter1", "Counter2", "GMTime", "Speed", "Heading",
    "Input", "LastCommunicationLocalTime", "Content", "Power", "BatLevel", "NoGPSFix",
    "t1", "t2", "t3", "t4",
]  # fmt: skip
TASK = {
    "lat": 59.437,
    "lon": 24.754,
    "start_time": "2025-07-03 06:00:00",
    "stop_time": "2025-07-03 17:00:00",
    "task_address": "Tallinn, Estonia",
    "task_description": "Standard delivery task",
    "active": True,
}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(
        vehicles=1,
        fleetize_vehicles=1,
        telemax_vehicles=1,
        tracksafe365_vehicles=1,
        metrotec_vehicles=5,
        speed=0,
        start=START,
    ) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Api:
    """Calls the simulator the way a well-behaved Metrotec client does."""

    def __init__(self, session: aiohttp.ClientSession, server: SimulatorServer) -> None:
        self.session = session
        self.server = server
        self.token = API_KEY

    async def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = "",
        **kwargs: Any,
    ) -> Reply:
        sent = dict(HEADERS if headers is None else headers)
        chosen = self.token if token == "" else token
        if chosen is not None:
            sent["Authorization"] = f"Bearer {chosen}"
        url = self.server.metrotec_url + path
        async with self.session.request(method, url, headers=sent, **kwargs) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    async def get(self, path: str, **params: str) -> Any:
        reply = await self.call("GET", path, params=params)
        assert reply.status == 200, reply.body
        return reply.json()

    async def login(self) -> str:
        reply = await self.call("POST", "/token/", json=LOGIN, token=None)
        assert reply.status == 200, reply.body
        token: str = reply.json()["jwt"]
        return token


@pytest.fixture
def api(session: aiohttp.ClientSession, server: SimulatorServer) -> Api:
    return Api(session, server)


def utc(text: str) -> datetime:
    assert UTC_TIME.match(text), text  # no zone, no T: UTC
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def field_errors(reply: Reply) -> dict[str, list[str]]:
    assert reply.status == 400, reply.body
    errors: dict[str, list[str]] = reply.json()
    assert all(isinstance(m, list) and m and all(isinstance(t, str) for t in m)
               for m in errors.values())  # fmt: skip
    return errors


# --- headers and authentication ----------------------------------------------------------


async def test_every_request_needs_a_user_agent_and_a_versioned_accept_header(
    api: Api, server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    path = "/lastpositions/"
    agent = HEADERS["User-Agent"]
    for accept in (
        "application/json",  # no version: only the browsable API may omit it
        "application/json; version=abc",
        "application/json; version=9.9.9",
        "application/json; version=1.1",
    ):
        reply = await api.call("GET", path, headers={"Accept": accept, "User-Agent": agent})
        assert reply.status == 406, accept
        assert "version" in reply.json()["detail"]
    html = await api.call("GET", path, headers={"Accept": "text/html", "User-Agent": agent})
    assert html.status == 406
    assert set(html.json()) == {"detail"}

    blank = await api.call("GET", path, headers={**HEADERS, "User-Agent": "  "})
    assert blank.status == 400
    assert "User-Agent" in blank.json()["detail"]
    url = server.metrotec_url + path
    auth = {"Authorization": f"Bearer {API_KEY}", "Accept": HEADERS["Accept"]}
    async with session.get(url, headers=auth, skip_auto_headers=["User-Agent"]) as missing:
        assert missing.status == 400
    # Logging in is a request like any other.
    login = await api.call("POST", "/token/", json=LOGIN, token=None,
                           headers={"User-Agent": agent, "Accept": "application/json"})  # fmt: skip
    assert login.status == 406

    for version in ("1.0.0", "1.1.0"):
        headers = {"Accept": f"application/json; version={version}", "User-Agent": agent}
        assert (await api.call("GET", path, headers=headers)).status == 200
    assert server.metrotec.refused == {"version": 6, "user_agent": 2}


async def test_login_with_a_password_gives_a_jwt_that_expires_and_api_keys_work_directly(
    api: Api, server: SimulatorServer
) -> None:
    reply = await api.call("POST", "/token/", json=LOGIN, token=None)
    assert reply.status == 200
    body = reply.json()
    assert set(body) == {"jwt", "expires"}
    assert body["expires"] == int((START + timedelta(hours=1)).timestamp())
    form = await api.call("POST", "/token/", data=LOGIN, token=None)  # a form works too
    assert form.status == 200

    wrong = await api.call("POST", "/token/", json={**LOGIN, "password": "x"}, token=None)
    assert wrong.status == 401
    assert wrong.json()["detail"]
    assert field_errors(await api.call("POST", "/token/", json={}, token=None)) == {
        "username": ["This field is required."],
        "password": ["This field is required."],
    }

    path = "/objects/"
    assert (await api.call("GET", path, token=body["jwt"])).status == 200
    assert (await api.call("GET", path, token=API_KEY)).status == 200
    for token in (None, "not-a-token", API_KEY + "x"):
        refused = await api.call("GET", path, token=token)
        assert refused.status == 401
        assert set(refused.json()) == {"detail"}
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")

    server.clock.advance(3599)
    assert (await api.call("GET", path, token=body["jwt"])).status == 200
    server.clock.advance(1)
    expired = await api.call("GET", path, token=body["jwt"])
    assert (expired.status, expired.json()) == (401, {"detail": "Token has expired."})
    assert (await api.call("GET", path, token=API_KEY)).status == 200  # keys do not expire

    fresh = await api.login()
    control = await api.session.post(server.base_url + "/_sim/metrotec/expire-tokens")
    assert control.status == 200
    assert (await api.call("GET", path, token=fresh)).status == 401
    assert server.metrotec.logins == 3


async def test_other_users_and_keys_can_be_configured(session: aiohttp.ClientSession) -> None:
    async with SimulatorServer(
        vehicles=1,
        metrotec_vehicles=1,
        speed=0,
        start=START,
        metrotec_users={"ops": "s3cret"},
        metrotec_api_keys=("key-1",),
    ) as server:
        api = Api(session, server)
        assert (await api.call("GET", "/objects/")).status == 401  # the demo key is gone
        assert (await api.call("GET", "/objects/", token="key-1")).status == 200
        login = await api.call("POST", "/token/", json={"username": "ops", "password": "s3cret"})
        assert login.status == 200
        demo = await api.call("POST", "/token/", json=LOGIN, token=None)
        assert demo.status == 401


# --- positions and fuel ----------------------------------------------------------------


async def test_position_records_put_the_longitude_in_xpos_around_tallinn(
    api: Api, server: SimulatorServer
) -> None:
    server.clock.advance(20 * 60)
    records = await api.get("/lastpositions/")
    world = server.metrotec_world
    assert [r["objectID"] for r in records] == world.ids()
    tallinn = ZoneInfo("Europe/Tallinn")
    for record in records:
        assert list(record) == POSITION_FIELDS
        # Estonia: Xpos ~24.x is the longitude, Ypos ~59.x the latitude.
        assert 23.9 < record["Xpos"] < 25.6
        assert 59.0 < record["Ypos"] < 59.6
        truth = world.truth(record["objectID"])
        assert (record["Xpos"], record["Ypos"]) == (truth.longitude, truth.latitude)
        assert utc(record["GMTime"]) == truth.position_time
        assert record["Speed"] == round(truth.speed_kmh)
        assert record["Heading"] == f"{truth.heading}°"
        assert record["Input"] & 1 == (truth.engine != "off")  # bit 0: ignition
        vehicle = world.vehicle(record["objectID"])
        odometer = vehicle.odometer_m if truth.has_obd else vehicle.gps_odometer_m
        assert record["Counter1"] == pytest.approx(odometer / 1000, abs=0.06)  # km
        assert record["Power"] == pytest.approx(truth.battery_mv / 1000)
        # ...LocalTime is Tallinn's wall clock (UTC+3 in July), without a zone.
        local = datetime.strptime(record["LastCommunicationLocalTime"], "%Y-%m-%d %H:%M:%S")
        contact = local.replace(tzinfo=tallinn)
        assert timedelta(0) <= contact - truth.position_time <= timedelta(seconds=6)
        assert local - truth.position_time.replace(tzinfo=None) >= timedelta(hours=3)
        assert record["Content"].startswith(f"{record['GMTime']},{record['Xpos']:.7f},")
        single = await api.get(f"/lastpositions/{record['objectID']}/")
        assert single == record
    missing = await api.call("GET", "/lastpositions/NOPE/")
    assert (missing.status, missing.json()) == (404, {"detail": "Not found."})


def test_tallinn_time_without_tz_data_follows_eu_summer_time() -> None:
    zone = local_clock("Europe/Tallinn")
    moments = [datetime(2025, 1, 15, 12, tzinfo=UTC), datetime(2025, 7, 3, 6, tzinfo=UTC)]
    # Either side of both switches (01:00 UTC on the last Sundays of March, October).
    for switch in (datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 10, 26, 1, tzinfo=UTC)):
        moments += [switch - timedelta(seconds=1), switch]
    for moment in moments:
        ms = int(moment.timestamp() * 1000)
        assert _eet_with_eu_summer_time(ms) == zone(ms), moment
    assert zone(int(moments[0].timestamp() * 1000)) == datetime(2025, 1, 15, 14)


async def test_fuel_tanks_are_listed_for_vehicles_with_a_fuel_sensor_only(
    api: Api, server: SimulatorServer
) -> None:
    world = server.metrotec_world
    no_sensor = [v.vehicle_id for v in world.vehicles() if not v.has_obd]
    assert no_sensor  # every tenth vehicle, from the third: one of these five
    tanks = await api.get("/fuel/")
    assert [t["objectID"] for t in tanks] == [i for i in world.ids() if i not in no_sensor]
    for tank in tanks:
        vehicle = world.vehicle(tank["objectID"])
        assert tank["Counter1"] == round(vehicle.fuel_l, 1)  # litres in the tank
        assert tank["tank_vol"] == round(vehicle.tank_l)
        assert tank["alias"] == vehicle.identity.name
        truth = world.truth(vehicle.vehicle_id)
        assert (tank["Xpos"], tank["Ypos"]) == (truth.longitude, truth.latitude)
        (refill,) = await api.get("/fuel/refill/", object_id=tank["objectID"])
        assert refill["Counter"] <= tank["Counter1"]
        when = datetime.strptime(refill["next_refill_time"], "%d.%m.%Y %H:%M")
        assert when >= datetime(2025, 7, 3, 9, 0)  # Tallinn time, never before now
    assert await api.get("/fuel/refill/", object_id=no_sensor[0]) == []
    assert field_errors(await api.call("GET", "/fuel/refill/")) == {
        "object_id": ["This field is required."]
    }


# --- vehicle events --------------------------------------------------------------------


async def settings(api: Api, object_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await api.get("/objects/settings/", object_id=object_id)
    return body


async def test_lights_switch_only_once_the_device_has_handled_the_event(
    api: Api, server: SimulatorServer
) -> None:
    vehicle = server.metrotec_world.ids()[0]
    sim = server.metrotec
    created = await api.call(
        "POST", "/objects/events/", json={"object_id": vehicle, "eventType": 4, "description": "ON"}
    )
    assert created.status == 201
    event = created.json()
    assert event == {
        "id": event["id"],
        "handled": 0,
        "description": "ON",
        "eventDate": "2025-07-03 06:00:00",
        "date": "2025-07-03 06:00:00",
    }
    (listed,) = (await settings(api, vehicle))["events"]
    assert (listed["ID"], listed["eventType"], listed["handled"]) == (event["id"], 4, 0)
    assert sim.lights_on(vehicle) is False

    server.clock.advance(19)
    assert (await settings(api, vehicle))["events"][0]["handled"] == 0
    assert sim.lights_on(vehicle) is False
    server.clock.advance(1)  # 20 simulated seconds: the device has done it
    (handled,) = (await settings(api, vehicle))["events"]
    assert handled["handled"] == 1
    assert handled["eventDate"] == "2025-07-03 06:00:20"
    assert handled["date"] == "2025-07-03 06:00:00"
    assert sim.lights_on(vehicle) is True

    off = await api.call(
        "POST",
        "/objects/events/",
        json={"object_id": vehicle, "eventType": 4, "description": "OFF"},
    )
    assert off.status == 201
    assert sim.lights_on(vehicle) is True  # still on until handled
    control = api.session.post
    reply = await control(server.base_url + "/_sim/metrotec/handle-events")
    assert await reply.json() == {"handled": 1}
    events = (await settings(api, vehicle))["events"]
    assert [(e["description"], e["handled"]) for e in events] == [("OFF", 1), ("ON", 1)]
    assert sim.lights_on(vehicle) is False

    # A device that never answers: the event stays pending until told otherwise.
    never = await control(server.base_url + "/_sim/metrotec/set-handle-delay?seconds=never")
    assert (await never.json()) == {"handle_delay_s": None}
    await api.call(
        "POST", "/objects/events/", json={"object_id": vehicle, "eventType": 4, "description": "ON"}
    )
    server.clock.advance(3600)
    assert (await settings(api, vehicle))["events"][0]["handled"] == 0
    assert sim.lights_on(vehicle) is False
    bad = await control(server.base_url + "/_sim/metrotec/set-handle-delay?seconds=-1")
    assert bad.status == 400
    await control(server.base_url + "/_sim/metrotec/set-handle-delay?seconds=5")
    await control(server.base_url + "/_sim/metrotec/handle-events")
    assert sim.lights_on(vehicle) is True
    stats = await (await api.session.get(server.base_url + "/_sim/stats")).json()
    assert stats["metrotec"]["events"] == {"created": 3, "handled": 3, "pending": 0}
    assert stats["metrotec"]["lights"] == {vehicle: "ON"}


async def test_events_are_validated_field_by_field_against_the_vehicle(
    api: Api, server: SimulatorServer
) -> None:
    world = server.metrotec_world
    first, third = world.ids()[0], world.ids()[2]  # trackers with different intervals
    first_ints = (await settings(api, first))["repInts"]
    third_ints = (await settings(api, third))["repInts"]
    assert first_ints == ["5MIN", "1H", "12H", "24H"]
    assert third_ints != first_ints

    async def create(body: dict[str, Any]) -> Reply:
        return await api.call("POST", "/objects/events/", json=body)

    odd = next(value for value in third_ints if value not in first_ints)
    refused = field_errors(await create({"object_id": first, "eventType": 3, "description": odd}))
    assert list(refused) == ["description"]
    assert "5MIN" in refused["description"][0]
    assert field_errors(
        await create({"object_id": first, "eventType": 7, "description": "ON"})
    ) == {"eventType": ['"7" is not a valid choice.']}
    assert list(field_errors(await create({"object_id": first, "eventType": 4,
                                           "description": "on"}))) == ["description"]  # fmt: skip
    assert field_errors(await create({})) == {
        name: ["This field is required."] for name in ("object_id", "eventType", "description")
    }
    assert list(field_errors(await create({"object_id": "NOPE", "eventType": 5,
                                           "description": "x"}))) == ["object_id"]  # fmt: skip
    garbage = await api.call("POST", "/objects/events/", data=b"{nope",
                             headers={**HEADERS, "Content-Type": "application/json"})  # fmt: skip
    assert garbage.status == 400
    assert "detail" in garbage.json()
    assert server.metrotec.events.created == 0

    # A valid interval changes the tracker's once handled.
    ok = await create({"object_id": third, "eventType": 3, "description": odd})
    assert ok.status == 201
    assert (
        await create({"object_id": first, "eventType": 5, "description": "RESET"})
    ).status == 201

    def interval(objects: list[dict[str, Any]]) -> str:
        return next(o["gps_refresh_interval"] for o in objects if o["id"] == third)

    assert interval(await api.get("/objects/")) == third_ints[0]
    server.clock.advance(20)
    assert interval(await api.get("/objects/")) == odd


# --- tasks ------------------------------------------------------------------------------


async def test_tasks_refuse_a_duplicate_order_ref_and_can_be_updated(
    api: Api, server: SimulatorServer
) -> None:
    vehicle = server.metrotec_world.ids()[1]
    body = {**TASK, "object_id": vehicle, "order_ref": "ORDER-2025-001"}
    created = await api.call("POST", "/routetasks/", json=body)
    assert created.status == 201
    task = created.json()
    assert task["status"] == 1
    assert (task["object_id"], task["order_ref"], task["lat"], task["lon"]) == (
        vehicle, "ORDER-2025-001", 59.437, 24.754
    )  # fmt: skip
    assert (task["start_time"], task["stop_time"]) == ("2025-07-03 06:00:00", "2025-07-03 17:00:00")
    assert (task["created_at"], task["active"], task["alias"]) == (
        "2025-07-03 06:00:00", True, "CAR02"
    )  # fmt: skip
    assert task["ut"] == int(START.timestamp())

    duplicate = await api.call("POST", "/routetasks/", json={**body, "lat": 59.0})
    assert field_errors(duplicate) == {
        "order_ref": ["route task with this order ref already exists."]
    }
    assert [t["id"] for t in await api.get("/routetasks/")] == [task["id"]]

    assert set(field_errors(await api.call("POST", "/routetasks/", json={}))) == {
        "object_id", "lat", "lon", "start_time", "stop_time", "order_ref"
    }  # fmt: skip
    backwards = {**body, "order_ref": "B", "stop_time": "2025-07-03 05:00:00"}
    assert list(field_errors(await api.call("POST", "/routetasks/", json=backwards))) == [
        "non_field_errors"
    ]
    bad = {**body, "order_ref": "C", "lat": 123, "start_time": "tomorrow", "status": 9}
    assert set(field_errors(await api.call("POST", "/routetasks/", json=bad))) == {
        "lat", "start_time", "status"
    }  # fmt: skip

    second = await api.call("POST", "/routetasks/", json={**body, "order_ref": "ORDER-2025-002"})
    assert second.status == 201
    change = {"task_notes": "Delivery route changed", "stop_time": "2025-07-03 18:00:00",
              "status": 5, "edit": True}  # fmt: skip
    updated = await api.call("PATCH", f"/routetasks/{task['id']}/", json=change)
    assert updated.status == 200
    after = updated.json()
    assert (after["status"], after["active"], after["task_notes"]) == (
        5, False, "Delivery route changed"
    )  # fmt: skip
    assert after["stop_time"] == "2025-07-03 18:00:00"
    assert after["order_ref"] == "ORDER-2025-001"
    assert await api.get(f"/routetasks/{task['id']}/") == after
    # Cancelled is no longer active: only the second is listed, unless all=1.
    assert [t["order_ref"] for t in await api.get("/routetasks/")] == ["ORDER-2025-002"]
    assert len(await api.get("/routetasks/", all="1")) == 2
    assert await api.get("/routetasks/", all="1", order_ref="ORDER-2025-001") == [after]
    steal = await api.call("PATCH", f"/routetasks/{second.json()['id']}/",
                           json={"order_ref": "ORDER-2025-001"})  # fmt: skip
    assert list(field_errors(steal)) == ["order_ref"]
    missing = await api.call("PATCH", "/routetasks/999/", json={"status": 2})
    assert missing.status == 404
    put = await api.call("PUT", f"/routetasks/{task['id']}/", json=body)
    assert put.status == 405
    assert "PATCH" in put.headers["Allow"]
    stats = server.metrotec.stats()["tasks"]
    assert (stats["created"], stats["updated"], stats["duplicate_order_refs"]) == (2, 1, 2)


async def test_tasks_progress_while_their_vehicle_drives(api: Api, server: SimulatorServer) -> None:
    world = server.metrotec_world
    vehicle = world.ids()[0]
    world.park(vehicle)
    body = {**TASK, "object_id": vehicle, "order_ref": "T-1"}
    later = {**body, "order_ref": "T-2", "start_time": "2025-07-04 06:00:00",
             "stop_time": "2025-07-04 17:00:00"}  # fmt: skip
    task = (await api.call("POST", "/routetasks/", json=body)).json()
    assert (await api.call("POST", "/routetasks/", json=later)).status == 201

    async def active() -> list[dict[str, Any]]:
        tasks: list[dict[str, Any]] = await api.get("/routetasks/", object_id=vehicle)
        return tasks

    server.clock.advance(3600)  # parked and held: nothing happens
    assert [t["status"] for t in await active()] == [1, 1]

    world.release(vehicle)
    statuses = []
    for _ in range(240):
        server.clock.advance(60)
        current = await api.get(f"/routetasks/{task['id']}/")
        statuses.append(current["status"])
        if current["status"] == 3:
            break
    assert statuses[-1] == 3, statuses
    assert statuses == sorted(statuses)
    assert 2 in statuses  # in progress for at least the 5 minutes of work
    started, finished = utc(current["work_started_at"]), utc(current["work_finished_at"])
    assert START + timedelta(hours=1) <= started <= finished - timedelta(minutes=5)
    assert finished <= server.clock.now()
    assert current["active"] is False
    assert current["distance"] > 0
    # The later task waits for its start time: the active count went from 2 to 1.
    assert [t["order_ref"] for t in await active()] == ["T-2"]
    assert (await active())[0]["status"] == 1


# --- the rest ------------------------------------------------------------------------


async def test_route_log_lists_finished_trips_with_estonian_addresses(
    api: Api, server: SimulatorServer
) -> None:
    server.clock.advance(6 * 3600)
    server.metrotec_world.update()
    vehicle = server.metrotec_world.vehicle(server.metrotec_world.ids()[0])
    trips = [t for t in vehicle.trip_history() if t.done and t.drive_start_ms is not None]
    assert trips
    log = await api.get(
        "/routelog/",
        period_start="2025-07-0300:00:00",  # as the documentation's examples write it
        period_stop="2025-07-04 00:00:00",
        vehicle_id=vehicle.vehicle_id,
    )
    assert len(log) == len(trips)
    for entry, trip in zip(log, trips, strict=True):
        assert entry["objectID"] == vehicle.vehicle_id
        assert utc(entry["startTime"]) <= utc(entry["stopTime"])
        assert entry["routeLengthKM"] == pytest.approx(trip.distance_m / 1000, abs=0.01)
        assert entry["AddressAtEndPoint"].startswith("EE, Harju maakond, ")
    assert set(field_errors(await api.call("GET", "/routelog/"))) == {
        "period_start", "period_stop", "vehicle_id"
    }  # fmt: skip


async def test_faults_unknown_paths_and_no_rate_limit_by_default(
    api: Api, server: SimulatorServer
) -> None:
    for _ in range(150):  # no published limit, none enforced
        assert (await api.call("GET", "/objects/")).status == 200
    reply = await api.session.post(
        server.base_url + "/_sim/metrotec/fail", params={"status": "429", "retry_after": "2.5"}
    )
    assert reply.status == 200
    throttled = await api.call("GET", "/objects/")
    assert throttled.status == 429
    assert throttled.headers["Retry-After"] == "3"
    assert throttled.json() == {"detail": "Request was throttled. Expected available in 3 seconds."}
    server.metrotec.fail_next(status=500)
    crashed = await api.call("GET", "/objects/")
    assert crashed.status == 500
    assert crashed.headers["Content-Type"].startswith("text/html")
    assert (await api.call("GET", "/objects/")).status == 200
    assert (await api.call("GET", "/alarms/")).json() == {"detail": "Not found."}
    assert (await api.call("GET", "/objects")).status == 200  # the slash is optional
    wrong = await api.call("DELETE", "/objects/")
    assert (wrong.status, wrong.headers["Allow"]) == (405, "GET")
    assert server.metrotec.counters.by_status[429] == 1


# --- geozones and the alarm log ------------------------------------------------------


async def test_geozones_are_documented_circles_linked_to_most_vehicles(
    api: Api, server: SimulatorServer
) -> None:
    zones = await api.get("/geozones/")
    live = [z for z in zones if z["deleted_at"] is None]
    assert 2 <= len(live) < len(zones)  # and one deleted zone the list still shows
    ids = server.metrotec_world.ids()
    linked = [vid for vid in ids if server.metrotec_world.vehicle(vid).seq % 5 != 0]
    assert len(linked) == 4  # of 5: every fifth vehicle is not linked
    for zone in live:
        geometry = zone["geometry"]
        assert geometry["type"] == "circle"
        assert set(geometry["latlng"]) == {"lat", "lng"}
        assert 59.2 < geometry["latlng"]["lat"] < 59.6  # lat/lng, not swapped
        assert geometry["radius"] > 0
        assert zone["zObjects"] == linked
    # The vehicles' settings show the same links, with the events they alarm on.
    for vid in ids:
        links = (await api.get("/objects/settings/", object_id=vid))["zones"]
        if vid in linked:
            assert [link["geozoneID"] for link in links] == [z["id"] for z in live]
            assert all(link["events"] == [1, 2] and link["object_id"] == vid for link in links)
        else:
            assert links == []


async def alarm_log(api: Api, start: str, stop: str, **extra: str) -> Reply:
    params = [("datetime[]", start), ("datetime[]", stop), *extra.items()]
    return await api.call("GET", "/alarmlog", params=params)


async def test_the_alarm_log_has_each_zone_crossing_of_the_trips_and_device_alarms(
    api: Api, server: SimulatorServer
) -> None:
    server.clock.advance(8 * 3600)
    reply = await alarm_log(api, "2025-07-03 06:00:00", "2025-07-03 14:00:00")
    assert reply.status == 200, reply.body
    entries = reply.json()
    times = [utc(e["time"]) for e in entries]
    assert times == sorted(times)
    assert all(e["alarm_name"] == ALARM_NAMES[e["alarm_type"]] for e in entries)
    assert {e["alarm_type"] for e in entries} - {ALARM_ZONE_ENTER, ALARM_ZONE_EXIT}
    zones = {z.zone_id: z for z in server.metrotec.zones if z.deleted_at is None}
    # Replay one linked vehicle's trips against the zones: the same crossings.
    world = server.metrotec_world
    vehicle = next(
        v for v in world.vehicles()
        if v.seq % 5 and any(e["object_id"] == v.vehicle_id and e["geozone_id"] for e in entries)
    )  # fmt: skip

    def zones_at(lat: float, lon: float) -> set[int]:
        return {
            zone_id
            for zone_id, zone in zones.items()
            if geo.distance_m(zone.latitude, zone.longitude, lat, lon) <= zone.radius_m
        }

    expected: list[tuple[int, int, int]] = []
    inside: set[int] | None = None
    for trip in vehicle.trip_history():
        for point in trip.points:
            now = zones_at(point.latitude, point.longitude)
            if inside is not None:
                expected += [(point.time_ms, z, ALARM_ZONE_ENTER) for z in sorted(now - inside)]
                expected += [(point.time_ms, z, ALARM_ZONE_EXIT) for z in sorted(inside - now)]
            inside = now
    found = [
        (int(utc(e["time"]).timestamp() * 1000), e["geozone_id"], e["alarm_type"])
        for e in entries
        if e["object_id"] == vehicle.vehicle_id and e["geozone_id"]
    ]
    assert sorted(found) == sorted(expected)
    # Filters: the vehicle, the window; both dates are required.
    mine = await alarm_log(
        api, "2025-07-03 06:00:00", "2025-07-03 14:00:00", object_id=vehicle.vehicle_id
    )
    assert {e["object_id"] for e in mine.json()} == {vehicle.vehicle_id}
    later = await alarm_log(api, "2025-07-03 10:00:00", "2025-07-03 14:00:00")
    assert later.json() == [e for e in entries if e["time"] >= "2025-07-03 10:00:00"]
    missing = await api.call("GET", "/alarmlog", params={"datetime[]": "2025-07-03 06:00:00"})
    assert set(field_errors(missing)) == {"datetime[]"}
    unknown = await alarm_log(api, "2025-07-03 06:00:00", "2025-07-03 14:00:00", object_id="X")
    assert unknown.status == 404
    server.metrotec.alarmlog_requires_object_id = True
    insisting = await alarm_log(api, "2025-07-03 06:00:00", "2025-07-03 14:00:00")
    assert set(field_errors(insisting)) == {"object_id"}
