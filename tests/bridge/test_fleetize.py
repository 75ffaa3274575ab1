"""FLEETIZE client: the documented (not quite JSON) answers in, model out; errors by code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderRateLimitedError,
    ProviderTokenBlockedError,
    QuotaExhaustedError,
)
from bridge.model import PollPlan, Problem, VehicleStatus
from bridge.providers.fleetize import (
    DEFAULT_BUDGETS,
    FleetizeProvider,
    FleetizeSettings,
    loads_lenient,
    parse_location,
)
from bridge.quota import MemoryLedger, Quota

TOKEN = "fleetize-secret-token"

# The devicelist example of the documentation, verbatim in its quirks: a doubled
# comma, trailing commas, and a URL-encoded portrait.
DOCUMENTED_DEVICELIST = """[
  {
   "device_id":492,
   "device_imei":359183064907632,
   "device_type":"CAR",
   "device_name":"My vehicle",
   "device_description":"BMW E46 M3 Coupe",
   "device_portrait":"http%3A%2F%2Ftrack.fleetize.com%2Fassets%2Fimg%2Fdevices%2F1471424858072.png",,
   "device_mileage":277910,
   "device_distance":0,
   "online_timestamp":1426576180,
   "heartbeat_timestamp":1426776180,
   "error_code":0,
   "error_text":null,
   "status_absence":"Parking: 1d 10h",
   "status_description":"parked since Di, 17.03., 08:09",
   "status_text":"offline",
   "location":"48.87778,9.34889",
  },
  {
   "device_id":"493",
   "device_name":"Van, blue",
   "device_speed":"54",
   "device_mileage":"120345",
   "device_temp_engine":"88",
   "device_voltage_external":"13.9",
   "device_voltage_internal":4.1,
   "device_upm":"1800",
   "device_angle":"270",
   "status_code":"2",
   "error_code":"4",
   "error_code_time":1426776000,
   "online_timestamp":"1426776100",
   "location":"48.1,11.5",
  },
]"""


def test_lenient_json_reads_the_documented_example() -> None:
    devices = loads_lenient(DOCUMENTED_DEVICELIST)
    assert [d["device_id"] for d in devices] == [492, "493"]
    # Commas inside strings are data, not quirks.
    assert loads_lenient('[{"a": "x,}", "b": ",,"},]') == [{"a": "x,}", "b": ",,"}]


def test_a_large_quirky_answer_reads_whole() -> None:
    # 2,000 devices with every quirk at every comma (doubled, trailing, after an
    # opener, no-break spaces around it), some 160 KB: it reads like the clean
    # JSON. (This once took about a minute at 1,000 vehicles, the event loop held:
    # the parser looked at the whole rest of the answer at every comma.)
    clean = [
        {"device_id": i, "name": f"Truck {i}, bay {i % 7}", "tags": [i, str(i)]}
        for i in range(2000)
    ]
    quirky = (
        "[\u00a0,\n"
        + ",,\u00a0\n".join(
            f'{{, "device_id": {i},, "name": "Truck {i}, bay {i % 7}",\u00a0'
            f'"tags": [{i}, "{i}",],}}'
            for i in range(2000)
        )
        + ",\u00a0]"
    )
    assert len(quirky) > 150_000
    assert loads_lenient(quirky) == clean


def test_locations_are_lat_lon_strings() -> None:
    assert parse_location("48.87778,9.34889") == (48.87778, 9.34889)
    assert parse_location(" 48.1 , 11.5") == (48.1, 11.5)
    assert parse_location("0,0") is None
    assert parse_location("91,0") is None
    assert parse_location("north,east") is None
    assert parse_location(None) is None


class Fleetize:
    """Scripted text answers; records each form."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str]] = []
        self.forms: list[dict[str, str]] = []
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        self.forms.append(dict(await request.post()))  # type: ignore[arg-type]
        status, text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return web.Response(status=status, text=text, content_type="application/json")


@pytest.fixture
async def fleetize() -> AsyncIterator[tuple[Fleetize, str]]:
    fake = Fleetize()
    app = web.Application()
    app.router.add_post("/v2/{action}", fake.handle)
    server = TestServer(app)
    await server.start_server()
    yield fake, str(server.make_url("/v2"))
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make(session: aiohttp.ClientSession, url: str, quota: Quota | None = None) -> FleetizeProvider:
    return FleetizeProvider(session, FleetizeSettings(token=TOKEN, base_url=url), quota)


