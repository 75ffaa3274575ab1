"""The config, reauth, reconfigure and options flows, against the real simulators.

Each test drives the flow as the frontend does and checks what a user sees: the
form's errors and placeholders, the abort reason, the entry's title, data and
options. Provider calls go over HTTP to `SimulatorServer` on 127.0.0.1, so an
error on a form is the provider's own answer (or the quota's refusal to ask).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
import voluptuous as vol  # type: ignore[import-untyped,unused-ignore]
from fixtures_sim import (  # noqa: F401 - `sim_fixture` is the `sim` fixture
    FLEETIZE_OTHER_TOKEN,
    FLEETIZE_TOKEN,
    METROTEC_KEY,
    METROTEC_PASSWORD,
    METROTEC_USER,
    REPO_ROOT,
    SAMSARA_OTHER_TOKEN,
    SAMSARA_TOKEN,
    TELEMAX_KEY,
    TELEMAX_SECOND_KEY,
    TRACKSAFE_KEY,
    TRACKSAFE_NO_FLEET_KEY,
    closed_port_url,
    sim_fixture,
)
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (  # type: ignore[import-untyped,unused-ignore]
    MockConfigEntry,
)

from bridge.errors import QuotaExhaustedError
from bridge.providers.fleetize import FleetizeProvider
from bridge.providers.parse import fingerprint
from bridge.simulator.server import SimulatorServer
from custom_components.fleet_telematics.account import PROVIDERS, build_client
from custom_components.fleet_telematics.compat import ADVANCED_MODE_DEPRECATED
from custom_components.fleet_telematics.config_flow import EPOCH, SECTION_ADVANCED
from custom_components.fleet_telematics.const import (
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
    DOMAIN,
    ISSUE_TOKEN_BLOCKED,
)
from custom_components.fleet_telematics.store import LEDGER_KEY, AccountStore, async_get_store
from fleet_sim import as_form

DEFAULTS = {
    CONF_RESERVE: DEFAULT_RESERVE,
    CONF_ADAPTIVE: DEFAULT_ADAPTIVE,
    CONF_INTERVAL: DEFAULT_INTERVAL,
}
# Near midnight "in 61 s" is tomorrow: then the date is shown too.
TIME_OR_DATE = re.compile(r"^(\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d)$")


@pytest.fixture(autouse=True)
async def _integration(
    hass: HomeAssistant, enable_custom_integrations: None
) -> AsyncIterator[None]:
    """The integration's setup is tested elsewhere: entries load as no-ops."""
    with (
        patch(f"custom_components.{DOMAIN}.async_setup_entry", return_value=True),
        patch(f"custom_components.{DOMAIN}.async_unload_entry", return_value=True),
    ):
        yield
        # Unloaded here, or Home Assistant's shutdown would run the real unload.
        for entry in hass.config_entries.async_entries(DOMAIN):
            if entry.state is ConfigEntryState.LOADED:
                await hass.config_entries.async_unload(entry.entry_id)


# --- helpers ------------------------------------------------------------------------------
def _later(seconds: float) -> Any:
    """The quota's clock `seconds` ahead (the flows' quota runs on real time here)."""
    return lambda: dt_util.utcnow() + timedelta(seconds=seconds)


async def options_init(hass: HomeAssistant, entry_id: str) -> dict[str, Any]:
    return dict(await hass.config_entries.options.async_init(entry_id))


async def options_configure(
    hass: HomeAssistant, flow_id: str, user_input: dict[str, Any]
) -> dict[str, Any]:
    return dict(await hass.config_entries.options.async_configure(flow_id, user_input))


