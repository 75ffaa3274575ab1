"""Alerts from Samsara's safety events stream, Metrotec's alarm log and geozones, and
FLEETIZE's error_code and status_code transitions.

Each source against its simulator (frozen clock moved by hand) and against small
scripted servers answering in the documented shapes, ids that stay the same across
a restart (a provider restored from its checkpoint and the stored states repeats
nothing), and one run of the whole bridge through a real Mosquitto: every alert on
`fleet/<account>/<vehicle>/alert` exactly once across polls and a restart.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.config import BridgeConfig
from bridge.model import Alert, AlertType, PollPlan, Severity, Update, VehicleState, format_time
from bridge.providers.fleetize import FleetizeProvider, FleetizeSettings
from bridge.providers.metrotec import MetrotecProvider, MetrotecSettings
from bridge.providers.samsara import SAFETY_LABELS, SamsaraProvider, SamsaraSettings
from bridge.simulator import SimulatorServer, geo
from bridge.simulator.clock import from_ms, to_ms
from bridge.simulator.metrotec_alarms import ALARM_ZONE_ENTER, ALARM_ZONE_EXIT
from bridge.simulator.samsara_safety import SafetyEvent, driver_of
from tests.bridge.test_bridge_mqtt import running, settle
from tests.support.mqtt import Mosquitto, Recorder

START = datetime(2025, 7, 3, 6, 0, tzinfo=UTC)
SAMSARA_TOKEN = "demo-samsara-token"
METROTEC_KEY = "demo-metrotec-key"
FLEETIZE_TOKEN = "demo-fleetize-token"
ZONE_TYPES = {AlertType.GEOZONE_ENTER, AlertType.GEOZONE_EXIT}
PROBLEM_TYPES = {
    AlertType.UNPLUGGED,
    AlertType.REPLUGGED,
    AlertType.NO_SIGNAL,
    AlertType.NO_GPS,
    AlertType.BAD_GPS,
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def simulator(**options: Any) -> SimulatorServer:
    sizes = {"vehicles": 1, "fleetize_vehicles": 1, "metrotec_vehicles": 1}
    sizes["telemax_vehicles"] = sizes["tracksafe365_vehicles"] = 1
    return SimulatorServer(**{**sizes, "speed": 0, "start": START, **options})


@dataclass
class Fleet:
    """What a bridge's store would hold: the last state of every vehicle."""

    states: dict[str, VehicleState] = field(default_factory=dict)

    def keep(self, update: Update) -> Update:
        self.states.update({s.vehicle_id: s for s in update.vehicles})
        for vid in update.removed:
            self.states.pop(vid, None)
        return update


# --- Samsara: the safety events stream ---------------------------------------------------


def samsara(session: aiohttp.ClientSession, url: str) -> SamsaraProvider:
    return SamsaraProvider(session, SamsaraSettings(token=SAMSARA_TOKEN, base_url=url))


def created_between(server: SimulatorServer, since: datetime, until: datetime) -> list[SafetyEvent]:
    return [
        e for e in server.samsara.safety.events() if to_ms(since) <= e.created_ms <= to_ms(until)
    ]


