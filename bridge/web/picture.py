"""What the dashboard shows of one vehicle and one account, built from the bridge's state.

Rows are small flat dicts with short keys: 10,000 vehicles go to a browser in
one snapshot and every changed one again in each diff, so each byte counts
about 10,000 times. The page (static/app.js) reads the same keys.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.commander import ABILITY
from bridge.config import BridgeConfig
from bridge.model import VehicleState, format_time
from bridge.mqtt.topics import topic_level
from bridge.poller import AccountPoller, AccountStatus

if TYPE_CHECKING:
    from bridge.app import Bridge

Row = dict[str, Any]

#: The commands the page offers, in the order of its buttons.
PAGE_COMMANDS = ("lights", "snapshot", "task/create")


class MapState(enum.StrEnum):
    """A vehicle's colour on the map."""

    MOVING = "moving"
    PARKED = "parked"  # standing still, or no speed reported
    OFFLINE = "offline"  # no report for `offline_after`, or the provider says so
    STALE = "stale"  # the account's data is too old to trust (docs/reliability.md)


def classify(state: VehicleState, account_stale: bool) -> MapState:
    if account_stale:
        return MapState.STALE
    if state.online is False:
        return MapState.OFFLINE
    if state.moving:
        return MapState.MOVING
    return MapState.PARKED


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def vehicle_row(account: str, state: VehicleState, account_stale: bool) -> Row:
    """One vehicle as the map and the table show it."""
    pos = state.position
    return {
        "k": f"{account}/{state.vehicle_id}",
        "a": account,
        "id": state.vehicle_id,
        "n": state.name,
        # 6 decimals: 0.1 m, more than any tracker's accuracy.
        "la": _round(pos.latitude, 6) if pos else None,
        "lo": _round(pos.longitude, 6) if pos else None,
        "hd": _round(pos.heading, 0) if pos else None,
        "sp": _round(state.speed_kmh, 1),
        "f": _round(state.fuel_percent, 1),
        "st": classify(state, account_stale).value,
        "ls": None if state.last_seen is None else round(state.last_seen.timestamp(), 1),
        "li": state.lights_on,
    }


def account_stale(poller: AccountPoller) -> bool:
    """The account's vehicles show as unavailable: data too old, or polling stopped."""
    return poller.stale or poller.health.status is AccountStatus.STOPPED


def provider_commands(poller: AccountPoller) -> list[str]:
    """The commands the account's provider can carry out at all."""
    return [name for name in PAGE_COMMANDS if isinstance(poller.provider, ABILITY[name])]


def allowed_commands(config: BridgeConfig, poller: AccountPoller, state: VehicleState) -> list[str]:
    """What the page offers for a vehicle: what its provider can do and
    `commands.allow` permits. Only for display: the commander decides again on
    every command (bridge/commander.py `_target`), whatever the page sent."""
    names = {state.vehicle_id, state.name, topic_level(state.vehicle_id)}
    return [
        name
        for name in provider_commands(poller)
        if config.commands.allows(poller.account, state.vehicle_id, names, name)
    ]


def account_row(
    poller: AccountPoller,
    *,
    name: str | None,
    quota: Mapping[str, object],
    holder: str,
    redact: Callable[[str], str],
) -> Row:
    """One account's line: status, quota (the payload of its quota topic), plan."""
    health = poller.health
    return {
        "id": poller.account,
        "name": name,
        "provider": poller.provider.name,
        "status": health.status.value,
        "stale": account_stale(poller),
        "vehicles": health.vehicles,
        "polls": health.polls,
        "failures": health.failures,
        # Provider error texts can quote a URL with a key in it: redacted.
        "error": None if health.last_error is None else redact(health.last_error),
        "next_poll": format_time(health.next_poll),
        "reason": health.plan_reason,
        "quota": dict(quota),
        "instance": holder,
        "commands": provider_commands(poller),
    }


# --- which instance holds which account ------------------------------------------


def this_instance(config: BridgeConfig) -> str:
    """This bridge instance's name: its MQTT client id (unique per broker), and host."""
    return f"{config.mqtt.client_id}@{socket.gethostname()}"


def account_holders(bridge: Bridge) -> dict[str, str]:
    """The instance holding each account this dashboard shows.

    Alone, every account is this instance's. With several instances on one
    PostgreSQL (docs/scaling.md), each dashboard shows the accounts its own
    instance holds now, named by the instance id its leases carry."""
    cluster = bridge.cluster
    instance = cluster.instance if cluster is not None else this_instance(bridge.config)
    return dict.fromkeys(bridge.pollers, instance)
