"""TrackSafe365 client against the TrackSafe365 simulator (a real SimulatorServer,
frozen clock moved by hand): environments by key prefix, cursor pagination past
500 vehicles, units, missing scopes named, dashcam snapshots to a fetchable image,
and never a key in the URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from bridge.errors import ProviderAuthError
from bridge.model import Camera, CommandStatus, PollPlan, Priority, VehicleState
from bridge.providers import create_provider
from bridge.providers.tracksafe365 import (
    PRODUCTION,
    SANDBOX,
    TracksafeProvider,
    TracksafeSettings,
    effective_plan,
    plan_budgets,
)
from bridge.quota import BudgetKind
from bridge.simulator import SimulatorServer
from bridge.simulator.tracksafe365_keys import default_keys, make_key
from bridge.simulator.vehicle import Stat

START = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
LIVE, TEST, RESTRICTED = "ts365_live_demo", "ts365_test_demo", "ts365_rk_demo"
MEDIA_ONLY = "ts365_rk_mediaonly"
COMMAND = Priority.COMMAND


def simulator(vehicles: int) -> SimulatorServer:
    return SimulatorServer(
        vehicles=1,
        fleetize_vehicles=1,
        telemax_vehicles=1,
        metrotec_vehicles=1,
        tracksafe365_vehicles=vehicles,
        tracksafe365_keys=[*default_keys(), make_key(MEDIA_ONLY, ("media:read",))],
        speed=0,
        start=START,
    )


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with simulator(6) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def make(
    session: aiohttp.ClientSession, server: SimulatorServer, key: str = LIVE, **options: Any
) -> TracksafeProvider:
    return TracksafeProvider(
        session,
        TracksafeSettings(
            api_key=key,
            base_url=server.tracksafe365_url,
            sandbox_url=server.tracksafe365_sandbox_url,
            **options,
        ),
    )


async def first_poll(provider: TracksafeProvider) -> dict[str, VehicleState]:
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    return {state.vehicle_id: state for state in update.vehicles}


def paths(server: SimulatorServer) -> dict[str, int]:
    return dict(server.tracksafe365.counters.by_path)


# --- environments and keys -------------------------------------------------------------


async def test_the_key_prefix_picks_the_environment(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    sandbox = make(session, server, TEST)
    assert sandbox.environment == SANDBOX
    assert len(await first_poll(sandbox)) == 6
    assert set(paths(server)) == {
        "/sandbox/v2/fleet/vehicles",
        "/sandbox/v2/fleet/locations",
        "/sandbox/v2/fleet/vehicles/stats",
        "/sandbox/v2/devices/dashcams",
    }
    server.tracksafe365.counters.by_path.clear()

    for key in (LIVE, RESTRICTED):
        production = make(session, server, key)
        assert production.environment == PRODUCTION
        assert len(await first_poll(production)) == 6
    assert all(path.startswith("/v2/") for path in paths(server))
    assert server.tracksafe365.wrong_environment == 0
    assert server.tracksafe365.api_key_query_attempts == 0


async def test_an_unknown_key_prefix_stops_before_any_request(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, "sk_live_abcdef")
    assert provider.environment is None
    with pytest.raises(ProviderAuthError, match="unknown prefix") as caught:
        await first_poll(provider)
    assert "sk_live_abcdef" not in str(caught.value)
    assert paths(server) == {}


async def test_a_revoked_key_is_an_auth_error(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ProviderAuthError, match="HTTP 401"):
        await first_poll(make(session, server, "ts365_live_revoked"))


def test_budgets_follow_the_plan() -> None:
    assert effective_plan(TEST, "growth") == "sandbox"
    assert effective_plan(LIVE, None) == "starter"
    limits = {
        plan: [(b.name, b.kind, b.limit) for b in plan_budgets(plan) or ()]
        for plan in ("sandbox", "starter", "growth")
    }
    assert limits == {
        "sandbox": [("per_minute", BudgetKind.WINDOW, 60), ("per_day", BudgetKind.DAILY, 10_000)],
        "starter": [
            ("per_minute", BudgetKind.WINDOW, 300),
            ("per_day", BudgetKind.DAILY, 100_000),
        ],
        "growth": [
            ("per_minute", BudgetKind.WINDOW, 1_000),
            ("per_day", BudgetKind.DAILY, 500_000),
        ],
    }
    assert plan_budgets("enterprise") is None
    assert TracksafeProvider.default_budgets == plan_budgets("starter")


# --- polling -------------------------------------------------------------------------


async def test_a_fleet_of_600_is_read_in_pages_of_500(session: aiohttp.ClientSession) -> None:
    async with simulator(600) as server:
        provider = make(session, server)
        vehicles = await first_poll(provider)
        assert len(vehicles) == 600
        assert all(state.position is not None for state in vehicles.values())
        assert all(state.odometer_km is not None for state in vehicles.values())
        by_path = paths(server)
        for path in ("fleet/vehicles", "fleet/locations", "fleet/vehicles/stats"):
            assert by_path[f"/v2/{path}"] == 2, path
        assert by_path["/v2/devices/dashcams"] == 2


async def test_units_are_converted_once(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    vehicles = await first_poll(make(session, server))
    world = server.tracksafe365_world
    for vid, state in vehicles.items():
        sim = world.vehicle(vid)
        fix = sim.last(Stat.GPS)
        assert fix is not None
        assert state.name == sim.identity.name
        assert state.vin == sim.identity.vin
        assert state.plate == f"{sim.identity.plate} IL"
        assert state.position is not None
        assert state.position.latitude == pytest.approx(fix.value.latitude)
        assert state.position.longitude == pytest.approx(fix.value.longitude)
        assert state.position.address
        # mph on the wire, km/h in the model (the wire rounds mph to 0.01).
        assert state.speed_kmh == pytest.approx(fix.value.speed_kmh, abs=0.1)
        metres = sim.odometer_m if sim.has_obd else sim.gps_odometer_m
        assert state.odometer_km == pytest.approx(int(metres) / 1000)
        if sim.has_obd:
            assert state.fuel_percent == sim.fuel_percent
            assert state.engine_hours == pytest.approx(sim.engine_s / 3600, abs=0.05)
        else:
            assert state.fuel_percent is None
            assert state.engine_hours is None
        assert state.reported_online is not None
    moving = [s for s in vehicles.values() if s.speed_kmh and s.speed_kmh > 10]
    assert moving, "some simulated vehicles drive at 10:00"


async def test_removed_vehicles_are_reported_on_the_next_list_refresh(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vehicles = await first_poll(provider)
    gone = sorted(vehicles)[0]
    server.tracksafe365_world.remove_vehicle(gone)
    assert (await provider.poll(PollPlan())).removed == []
    assert (await provider.poll(PollPlan(refresh_vehicles=True))).removed == [gone]


async def test_a_key_without_fleet_read_names_the_scope(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ProviderAuthError) as caught:
        await first_poll(make(session, server, MEDIA_ONLY))
    assert "TrackSafe365 key lacks the fleet:read permission" in str(caught.value)
    assert server.tracksafe365.forbidden["fleet:read"] == 1


# --- snapshots -----------------------------------------------------------------------


async def awake(server: SimulatorServer, provider: TracksafeProvider) -> str:
    """A vehicle whose dashcam is online, as the poll reports it."""
    vehicles = await first_poll(provider)
    for _ in range(24):
        online = sorted(vid for vid, state in vehicles.items() if state.reported_online)
        if online:
            return online[0]
        server.clock.advance(300)
        update = await provider.poll(PollPlan())
        vehicles.update({state.vehicle_id: state for state in update.vehicles})
    raise AssertionError("no dashcam came online")


async def test_a_snapshot_ends_in_a_fetchable_image(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vehicle = await awake(server, provider)

    asked = await provider.request_snapshot(vehicle, Camera.DRIVER, COMMAND)
    assert asked.status is CommandStatus.PENDING
    assert asked.handle is not None
    snapshot = server.tracksafe365.snapshots[asked.handle]
    assert (snapshot.vehicle_id, snapshot.camera) == (vehicle, "driver")

    server.clock.advance(5)  # taken, still uploading
    assert (await provider.snapshot_status(asked.handle, COMMAND)).status is CommandStatus.PENDING
    server.clock.advance(5)
    done = await provider.snapshot_status(asked.handle, COMMAND)
    assert done.status is CommandStatus.CONFIRMED
    async with session.get(done.data["url"]) as image:
        assert image.status == 200
        assert image.content_type == "image/jpeg"
        assert (await image.read())[:3] == b"\xff\xd8\xff"
    assert server.tracksafe365.api_key_query_attempts == 0


async def test_a_failed_snapshot_says_why(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vehicle = await awake(server, provider)
    server.tracksafe365.fail_snapshots = True
    asked = await provider.request_snapshot(vehicle, Camera.ROAD, COMMAND)
    assert asked.status is CommandStatus.PENDING
    assert asked.handle is not None
    server.clock.advance(10)
    failed = await provider.snapshot_status(asked.handle, COMMAND)
    assert failed.status is CommandStatus.FAILED
    assert failed.error is not None
    assert "capture_failed" in failed.error

    unknown = await provider.snapshot_status("snap_unknown", COMMAND)
    assert unknown.status is CommandStatus.FAILED
    assert unknown.error is not None
    assert "snap_unknown" in unknown.error


async def test_a_key_without_media_read_fails_the_snapshot_not_the_account(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, RESTRICTED)  # fleet:read only
    vehicle = sorted(await first_poll(provider))[0]
    result = await provider.request_snapshot(vehicle, Camera.ROAD, COMMAND)
    assert result.status is CommandStatus.FAILED
    assert result.error is not None
    assert "TrackSafe365 key lacks the media:read permission" in result.error
    assert server.tracksafe365.snapshots == {}
    following = await provider.snapshot_status("snap_x", COMMAND)
    assert following.status is CommandStatus.FAILED
    assert following.error is not None
    assert "media:read" in following.error
    # Polling goes on.
    await provider.poll(PollPlan())


async def test_the_registry_builds_it(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = create_provider(
        "tracksafe365", session, TracksafeSettings(api_key=LIVE, base_url=server.tracksafe365_url)
    )
    assert isinstance(provider, TracksafeProvider)
    await provider.poll(PollPlan(refresh_vehicles=True))
    assert server.tracksafe365.api_key_query_attempts == 0