async def configure(
    hass: HomeAssistant, flow_id: str, user_input: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The next step of a config flow, as a plain dict (what the frontend gets)."""
    return dict(await hass.config_entries.flow.async_configure(flow_id, as_form(user_input)))


async def choose(hass: HomeAssistant, provider: str, *, advanced: bool = True) -> dict[str, Any]:
    """A new flow, past the provider choice: the credentials form."""
    result: dict[str, Any] = await hass.config_entries.flow.async_init(  # type: ignore[assignment]
        DOMAIN,
        context={"source": config_entries.SOURCE_USER, "show_advanced_options": advanced},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    result = await configure(hass, result["flow_id"], {CONF_PROVIDER: provider})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "credentials"
    return result


async def add(hass: HomeAssistant, provider: str, user_input: dict[str, Any]) -> dict[str, Any]:
    """One pass through the flow, the credentials submitted once."""
    form = await choose(hass, provider)
    result = await configure(hass, form["flow_id"], user_input)
    await hass.async_block_till_done()
    return result


def fleetize_input(sim: SimulatorServer, token: str = FLEETIZE_TOKEN) -> dict[str, Any]:
    return {CONF_TOKEN: token, CONF_URL: sim.fleetize_url}


def samsara_input(sim: SimulatorServer, token: str = SAMSARA_TOKEN) -> dict[str, Any]:
    return {CONF_TOKEN: token, CONF_REGION: "us", CONF_URL: sim.samsara_url}


def fields(result: dict[str, Any]) -> dict[str, Any]:
    """A form's fields by name, those of its sections (collapsed) included."""
    found: dict[str, Any] = {}
    for key, value in result["data_schema"].schema.items():
        inner = getattr(getattr(value, "schema", None), "schema", None)
        if str(key) == SECTION_ADVANCED and isinstance(inner, dict):
            found.update({str(k): k for k in inner})
        else:
            found[str(key)] = key
    return found


def schema_keys(result: dict[str, Any]) -> set[str]:
    return set(fields(result))


def entry_of(hass: HomeAssistant, result: dict[str, Any]) -> config_entries.ConfigEntry:
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    entry = result["result"]
    assert isinstance(entry, config_entries.ConfigEntry)
    return entry


async def reconfigure(hass: HomeAssistant, entry: config_entries.ConfigEntry) -> dict[str, Any]:
    # Home Assistant 2024.4+ starts this from the entry's menu; 2024.3 has no
    # button, the step is reached the same way by source.
    return dict(
        await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": "reconfigure", "entry_id": entry.entry_id}
        )
    )


async def reauth(hass: HomeAssistant, entry: config_entries.ConfigEntry) -> dict[str, Any]:
    """The reauth flow Home Assistant starts for the entry, at its first form."""
    entry.async_start_reauth(hass)
    await hass.async_block_till_done()
    flows = [
        flow
        for flow in hass.config_entries.flow.async_progress()
        if flow["context"]["source"] == config_entries.SOURCE_REAUTH
    ]
    assert len(flows) == 1
    assert flows[0]["step_id"] == "reauth_confirm"
    return dict(flows[0])


def mock_entry(hass: HomeAssistant, data: dict[str, Any], unique_id: str) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN, title="account", data=data, options=DEFAULTS, unique_id=unique_id
    )
    entry.add_to_hass(hass)
    return entry


# --- the user flow: one happy path per provider --------------------------------------------
@pytest.mark.parametrize(
    ("provider", "user_input", "title", "data"),
    [
        (
            "samsara",
            lambda sim: {
                CONF_TOKEN: f" {SAMSARA_TOKEN}\n",
                CONF_REGION: "eu",
                CONF_URL: sim.samsara_url + "/",
            },
            "Samsara (eu)",
            lambda sim: {CONF_TOKEN: SAMSARA_TOKEN, CONF_REGION: "eu", CONF_URL: sim.samsara_url},
        ),
        (
            "fleetize",
            fleetize_input,
            "FLEETIZE",
            lambda sim: {CONF_TOKEN: FLEETIZE_TOKEN, CONF_URL: sim.fleetize_url},
        ),
        (
            "telemax",
            lambda sim: {CONF_API_KEY: TELEMAX_KEY, CONF_URL: sim.telemax_url},
            "Telemax",
            lambda sim: {CONF_API_KEY: TELEMAX_KEY, CONF_URL: sim.telemax_url},
        ),
        (
            "metrotec",
            lambda sim: {
                CONF_USERNAME: METROTEC_USER,
                CONF_PASSWORD: METROTEC_PASSWORD,
                CONF_URL: sim.metrotec_url,
            },
            "Metrotec",
            lambda sim: {
                CONF_USERNAME: METROTEC_USER,
                CONF_PASSWORD: METROTEC_PASSWORD,
                CONF_URL: sim.metrotec_url,
            },
        ),
        (
            "metrotec",
            # A stray username without a password is not an alternative: the key is.
            lambda sim: {CONF_USERNAME: "", CONF_API_KEY: METROTEC_KEY, CONF_URL: sim.metrotec_url},
            "Metrotec",
            lambda sim: {CONF_API_KEY: METROTEC_KEY, CONF_URL: sim.metrotec_url},
        ),
        (
            "tracksafe365",
            lambda sim: {
                CONF_API_KEY: TRACKSAFE_KEY,
                CONF_PLAN: "growth",
                CONF_URL: sim.tracksafe365_url,
            },
            "TrackSafe365",
            lambda sim: {
                CONF_API_KEY: TRACKSAFE_KEY,
                CONF_PLAN: "growth",
                CONF_URL: sim.tracksafe365_url,
            },
        ),
    ],
    ids=["samsara", "fleetize", "telemax", "metrotec-password", "metrotec-key", "tracksafe365"],
)
async def test_add_account(
    hass: HomeAssistant,
    sim: SimulatorServer,
    provider: str,
    user_input: Any,
    title: str,
    data: Any,
) -> None:
    result = await add(hass, provider, user_input(sim))

    entry = entry_of(hass, result)
    assert entry.title == title
    assert dict(entry.data) == {CONF_PROVIDER: provider, **data(sim)}
    assert dict(entry.options) == DEFAULTS
    assert entry.unique_id is not None
    assert re.fullmatch(r"[0-9a-f]{16}", entry.unique_id)
    assert entry.state is ConfigEntryState.LOADED


