"""What differs between the Home Assistant versions we support (2024.3 and later).

Each difference is detected by feature, never by version number: a backport or a
rename in a patch release cannot fool a feature check. Everything here is used on
every version; the newer API wherever it exists, so that no deprecation report
(a warning today, an error when the old API is removed) comes from us.
"""

from __future__ import annotations

from typing import Any

from homeassistant.data_entry_flow import FlowHandler
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo

# Home Assistant 2026.x: a device belongs to one config entry (`config_entry_id`),
# identifiers are unique per entry only, and `async_get_device` (ambiguous across
# entries), `DeviceEntry.config_entries` and `DeviceInfo["via_device"]` are
# deprecated for `async_get_device_by_identifier`, `config_entry_id` and
# `via_device_id` (the parent's registry id).
HAS_DEVICE_BY_IDENTIFIER = hasattr(dr.DeviceRegistry, "async_get_device_by_identifier")
HAS_VIA_DEVICE_ID = "via_device_id" in getattr(DeviceInfo, "__annotations__", {})

# Home Assistant 2026.x deprecated the flow's advanced mode (`show_advanced_options`
# then always answers True): options a user rarely needs go in a collapsed section.
_advanced = getattr(FlowHandler, "show_advanced_options", None)
ADVANCED_MODE_DEPRECATED = hasattr(getattr(_advanced, "fget", None), "__wrapped__")


def device_by_identifier(
    hass: Any, identifier: tuple[str, str], config_entry_id: str
) -> dr.DeviceEntry | None:
    """The device of `config_entry_id` with `identifier`, on any version."""
    registry = dr.async_get(hass)
    if HAS_DEVICE_BY_IDENTIFIER:
        lookup = getattr(registry, "async_get_device_by_identifier")  # noqa: B009
        device: dr.DeviceEntry | None = lookup(identifier, config_entry_id)
        return device
    return registry.async_get_device(identifiers={identifier})


def device_entry_ids(device: Any) -> set[str]:
    """The config entries a device belongs to (one since Home Assistant 2026.x)."""
    entry_id = getattr(device, "config_entry_id", None)
    if isinstance(entry_id, str):
        return {entry_id}
    entries: set[str] = device.config_entries
    return entries


def via(info: DeviceInfo, parent: dr.DeviceEntry) -> DeviceInfo:
    """`info` naming `parent` as the device it is reached through."""
    if HAS_VIA_DEVICE_ID:
        info["via_device_id"] = parent.id  # type: ignore[typeddict-unknown-key,unused-ignore]
    else:
        identifier = next(iter(parent.identifiers))
        info["via_device"] = identifier  # type: ignore[typeddict-unknown-key,unused-ignore]
    return info
