"""Provider clients, one module each, and the registry that names them."""

from __future__ import annotations

from typing import Any

import aiohttp

from bridge.providers.base import Provider
from bridge.providers.fleetize import FleetizeProvider, FleetizeSettings
from bridge.providers.metrotec import MetrotecProvider, MetrotecSettings
from bridge.providers.samsara import SamsaraProvider, SamsaraSettings
from bridge.providers.telemax import TelemaxProvider, TelemaxSettings
from bridge.providers.tracksafe365 import TracksafeProvider, TracksafeSettings
from bridge.quota import Budget, Quota

# provider name (the `provider:` value in config) -> (client class, settings class)
REGISTRY: dict[str, tuple[type[Any], type[Any]]] = {
    SamsaraProvider.name: (SamsaraProvider, SamsaraSettings),
    FleetizeProvider.name: (FleetizeProvider, FleetizeSettings),
    TelemaxProvider.name: (TelemaxProvider, TelemaxSettings),
    MetrotecProvider.name: (MetrotecProvider, MetrotecSettings),
    TracksafeProvider.name: (TracksafeProvider, TracksafeSettings),
}


def create_provider(
    name: str, session: aiohttp.ClientSession, settings: Any, quota: Quota | None = None
) -> Provider:
    """The client for one account; `settings` is that provider's settings dataclass."""
    try:
        client_class, settings_class = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}") from None
    if not isinstance(settings, settings_class):
        raise TypeError(f"{name} expects {settings_class.__name__}")
    provider: Provider = client_class(session, settings, quota)
    return provider


def default_budgets(name: str) -> tuple[Budget, ...]:
    budgets: tuple[Budget, ...] = REGISTRY[name][0].default_budgets
    return budgets