async def test_provider_choice_and_forms(hass: HomeAssistant) -> None:
    """The first form offers every provider; each asks for its own fields; the
    server field is an advanced option."""
    result: dict[str, Any] = await hass.config_entries.flow.async_init(  # type: ignore[assignment]
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    selector = result["data_schema"].schema[CONF_PROVIDER]
    assert selector.config["options"] == list(PROVIDERS)
    assert selector.config["translation_key"] == CONF_PROVIDER

    expected = {
        "samsara": {CONF_TOKEN, CONF_REGION},
        "fleetize": {CONF_TOKEN},
        "telemax": {CONF_API_KEY},
        "metrotec": {CONF_USERNAME, CONF_PASSWORD, CONF_API_KEY},
        "tracksafe365": {CONF_API_KEY, CONF_PLAN},
    }
    for provider, names in expected.items():
        if ADVANCED_MODE_DEPRECATED:
            # Advanced mode is gone: the URL is in a collapsed section for everyone.
            for advanced in (False, True):
                form = await choose(hass, provider, advanced=advanced)
                assert schema_keys(form) == names | {CONF_URL}
                assert form["data_schema"].schema[SECTION_ADVANCED].options["collapsed"]
            continue
        assert schema_keys(await choose(hass, provider, advanced=False)) == names
        assert schema_keys(await choose(hass, provider)) == names | {CONF_URL}
    form = await choose(hass, "samsara")
    assert form["description_placeholders"] == {"provider": "Samsara"}
    region = form["data_schema"].schema[CONF_REGION]
    assert region.config["options"] == ["us", "eu"]


# --- errors on the form --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "user_input"),
    [
        ("samsara", lambda sim: samsara_input(sim, "wrong-token")),
        ("fleetize", lambda sim: fleetize_input(sim, "wrong-token")),
        (
            "metrotec",
            lambda sim: {
                CONF_USERNAME: METROTEC_USER,
                CONF_PASSWORD: "wrong-password",
                CONF_URL: sim.metrotec_url,
            },
        ),
    ],
    ids=["samsara-401", "fleetize-1000", "metrotec-login"],
)
async def test_invalid_auth(
    hass: HomeAssistant,
    sim: SimulatorServer,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    user_input: Any,
) -> None:
    caplog.set_level("DEBUG")
    result = await add(hass, provider, user_input(sim))

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    assert "wrong-token" not in caplog.text
    assert "wrong-password" not in caplog.text


async def test_token_blocked(hass: HomeAssistant, sim: SimulatorServer) -> None:
    sim.fleetize.quota.blocked.add(FLEETIZE_TOKEN)  # FLEETIZE answers #1002

    result = await add(hass, "fleetize", fleetize_input(sim))

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "token_blocked"}
    assert sim.fleetize.error_counts[1002] == 1


async def test_missing_scope(hass: HomeAssistant, sim: SimulatorServer) -> None:
    result = await add(
        hass,
        "tracksafe365",
        {
            CONF_API_KEY: TRACKSAFE_NO_FLEET_KEY,
            CONF_PLAN: "starter",
            CONF_URL: sim.tracksafe365_url,
        },
    )

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "missing_scope"}
    assert result["description_placeholders"]["scope"] == "fleet:read"


