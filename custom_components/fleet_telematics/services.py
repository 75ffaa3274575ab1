"""The integration's actions: create_task, update_task, request_snapshot,
set_lights and refresh. Every field is validated before anything is sent."""

from __future__ import annotations

from typing import Any

try:
    # Home Assistant 2026.x validates with probatio (voluptuous's API; `voluptuous`
    # is an alias of it there): typed against what Home Assistant expects.
    import probatio as vol  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # older Home Assistant: voluptuous itself
    import voluptuous as vol  # type: ignore[import-untyped,no-redef,unused-ignore]
from homeassistant.config_entries import ConfigEntry, ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.update_coordinator import UpdateFailed
from homeassistant.util import dt as dt_util

from bridge.errors import ProviderError, QuotaExhaustedError
from bridge.model import Camera, Task, TaskChange, TaskStatus

from . import commands
from .compat import device_entry_ids
from .const import (
    DOMAIN,
    SERVICE_CREATE_TASK,
    SERVICE_REFRESH,
    SERVICE_REQUEST_SNAPSHOT,
    SERVICE_SET_LIGHTS,
    SERVICE_UPDATE_TASK,
)
from .coordinator import FleetCoordinator, runtime
from .entity import vehicle_id_of

ATTR_DEVICE_ID = "device_id"
ATTR_CONFIG_ENTRY_ID = "config_entry_id"


# A time without a zone is Home Assistant's local time (as_utc reads it so).
_TIME = vol.All(cv.datetime, dt_util.as_utc)

CREATE_TASK_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Required("order_ref"): vol.All(cv.string, vol.Length(min=1, max=64)),
        vol.Required("latitude"): cv.latitude,
        vol.Required("longitude"): cv.longitude,
        vol.Required("start_time"): _TIME,
        vol.Required("stop_time"): _TIME,
        vol.Optional("description"): cv.string,
        vol.Optional("address"): cv.string,
        vol.Optional("contact_name"): cv.string,
        vol.Optional("contact_phone"): cv.string,
    }
)
UPDATE_TASK_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Required("order_ref"): vol.All(cv.string, vol.Length(min=1, max=64)),
        vol.Optional("status"): vol.In([s.value for s in TaskStatus]),
        vol.Optional("start_time"): _TIME,
        vol.Optional("stop_time"): _TIME,
        vol.Optional("description"): cv.string,
    }
)
SNAPSHOT_SCHEMA = vol.Schema(
    {
        vol.Required(ATTR_DEVICE_ID): cv.string,
        vol.Optional("camera", default=Camera.ROAD.value): vol.In([c.value for c in Camera]),
    }
)
LIGHTS_SCHEMA = vol.Schema(
    {vol.Required(ATTR_DEVICE_ID): cv.string, vol.Required("on"): cv.boolean}
)
REFRESH_SCHEMA = vol.Schema({vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string})


def _validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        " ".join([key.replace("_", " "), *placeholders.values()]),
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders,
    )


