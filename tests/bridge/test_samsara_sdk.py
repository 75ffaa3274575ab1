"""The Samsara simulator against Samsara's official Python SDK (`samsara-api`).

The SDK's models are generated from Samsara's API reference, so they say what a
real answer looks like: a required field the simulator leaves out fails its
validation. On top of that every answer is audited against the models: a field
the reference does not define (the simulator inventing), or a value outside one
of its enumerations (a media status, an input, an event state ...), fails too.
Every endpoint the bridge reads is covered, with the SDK's own way of sending
parameters (`types` repeated) beside the bridge's (comma-joined).
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator
from datetime import datetime

import pydantic
import pytest
from samsara import AsyncSamsara

from bridge.providers.samsara import CAMERA_INPUTS, FEED_GROUPS
from bridge.simulator.server import SimulatorServer

TOKEN = "demo-samsara-token"
VEHICLES = 20


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=VEHICLES, speed=0, seed=11) as server:
        yield server


@pytest.fixture
def sdk(simulator: SimulatorServer) -> AsyncSamsara:
    return AsyncSamsara(base_url=simulator.samsara_url, token=TOKEN, timeout=30)


def _literals(annotation: object) -> tuple[str, ...]:
    """The values of the Literal inside an SDK annotation (Union[Literal, Any])."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    found: tuple[str, ...] = ()
    for arg in typing.get_args(annotation):
        found += _literals(arg)
    return found


