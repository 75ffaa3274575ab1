"""An account over time: vehicles coming and going, alerts, a blocked token,
revoked credentials, a restart, diagnostics."""

from __future__ import annotations

import json

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import issue_registry as ir

from bridge.simulator import fleetize
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics import async_remove_config_entry_device
from custom_components.fleet_telematics.const import DOMAIN
from custom_components.fleet_telematics.diagnostics import async_get_config_entry_diagnostics
from fleet_sim import (
    coordinator_of,
    entity_id_of,
    setup_account,
    vehicle_device_id,
    wait_state,
)

FLEETIZE_SPACING_S = 61


async def test_vehicles_added_at_the_provider_appear_without_restart(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "samsara")
    new = sim.world.add_vehicle()
    sim.clock.advance(5)

    await hass.services.async_call(
        DOMAIN, "refresh", {"config_entry_id": entry.entry_id}, blocking=True
    )
    await hass.async_block_till_done()

    tracker = entity_id_of(hass, "device_tracker", f"{entry.unique_id}_{new}_location")
    assert hass.states.get(tracker) is not None


async def test_a_vehicle_the_provider_dropped_can_be_deleted(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "samsara")
    kept, gone = sorted(coordinator_of(entry).data)[:2]
    registry = dr.async_get(hass)
    gone_device = registry.async_get(vehicle_device_id(hass, entry, gone))
    kept_device = registry.async_get(vehicle_device_id(hass, entry, kept))
    assert gone_device is not None
    assert kept_device is not None
    speed = entity_id_of(hass, "sensor", f"{entry.unique_id}_{gone}_speed")

    sim.world.remove_vehicle(gone)
    sim.clock.advance(5)
    await hass.services.async_call(
        DOMAIN, "refresh", {"config_entry_id": entry.entry_id}, blocking=True
    )
    await hass.async_block_till_done()

    assert hass.states.get(speed).state == "unavailable"
    assert await async_remove_config_entry_device(hass, entry, gone_device)
    assert not await async_remove_config_entry_device(hass, entry, kept_device)


async def test_each_alert_fires_the_event_entity_once(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "fleetize")
    coordinator = coordinator_of(entry)
    vehicle = sorted(coordinator.data)[0]
    event = entity_id_of(hass, "event", f"{entry.unique_id}_{vehicle}_alert")
    assert hass.states.get(event).state == "unknown"

    sim.fleetize.set_error(vehicle, 2)  # the tracker is unplugged
    sim.clock.advance(FLEETIZE_SPACING_S)
    await coordinator.async_refresh()
    fired = await wait_state(hass, event, lambda s: s is not None and s.state != "unknown")
    assert fired is not None
    assert fired.attributes["event_type"] == "unplugged"
    assert fired.attributes["severity"] in ("warning", "critical")

    # The same fault, still there at the next poll, is not news.
    sim.clock.advance(FLEETIZE_SPACING_S)
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get(event).state == fired.state
    assert sim.fleetize.stats()["violations"] == 0


async def test_a_blocked_token_raises_a_repair_issue_and_asks_for_a_new_one(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "fleetize")
    sim.fleetize.quota.blocked.add(fleetize.DEFAULT_TOKEN)
    sim.clock.advance(FLEETIZE_SPACING_S)

    await coordinator_of(entry).async_refresh()
    await hass.async_block_till_done()

    issue = ir.async_get(hass).async_get_issue(DOMAIN, f"token_blocked_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_key == "token_blocked"
    assert issue.severity is ir.IssueSeverity.ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]


async def test_revoked_credentials_start_reauthentication(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "samsara")
    sim.samsara.tokens = frozenset()
    sim.clock.advance(5)

    await coordinator_of(entry).async_refresh()
    await hass.async_block_till_done()

    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [SOURCE_REAUTH]
    assert flows[0]["context"]["entry_id"] == entry.entry_id


