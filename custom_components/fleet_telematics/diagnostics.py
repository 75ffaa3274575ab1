"""Diagnostics: the account's quota, polling and vehicles, with every secret,
VIN, plate and coordinate redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_PASSWORD, CONF_USERNAME
from homeassistant.core import HomeAssistant

from bridge.model import format_time

from .account import SECRET_FIELDS
from .const import CONF_URL
from .coordinator import runtime

TO_REDACT = {
    *SECRET_FIELDS,
    CONF_USERNAME,
    CONF_PASSWORD,
    CONF_URL,
    # The Metrotec JWT kept between restarts, and anything else token-like.
    "token",
    "token_for",
    # What identifies a vehicle or a person, and where they are.
    "vin",
    "plate",
    "latitude",
    "longitude",
    "address",
    "driver",
    "contact_name",
    "contact_phone",
    "unique_id",
    "name",
    "title",
}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: ConfigEntry
) -> dict[str, Any]:
    coordinator = runtime(entry).coordinator
    return {
        "entry": async_redact_data(
            {"title": entry.title, "data": dict(entry.data), "options": dict(entry.options)},
            TO_REDACT,
        ),
        "provider": coordinator.provider.name,
        "capabilities": sorted(c.value for c in coordinator.provider.capabilities),
        "quota": coordinator.quota.usage(),
        "polling": {
            "last_update_success": coordinator.last_update_success,
            "next_poll": format_time(coordinator.status.next_poll),
            "reason": coordinator.status.reason,
            "failures": coordinator.status.failures,
            "last_error": coordinator.status.last_error,
        },
        # Cursors are opaque and may name vehicles (or hold a token): their size only.
        "checkpoint": {
            key: f"{len(value)} characters"
            for key, value in coordinator.provider.checkpoint().items()
        },
        "vehicles": [
            # Some providers' vehicle ids are licence plates (Metrotec): numbered instead.
            {**async_redact_data(state.to_json(), TO_REDACT), "id": f"vehicle {number}"}
            for number, state in enumerate(coordinator.data.values(), start=1)
        ],
    }