async def test_devicelist_maps_every_documented_field(fleetize, session) -> None:
    fake, url = fleetize
    fake.answers.append((200, DOCUMENTED_DEVICELIST))
    update = await make(session, url).poll(PollPlan(refresh_vehicles=True))
    vehicles = {v.vehicle_id: v for v in update.vehicles}
    parked, van = vehicles["492"], vehicles["493"]
    assert parked.name == "My vehicle"
    assert parked.model == "BMW E46 M3 Coupe"
    assert parked.odometer_km == 277910
    assert parked.position is not None
    assert (parked.position.latitude, parked.position.longitude) == (48.87778, 9.34889)
    assert parked.last_seen == datetime.fromtimestamp(1426776180, UTC)  # the heartbeat
    assert parked.problem is Problem.NONE
    # Numbers that arrive as strings are numbers all the same.
    assert van.speed_kmh == 54
    assert van.moving is True
    assert van.odometer_km == 120345
    assert van.engine_temperature_c == 88
    assert van.battery_voltage == 13.9
    assert van.device_battery_voltage == 4.1
    assert van.rpm == 1800
    assert van.position is not None
    assert van.position.heading == 270
    assert van.status is VehicleStatus.DRIVING
    assert van.ignition is True
    assert van.problem is Problem.NO_GPS
    assert van.problem_since == datetime.fromtimestamp(1426776000, UTC)
    # One form POST with the token, the scope, and no activity filter the first time.
    assert fake.paths == ["/v2/devicelist"]
    assert fake.forms[0]["apitoken"] == TOKEN
    assert "device_id" in fake.forms[0]["scope"]
    assert "activity_after" not in fake.forms[0]


async def test_later_polls_ask_only_for_recent_activity(fleetize, session) -> None:
    fake, url = fleetize
    fake.answers.append((200, DOCUMENTED_DEVICELIST))
    provider = make(session, url)
    start = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    await provider.poll(PollPlan(refresh_vehicles=True, now=start))
    update = await provider.poll(PollPlan(now=start))
    assert int(fake.forms[1]["activity_after"]) == int(start.timestamp()) - 300
    assert update.vehicles == []  # the same answer again: nothing changed
    assert update.removed == []  # a filtered list never removes anyone


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("ERROR #1000 - INVALID API TOKEN", ProviderAuthError, "refused"),
        (
            "ERROR #1002 - QUERY-THRESHOLD EXCEEDED - API TOKEN BLOCKED",
            ProviderTokenBlockedError,
            "FLEETIZE support",
        ),
        (
            "ERROR #1055 - QUERY-THRESHOLD EXCEEDED - PLEASE REDUCE QUERY-INTERVAL, "
            "OTHERWISE YOUR TOKEN WILL BE BLOCKED",
            ProviderRateLimitedError,
            "#1055",
        ),
        ("<html>gateway timeout</html>", ProviderDataError, "unreadable"),
    ],
)
async def test_error_texts_become_errors_that_say_what_to_do(
    fleetize, session, text: str, error: type[Exception], words: str
) -> None:
    fake, url = fleetize
    fake.answers.append((200, text))
    with pytest.raises(error) as caught:
        await make(session, url).poll(PollPlan(refresh_vehicles=True))
    assert words in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_1055_holds_every_call_for_a_fresh_minute(fleetize, session) -> None:
    fake, url = fleetize
    fake.answers.append((200, "ERROR #1055 - QUERY-THRESHOLD EXCEEDED"))
    clock = Clock()
    quota = Quota("f", DEFAULT_BUDGETS, MemoryLedger(), now=clock)
    provider = make(session, url, quota)
    with pytest.raises(ProviderRateLimitedError):
        await provider.poll(PollPlan(refresh_vehicles=True))
    clock.now = clock.now.replace(second=30)
    with pytest.raises(QuotaExhaustedError, match="1055"):
        await provider.poll(PollPlan(refresh_vehicles=True))
    assert len(fake.forms) == 1  # the second poll never left the bridge


async def test_a_second_poll_within_60_seconds_is_never_sent(fleetize, session) -> None:
    fake, url = fleetize
    fake.answers.append((200, DOCUMENTED_DEVICELIST))
    clock = Clock()
    quota = Quota("f", DEFAULT_BUDGETS, MemoryLedger(), now=clock)
    provider = make(session, url, quota)
    await provider.poll(PollPlan(refresh_vehicles=True, now=clock.now))
    with pytest.raises(QuotaExhaustedError) as caught:
        await provider.poll(PollPlan(now=clock.now))
    assert caught.value.retry_after == pytest.approx(60.6)  # 60 s and its margin
    assert len(fake.forms) == 1


async def test_routes_are_fetched_only_when_asked(fleetize, session) -> None:
    fake, url = fleetize
    body: Any = (
        '{"device":{"device_id":492,},"routes":[{"origin_timestamp":"1428498484",'
        '"origin_mileage":277843,"destination_timestamp":"1428503164",'
        '"destination_mileage":277870,"route_points":"48.82556,9.33111,0;48.83,9.34,52;"}]}'
    )
    fake.answers.append((200, body))
    routes = await make(session, url).routes("492")
    assert fake.paths == ["/v2/device"]
    assert fake.forms[0]["device"] == "492"
    assert routes[0].start == datetime.fromtimestamp(1428498484, UTC)
    assert routes[0].end_km == 277870
    assert [(p.latitude, p.speed_kmh) for p in routes[0].points] == [(48.82556, 0), (48.83, 52)]
