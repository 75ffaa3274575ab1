"""Every platform's entities for each provider, as Home Assistant registers and
shows them (syrupy snapshots: `pytest tests/hass --snapshot-update` after an
intended change, and review the diff)."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from syrupy.assertion import SnapshotAssertion

from bridge.simulator.server import SimulatorServer
from fleet_sim import setup_account

RANDOM = frozenset({"access_token", "entity_picture"})
PROVIDERS = ["samsara", "fleetize", "telemax", "metrotec", "tracksafe365"]


def describe(hass: HomeAssistant, entry_id: str) -> dict[str, Any]:
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry_id)
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry_id)
    shown: dict[str, Any] = {}
    for entity in sorted(entities, key=lambda e: e.entity_id):
        state = hass.states.get(entity.entity_id)
        shown[entity.entity_id] = {
            "unique_id": entity.unique_id,
            "translation_key": entity.translation_key,
            "device_class": entity.original_device_class,
            "unit": entity.unit_of_measurement,
            "category": entity.entity_category,
            "enabled": entity.disabled_by is None,
            "state": state.state if state else None,
            # The image entity's access token is random per run.
            # Plain names: newer Home Assistant keys attributes by a StrEnum.
            "attributes": {str(k): v for k, v in state.attributes.items() if k not in RANDOM}
            if state
            else None,
        }
    return {
        "devices": sorted(
            (d.name, d.manufacturer, d.model, d.via_device_id is not None) for d in devices
        ),
        "entities": shown,
    }


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_entities(
    hass: HomeAssistant, sim: SimulatorServer, provider: str, snapshot: SnapshotAssertion
) -> None:
    entry = await setup_account(hass, sim, provider)
    assert describe(hass, entry.entry_id) == snapshot