async def test_rate_limited_then_quota_exhausted(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """FLEETIZE allows one call a minute per address, whatever the token: a
    second token within the minute is refused by the quota shared by every entry
    (one address), without a call, with the time it may go; FLEETIZE's own
    #1055 (another client on the address) is shown as rate limited."""
    entry_of(hass, await add(hass, "fleetize", fleetize_input(sim)))

    form = await choose(hass, "fleetize")
    other = fleetize_input(sim, FLEETIZE_OTHER_TOKEN)
    result = await configure(hass, form["flow_id"], other)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "quota_exhausted"}
    assert TIME_OR_DATE.match(result["description_placeholders"]["until"])
    assert sim.fleetize.error_counts[1055] == 0  # nothing reached FLEETIZE

    # Another client on the address (not this Home Assistant) spent the minute.
    sim.fleetize.fail_next(status=200, body="ERROR #1055 - QUERY-THRESHOLD EXCEEDED")
    with patch("custom_components.fleet_telematics.account.utc_now", _later(61)):
        result = await configure(hass, form["flow_id"], other)
    assert result["errors"] == {"base": "rate_limited"}
    assert result["description_placeholders"]["retry_after"] == "61"
    # The other token's failed attempts stay out of the first account's store.
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.unique_id is not None
    store = await async_get_store(hass, entry.unique_id)
    assert len(store.load_calls(entry.unique_id, EPOCH)) == 1


