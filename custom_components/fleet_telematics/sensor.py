"""Vehicle sensors and the account's quota sensors, from description tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfElectricPotential,
    UnitOfLength,
    UnitOfSpeed,
    UnitOfTemperature,
    UnitOfTime,
    UnitOfVolume,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity
from homeassistant.util import dt as dt_util

from bridge.model import (
    Capability,
    EngineState,
    Priority,
    Problem,
    VehicleState,
    VehicleStatus,
)

from .coordinator import FleetCoordinator, runtime
from .entity import FleetEntity, account_device, add_vehicle_entities, has

PARALLEL_UPDATES = 0  # coordinator-driven: nothing is fetched per entity

StateValue = str | int | float | datetime | None


@dataclass(frozen=True, kw_only=True)
class VehicleSensorDescription(SensorEntityDescription):
    value_fn: Callable[[VehicleState], StateValue]
    requires: frozenset[Capability] = frozenset()


def _enum(value: EngineState | VehicleStatus | Problem | None) -> str | None:
    return value.value if value is not None else None


VEHICLE_SENSORS: tuple[VehicleSensorDescription, ...] = (
    VehicleSensorDescription(
        key="speed",
        translation_key="speed",
        device_class=SensorDeviceClass.SPEED,
        native_unit_of_measurement=UnitOfSpeed.KILOMETERS_PER_HOUR,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        requires=frozenset({Capability.SPEED}),
        value_fn=lambda s: s.speed_kmh,
    ),
    VehicleSensorDescription(
        key="odometer",
        translation_key="odometer",
        device_class=SensorDeviceClass.DISTANCE,
        native_unit_of_measurement=UnitOfLength.KILOMETERS,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=0,
        requires=frozenset({Capability.ODOMETER}),
        value_fn=lambda s: s.odometer_km,
    ),
    VehicleSensorDescription(
        key="fuel_level",
        translation_key="fuel_level",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        requires=frozenset({Capability.FUEL_LEVEL}),
        value_fn=lambda s: s.fuel_percent,
    ),
    VehicleSensorDescription(
        key="fuel_volume",
        translation_key="fuel_volume",
        device_class=SensorDeviceClass.VOLUME_STORAGE,
        native_unit_of_measurement=UnitOfVolume.LITERS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        requires=frozenset({Capability.FUEL_VOLUME}),
        value_fn=lambda s: s.fuel_volume_l,
    ),
    VehicleSensorDescription(
        key="engine_state",
        translation_key="engine_state",
        device_class=SensorDeviceClass.ENUM,
        options=[e.value for e in EngineState],
        requires=frozenset({Capability.ENGINE_STATE}),
        value_fn=lambda s: _enum(s.engine_state),
    ),
    VehicleSensorDescription(
        key="battery_voltage",
        translation_key="battery_voltage",
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        requires=frozenset({Capability.BATTERY_VOLTAGE}),
        value_fn=lambda s: s.battery_voltage,
    ),
    VehicleSensorDescription(
        key="engine_hours",
        translation_key="engine_hours",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.HOURS,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=1,
        requires=frozenset({Capability.ENGINE_HOURS}),
        value_fn=lambda s: s.engine_hours,
    ),
    VehicleSensorDescription(
        key="engine_temperature",
        translation_key="engine_temperature",
        # Of interest to few; enabled from the entity's settings.
        entity_registry_enabled_default=False,
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        requires=frozenset({Capability.ENGINE_TEMPERATURE}),
        value_fn=lambda s: s.engine_temperature_c,
    ),
    VehicleSensorDescription(
        key="rpm",
        translation_key="rpm",
        # Of interest to few; enabled from the entity's settings.
        entity_registry_enabled_default=False,
        native_unit_of_measurement="rpm",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        requires=frozenset({Capability.RPM}),
        value_fn=lambda s: s.rpm,
    ),
    VehicleSensorDescription(
        key="device_battery",
        translation_key="device_battery",
        # Of interest to few; enabled from the entity's settings.
        entity_registry_enabled_default=False,
        device_class=SensorDeviceClass.VOLTAGE,
        native_unit_of_measurement=UnitOfElectricPotential.VOLT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        requires=frozenset({Capability.DEVICE_BATTERY}),
        value_fn=lambda s: s.device_battery_voltage,
    ),
    VehicleSensorDescription(
        key="status",
        translation_key="status",
        device_class=SensorDeviceClass.ENUM,
        options=[e.value for e in VehicleStatus],
        requires=frozenset({Capability.STATUS}),
        value_fn=lambda s: _enum(s.status),
    ),
    VehicleSensorDescription(
        key="problem",
        translation_key="problem",
        device_class=SensorDeviceClass.ENUM,
        options=[e.value for e in Problem],
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        requires=frozenset({Capability.PROBLEM}),
        value_fn=lambda s: _enum(s.problem),
    ),
    VehicleSensorDescription(
        key="risk_score",
        translation_key="risk_score",
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        requires=frozenset({Capability.RISK_SCORE}),
        value_fn=lambda s: s.risk_score,
    ),
    VehicleSensorDescription(
        key="active_tasks",
        translation_key="active_tasks",
        state_class=SensorStateClass.MEASUREMENT,
        requires=frozenset({Capability.TASKS}),
        value_fn=lambda s: s.active_tasks,
    ),
    VehicleSensorDescription(
        key="current_task",
        translation_key="current_task",
        requires=frozenset({Capability.TASKS}),
        value_fn=lambda s: s.current_task,
    ),
    VehicleSensorDescription(
        key="last_seen",
        translation_key="last_seen",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        # Diagnostics are enabled from the entity's settings by those who want them.
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.last_seen,
    ),
    VehicleSensorDescription(
        key="data_age",
        translation_key="data_age",
        # Seconds since the provider's last report, recomputed at every poll (polls
        # go on while a vehicle is silent, so stale data never passes for live).
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: _age(s.last_seen),
    ),
)


def _age(seen: datetime | None) -> int | None:
    if seen is None:
        return None
    return max(0, round((dt_util.utcnow() - seen).total_seconds()))


@dataclass(frozen=True, kw_only=True)
class AccountSensorDescription(SensorEntityDescription):
    value_fn: Callable[[FleetCoordinator], StateValue]


ACCOUNT_SENSORS: tuple[AccountSensorDescription, ...] = (
    AccountSensorDescription(
        key="calls_left_today",
        translation_key="calls_left_today",
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.MEASUREMENT,
        # Providers without a daily budget (Samsara: per-second windows) have none.
        value_fn=lambda c: c.quota.calls_left_today(Priority.POLL),
    ),
    AccountSensorDescription(
        key="next_poll",
        translation_key="next_poll",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda c: c.status.next_poll,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: ConfigEntry, async_add_entities: AddEntitiesCallback
) -> None:
    coordinator = runtime(entry).coordinator
    account: list[SensorEntity] = [
        AccountSensor(coordinator, description)
        for description in ACCOUNT_SENSORS
        if description.key != "calls_left_today" or coordinator.quota.daily_budget()
    ]
    async_add_entities(account)
    descriptions = [d for d in VEHICLE_SENSORS if has(coordinator, d.requires)]
    add_vehicle_entities(
        coordinator,
        async_add_entities,
        lambda vid: [VehicleSensor(coordinator, vid, d) for d in descriptions],
    )


class VehicleSensor(FleetEntity, SensorEntity):
    entity_description: VehicleSensorDescription

    def __init__(
        self,
        coordinator: FleetCoordinator,
        vehicle_id: str,
        description: VehicleSensorDescription,
    ) -> None:
        super().__init__(coordinator, vehicle_id, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> StateValue:
        state = self.vehicle
        return None if state is None else self.entity_description.value_fn(state)


class AccountSensor(CoordinatorEntity[FleetCoordinator], SensorEntity):
    _attr_has_entity_name = True
    entity_description: AccountSensorDescription

    def __init__(
        self, coordinator: FleetCoordinator, description: AccountSensorDescription
    ) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{coordinator.account}_{description.key}"
        self._attr_device_info = account_device(coordinator)

    @property
    def available(self) -> bool:
        # Quota figures stay true while polls fail: they say when the next try is.
        return True

    @property
    def native_value(self) -> StateValue:
        return self.entity_description.value_fn(self.coordinator)
