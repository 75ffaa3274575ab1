"""The actions (services): what they do at the provider, and every refusal."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from bridge.simulator.server import SimulatorServer
from bridge.simulator.tracksafe365_json import dashcam_online
from custom_components.fleet_telematics.compat import device_by_identifier
from custom_components.fleet_telematics.const import DOMAIN
from custom_components.fleet_telematics.coordinator import runtime
from fleet_sim import (
    advancing_sleep,
    coordinator_of,
    entity_id_of,
    setup_account,
    vehicle_device_id,
    wait_state,
)


async def call(hass: HomeAssistant, service: str, **data: object) -> dict[str, object]:
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert isinstance(response, dict)
    return response


async def test_lights_switch_follows_the_device_not_the_request(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    coordinator = coordinator_of(entry)
    coordinator.sleep = advancing_sleep(sim)
    vehicle = sorted(coordinator.data)[0]
    switch = entity_id_of(hass, "switch", f"{entry.unique_id}_{vehicle}_lights")
    assert hass.states.get(switch).state != "on"

    response = await call(
        hass, "set_lights", device_id=vehicle_device_id(hass, entry, vehicle), on=True
    )

    # Accepted, not done: the device carries it out when it next reports.
    assert response["status"] == "pending"
    state = await wait_state(hass, switch, lambda s: s is not None and s.state == "on")
    assert state is not None
    assert sim.metrotec.lights_on(vehicle) is True


async def test_switch_entity_turns_lights_off(hass: HomeAssistant, sim: SimulatorServer) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    coordinator = coordinator_of(entry)
    coordinator.sleep = advancing_sleep(sim)
    vehicle = sorted(coordinator.data)[1]
    switch = entity_id_of(hass, "switch", f"{entry.unique_id}_{vehicle}_lights")
    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    await wait_state(hass, switch, lambda s: s is not None and s.state == "on")
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    await wait_state(hass, switch, lambda s: s is not None and s.state == "off")
    assert sim.metrotec.lights_on(vehicle) is False


async def test_create_task_once_per_order_ref(hass: HomeAssistant, sim: SimulatorServer) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    vehicle = sorted(coordinator_of(entry).data)[0]
    start = sim.clock.now() + timedelta(hours=1)
    task = {
        "device_id": vehicle_device_id(hass, entry, vehicle),
        "order_ref": "ORD-1",
        "latitude": 59.437,
        "longitude": 24.7536,
        "start_time": start.isoformat(),
        "stop_time": (start + timedelta(hours=2)).isoformat(),
        "description": "Deliver pallets",
        "contact_name": "Mari",
        "contact_phone": "+372 555 0100",
    }

    first = await call(hass, "create_task", **task)
    again = await call(hass, "create_task", **task)

    assert first["status"] == "confirmed"
    assert again["status"] == "confirmed"
    assert again["task_id"] == first["task_id"]
    assert again["existing"] is True
    assert [t.order_ref for t in sim.metrotec.tasks].count("ORD-1") == 1
    assert sim.metrotec.tasks.created == 1

    updated = await call(
        hass,
        "update_task",
        device_id=task["device_id"],
        order_ref="ORD-1",
        status="cancelled",
    )
    assert updated["status"] == "confirmed"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"stop_time": "2026-11-18T10:00:00+00:00"}, "stop_before_start"),
        ({"latitude": 91}, None),
        ({"order_ref": ""}, None),
    ],
)
async def test_create_task_refuses_bad_fields_before_any_call(
    hass: HomeAssistant, sim: SimulatorServer, change: dict[str, object], key: str | None
) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    vehicle = sorted(coordinator_of(entry).data)[0]
    task = {
        "device_id": vehicle_device_id(hass, entry, vehicle),
        "order_ref": "ORD-2",
        "latitude": 59.437,
        "longitude": 24.7536,
        "start_time": "2026-11-18T12:00:00+00:00",
        "stop_time": "2026-11-18T14:00:00+00:00",
        **change,
    }
    requests = sim.metrotec.counters.to_json()["requests"]
    with pytest.raises((ServiceValidationError, vol_invalid())) as caught:
        await call(hass, "create_task", **task)
    if key is not None:
        assert caught.value.translation_key == key
    assert sim.metrotec.counters.to_json()["requests"] == requests


def vol_invalid() -> type[Exception]:
    import voluptuous as vol

    return vol.Invalid  # type: ignore[no-any-return]


async def test_update_task_without_changes_is_refused(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    vehicle = sorted(coordinator_of(entry).data)[0]
    with pytest.raises(ServiceValidationError) as caught:
        await call(
            hass,
            "update_task",
            device_id=vehicle_device_id(hass, entry, vehicle),
            order_ref="ORD-9",
        )
    assert caught.value.translation_key == "nothing_to_update"


async def test_update_of_unknown_task_says_so(hass: HomeAssistant, sim: SimulatorServer) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    vehicle = sorted(coordinator_of(entry).data)[0]
    with pytest.raises(HomeAssistantError) as caught:
        await call(
            hass,
            "update_task",
            device_id=vehicle_device_id(hass, entry, vehicle),
            order_ref="NO-SUCH",
            status="completed",
        )
    assert caught.value.translation_key == "command_failed"
    assert "NO-SUCH" in str(caught.value)


async def test_a_provider_without_the_command_is_named(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "fleetize")
    vehicle = sorted(coordinator_of(entry).data)[0]
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "set_lights", device_id=vehicle_device_id(hass, entry, vehicle), on=True)
    assert caught.value.translation_key == "not_supported"
    assert caught.value.translation_placeholders["account"] == entry.title


async def test_a_device_that_is_not_a_vehicle_is_refused(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    account = device_by_identifier(hass, (DOMAIN, entry.unique_id), entry.entry_id)
    assert account is not None
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "set_lights", device_id=account.id, on=True)
    assert caught.value.translation_key == "not_a_vehicle"
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "set_lights", device_id="no-such-device", on=True)
    assert caught.value.translation_key == "unknown_device"


def dashcams_online(sim: SimulatorServer) -> list[str]:
    """Vehicles whose dashcam answers (a parked one's sleeps and refuses): the
    simulated day moves on until one has driven off."""
    world = sim.tracksafe365_world
    for _ in range(36):
        world.update()
        now = sim.clock.now_ms()
        online = [v.vehicle_id for v in world.vehicles() if dashcam_online(v, now)]
        if online:
            return online
        sim.clock.advance(600)
    raise AssertionError("no dashcam came online within six simulated hours")


async def test_snapshot_appears_on_the_image_entity(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    online = dashcams_online(sim)
    entry = await setup_account(hass, sim, "tracksafe365")
    coordinator = coordinator_of(entry)
    coordinator.sleep = advancing_sleep(sim)
    vehicle = online[0]
    image = entity_id_of(hass, "image", f"{entry.unique_id}_{vehicle}_snapshot")
    before = hass.states.get(image).state

    response = await call(
        hass,
        "request_snapshot",
        device_id=vehicle_device_id(hass, entry, vehicle),
        camera="driver",
    )

    assert response["status"] == "pending"
    await wait_state(hass, image, lambda s: s is not None and s.state != before)
    assert coordinator.snapshots[vehicle].url.startswith(sim.tracksafe365_url.split("/v2")[0])


async def test_snapshot_button_asks_the_dashcam(hass: HomeAssistant, sim: SimulatorServer) -> None:
    online = dashcams_online(sim)
    entry = await setup_account(hass, sim, "tracksafe365")
    coordinator = coordinator_of(entry)
    coordinator.sleep = advancing_sleep(sim)
    vehicle = online[-1]
    button = entity_id_of(hass, "button", f"{entry.unique_id}_{vehicle}_snapshot_request")
    image = entity_id_of(hass, "image", f"{entry.unique_id}_{vehicle}_snapshot")
    await hass.services.async_call("button", "press", {"entity_id": button}, blocking=True)
    await wait_state(hass, image, lambda s: s is not None and s.state not in ("unknown", None))
    assert len(sim.tracksafe365.snapshots) == 1


async def test_refresh_polls_now_and_counts_vehicles(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "samsara")
    sim.clock.advance(5)
    response = await call(hass, "refresh", config_entry_id=entry.entry_id)
    assert response == {"vehicles": {entry.title: 3}}


async def test_refresh_never_breaks_fleetize_spacing(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "fleetize")
    calls = sim.fleetize.stats()["calls_today"]
    # The setup's poll was a moment ago: FLEETIZE allows one call a minute.
    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "refresh", config_entry_id=entry.entry_id)
    assert caught.value.translation_key == "quota_exhausted"
    assert sim.fleetize.stats()["calls_today"] == calls
    assert sim.fleetize.stats()["violations"] == 0


async def test_refresh_of_unknown_account_is_refused(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    await setup_account(hass, sim, "samsara")
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "refresh", config_entry_id="nope")
    assert caught.value.translation_key == "unknown_account"


async def test_a_command_the_quota_forbids_is_not_sent(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    coordinator = coordinator_of(entry)
    vehicle = sorted(coordinator.data)[0]
    await coordinator.quota.hold(60, "the provider asked to wait")

    with pytest.raises(HomeAssistantError) as caught:
        await call(hass, "set_lights", device_id=vehicle_device_id(hass, entry, vehicle), on=True)

    assert caught.value.translation_key == "quota_exhausted"
    assert "hold" in caught.value.translation_placeholders["budget"]
    assert sim.metrotec.lights_on(vehicle) is False


async def test_a_failed_snapshot_leaves_the_image_alone(
    hass: HomeAssistant, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    online = dashcams_online(sim)
    entry = await setup_account(hass, sim, "tracksafe365")
    coordinator = coordinator_of(entry)
    coordinator.sleep = advancing_sleep(sim)
    sim.tracksafe365.fail_snapshots = True
    vehicle = online[0]

    await call(hass, "request_snapshot", device_id=vehicle_device_id(hass, entry, vehicle))
    async with asyncio.timeout(10):  # the follow-up runs in the background
        await asyncio.gather(*runtime(entry).tasks)

    assert vehicle not in coordinator.snapshots
    assert "snapshot failed" in caplog.text


async def test_tasks_on_a_provider_without_them_are_refused(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "samsara")
    device = vehicle_device_id(hass, entry, sorted(coordinator_of(entry).data)[0])
    with pytest.raises(ServiceValidationError) as caught:
        await call(hass, "update_task", device_id=device, order_ref="A", status="completed")
    assert caught.value.translation_key == "not_supported"
