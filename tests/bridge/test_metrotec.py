"""Metrotec client against the Metrotec simulator (a real SimulatorServer, frozen
clock moved by hand): both logins, the required headers, Xpos/Ypos, fuel tanks,
light and reporting-interval events confirmed only once the device handled them,
and route tasks keyed by order_ref.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from bridge.errors import ProviderAuthError, ProviderError
from bridge.model import (
    CommandStatus,
    PollPlan,
    Priority,
    Task,
    TaskChange,
    TaskStatus,
    VehicleState,
)
from bridge.providers import create_provider, default_budgets
from bridge.providers.metrotec import (
    DEFAULT_BUDGETS,
    MetrotecProvider,
    MetrotecSettings,
)
from bridge.quota import BudgetKind, MemoryLedger, Quota
from bridge.simulator import SimulatorServer
from bridge.simulator.metrotec_json import rep_ints
from bridge.simulator.vehicle import Engine, Stat

START = datetime(2025, 7, 3, 10, 0, tzinfo=UTC)  # summer: Tallinn is UTC+3
USERNAME, PASSWORD = "demo", "demo-metrotec-password"
API_KEY = "demo-metrotec-key"
COMMAND = Priority.COMMAND


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


def make(
    session: aiohttp.ClientSession, server: SimulatorServer, **options: Any
) -> MetrotecProvider:
    if "api_key" not in options:
        options = {"username": USERNAME, "password": PASSWORD, **options}
    return MetrotecProvider(session, MetrotecSettings(base_url=server.metrotec_url, **options))


async def first_poll(provider: MetrotecProvider) -> dict[str, VehicleState]:
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    return {state.vehicle_id: state for state in update.vehicles}


def task(vehicle: str, order_ref: str = "ORDER-2025-001", **changes: Any) -> Task:
    values: dict[str, Any] = {
        "vehicle_id": vehicle,
        "order_ref": order_ref,
        "latitude": 59.437,
        "longitude": 24.754,
        "start_time": START,
        "stop_time": START + timedelta(hours=8),
        "description": "Standard delivery task",
        "address": "Tallinn, Estonia",
        "contact_name": "Viktor",
        "contact_phone": "+372 55667788",
    }
    return Task(**{**values, **changes})


# --- login, headers, mapping --------------------------------------------------------


async def test_password_login_reads_every_vehicle_with_longitude_in_xpos(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vehicles = await first_poll(provider)
    world = server.metrotec_world
    assert set(vehicles) == set(world.ids())
    assert server.metrotec.logins == 1
    # The simulator refuses requests without the versioned Accept and a User-Agent.
    assert server.metrotec.refused == {}
    for vid, state in vehicles.items():
        sim = world.vehicle(vid)
        fix = sim.last(Stat.GPS)
        assert fix is not None
        assert state.position is not None
        # Tallinn: latitude ~59.4, longitude ~24.7 (not the other way round).
        assert 59.0 < state.position.latitude < 60.0
        assert 23.5 < state.position.longitude < 26.0
        assert state.position.latitude == pytest.approx(fix.value.latitude)
        assert state.position.longitude == pytest.approx(fix.value.longitude)
        assert state.position.time == datetime.fromtimestamp(fix.time_ms // 1000, UTC)
        assert state.speed_kmh == round(fix.value.speed_kmh)
        assert state.name == sim.identity.name  # the alias, e.g. CAR01
        assert state.plate == vid  # the object id is the registration number
        engine = sim.last(Stat.ENGINE)
        assert engine is not None
        assert state.ignition is (engine.value is not Engine.OFF)
        # LastCommunicationLocalTime is Tallinn time: read as UTC it would lie
        # three hours in the future.
        assert state.last_seen is not None
        assert state.position.time <= state.last_seen <= server.clock.now()
        assert state.last_seen - state.position.time < timedelta(seconds=10)
        assert state.odometer_km is not None
        assert state.odometer_km > 0


async def test_an_api_key_is_the_bearer_token_without_a_login(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY)
    vehicles = await first_poll(provider)
    assert len(vehicles) == 5
    assert server.metrotec.logins == 0
    assert server.metrotec.counters.by_token["api-key"] == 6
    # The API key is configuration, not something to persist.
    assert not {"token", "token_renew_at", "token_for"} & set(provider.checkpoint())


async def test_a_poll_costs_four_calls_whatever_the_fleet_size(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    quota = Quota("mt", DEFAULT_BUDGETS, MemoryLedger())
    provider = MetrotecProvider(
        session,
        MetrotecSettings(base_url=server.metrotec_url, api_key=API_KEY),
        quota,
    )
    await first_poll(provider)
    # vehicle list, geozones, positions, fuel, tasks, alarm log
    assert quota.calls_made == 6
    await provider.poll(PollPlan())
    assert quota.calls_made == 10
    by_path = server.metrotec.counters.by_path
    assert by_path["/api/routetasks/"] == 2  # one call for every vehicle's tasks
    assert by_path["/api/objects/"] == 1


def test_default_budget_is_a_conservative_window() -> None:
    (budget,) = default_budgets("metrotec")
    assert (budget.kind, budget.limit, budget.period) == (BudgetKind.WINDOW, 60, 60.0)


async def test_a_wrong_api_version_is_refused_with_the_servers_reason(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY, api_version="9.9.9")
    with pytest.raises(ProviderError) as caught:
        await first_poll(provider)
    assert not isinstance(caught.value, ProviderAuthError)
    assert "HTTP 406" in str(caught.value)
    assert 'Invalid version in "Accept" header' in str(caught.value)
    assert "9.9.9" in str(caught.value)
    assert server.metrotec.refused["version"] == 1


async def test_a_blank_user_agent_is_refused_with_the_servers_reason(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY, user_agent=" ")
    with pytest.raises(ProviderError, match="User-Agent"):
        await first_poll(provider)
    assert server.metrotec.refused["user_agent"] == 1


async def test_wrong_credentials_are_an_auth_error(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ProviderAuthError, match="username or password"):
        await first_poll(make(session, server, password="wrong"))
    with pytest.raises(ProviderAuthError, match="API key"):
        await first_poll(make(session, server, api_key="not-a-key"))


async def test_no_token_is_kept_at_rest_and_one_is_renewed_once_on_401(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vehicles = await first_poll(provider)
    checkpoint = provider.checkpoint()
    # A JWT in the store is a credential for whoever can read it (issue 16).
    assert not {"token", "token_renew_at", "token_for"} & set(checkpoint)
    assert PASSWORD not in str(checkpoint)
    assert server.metrotec.logins == 1

    restarted = make(session, server)
    # A store written by an older bridge: its token is not used.
    restarted.restore({**checkpoint, "token": "old-jwt", "token_renew_at": "2099-01-01"}, [])
    await restarted.poll(PollPlan())
    assert server.metrotec.logins == 2  # a restart logs in again
    await restarted.poll(PollPlan())
    assert server.metrotec.logins == 2  # then keeps its token in memory

    server.metrotec.expire_tokens()
    await restarted.poll(PollPlan())
    assert server.metrotec.logins == 3
    assert "token" not in restarted.checkpoint()
    assert vehicles


async def test_fuel_tanks_give_litres_and_percent(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    vehicles = await first_poll(make(session, server))
    world = server.metrotec_world
    with_tank = [vid for vid in vehicles if world.vehicle(vid).has_obd]
    without = [vid for vid in vehicles if not world.vehicle(vid).has_obd]
    assert with_tank, "the simulated fleet has vehicles with a fuel sensor"
    for vid in with_tank:
        sim = world.vehicle(vid)
        assert vehicles[vid].fuel_volume_l == pytest.approx(sim.fuel_l, abs=0.06)
        assert vehicles[vid].fuel_percent == pytest.approx(
            100 * sim.fuel_l / round(sim.tank_l), abs=0.1
        )
    for vid in without:
        assert vehicles[vid].fuel_volume_l is None
        assert vehicles[vid].fuel_percent is None


async def test_removed_and_added_vehicles_follow_the_vehicle_list(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY)
    vehicles = await first_poll(provider)
    gone = next(iter(vehicles))
    server.metrotec_world.remove_vehicle(gone)
    added = server.metrotec_world.add_vehicle()
    update = await provider.poll(PollPlan(refresh_vehicles=True))
    assert update.removed == [gone]
    assert added in {state.vehicle_id for state in update.vehicles}


# --- lights and reporting interval ---------------------------------------------------


async def test_lights_are_confirmed_only_once_the_device_handled_the_event(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vehicles = await first_poll(provider)
    vid = sorted(vehicles)[0]
    assert vehicles[vid].lights_on is None

    asked = await provider.set_lights(vid, True, COMMAND)
    assert asked.status is CommandStatus.PENDING
    assert asked.handle is not None
    event = next(e for e in server.metrotec.events.of(vid) if str(e.id) == asked.handle)
    assert (event.event_type, event.description) == (4, "ON")

    still = await provider.lights_status(vid, asked.handle, COMMAND)
    assert still.status is CommandStatus.PENDING
    assert server.metrotec.lights_on(vid) is False

    server.clock.advance(21)  # the simulated device takes 20 s
    done = await provider.lights_status(vid, asked.handle, COMMAND)
    assert done.status is CommandStatus.CONFIRMED
    assert done.data == {"lights_on": True}
    assert server.metrotec.lights_on(vid) is True

    update = await provider.poll(PollPlan())
    changed = {state.vehicle_id: state for state in update.vehicles}
    assert changed[vid].lights_on is True
    # Reported once; the state keeps it.
    again = await provider.poll(PollPlan())
    assert vid not in {state.vehicle_id for state in again.vehicles}


async def test_a_light_event_that_vanished_fails(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY)
    vid = sorted(await first_poll(provider))[0]
    result = await provider.lights_status(vid, "424242", COMMAND)
    assert result.status is CommandStatus.FAILED
    assert result.error is not None
    assert "424242" in result.error


async def test_reporting_intervals_are_checked_against_the_vehicles_own(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY)
    await first_poll(provider)
    world = server.metrotec_world
    vid = next(v.vehicle_id for v in world.vehicles() if v.seq % 3 == 0)
    offered = rep_ints(world.vehicle(vid))
    assert "30S" in offered
    assert "12H" not in offered

    assert await provider.reporting_intervals(vid, COMMAND) == list(offered)
    with pytest.raises(ProviderError) as caught:
        await provider.set_reporting_interval(vid, "12H", COMMAND)
    assert vid in str(caught.value)
    assert ", ".join(offered) in str(caught.value)
    assert server.metrotec.events.created == 0  # nothing was sent

    asked = await provider.set_reporting_interval(vid, "1min", COMMAND)
    assert asked.status is CommandStatus.PENDING
    assert asked.data == {"interval": "1MIN"}
    assert asked.handle is not None
    server.clock.advance(21)
    done = await provider.reporting_interval_status(vid, asked.handle, COMMAND)
    assert done.status is CommandStatus.CONFIRMED
    assert server.metrotec.events.report_intervals[vid] == "1MIN"


# --- tasks --------------------------------------------------------------------------


async def test_a_task_is_created_once_however_often_it_is_sent(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vid = sorted(await first_poll(provider))[0]

    created = await provider.create_task(task(vid), COMMAND)
    assert created.status is CommandStatus.CONFIRMED
    assert created.data["order_ref"] == "ORDER-2025-001"
    assert created.data["existing"] is False
    stored = server.metrotec.tasks.get(int(created.data["task_id"]))
    assert (stored.object_id, stored.lat, stored.lon) == (vid, 59.437, 24.754)
    assert stored.start_time == int(START.timestamp() * 1000)
    assert stored.task_description == "Standard delivery task"
    assert stored.task_address == "Tallinn, Estonia"
    assert stored.order_details == "Viktor, +372 55667788"

    again = await provider.create_task(task(vid), COMMAND)
    assert again.status is CommandStatus.CONFIRMED
    assert again.data["existing"] is True
    assert again.data["task_id"] == created.data["task_id"]
    # It reached Metrotec (which refused the duplicate), and no second task exists.
    assert server.metrotec.tasks.duplicates == 1
    assert server.metrotec.tasks.created == 1


async def test_an_order_ref_of_another_vehicle_fails_clearly(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY)
    first, second = sorted(await first_poll(provider))[:2]
    await provider.create_task(task(first), COMMAND)
    clash = await provider.create_task(task(second), COMMAND)
    assert clash.status is CommandStatus.FAILED
    assert clash.error is not None
    assert "ORDER-2025-001" in clash.error
    assert first in clash.error
    assert second in clash.error
    assert server.metrotec.tasks.created == 1


async def test_field_errors_name_the_field(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server, api_key=API_KEY)
    await first_poll(provider)
    with pytest.raises(ProviderError) as caught:
        await provider.create_task(task("GHOST1"), COMMAND)
    assert "object_id" in str(caught.value)
    assert "does not exist" in str(caught.value)
    assert "HTTP 400" in str(caught.value)


async def test_tasks_are_updated_by_order_ref_and_show_in_the_poll(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = make(session, server)
    vehicles = await first_poll(provider)
    assert {state.active_tasks for state in vehicles.values()} == {0}
    vid, other = sorted(vehicles)[:2]
    # Due tomorrow: the simulated vehicle does not start it by itself.
    later = {
        "start_time": START + timedelta(days=1),
        "stop_time": START + timedelta(days=1, hours=4),
    }
    await provider.create_task(task(vid, "A-1", **later), COMMAND)
    await provider.create_task(task(vid, "A-2", description="Pick up pallets", **later), COMMAND)

    update = await provider.poll(PollPlan())
    state = {s.vehicle_id: s for s in update.vehicles}[vid]
    assert (state.active_tasks, state.current_task) == (2, None)

    started = await provider.update_task(
        TaskChange(order_ref="A-1", status=TaskStatus.IN_PROGRESS), COMMAND
    )
    assert started.status is CommandStatus.CONFIRMED
    assert started.data["status"] == "in_progress"
    assert server.metrotec.tasks.get(int(started.data["task_id"])).status == 2
    update = await provider.poll(PollPlan())
    state = {s.vehicle_id: s for s in update.vehicles}[vid]
    assert (state.active_tasks, state.current_task) == (2, "A-1")

    moved = await provider.update_task(
        TaskChange(order_ref="A-2", vehicle_id=other, description="Moved"), COMMAND
    )
    assert moved.status is CommandStatus.CONFIRMED
    cancelled = await provider.update_task(
        TaskChange(order_ref="A-1", status=TaskStatus.CANCELLED), COMMAND
    )
    assert cancelled.data["status"] == "cancelled"
    update = await provider.poll(PollPlan())
    states = {s.vehicle_id: s for s in update.vehicles}
    assert (states[vid].active_tasks, states[vid].current_task) == (0, None)
    assert states[other].active_tasks == 1
    moved_task = server.metrotec.tasks.get(int(moved.data["task_id"]))
    assert (moved_task.object_id, moved_task.task_description) == (other, "Moved")

    missing = await provider.update_task(TaskChange(order_ref="NOPE"), COMMAND)
    assert missing.status is CommandStatus.FAILED
    assert missing.error is not None
    assert "NOPE" in missing.error


async def test_the_registry_builds_it(
    server: SimulatorServer, session: aiohttp.ClientSession
) -> None:
    provider = create_provider(
        "metrotec", session, MetrotecSettings(base_url=server.metrotec_url, api_key=API_KEY)
    )
    assert isinstance(provider, MetrotecProvider)
    with pytest.raises(ValueError, match="api_key"):
        MetrotecProvider(session, MetrotecSettings(username="demo"))