async def test_quota_survives_a_restart(
    hass: HomeAssistant, sim: SimulatorServer, hass_storage: dict[str, object]
) -> None:
    entry = await setup_account(hass, sim, "fleetize")
    assert sim.fleetize.stats()["calls_today"] == 1
    assert await hass.config_entries.async_unload(entry.entry_id)
    stored = hass_storage[f"{DOMAIN}.quota"]  # the ledger every entry shares
    assert [len(calls) for calls in stored["data"]["calls"].values()] == [1, 1]  # type: ignore[index]
    # A restart: nothing in memory, only what is on disk.
    hass.data.pop(f"{DOMAIN}_stores")
    hass.data.pop(f"{DOMAIN}_ledger")
    sim.clock.advance(20)

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    # Within FLEETIZE's minute: no call, and yet every vehicle is there as it was.
    assert entry.state is ConfigEntryState.LOADED
    assert sim.fleetize.stats()["calls_today"] == 1
    assert sim.fleetize.stats()["violations"] == 0
    coordinator = coordinator_of(entry)
    assert len(coordinator.data) == 3
    assert "spacing" in (coordinator.status.reason or "")


async def test_diagnostics_hide_secrets_identities_and_places(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "metrotec")
    coordinator = coordinator_of(entry)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    text = json.dumps(diagnostics)

    assert diagnostics["provider"] == "metrotec"
    assert diagnostics["quota"]
    assert len(diagnostics["vehicles"]) == 3
    secrets = [entry.data["api_key"], entry.data["url"], entry.unique_id]
    for state in coordinator.data.values():
        secrets += [state.vin, state.plate]
        if state.name != state.vehicle_id:  # Metrotec names a vehicle by its id
            secrets.append(state.name)
        if state.position is not None:
            secrets += [repr(state.position.latitude), repr(state.position.longitude)]
    for secret in filter(None, secrets):
        assert str(secret) not in text, secret


async def test_a_failing_provider_makes_entities_unavailable_until_it_recovers(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "samsara")
    coordinator = coordinator_of(entry)
    coordinator.provider.retry.attempts = 1  # one try per poll: the test sees each
    vehicle = sorted(coordinator.data)[0]
    speed = entity_id_of(hass, "sensor", f"{entry.unique_id}_{vehicle}_speed")
    sim.samsara.fail_next(1, status=500)
    sim.clock.advance(5)

    await coordinator.async_refresh()
    await hass.async_block_till_done()

    assert hass.states.get(speed).state == "unavailable"
    assert coordinator.status.failures == 1
    assert "500" in (coordinator.status.last_error or "")
    # The retry waits longer than a normal poll (backoff), then all is back.
    assert coordinator.update_interval.total_seconds() >= coordinator.cadence.interval
    sim.clock.advance(5)
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get(speed).state != "unavailable"
    assert coordinator.status.failures == 0


async def test_a_429_waits_as_long_as_the_provider_asks(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "samsara")
    coordinator = coordinator_of(entry)
    coordinator.provider.retry.attempts = 1
    sim.samsara.fail_next(1, status=429, retry_after=120)
    sim.clock.advance(5)

    await coordinator.async_refresh()

    assert not coordinator.last_update_success
    assert coordinator.update_interval.total_seconds() >= 120


async def test_changing_options_reloads_with_the_new_reserve(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    entry = await setup_account(hass, sim, "fleetize")
    before = coordinator_of(entry).quota.calls_left_today()

    hass.config_entries.async_update_entry(entry, options={"reserve": 0.5, "adaptive": False})
    await hass.async_block_till_done()

    coordinator = coordinator_of(entry)
    assert coordinator.cadence.adaptive is False
    assert coordinator.quota.calls_left_today() < before


async def test_deleting_the_account_forgets_its_ledger(
    hass: HomeAssistant, sim: SimulatorServer, hass_storage: dict[str, object]
) -> None:
    entry = await setup_account(hass, sim, "fleetize")
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert f"{DOMAIN}.{entry.unique_id}" in hass_storage

    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()

    assert f"{DOMAIN}.{entry.unique_id}" not in hass_storage
