"""From a config entry to a provider client and its quota (the bridge core).

Each provider's credential fields, how they become the core's settings
dataclass, the budgets that apply and the scopes they are counted in. Nothing
here talks to Home Assistant's UI; the config flow and the coordinator both build
their client from here, so the one call the flow makes to check credentials is
counted by the same quota ledger the coordinator polls with.

Every entry of one Home Assistant calls from one address: the egress is always
the shared default, so two FLEETIZE entries share FLEETIZE's 60 s spacing (and
take turns, `bridge.quota`), and two entries with one token share its budgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bridge.model import Capability, utc_now
from bridge.planner import Cadence
from bridge.providers import (
    create_provider,
    default_budgets,
    fleetize,
    metrotec,
    telemax,
    tracksafe365,
)
from bridge.providers.base import Provider
from bridge.providers.fleetize import FleetizeSettings
from bridge.providers.metrotec import MetrotecSettings
from bridge.providers.samsara import BASE_URLS, SamsaraSettings
from bridge.providers.telemax import TelemaxSettings
from bridge.providers.tracksafe365 import (
    TracksafeSettings,
    effective_plan,
    plan_budgets,
)
from bridge.quota import Budget, Quota, QuotaBook, QuotaLedger, Scopes, apply_overrides

from .const import (
    CONF_ADAPTIVE,
    CONF_API_KEY,
    CONF_INTERVAL,
    CONF_PASSWORD,
    CONF_PLAN,
    CONF_PROVIDER,
    CONF_REGION,
    CONF_RESERVE,
    CONF_TOKEN,
    CONF_URL,
    CONF_USERNAME,
    DEFAULT_ADAPTIVE,
    DEFAULT_INTERVAL,
    DEFAULT_RESERVE,
)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What the config flow asks for, per provider."""

    name: str
    title: str
    #: Credential fields, all required (Metrotec: see `alternatives`).
    secrets: tuple[str, ...]
    #: Metrotec takes a username and password, or an API key.
    alternatives: tuple[tuple[str, ...], ...] = ()
    #: Choices the provider has (Samsara's region, TrackSafe365's plan).
    choices: Mapping[str, tuple[str, ...]] | None = None


PROVIDERS: dict[str, ProviderSpec] = {
    "samsara": ProviderSpec(
        "samsara", "Samsara", (CONF_TOKEN,), choices={CONF_REGION: tuple(BASE_URLS)}
    ),
    "fleetize": ProviderSpec("fleetize", "FLEETIZE", (CONF_TOKEN,)),
    "telemax": ProviderSpec("telemax", "Telemax", (CONF_API_KEY,)),
    "metrotec": ProviderSpec(
        "metrotec",
        "Metrotec",
        (),
        alternatives=((CONF_USERNAME, CONF_PASSWORD), (CONF_API_KEY,)),
    ),
    "tracksafe365": ProviderSpec(
        "tracksafe365",
        "TrackSafe365",
        (CONF_API_KEY,),
        # Enterprise limits are custom: such accounts pick growth, the largest
        # published one, and lower the reserve if they need more.
        choices={CONF_PLAN: ("starter", "growth")},
    ),
}

#: Every credential field: redacted in diagnostics, never logged.
SECRET_FIELDS = frozenset({CONF_TOKEN, CONF_API_KEY, CONF_PASSWORD})


def settings_for(data: Mapping[str, Any]) -> Any:
    """The core's settings dataclass for a config entry's data."""
    provider = data[CONF_PROVIDER]
    url = data.get(CONF_URL)
    if provider == "samsara":
        base = url or BASE_URLS[data.get(CONF_REGION) or "us"]
        return SamsaraSettings(token=data[CONF_TOKEN], base_url=base)
    if provider == "fleetize":
        return FleetizeSettings(token=data[CONF_TOKEN], base_url=url or fleetize.BASE_URL)
    if provider == "telemax":
        return TelemaxSettings(api_key=data[CONF_API_KEY], base_url=url or telemax.BASE_URL)
    if provider == "metrotec":
        return MetrotecSettings(
            username=data.get(CONF_USERNAME) or None,
            password=data.get(CONF_PASSWORD) or None,
            api_key=data.get(CONF_API_KEY) or None,
            base_url=url or metrotec.BASE_URL,
        )
    if provider == "tracksafe365":
        # A simulator or proxy serves both environments; the key's prefix picks one.
        return TracksafeSettings(
            api_key=data[CONF_API_KEY],
            plan=data.get(CONF_PLAN),
            base_url=url or tracksafe365.PRODUCTION_URL,
            sandbox_url=url or tracksafe365.SANDBOX_URL,
        )
    raise ValueError(f"unknown provider {provider!r}")


def names_the_account(data: Mapping[str, Any]) -> bool:
    """Whether `Provider.validate` names the account itself (Telemax's company, a
    Metrotec user) rather than a fingerprint of the secret. Only then can new
    credentials be checked to belong to the same account: a new Samsara,
    FLEETIZE or TrackSafe365 token has a new fingerprint whoever owns it."""
    provider = data[CONF_PROVIDER]
    return provider == "telemax" or (provider == "metrotec" and bool(data.get(CONF_USERNAME)))


def budgets_for(data: Mapping[str, Any], options: Mapping[str, Any]) -> tuple[Budget, ...]:
    """The provider's published limits, with the user's polling reserve."""
    provider = data[CONF_PROVIDER]
    defaults: tuple[Budget, ...] = default_budgets(provider)
    if provider == "tracksafe365":
        plan = effective_plan(data[CONF_API_KEY], data.get(CONF_PLAN))
        defaults = plan_budgets(plan) or defaults
    return apply_overrides(defaults, {}, reserve=options.get(CONF_RESERVE, DEFAULT_RESERVE))


def cadence_for(options: Mapping[str, Any]) -> Cadence:
    return Cadence(
        interval=float(options.get(CONF_INTERVAL, DEFAULT_INTERVAL)),
        adaptive=bool(options.get(CONF_ADAPTIVE, DEFAULT_ADAPTIVE)),
    )


def scopes_for(data: Mapping[str, Any]) -> Scopes:
    """Where the entry's budgets are counted: by its credentials, from the one
    address of this Home Assistant (Metrotec: the user, or the API key)."""
    provider = data[CONF_PROVIDER]
    credential = next(
        str(data[name]) for name in (CONF_TOKEN, CONF_API_KEY, CONF_USERNAME) if data.get(name)
    )
    return Scopes.of(provider, credential)


def quota_book(ledger: QuotaLedger) -> QuotaBook:
    """The in-memory view shared by everything that spends from `ledger`."""
    book = getattr(ledger, "book", None)
    return book if isinstance(book, QuotaBook) else QuotaBook(ledger)


def build_client(
    session: aiohttp.ClientSession,
    data: Mapping[str, Any],
    options: Mapping[str, Any],
    ledger: QuotaLedger,
    account: str,
) -> tuple[Provider, Quota]:
    """A provider client whose every call goes through the account's quota."""
    # Looked up at each call so that tests can run the account on a simulated clock.
    quota = Quota(
        account,
        budgets_for(data, options),
        quota_book(ledger),
        scopes=scopes_for(data),
        now=lambda: utc_now(),
    )
    provider = create_provider(data[CONF_PROVIDER], session, settings_for(data), quota)
    return provider, quota


def capabilities(provider: Provider) -> frozenset[Capability]:
    return provider.capabilities