def _vehicle(hass: HomeAssistant, device_id: str) -> tuple[FleetCoordinator, str]:
    """The account and vehicle id of a vehicle device, or a translated error."""
    device = dr.async_get(hass).async_get(device_id)
    if device is None:
        raise _validation_error("unknown_device", device_id=device_id)
    for entry_id in device_entry_ids(device):
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            continue
        vehicle = vehicle_id_of(entry, device)
        if vehicle is None:
            break  # the account's own device, not a vehicle
        if entry.state is not ConfigEntryState.LOADED:
            raise _validation_error("account_not_loaded", account=entry.title)
        coordinator = runtime(entry).coordinator
        if vehicle not in coordinator.data:
            raise _validation_error("vehicle_gone", vehicle=device.name or vehicle)
        return coordinator, vehicle
    raise _validation_error("not_a_vehicle", device=device.name or device_id)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    async def create_task(call: ServiceCall) -> ServiceResponse:
        coordinator, vehicle = _vehicle(hass, call.data[ATTR_DEVICE_ID])
        start, stop = call.data["start_time"], call.data["stop_time"]
        if stop <= start:
            raise _validation_error("stop_before_start")
        task = Task(
            vehicle_id=vehicle,
            order_ref=call.data["order_ref"],
            latitude=call.data["latitude"],
            longitude=call.data["longitude"],
            start_time=start,
            stop_time=stop,
            description=call.data.get("description"),
            address=call.data.get("address"),
            contact_name=call.data.get("contact_name"),
            contact_phone=call.data.get("contact_phone"),
        )
        result = await commands.create_task(coordinator, task)
        return commands.result_data(result)

    async def update_task(call: ServiceCall) -> ServiceResponse:
        coordinator, _ = _vehicle(hass, call.data[ATTR_DEVICE_ID])
        changes = {
            k: call.data[k] for k in ("start_time", "stop_time", "description") if k in call.data
        }
        status = call.data.get("status")
        if not changes and status is None:
            raise _validation_error("nothing_to_update")
        start, stop = changes.get("start_time"), changes.get("stop_time")
        if start is not None and stop is not None and stop <= start:
            raise _validation_error("stop_before_start")
        change = TaskChange(
            order_ref=call.data["order_ref"],
            status=TaskStatus(status) if status else None,
            # The device names the account; the task stays on its vehicle.
            **changes,
        )
        result = await commands.update_task(coordinator, change)
        return commands.result_data(result)

    async def request_snapshot(call: ServiceCall) -> ServiceResponse:
        coordinator, vehicle = _vehicle(hass, call.data[ATTR_DEVICE_ID])
        result = await commands.request_snapshot(coordinator, vehicle, Camera(call.data["camera"]))
        return commands.result_data(result)

    async def set_lights(call: ServiceCall) -> ServiceResponse:
        coordinator, vehicle = _vehicle(hass, call.data[ATTR_DEVICE_ID])
        result = await commands.set_lights(coordinator, vehicle, call.data["on"])
        return commands.result_data(result)

    async def refresh(call: ServiceCall) -> ServiceResponse:
        entries = _entries(hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
        vehicles: dict[str, Any] = {}
        for entry in entries:
            coordinator = runtime(entry).coordinator
            try:
                vehicles[entry.title] = await coordinator.async_refresh_now()
            except QuotaExhaustedError as err:
                raise commands.quota_error(err) from err
            except (ProviderError, UpdateFailed, HomeAssistantError) as err:
                raise commands.provider_error(coordinator, err) from err
        return {"vehicles": vehicles}

    for name, handler, schema in (
        (SERVICE_CREATE_TASK, create_task, CREATE_TASK_SCHEMA),
        (SERVICE_UPDATE_TASK, update_task, UPDATE_TASK_SCHEMA),
        (SERVICE_REQUEST_SNAPSHOT, request_snapshot, SNAPSHOT_SCHEMA),
        (SERVICE_SET_LIGHTS, set_lights, LIGHTS_SCHEMA),
        (SERVICE_REFRESH, refresh, REFRESH_SCHEMA),
    ):
        hass.services.async_register(
            DOMAIN, name, handler, schema=schema, supports_response=SupportsResponse.OPTIONAL
        )


def _entries(hass: HomeAssistant, entry_id: str | None) -> list[ConfigEntry]:
    if entry_id is None:
        entries = [
            e
            for e in hass.config_entries.async_entries(DOMAIN)
            if e.state is ConfigEntryState.LOADED
        ]
        if not entries:
            raise _validation_error("no_loaded_account")
        return entries
    entry = hass.config_entries.async_get_entry(entry_id)
    if entry is None or entry.domain != DOMAIN:
        raise _validation_error("unknown_account", entry_id=entry_id)
    if entry.state is not ConfigEntryState.LOADED:
        raise _validation_error("account_not_loaded", account=entry.title)
    return [entry]