async def test_second_attempt_within_the_spacing(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """A flow that failed after its call (here: the user gave up on an error)
    leaves the call in the validation ledger: a new flow with the same token
    within 60 s is refused before it reaches FLEETIZE."""
    sim.fleetize.quota.blocked.add(FLEETIZE_TOKEN)
    result = await add(hass, "fleetize", fleetize_input(sim))
    assert result["errors"] == {"base": "token_blocked"}
    hass.config_entries.flow.async_abort(result["flow_id"])
    sim.fleetize.quota.unblock()
    sim.clock.advance(61)  # FLEETIZE would answer now; our quota still says no

    result = await add(hass, "fleetize", fleetize_input(sim))

    assert result["errors"] == {"base": "quota_exhausted"}
    assert sim.fleetize.counters.by_token[FLEETIZE_TOKEN] == 1


async def test_quota_exhausted_for_the_day(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """A budget that frees up another day shows the date, in local time."""
    tomorrow = dt_util.utcnow() + timedelta(days=1, hours=1)
    refusal = QuotaExhaustedError("daily used up", "daily", tomorrow, 90000.0)
    with patch.object(FleetizeProvider, "validate", side_effect=refusal):
        result = await add(hass, "fleetize", fleetize_input(sim))

    assert result["errors"] == {"base": "quota_exhausted"}
    until = result["description_placeholders"]["until"]
    assert until == dt_util.as_local(tomorrow).strftime("%Y-%m-%d %H:%M")


async def test_cannot_connect(hass: HomeAssistant, socket_enabled: None) -> None:
    """Connection refused: one attempt, no backoff, the form says so."""
    user_input = {CONF_TOKEN: SAMSARA_TOKEN, CONF_REGION: "us", CONF_URL: closed_port_url()}

    result = await add(hass, "samsara", user_input)

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}


async def test_unexpected_answer_is_cannot_connect(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    """A server that is not the provider (HTTP 404) is a provider error."""
    user_input = {CONF_API_KEY: TELEMAX_KEY, CONF_URL: sim.base_url + "/nothing-here"}

    result = await add(hass, "telemax", user_input)

    assert result["errors"] == {"base": "cannot_connect"}


async def test_unknown_error(
    hass: HomeAssistant, sim: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    with patch.object(FleetizeProvider, "validate", side_effect=RuntimeError("boom")):
        result = await add(hass, "fleetize", fleetize_input(sim))

    assert result["errors"] == {"base": "unknown"}
    assert "Unexpected error checking a fleetize account" in caplog.text
    assert FLEETIZE_TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("provider", "user_input", "errors"),
    [
        ("metrotec", {}, {"base": "missing_credentials"}),
        ("metrotec", {CONF_USERNAME: METROTEC_USER}, {CONF_PASSWORD: "missing_password"}),
        ("metrotec", {CONF_PASSWORD: METROTEC_PASSWORD}, {CONF_USERNAME: "missing_username"}),
        ("samsara", {CONF_TOKEN: "   ", CONF_REGION: "us"}, {CONF_TOKEN: "missing_token"}),
        ("telemax", {CONF_API_KEY: TELEMAX_KEY, CONF_URL: "ftp://x"}, {CONF_URL: "invalid_url"}),
    ],
    ids=["metrotec-nothing", "metrotec-no-password", "metrotec-no-username", "blank", "url"],
)
async def test_form_errors_before_any_call(
    hass: HomeAssistant, provider: str, user_input: dict[str, Any], errors: dict[str, str]
) -> None:
    # No simulator: a call would fail the test (sockets are blocked).
    result = await add(hass, provider, user_input)

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors


async def test_error_keeps_what_was_typed(hass: HomeAssistant, sim: SimulatorServer) -> None:
    user_input = samsara_input(sim, "wrong-token") | {CONF_REGION: "eu"}
    result = await add(hass, "samsara", user_input)

    suggested = {
        name: (k.description or {}).get("suggested_value") for name, k in fields(result).items()
    }
    assert suggested[CONF_URL] == sim.samsara_url
    assert suggested[CONF_REGION] == "eu"


# --- the same account twice ----------------------------------------------------------------
async def test_already_configured_without_a_call(hass: HomeAssistant, sim: SimulatorServer) -> None:
    entry_of(hass, await add(hass, "fleetize", fleetize_input(sim)))
    sim.clock.advance(61)

    result = await add(hass, "fleetize", fleetize_input(sim))

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert sim.fleetize.counters.by_token[FLEETIZE_TOKEN] == 1  # the quota was spared


async def test_already_configured_by_account_id(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """Another key of the same Telemax company is the same account; its call
    is counted in the account's store all the same."""
    entry = entry_of(
        hass, await add(hass, "telemax", {CONF_API_KEY: TELEMAX_KEY, CONF_URL: sim.telemax_url})
    )

    assert entry.unique_id is not None
    store = await async_get_store(hass, entry.unique_id)
    # A Telemax check is a login and the company list.
    assert [c.endpoint for c in store.load_calls(entry.unique_id, EPOCH)] == ["auth", "companies"]

    result = await add(
        hass, "telemax", {CONF_API_KEY: TELEMAX_SECOND_KEY, CONF_URL: sim.telemax_url}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1
    assert len(store.load_calls(entry.unique_id, EPOCH)) == 4


async def test_second_account_same_title(hass: HomeAssistant, sim: SimulatorServer) -> None:
    entry_of(hass, await add(hass, "fleetize", fleetize_input(sim)))
    sim.clock.advance(61)  # FLEETIZE's spacing is per address, not per token

    with patch("custom_components.fleet_telematics.account.utc_now", _later(61)):
        result = await add(hass, "fleetize", fleetize_input(sim, FLEETIZE_OTHER_TOKEN))
    entry = entry_of(hass, result)

    assert entry.unique_id is not None
    assert entry.title == f"FLEETIZE {entry.unique_id[:8]}"


# --- the validation call counts ------------------------------------------------------------
async def test_validation_call_is_counted(
    hass: HomeAssistant, sim: SimulatorServer, hass_storage: dict[str, Any]
) -> None:
    """The first poll after setup must keep FLEETIZE's 60 s spacing after the
    flow's call: the account's store holds the call, on disk already."""
    entry = entry_of(hass, await add(hass, "fleetize", fleetize_input(sim)))
    uid = entry.unique_id
    assert uid == fingerprint("fleetize", sim.fleetize_url, FLEETIZE_TOKEN)

    store = await async_get_store(hass, uid)
    calls = store.load_calls(uid, EPOCH)
    assert [c.endpoint for c in calls] == ["devicelist"]
    _, quota = build_client(async_get_clientsession(hass), entry.data, entry.options, store, uid)
    with pytest.raises(QuotaExhaustedError) as refused:
        await quota.acquire("devicelist")
    # 60 s and the margin a spacing keeps (bridge.quota.Budget.gap).
    assert refused.value.available_at == calls[0].at + timedelta(seconds=60.6)

    # Written at once, not in a coalesced save: a restart now still knows it
    # (in the ledger every entry shares, under the address and the token).
    stored = hass_storage[LEDGER_KEY]["data"]["calls"]
    assert [len(rows) for rows in stored.values()] == [1, 1]
    hass.data.pop(f"{DOMAIN}_ledger")
    reloaded = AccountStore(hass, uid)
    await reloaded.ledger.async_load()
    assert reloaded.load_calls(uid, EPOCH) == calls


# --- reauth --------------------------------------------------------------------------------
async def test_reauth_new_key(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """A new Telemax key of the same company: the entry takes it, reloads, and
    the token-blocked repair issue (if any) goes."""
    entry = entry_of(
        hass, await add(hass, "telemax", {CONF_API_KEY: TELEMAX_KEY, CONF_URL: sim.telemax_url})
    )
    issue_id = f"{ISSUE_TOKEN_BLOCKED}_{entry.entry_id}"
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key=ISSUE_TOKEN_BLOCKED,
    )

    flow = await reauth(hass, entry)
    form = await configure(hass, flow["flow_id"])
    assert schema_keys(form) == {CONF_API_KEY}  # only the secret
    # The form names the account (newer Home Assistant adds its own `name` too).
    assert form["description_placeholders"]["title"] == "Telemax"
    result = await configure(hass, flow["flow_id"], {CONF_API_KEY: TELEMAX_SECOND_KEY})
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_API_KEY] == TELEMAX_SECOND_KEY
    assert entry.data[CONF_URL] == sim.telemax_url
    assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is None
    assert entry.state is ConfigEntryState.LOADED


async def test_reauth_metrotec_password(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """A Metrotec user's password changed: only the password is asked again."""
    entry = entry_of(
        hass,
        await add(
            hass,
            "metrotec",
            {
                CONF_USERNAME: METROTEC_USER,
                CONF_PASSWORD: METROTEC_PASSWORD,
                CONF_URL: sim.metrotec_url,
            },
        ),
    )
    sim.metrotec.users[METROTEC_USER] = "new password "

    flow = await reauth(hass, entry)
    form = await configure(hass, flow["flow_id"])
    assert schema_keys(form) == {CONF_PASSWORD}
    result = await configure(hass, flow["flow_id"], {CONF_PASSWORD: "new password "})

    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_PASSWORD] == "new password "  # a password is never trimmed
    assert entry.data[CONF_USERNAME] == METROTEC_USER


async def test_reauth_takes_a_new_token(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """The usual fix for a revoked or blocked Samsara/FLEETIZE token is a new one;
    its fingerprint differs, and the entry keeps its id, devices and ledger."""
    entry = entry_of(hass, await add(hass, "samsara", samsara_input(sim)))
    uid = entry.unique_id
    assert await hass.config_entries.async_unload(entry.entry_id)

    flow = await reauth(hass, entry)
    result = await configure(hass, flow["flow_id"], {CONF_TOKEN: SAMSARA_OTHER_TOKEN})

    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] == SAMSARA_OTHER_TOKEN
    assert entry.unique_id == uid


async def test_reauth_wrong_account(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """Telemax names the company: a key of another company is refused."""
    entry = entry_of(
        hass, await add(hass, "telemax", {CONF_API_KEY: TELEMAX_KEY, CONF_URL: sim.telemax_url})
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    sim.telemax.company_id = 4242  # the second key now belongs to another company

    flow = await reauth(hass, entry)
    result = await configure(hass, flow["flow_id"], {CONF_API_KEY: TELEMAX_SECOND_KEY})

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"
    assert entry.data[CONF_API_KEY] == TELEMAX_KEY


async def test_reauth_error(hass: HomeAssistant, sim: SimulatorServer) -> None:
    entry = entry_of(hass, await add(hass, "samsara", samsara_input(sim)))

    flow = await reauth(hass, entry)
    result = await configure(hass, flow["flow_id"], {CONF_TOKEN: "wrong-token"})

    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["errors"] == {"base": "invalid_auth"}
    assert entry.data[CONF_TOKEN] == SAMSARA_TOKEN


async def test_reauth_keeps_the_account_quota(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """Reauth checks on the account's own ledger: right after setup, FLEETIZE's
    spacing refuses it without a call."""
    entry = entry_of(hass, await add(hass, "fleetize", fleetize_input(sim)))
    sim.clock.advance(61)

    flow = await reauth(hass, entry)
    result = await configure(hass, flow["flow_id"], {CONF_TOKEN: FLEETIZE_TOKEN})

    assert result["errors"] == {"base": "quota_exhausted"}
    assert sim.fleetize.counters.by_token[FLEETIZE_TOKEN] == 1


@pytest.mark.parametrize("source", [config_entries.SOURCE_REAUTH, "reconfigure"])
async def test_entry_gone(hass: HomeAssistant, source: str) -> None:
    result: dict[str, Any] = await hass.config_entries.flow.async_init(  # type: ignore[assignment]
        DOMAIN, context={"source": source, "entry_id": "gone"}, data={}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_not_found"


# --- reconfigure ---------------------------------------------------------------------------
async def test_reconfigure_plan(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """Another plan for the same key: the key may be left empty (kept)."""
    entry = entry_of(
        hass,
        await add(
            hass,
            "tracksafe365",
            {CONF_API_KEY: TRACKSAFE_KEY, CONF_PLAN: "starter", CONF_URL: sim.tracksafe365_url},
        ),
    )

    form = await reconfigure(hass, entry)
    assert form["step_id"] == "reconfigure"
    # The entry's server stays visible (and changeable) without advanced mode.
    assert schema_keys(form) == {CONF_API_KEY, CONF_PLAN, CONF_URL}
    result = await configure(
        hass, form["flow_id"], {CONF_PLAN: "growth", CONF_URL: sim.tracksafe365_url}
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert dict(entry.data) == {
        CONF_PROVIDER: "tracksafe365",
        CONF_API_KEY: TRACKSAFE_KEY,
        CONF_PLAN: "growth",
        CONF_URL: sim.tracksafe365_url,
    }


async def test_reconfigure_wrong_account(hass: HomeAssistant, sim: SimulatorServer) -> None:
    """Metrotec names the user: another user is another account."""
    sim.metrotec.users["someone-else"] = "their password"
    entry = entry_of(
        hass,
        await add(
            hass,
            "metrotec",
            {
                CONF_USERNAME: METROTEC_USER,
                CONF_PASSWORD: METROTEC_PASSWORD,
                CONF_URL: sim.metrotec_url,
            },
        ),
    )

    form = await reconfigure(hass, entry)
    result = await configure(
        hass,
        form["flow_id"],
        {
            CONF_USERNAME: "someone-else",
            CONF_PASSWORD: "their password",
            CONF_URL: sim.metrotec_url,
        },
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"
    assert entry.data[CONF_USERNAME] == METROTEC_USER


async def test_reconfigure_errors(hass: HomeAssistant, sim: SimulatorServer) -> None:
    entry = entry_of(hass, await add(hass, "samsara", samsara_input(sim)))

    form = await reconfigure(hass, entry)
    result = await configure(hass, form["flow_id"], {CONF_REGION: "us", CONF_URL: "samsara.local"})
    assert result["errors"] == {CONF_URL: "invalid_url"}

    result = await configure(hass, form["flow_id"], samsara_input(sim, "wrong-token"))
    assert result["step_id"] == "reconfigure"
    assert result["errors"] == {"base": "invalid_auth"}
    assert entry.data[CONF_TOKEN] == SAMSARA_TOKEN


async def test_reconfigure_counts_in_the_running_quota(
    hass: HomeAssistant, sim: SimulatorServer
) -> None:
    """While the account polls, the check goes through the poller's own quota:
    a failed reconfigure does not reload it, and it must not poll FLEETIZE
    within 60 s of the flow's call."""
    url = sim.fleetize_url
    uid = fingerprint("fleetize", url, FLEETIZE_TOKEN)
    entry = mock_entry(
        hass, {CONF_PROVIDER: "fleetize", CONF_TOKEN: FLEETIZE_TOKEN, CONF_URL: url}, uid
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    store = await async_get_store(hass, uid)
    _, quota = build_client(async_get_clientsession(hass), entry.data, entry.options, store, uid)
    entry.runtime_data = SimpleNamespace(coordinator=SimpleNamespace(quota=quota))  # type: ignore[attr-defined,unused-ignore]

    form = await reconfigure(hass, entry)
    result = await configure(hass, form["flow_id"], {CONF_TOKEN: "mistyped", CONF_URL: url})

    assert result["errors"] == {"base": "invalid_auth"}
    assert quota.calls_made == 1
    assert quota.check("devicelist") is not None  # the poller waits its minute
    assert len(store.load_calls(uid, EPOCH)) == 1


# --- options -------------------------------------------------------------------------------
async def test_options_with_daily_budget(hass: HomeAssistant) -> None:
    """FLEETIZE's 100 calls a day set the pace: no interval to choose."""
    data = {CONF_PROVIDER: "fleetize", CONF_TOKEN: FLEETIZE_TOKEN}
    entry = mock_entry(hass, data, "fleetize-account")

    form = await options_init(hass, entry.entry_id)
    assert form["step_id"] == "init"
    assert schema_keys(form) == {CONF_RESERVE, CONF_ADAPTIVE}
    result = await options_configure(
        hass, form["flow_id"], {CONF_RESERVE: 0.25, CONF_ADAPTIVE: False}
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert dict(entry.options) == {
        CONF_RESERVE: 0.25,
        CONF_ADAPTIVE: False,
        CONF_INTERVAL: DEFAULT_INTERVAL,
    }


async def test_options_interval(hass: HomeAssistant) -> None:
    data = {CONF_PROVIDER: "samsara", CONF_TOKEN: SAMSARA_TOKEN, CONF_REGION: "us"}
    entry = mock_entry(hass, data, "samsara-account")

    form = await options_init(hass, entry.entry_id)
    assert schema_keys(form) == {CONF_RESERVE, CONF_ADAPTIVE, CONF_INTERVAL}
    reserve = form["data_schema"].schema[CONF_RESERVE].config
    assert (reserve["min"], reserve["max"], reserve["step"]) == (0.0, 0.5, 0.05)
    with pytest.raises(vol.Invalid):
        await options_configure(
            hass, form["flow_id"], {CONF_RESERVE: 0.1, CONF_ADAPTIVE: True, CONF_INTERVAL: 2}
        )
    with pytest.raises(vol.Invalid):
        await options_configure(
            hass, form["flow_id"], {CONF_RESERVE: 0.6, CONF_ADAPTIVE: True, CONF_INTERVAL: 30}
        )
    result = await options_configure(
        hass, form["flow_id"], {CONF_RESERVE: 0.0, CONF_ADAPTIVE: True, CONF_INTERVAL: 15}
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert dict(entry.options) == {CONF_RESERVE: 0.0, CONF_ADAPTIVE: True, CONF_INTERVAL: 15}


# --- translations --------------------------------------------------------------------------
def test_translations_cover_the_flows() -> None:
    """Every step, field, error, abort reason and selector option the flows can
    show has its English text, with the placeholders the flow fills in."""
    strings = json.loads(
        (REPO_ROOT / "custom_components" / DOMAIN / "translations" / "en.json").read_text()
    )
    config, options = strings["config"], strings["options"]
    fields = {
        CONF_TOKEN,
        CONF_API_KEY,
        CONF_USERNAME,
        CONF_PASSWORD,
        CONF_REGION,
        CONF_PLAN,
        CONF_URL,
    }
    for step in ("credentials", "reconfigure"):
        assert set(config["step"][step]["data"]) == fields
        assert set(config["step"][step]["data_description"]) == fields
    assert set(config["step"]["reauth_confirm"]["data"]) == {
        CONF_TOKEN,
        CONF_API_KEY,
        CONF_PASSWORD,
    }
    assert set(config["step"]["user"]["data"]) == {CONF_PROVIDER}
    assert "{provider}" in config["step"]["credentials"]["description"]
    assert "{title}" in config["step"]["reauth_confirm"]["description"]
    errors = config["error"]
    for key in (
        "invalid_auth",
        "token_blocked",
        "cannot_connect",
        "unknown",
        "missing_credentials",
        "missing_token",
        "missing_api_key",
        "missing_username",
        "missing_password",
        "invalid_url",
    ):
        assert errors[key]
    assert "{scope}" in errors["missing_scope"]
    assert "{until}" in errors["quota_exhausted"]
    assert "{retry_after}" in errors["rate_limited"]
    for reason in (
        "already_configured",
        "already_in_progress",
        "wrong_account",
        "reauth_successful",
        "reconfigure_successful",
        "entry_not_found",
    ):
        assert config["abort"][reason]
    assert set(options["step"]["init"]["data"]) == {CONF_RESERVE, CONF_ADAPTIVE, CONF_INTERVAL}
    assert set(options["step"]["init"]["data_description"]) == {
        CONF_RESERVE,
        CONF_ADAPTIVE,
        CONF_INTERVAL,
    }
    selectors = strings["selector"]
    assert set(selectors[CONF_PROVIDER]["options"]) == set(PROVIDERS)
    for provider in PROVIDERS.values():
        for choice, values in (provider.choices or {}).items():
            assert set(selectors[choice]["options"]) == set(values)