def audit(value: object, path: str = "") -> list[str]:
    """Fields the API reference does not define, and enumeration values it does
    not know, anywhere in a parsed SDK answer."""
    problems: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        problems += [
            f"{path}.{key}: not in Samsara's API reference" for key in value.model_extra or {}
        ]
        for name, info in type(value).model_fields.items():
            field_value = getattr(value, name)
            where = f"{path}.{info.alias or name}"
            allowed = _literals(info.annotation)
            if allowed and isinstance(field_value, str) and field_value not in allowed:
                problems.append(f"{where}: {field_value!r} is none of {allowed}")
            problems += audit(field_value, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += audit(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            problems += audit(item, f"{path}.{key}")
    return problems


async def test_vehicles_page_through_the_sdk(sdk: AsyncSamsara, simulator: SimulatorServer) -> None:
    pager = await sdk.vehicles.list(limit=7)  # three pages
    vehicles = [vehicle async for vehicle in pager]
    assert [v.id for v in vehicles] == simulator.world.ids()
    for vehicle in vehicles:
        assert audit(vehicle, vehicle.id) == []
        assert isinstance(vehicle.created_at_time, datetime)
        assert vehicle.created_at_time < simulator.clock.now()
        truth = simulator.world.vehicle(vehicle.id).identity
        assert (vehicle.name, vehicle.vin, vehicle.license_plate) == (
            truth.name,
            truth.vin,
            truth.plate,
        )


@pytest.mark.parametrize("group", FEED_GROUPS, ids=lambda g: ",".join(g))
async def test_every_feed_group_the_bridge_reads_repeated_or_comma_joined(
    sdk: AsyncSamsara, simulator: SimulatorServer, group: tuple[str, ...]
) -> None:
    # The SDK sends types=gps&types=engineStates&types=fuelPercents; the bridge
    # types=gps,engineStates,fuelPercents. Both must answer the same.
    repeated = await sdk.vehicle_stats.get_vehicle_stats_feed(types=list(group))
    joined = await sdk.vehicle_stats.get_vehicle_stats_feed(types=",".join(group))
    assert audit(repeated, "feed") == []
    assert [v.id for v in repeated.data] == simulator.world.ids()
    dumped = [v.model_dump(by_alias=True, exclude_none=True) for v in repeated.data]
    assert dumped == [v.model_dump(by_alias=True, exclude_none=True) for v in joined.data]
    for stat in group:
        # Every type asked for is answered (for the vehicles that have it).
        assert any(stat in entry for entry in dumped), f"no vehicle has {stat}"
    assert not repeated.pagination.has_next_page

    # The cursor: ten minutes on, only what changed.
    simulator.clock.advance(600)
    later = await sdk.vehicle_stats.get_vehicle_stats_feed(
        types=list(group),
        after=repeated.pagination.end_cursor,
    )
    assert audit(later, "feed") == []
    if "gps" in group:
        assert later.data, "vehicles drove in ten minutes"
    for entry in later.data:
        extra = set(entry.model_dump(by_alias=True, exclude_none=True)) - {
            "id",
            "name",
            "externalIds",
            *group,
        }
        assert extra == set()


async def test_the_stats_snapshot_through_the_sdk(
    sdk: AsyncSamsara, simulator: SimulatorServer
) -> None:
    answer = await sdk.vehicle_stats.get_vehicle_stats(
        types=["gps", "engineStates", "fuelPercents"]
    )
    assert audit(answer, "stats") == []
    assert [v.id for v in answer.data] == simulator.world.ids()
    for entry in answer.data:
        assert entry.gps is not None
        truth = simulator.world.truth(entry.id)
        assert entry.gps.latitude == pytest.approx(truth.latitude, abs=1e-6)
        assert entry.engine_state is not None
        assert entry.engine_state.value in ("Off", "On", "Idle")


async def test_a_camera_still_is_created_and_becomes_available(
    sdk: AsyncSamsara, simulator: SimulatorServer
) -> None:
    vehicle_id = simulator.world.ids()[1]  # has both cameras
    at = simulator.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    created = await sdk.media.post_media_retrieval(
        vehicle_id=vehicle_id,
        start_time=at,
        end_time=at,
        media_type="image",
        inputs=list(CAMERA_INPUTS.values()),
    )
    assert audit(created, "create") == []
    assert created.data.quota_status
    retrieval_id = created.data.retrieval_id

    seen: list[str] = []
    for step in (0, 5, 25):
        simulator.clock.advance(step)
        status = await sdk.media.get_media_retrieval(retrieval_id=retrieval_id)
        assert audit(status, "status") == []
        seen += [m.status for m in status.data.media]
    assert set(seen) <= {"pending", "available"}
    assert seen[-2:] == ["available", "available"]
    for media in status.data.media:
        assert media.vehicle_id == vehicle_id
        assert media.url_info is not None
        assert media.url_info.url.startswith(simulator.samsara_url)


async def test_a_missing_camera_is_a_status_the_sdk_knows(
    sdk: AsyncSamsara, simulator: SimulatorServer
) -> None:
    vehicle_id = simulator.world.ids()[3]  # every fourth has no driver camera
    at = simulator.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    created = await sdk.media.post_media_retrieval(
        vehicle_id=vehicle_id,
        start_time=at,
        end_time=at,
        media_type="image",
        inputs=["dashcamDriverFacing", "analog1"],
    )
    simulator.clock.advance(30)
    status = await sdk.media.get_media_retrieval(retrieval_id=created.data.retrieval_id)
    assert audit(status, "status") == []
    assert [m.status for m in status.data.media] == ["invalid", "invalid"]


async def test_the_safety_events_stream_through_the_sdk(
    sdk: AsyncSamsara, simulator: SimulatorServer
) -> None:
    start = simulator.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    simulator.clock.advance(3 * 3600)  # three hours of driving
    simulator.samsara.page_limit = 4
    events = []
    cursor: str | None = None
    for _ in range(100):
        page = await sdk.safety.get_safety_events_v_2_stream(
            start_time=start, include_asset=True, include_driver=True, after=cursor
        )
        assert audit(page, "safety") == []
        events += page.data
        cursor = page.pagination.end_cursor
        if not page.pagination.has_next_page:
            break
    assert len(events) > 4, "more than a page of events in three hours"
    for event in events:
        assert event.asset.id in simulator.world
        assert event.asset.name == simulator.world.vehicle(event.asset.id).identity.name
        assert event.behavior_labels
        assert event.media
    # Polling on with the cursor: nothing new until more is driven.
    again = await sdk.safety.get_safety_events_v_2_stream(start_time=start, after=cursor)
    assert again.data == []