async def test_samsara_safety_events_are_alerts_once_and_the_cursor_survives_a_restart(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(vehicles=20) as server:
        server.clock.advance(3600)
        fleet = Fleet()
        provider = samsara(session, server.samsara_url)
        first = fleet.keep(
            await provider.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        )
        # A first start reads an hour back.
        expected = created_between(server, START, server.clock.now())
        assert expected
        assert sorted(a.alert_id for a in first.alerts) == sorted(e.event_id for e in expected)
        by_id = {a.alert_id: a for a in first.alerts}
        for event in expected:
            alert = by_id[event.event_id]
            assert alert.vehicle_id == event.vehicle_id
            assert alert.type is SAFETY_LABELS.get(event.label.lower(), AlertType.OTHER)
            assert alert.time == from_ms(event.start_ms)  # when it happened, not when polled
            assert alert.driver == driver_of(server.world.vehicle(event.vehicle_id))["name"]
            assert alert.position is not None
            assert (alert.position.latitude, alert.position.longitude) == (
                event.latitude,
                event.longitude,
            )
            assert alert.position.address is not None
            assert alert.position.address.endswith("Chicago, IL")
            assert alert.media_url is not None
            assert alert.media_url.endswith(f"/{event.event_id}/dashcamRoadFacing.jpg")
            assert alert.details["labels"] == [event.label]
            severity = {"Crash": Severity.CRITICAL, "Drowsy": Severity.CRITICAL}
            severity["FollowingDistance"] = Severity.INFO  # not in our vocabulary: other
            assert alert.severity is severity.get(event.label, Severity.WARNING)
        checkpoint = provider.checkpoint()
        assert checkpoint["safety:start"] == format_time(START)
        assert checkpoint["safety:cursor"]

        # The next poll, nothing new happened: nothing.
        assert (await provider.poll(PollPlan(now=server.clock.now()))).alerts == []

        # A restart half an hour later resumes from the cursor: only what is new
        # (a fresh start would read an hour back, into what was already seen).
        read_at = server.clock.now()
        server.clock.advance(1800)
        restarted = samsara(session, server.samsara_url)
        restarted.restore(provider.checkpoint(), fleet.states.values())
        update = await restarted.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        new = created_between(server, read_at + timedelta(milliseconds=1), server.clock.now())
        assert new
        assert sorted(a.alert_id for a in update.alerts) == sorted(e.event_id for e in new)
        assert not {a.alert_id for a in update.alerts} & set(by_id)


async def test_samsara_refused_safety_cursor_reads_again_from_the_last_read(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(vehicles=20) as server:
        server.clock.advance(3600)
        provider = samsara(session, server.samsara_url)
        await provider.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        read_at = server.clock.now()
        server.samsara.expire_safety_cursors()
        server.clock.advance(1200)
        update = await provider.poll(PollPlan(now=server.clock.now()))
        # Back to five minutes before the last complete read: a few repeats (the
        # store publishes those once), nothing missed.
        again_from = read_at - timedelta(minutes=5)
        expected = created_between(server, again_from, server.clock.now())
        assert any(e.created_ms <= to_ms(read_at) for e in expected)
        assert sorted(a.alert_id for a in update.alerts) == sorted(e.event_id for e in expected)
        assert provider.checkpoint()["safety:start"] == format_time(again_from)
        assert server.samsara.counters.by_status[400] == 1


@dataclass
class Scripted:
    """A tiny provider API: answers per path in order (the last one repeats)."""

    answers: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def add(self, path: str, body: Any, status: int = 200) -> None:
        self.answers.setdefault(path, []).append((status, body))

    def queries(self, path: str) -> list[dict[str, str]]:
        return [query for seen, query in self.requests if seen == path]

    async def handle(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        if request.method == "POST":
            query.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        self.requests.append((request.path, query))
        queue = self.answers.get(request.path)
        if not queue:
            return web.Response(status=404, text="404 page not found")
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(body, str):
            return web.Response(status=status, text=body)
        return web.json_response(body, status=status)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    script = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    server = TestServer(app)
    await server.start_server()
    yield script, str(server.make_url("")).rstrip("/")
    await server.close()


SAFETY_PAGE_1 = {
    "data": [
        {
            # SafetyEventV2ObjectResponseBody, as Samsara's API reference shows it.
            "id": "evt-crash-1",
            "asset": {"id": "112", "name": "Truck A7", "externalIds": {"maintenanceId": "250"}},
            "driver": {"id": "45646", "name": "Jane Doe"},
            "behaviorLabels": [
                {"label": "Braking", "source": "automated"},
                {"label": "Crash", "source": "userGenerated"},
            ],
            "contextLabels": [{"label": "ContextWet"}],
            "createdAtTime": "2025-07-03T05:58:40Z",
            "updatedAtTime": "2025-07-03T05:59:00Z",
            "startMs": "2025-07-03T05:57:31.250Z",
            "endMs": "2025-07-03T05:57:35Z",
            "eventState": "needsReview",
            "inboxEventUrl": "https://cloud.samsara.com/o/1/fleet/safety/event/evt-crash-1",
            "incidentReportUrl": "https://cloud.samsara.com/o/1/fleet/reports/evt-crash-1",
            "location": {
                "latitude": 37.456,
                "longitude": -122.789,
                "headingDegrees": 120,
                "accuracyMeters": 12.5,
                "address": {
                    "streetNumber": "1990",
                    "street": "Alameda St",
                    "city": "San Francisco",
                    "state": "CA",
                },
            },
            "maxAccelerationGForce": 2.4,
            "media": [
                {"input": "dashcamDriverFacing", "url": "https://media.example/in.mp4"},
                {"input": "dashcamRoadFacing", "url": "https://media.example/road.mp4"},
            ],
        },
        {
            # Older accounts: the legacy names (camelCase label, epoch ms, video fields).
            "id": "evt-phone-2",
            "vehicle": {"id": "113"},
            "behaviorLabels": [{"label": "mobileUsage", "source": "automated"}],
            "startMs": 1751522400000,
            "downloadForwardVideoUrl": "https://media.example/forward.mp4",
        },
        {
            "id": "evt-dismissed",
            "asset": {"id": "112"},
            "behaviorLabels": [{"label": "Braking"}],
            "startMs": "2025-07-03T05:50:00Z",
            "eventState": "dismissed",
        },
        {
            "id": "evt-rolling",
            "asset": {"id": "113"},
            "behaviorLabels": [{"label": "RollingStop"}],
            "startMs": "2025-07-03T05:51:00Z",
        },
        {
            "id": "evt-no-asset",
            "behaviorLabels": [{"label": "Braking"}],
            "startMs": "2025-07-03T05:52:00Z",
        },
        {"id": "evt-no-time", "asset": {"id": "113"}, "behaviorLabels": [{"label": "Braking"}]},
        "garbage",
    ],
    "pagination": {"endCursor": "s1", "hasNextPage": True},
}
SAFETY_PAGE_2 = {
    "data": [
        {
            "id": "evt-speeding-3",
            "asset": {"id": "113"},
            "driver": {"id": "777"},
            "behaviorLabels": [{"label": "SevereSpeeding", "source": "automated"}],
            "startMs": "2025-07-03T05:59:10Z",
        }
    ],
    "pagination": {"endCursor": "s2", "hasNextPage": False},
}
VEHICLES = {
    "data": [{"id": "112", "name": "Truck A7"}, {"id": "113", "name": "Van 2"}],
    "pagination": {"endCursor": "", "hasNextPage": False},
}
EMPTY_FEED = {"data": [], "pagination": {"endCursor": "f", "hasNextPage": False}}


async def test_samsara_documented_safety_event_shapes_and_a_missing_scope(
    scripted: tuple[Scripted, str], session: aiohttp.ClientSession
) -> None:
    script, url = scripted
    script.add("/fleet/vehicles", VEHICLES)
    script.add("/fleet/vehicles/stats/feed", EMPTY_FEED)
    script.add("/safety-events/stream", SAFETY_PAGE_1)
    script.add("/safety-events/stream", SAFETY_PAGE_2)
    script.add("/safety-events/stream", {"message": "Forbidden: missing scope"}, status=403)
    provider = samsara(session, url)
    now = datetime(2025, 7, 3, 6, 0, tzinfo=UTC)
    update = await provider.poll(PollPlan(refresh_vehicles=True, now=now))
    alerts = {a.alert_id: a for a in update.alerts}
    assert list(alerts) == ["evt-crash-1", "evt-phone-2", "evt-rolling", "evt-speeding-3"]

    crash = alerts["evt-crash-1"]
    assert (crash.vehicle_id, crash.type) == ("112", AlertType.CRASH)
    assert crash.severity is Severity.CRITICAL
    assert crash.time == datetime(2025, 7, 3, 5, 57, 31, 250000, tzinfo=UTC)
    assert crash.driver == "Jane Doe"
    assert crash.media_url == "https://media.example/road.mp4"  # the road camera first
    assert crash.position is not None
    assert crash.position.address == "1990 Alameda St, San Francisco, CA"
    assert (crash.position.heading, crash.position.accuracy_m) == (120, 12.5)
    assert crash.details == {
        "provider_type": "Crash",
        "labels": ["Braking", "Crash"],
        "event_state": "needsReview",
        "max_g": 2.4,
        "review_url": "https://cloud.samsara.com/o/1/fleet/safety/event/evt-crash-1",
    }
    phone = alerts["evt-phone-2"]
    assert (phone.vehicle_id, phone.type) == ("113", AlertType.PHONE_USE)
    assert phone.time == datetime(2025, 7, 3, 6, 0, tzinfo=UTC)
    assert phone.media_url == "https://media.example/forward.mp4"
    rolling = alerts["evt-rolling"]
    assert (rolling.type, rolling.severity) == (AlertType.OTHER, Severity.INFO)
    assert rolling.details["provider_type"] == "RollingStop"
    speeding = alerts["evt-speeding-3"]
    assert (speeding.type, speeding.severity) == (AlertType.SPEEDING, Severity.CRITICAL)
    assert speeding.driver == "777"  # no name without includeDriver: the id

    # One startTime for the whole stream, the cursor after it, names asked for.
    first, second = script.queries("/safety-events/stream")
    assert first["startTime"] == "2025-07-03T05:00:00Z"  # an hour back on a first start
    assert "after" not in first
    assert (second["startTime"], second["after"]) == (first["startTime"], "s1")
    assert first["includeDriver"] == first["includeAsset"] == "true"
    assert provider.checkpoint()["safety:cursor"] == "s2"

    # A token without the safety scope: the feed goes on, the stream rests an hour.
    update = await provider.poll(PollPlan(now=now + timedelta(seconds=10)))
    assert update.alerts == []
    update = await provider.poll(PollPlan(now=now + timedelta(seconds=20)))
    assert len(script.queries("/safety-events/stream")) == 3
    assert len(script.queries("/fleet/vehicles/stats/feed")) == 9  # 3 groups, 3 polls
    assert provider.checkpoint()["safety:cursor"] == "s2"  # kept for later
    await provider.poll(PollPlan(now=now + timedelta(minutes=61)))
    assert script.queries("/safety-events/stream")[-1]["after"] == "s2"


# --- Metrotec: geozones and the alarm log ------------------------------------------------


def metrotec(session: aiohttp.ClientSession, url: str, **options: Any) -> MetrotecProvider:
    return MetrotecProvider(
        session, MetrotecSettings(base_url=url, api_key=METROTEC_KEY, **options)
    )


async def poll_every(
    provider: MetrotecProvider, server: SimulatorServer, fleet: Fleet, step_s: int, hours: float
) -> list[Alert]:
    alerts: list[Alert] = []
    for index in range(round(hours * 3600 / step_s)):
        plan = PollPlan(refresh_vehicles=index == 0, now=server.clock.now())
        alerts += fleet.keep(await provider.poll(plan)).alerts
        server.clock.advance(step_s)
    return alerts


async def test_metrotec_zone_crossings_from_positions_agree_with_the_alarm_log(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(metrotec_vehicles=5) as server:
        fleet = Fleet()
        provider = metrotec(session, server.metrotec_url)
        alerts = await poll_every(provider, server, fleet, step_s=120, hours=3)
        logged = server.metrotec.alarms.entries()
        crossings = [a for a in alerts if a.type in ZONE_TYPES]
        assert crossings
        assert len({a.alert_id for a in crossings}) == len(crossings)  # each crossing once
        unlinked = {v.vehicle_id for v in server.metrotec_world.vehicles() if v.seq % 5 == 0}
        zone_names = {str(z.zone_id): z.name for z in server.metrotec.zones}
        for alert in crossings:
            assert alert.vehicle_id not in unlinked
            assert alert.severity is Severity.INFO
            assert alert.details["zone"] == zone_names[alert.details["zone_id"]]
            code = ALARM_ZONE_ENTER if alert.type is AlertType.GEOZONE_ENTER else ALARM_ZONE_EXIT
            # Metrotec logs the crossing at the fix that crossed; the poll that
            # saw it next reports it with that poll's position time.
            assert any(
                e.vehicle_id == alert.vehicle_id
                and e.zone is not None
                and str(e.zone.zone_id) == alert.details["zone_id"]
                and e.code == code
                and timedelta(0) <= alert.time - from_ms(e.time_ms) <= timedelta(minutes=5)
                for e in logged
            ), alert
        # The other alarms come from the log, with its ids; its zone alarms do not
        # come a second time.
        device = [e for e in logged if e.zone is None and e.time_ms >= to_ms(START)]
        assert device
        from_log = {a.alert_id: a for a in alerts if a.alert_id.startswith("alarm:")}
        assert set(from_log) == {f"alarm:{e.entry_id}" for e in device}
        assert not {a.type for a in from_log.values()} & ZONE_TYPES
        names = {4: AlertType.UNPLUGGED, 6: AlertType.LOW_BATTERY, 7: AlertType.SPEEDING}
        for entry in device:
            alert = from_log[f"alarm:{entry.entry_id}"]
            assert alert.type is names.get(entry.code, AlertType.PANIC)
            assert alert.time == from_ms(entry.time_ms // 1000 * 1000)
        # Zones once per vehicle list, the alarm log once per poll.
        by_path = server.metrotec.counters.by_path
        assert (by_path["/api/geozones/"], by_path["/api/alarmlog"]) == (1, 90)

        # A restart from the checkpoint repeats no crossing.
        restarted = metrotec(session, server.metrotec_url)
        restarted.restore(provider.checkpoint(), fleet.states.values())
        update = await restarted.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        again = {a.alert_id for a in update.alerts if a.type in ZONE_TYPES}
        assert again.isdisjoint(a.alert_id for a in crossings)


async def test_metrotec_zone_edge_margin_and_a_crossing_while_the_bridge_was_down(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(metrotec_vehicles=2) as server:
        world = server.metrotec_world
        vid = world.ids()[0]  # seq 1: linked to every zone
        zone = server.metrotec.zones[0]
        world.park(vid)

        async def place(north_m: float) -> None:
            server.clock.advance(60)
            lat, lon = geo.offset(zone.latitude, zone.longitude, north_m, 0)
            world.set_vehicle(vid, latitude=lat, longitude=lon)

        def crossings(update: Update) -> list[Alert]:
            return [a for a in update.alerts if a.vehicle_id == vid and a.type in ZONE_TYPES]

        fleet = Fleet()
        provider = metrotec(session, server.metrotec_url)
        await place(zone.radius_m + 2000)
        poll = PollPlan(refresh_vehicles=True, now=server.clock.now())
        assert crossings(fleet.keep(await provider.poll(poll))) == []  # the baseline

        await place(0)
        (entered,) = crossings(fleet.keep(await provider.poll(PollPlan(now=server.clock.now()))))
        assert entered.type is AlertType.GEOZONE_ENTER
        assert entered.time == server.clock.now()  # the fix that was inside
        assert entered.alert_id == (
            f"zone:{vid}:{zone.zone_id}:enter:{int(server.clock.now().timestamp())}"
        )
        await place(zone.radius_m + 10)  # GPS jitter at the edge: not out yet
        assert crossings(fleet.keep(await provider.poll(PollPlan(now=server.clock.now())))) == []
        await place(zone.radius_m + 60)
        (left,) = crossings(fleet.keep(await provider.poll(PollPlan(now=server.clock.now()))))
        assert left.type is AlertType.GEOZONE_EXIT

        # Back inside while the bridge was down: reported once after the restart.
        checkpoint = provider.checkpoint()
        await place(0)
        restarted = metrotec(session, server.metrotec_url)
        restarted.restore(checkpoint, fleet.states.values())
        poll = PollPlan(refresh_vehicles=True, now=server.clock.now())
        (back,) = crossings(fleet.keep(await restarted.poll(poll)))
        assert back.type is AlertType.GEOZONE_ENTER
        assert crossings(await restarted.poll(PollPlan(now=server.clock.now()))) == []


async def test_metrotec_zone_alarms_from_the_alarm_log_when_configured(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(metrotec_vehicles=5) as server:
        provider = metrotec(session, server.metrotec_url, geozones_from="alarm_log")
        alerts = await poll_every(provider, server, Fleet(), step_s=600, hours=3)
        zoned = [e for e in server.metrotec.alarms.entries() if e.zone is not None]
        assert zoned
        crossings = {a.alert_id for a in alerts if a.type in ZONE_TYPES}
        assert crossings == {f"alarm:{e.entry_id}" for e in zoned}
        assert "/api/geozones/" not in server.metrotec.counters.by_path
        with pytest.raises(ValueError, match="geozones_from"):
            metrotec(session, server.metrotec_url, geozones_from="telepathy")


async def test_metrotec_alarm_log_one_vehicle_a_poll_when_the_account_wants_object_id(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(metrotec_vehicles=3) as server:
        server.metrotec.alarmlog_requires_object_id = True
        fleet = Fleet()
        provider = metrotec(session, server.metrotec_url)
        alerts = await poll_every(provider, server, fleet, step_s=600, hours=1)
        assert provider.checkpoint()["alarm_log_per_vehicle"] == "1"
        since = json.loads(provider.checkpoint()["alarm_log_since"])
        assert set(server.metrotec_world.ids()) <= set(since)  # every vehicle in turn
        assert server.metrotec.counters.by_status[400] == 1  # asked once without it
        assert server.metrotec.counters.by_path["/api/alarmlog"] == 6
        logged = {f"alarm:{e.entry_id}" for e in server.metrotec.alarms.entries()}
        assert {a.alert_id for a in alerts if a.alert_id.startswith("alarm:")} <= logged

        restarted = metrotec(session, server.metrotec_url)
        restarted.restore(provider.checkpoint(), fleet.states.values())
        await restarted.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        assert server.metrotec.counters.by_status[400] == 1  # remembered


async def test_metrotec_paths_it_does_not_have_cost_the_poll_nothing(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(metrotec_vehicles=2) as server:
        paths = {"alarm_log": "/alarms/", "geozones": "/zones/"}  # not this API's
        provider = metrotec(session, server.metrotec_url, paths=paths)
        update = await provider.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        assert len(update.vehicles) == 2
        server.clock.advance(60)
        update = await provider.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        by_path = server.metrotec.counters.by_path
        # Refused once each, then left alone for an hour; positions polled throughout.
        assert (by_path["/api/alarms/"], by_path["/api/zones/"]) == (1, 1)
        assert by_path["/api/lastpositions/"] == 2
        server.clock.advance(3600)
        await provider.poll(PollPlan(refresh_vehicles=True, now=server.clock.now()))
        assert (by_path["/api/alarms/"], by_path["/api/zones/"]) == (2, 2)


# --- FLEETIZE: error_code and status_code transitions ------------------------------------


def fleetize(session: aiohttp.ClientSession, url: str) -> FleetizeProvider:
    return FleetizeProvider(session, FleetizeSettings(token=FLEETIZE_TOKEN, base_url=url))


async def test_fleetize_problems_once_with_the_stored_states_as_the_baseline(
    session: aiohttp.ClientSession,
) -> None:
    async with simulator(fleetize_vehicles=3) as server:
        sim = server.fleetize
        sim.device_errors = False  # only the faults this test pins
        first, second, _ = server.fleetize_world.ids()
        fleet = Fleet()

        async def poll(provider: FleetizeProvider) -> list[Alert]:
            # Whole-fleet answers: a parked device's fault shows without activity.
            server.clock.advance(61)  # one call a minute
            plan = PollPlan(refresh_vehicles=True, now=server.clock.now())
            update = fleet.keep(await provider.poll(plan))
            return [a for a in update.alerts if a.type in PROBLEM_TYPES]

        sim.set_error(first, 2)  # unplugged before the bridge ever looked: no news
        provider = fleetize(session, server.fleetize_url)
        assert await poll(provider) == []

        sim.set_error(second, 4)
        pinned_at = server.clock.now().replace(microsecond=0)
        (no_gps,) = await poll(provider)
        assert (no_gps.vehicle_id, no_gps.type, no_gps.severity) == (
            second,
            AlertType.NO_GPS,
            Severity.WARNING,
        )
        assert no_gps.time == pinned_at  # error_code_time, not the poll's time
        assert no_gps.alert_id == f"{second}:error_code:4:{int(pinned_at.timestamp())}"
        assert no_gps.details["previous"] == "none"
        assert no_gps.details["error_text"].startswith("No GPS")
        assert await poll(provider) == []  # still the same fault

        # A restart on the stored states and checkpoint repeats nothing...
        restarted = fleetize(session, server.fleetize_url)
        restarted.restore(provider.checkpoint(), fleet.states.values())
        assert await poll(restarted) == []
        # ...and what changed while it was down is reported, once.
        checkpoint = restarted.checkpoint()
        sim.set_error(first, 1)  # plugged in again
        sim.set_error(second, None)  # GPS back: not an alert
        later = fleetize(session, server.fleetize_url)
        later.restore(checkpoint, fleet.states.values())
        (replugged,) = await poll(later)
        assert (replugged.vehicle_id, replugged.type) == (first, AlertType.REPLUGGED)
        assert replugged.details["previous"] == "unplugged"
        assert await poll(later) == []
        # No call of their own: one devicelist per poll, nothing else.
        assert sim.action_counts == {"devicelist": 6}


DEVICE = """{
   "device_id":492,
   "device_name":"My vehicle",
   "online_timestamp":%(online)d,
   "heartbeat_timestamp":1426776180,
   "error_code":%(error)d,
   "error_code_time":%(error_time)s,
   "error_text":%(error_text)s,
   "status_text":"%(status_text)s",
   "status_code":%(status)d,
   "location":"48.87778,9.34889",
  }"""


def devicelist(online: int, status: int, error: int = 0, error_time: int | None = None) -> str:
    texts = {0: "null", 2: '"Unplugged: Device is currently unplugged"'}
    body = DEVICE % {
        "online": online,
        "status": status,
        "status_text": {1: "offline", 2: "active"}[status],
        "error": error,
        "error_time": "null" if error_time is None else str(error_time),
        "error_text": texts[error],
    }
    return f"[\n  {body}\n]"  # with the documentation's trailing comma


async def test_fleetize_status_and_error_codes_from_documented_answers(
    scripted: tuple[Scripted, str], session: aiohttp.ClientSession
) -> None:
    script, url = scripted
    unplugged_and_driving = devicelist(online=1426576900, status=2, error=2, error_time=1426576800)
    script.add("/devicelist", devicelist(online=1426576180, status=1))
    script.add("/devicelist", unplugged_and_driving)
    script.add("/devicelist", unplugged_and_driving)
    provider = fleetize(session, url)
    now = datetime(2015, 3, 17, 8, 0, tzinfo=UTC)
    assert (await provider.poll(PollPlan(refresh_vehicles=True, now=now))).alerts == []
    update = await provider.poll(PollPlan(now=now + timedelta(minutes=15)))
    by_type = {a.type: a for a in update.alerts}
    assert set(by_type) == {AlertType.STATUS_CHANGE, AlertType.UNPLUGGED}
    status = by_type[AlertType.STATUS_CHANGE]
    assert status.alert_id == "492:status_code:1-2:1426576900"
    assert status.time == datetime.fromtimestamp(1426576900, UTC)
    assert status.severity is Severity.INFO
    assert status.details == {
        "provider_type": "status_code 2",
        "from": "parked",
        "to": "driving",
        "from_code": 1,
        "to_code": 2,
        "status_text": "active",
    }
    unplugged = by_type[AlertType.UNPLUGGED]
    assert unplugged.alert_id == "492:error_code:2:1426576800"
    assert unplugged.severity is Severity.CRITICAL
    assert unplugged.position is not None
    assert (unplugged.position.latitude, unplugged.position.longitude) == (48.87778, 9.34889)
    assert (await provider.poll(PollPlan(now=now + timedelta(minutes=30)))).alerts == []


# --- The whole bridge: on MQTT, once -------------------------------------------------------

ACCOUNT = "fleet"


def bridge_config(mosquitto: Mosquitto, server: SimulatorServer, tmp_path: Path) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "alerts-test"},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": ACCOUNT,
                    "provider": "samsara",
                    "token": SAMSARA_TOKEN,
                    "base_url": server.samsara_url,
                    "poll_interval": 3600,  # polls when the test asks
                    "offline_after": 86400,
                }
            ],
        }
    )


def alert_messages(recorder: Recorder) -> list[dict[str, Any]]:
    return [
        json.loads(m.payload)
        for m in recorder.messages
        if m.topic.startswith(f"fleet/{ACCOUNT}/") and m.topic.endswith("/alert")
    ]


async def test_an_alert_reaches_mqtt_once_across_polls_and_a_restart(
    mosquitto: Mosquitto, recorder: Recorder, tmp_path: Path
) -> None:
    # The simulated clock starts at the bridge's own now, and only moves when told.
    async with SimulatorServer(vehicles=20, speed=0, seed=11) as server:
        server.clock.advance(3600)
        config = bridge_config(mosquitto, server, tmp_path)
        clock: Callable[[], datetime] = server.clock.now
        async with running(config, now=clock) as bridge:
            poller = bridge.pollers[ACCOUNT]
            await poller.wait_polls(1)
            events = server.samsara.safety.events()
            assert events
            await recorder.wait_for(lambda: len(alert_messages(recorder)) >= len(events))
            poller.request_poll()
            await poller.wait_polls(2)
            await settle(recorder, mosquitto, bridge)
        first = alert_messages(recorder)
        assert sorted(m["id"] for m in first) == sorted(e.event_id for e in events)
        sample = next(m for m in first if m["id"] == events[0].event_id)
        assert sample["vehicle"] == events[0].vehicle_id
        assert sample["event_type"] == SAFETY_LABELS.get(events[0].label.lower(), "other")
        assert sample["stale"] is False
        assert sample["driver"]
        assert sample["media_url"].endswith(".jpg")
        topics = {m.topic for m in recorder.messages if m.topic.endswith("/alert")}
        assert topics == {f"fleet/{ACCOUNT}/{e.vehicle_id}/alert" for e in events}
        assert not any(m.retain for m in recorder.messages if m.topic.endswith("/alert"))

        # Restarted with its cursor refused: it reads back past what it published,
        # and the store lets none of it out again; what is new comes once.
        server.samsara.expire_safety_cursors()
        server.clock.advance(1800)
        async with running(config, now=clock) as bridge:
            poller = bridge.pollers[ACCOUNT]
            await poller.wait_polls(1)
            poller.request_poll()
            await poller.wait_polls(2)
            await settle(recorder, mosquitto, bridge)
        assert server.samsara.counters.by_status[400] == 1  # the look-back happened
        ids = [m["id"] for m in alert_messages(recorder)]
        assert len(ids) == len(set(ids))
        assert set(ids) == {e.event_id for e in server.samsara.safety.events()}
        assert len(ids) > len(first)
