"""Config, reauth, reconfigure and options flows of Fleet Telematics.

Adding an account costs one provider call (`Provider.validate`), and that call
counts: FLEETIZE allows 100 a day and one a minute, and blocks a token for good
after repeated violations. So the flow

- refuses credentials already configured before it calls anybody;
- sends its one call through a quota whose ledger is shared by every flow of the
  same credentials (`validation_ledger`), so a second attempt within FLEETIZE's
  60 s spacing is refused here, with the time it may go, instead of at FLEETIZE;
- hands the call over to the account's own store once the account is known, so
  that the first poll after setup keeps the spacing too;
- checks interactively: one attempt, no waiting in place (the user retries).

Reauth and reconfigure validate on the account's own store (or, while the
account runs, on its coordinator's quota), so they respect what polling spent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

try:
    # Home Assistant 2026.x validates with probatio (voluptuous's API; `voluptuous`
    # is an alias of it there): typed against what Home Assistant expects.
    import probatio as vol  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # older Home Assistant: voluptuous itself  # ha-lane: 2024.3 2025.4
    import voluptuous as vol  # type: ignore[import-untyped,no-redef,unused-ignore]
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    OptionsFlow,
)
from homeassistant.core import callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.util import dt as dt_util

from bridge.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderTokenBlockedError,
    QuotaExhaustedError,
)
from bridge.providers import create_provider
from bridge.providers.base import Provider
from bridge.providers.http import RetryPolicy
from bridge.providers.parse import fingerprint
from bridge.providers.tracksafe365 import TracksafeScopeError
from bridge.quota import BudgetKind, CallLedger, Quota

from .account import (
    PROVIDERS,
    SECRET_FIELDS,
    ProviderSpec,
    budgets_for,
    build_client,
    names_the_account,
    settings_for,
)
from .compat import ADVANCED_MODE_DEPRECATED
from .const import (
    CONF_ADAPTIVE,
    CONF_INTERVAL,
    CONF_PASSWORD,
    CONF_PROVIDER,
    CONF_REGION,
    CONF_RESERVE,
    CONF_URL,
    DEFAULT_ADAPTIVE,
    DEFAULT_INTERVAL,
    DEFAULT_RESERVE,
    DOMAIN,
    ISSUE_TOKEN_BLOCKED,
    LOGGER,
)
from .store import async_get_store, validation_ledger

try:  # Home Assistant 2024.4 and later type flow results per flow kind.
    from homeassistant.config_entries import (  # type: ignore[attr-defined,unused-ignore]
        ConfigFlowResult,
    )
except ImportError:  # 2024.3  # ha-lane: 2024.3
    from homeassistant.data_entry_flow import (  # type: ignore[assignment,unused-ignore]
        FlowResult as ConfigFlowResult,
    )

# Every call the ledger holds, however old (the ledger prunes by itself).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The first choice offered is the default (Samsara: us; TrackSafe365: starter).
DEFAULT_OPTIONS: dict[str, Any] = {
    CONF_RESERVE: DEFAULT_RESERVE,
    CONF_ADAPTIVE: DEFAULT_ADAPTIVE,
    CONF_INTERVAL: DEFAULT_INTERVAL,
}
MAX_RESERVE = 0.5
MIN_INTERVAL = 5.0
MAX_INTERVAL = 3600.0
SHORT_ID = 8
REASON_REAUTH = "reauth_successful"
REASON_RECONFIGURE = "reconfigure_successful"


def credential_fields(spec: ProviderSpec) -> tuple[str, ...]:
    """Every credential field a provider may take, in the order of the form."""
    fields = list(spec.secrets)
    for alternative in spec.alternatives:
        fields += [name for name in alternative if name not in fields]
    return tuple(fields)


def _clean(name: str, value: Any) -> str:
    """Pasted tokens often carry a stray space or newline; a password may not."""
    text = value if isinstance(value, str) else ""
    return text if name == CONF_PASSWORD else text.strip()


def collect(
    spec: ProviderSpec,
    user_input: Mapping[str, Any],
    current: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Entry data from a submitted form, and the form's errors (by field).

    `current` is the entry being reconfigured: a secret left empty keeps its
    value. Metrotec takes the first complete alternative (username and
    password, else API key) and stores only that one."""
    values: dict[str, str] = {}
    for name in credential_fields(spec):
        value = _clean(name, user_input.get(name))
        if not value and current is not None and name in SECRET_FIELDS:
            value = str(current.get(name) or "")
        values[name] = value
    errors: dict[str, str] = {}
    chosen: tuple[str, ...] = spec.secrets
    if spec.alternatives:
        complete = [alt for alt in spec.alternatives if all(values[f] for f in alt)]
        if complete:
            chosen = complete[0]
        else:
            # Name the field missing from an alternative the user started on.
            for alternative in spec.alternatives:
                if any(values[f] for f in alternative):
                    errors.update({f: f"missing_{f}" for f in alternative if not values[f]})
            if not errors:
                errors["base"] = "missing_credentials"
    else:
        errors.update({f: f"missing_{f}" for f in spec.secrets if not values[f]})
    data: dict[str, Any] = {CONF_PROVIDER: spec.name}
    data.update({f: values[f] for f in chosen})
    for choice, options in (spec.choices or {}).items():
        picked = user_input.get(choice)
        data[choice] = picked if picked in options else options[0]
    url = _clean(CONF_URL, user_input.get(CONF_URL)).rstrip("/")
    if url:
        if not url.startswith(("http://", "https://")):
            errors[CONF_URL] = "invalid_url"
        data[CONF_URL] = url
    return data, errors


def _identity(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two entries the same account before anybody is asked."""
    spec = PROVIDERS[data[CONF_PROVIDER]]
    secrets = tuple(data.get(name) or "" for name in credential_fields(spec))
    # The region chooses the server; the plan only the budgets of the same key.
    return (spec.name, data.get(CONF_URL) or "", data.get(CONF_REGION), secrets)


def ledger_key(data: Mapping[str, Any]) -> str:
    """The validation ledger's account: a fingerprint of the credentials (the
    account's own id is known only after the call)."""
    spec = PROVIDERS[data[CONF_PROVIDER]]
    secrets = (str(data.get(name) or "") for name in credential_fields(spec))
    return fingerprint(spec.name, str(data.get(CONF_URL) or ""), *secrets)


def format_until(when: datetime) -> str:
    """`available_at` in the user's time zone: the time today, else the date too."""
    local = dt_util.as_local(when)
    if local.date() == dt_util.now().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def describe_error(err: Exception) -> tuple[str, dict[str, str]]:
    """The form error (a translation key) and its placeholders for a failure.

    Subclasses first: a blocked token and a missing scope are auth errors too."""
    if isinstance(err, ProviderTokenBlockedError):
        return "token_blocked", {}
    if isinstance(err, TracksafeScopeError):
        return "missing_scope", {"scope": err.scope}
    if isinstance(err, ProviderAuthError):
        return "invalid_auth", {}
    if isinstance(err, QuotaExhaustedError):
        return "quota_exhausted", {"until": format_until(err.available_at)}
    if isinstance(err, ProviderRateLimitedError):
        return "rate_limited", {"retry_after": str(math.ceil(err.retry_after))}
    if isinstance(err, ProviderError):
        return "cannot_connect", {}
    return "unknown", {}


def _interactive(provider: Provider) -> None:
    """One attempt, never a wait in place: a form must answer at once, and a
    retry of a FLEETIZE call would only run into its 60 s spacing. The user
    submits again when the error says so."""
    retry = getattr(provider, "retry", None)
    if isinstance(retry, RetryPolicy):  # the clients' HTTP layer shares this object
        retry.attempts = 1
        retry.max_quota_wait = 0.0


def running_quota(entry: ConfigEntry) -> Quota | None:
    """The quota of the entry's running coordinator, if it runs.

    Its calls are held in memory: a call recorded in the store by another Quota
    object would stay unseen by the running poller until a reload, and a failed
    reconfigure would not reload it."""
    if entry.state is not ConfigEntryState.LOADED:
        return None
    coordinator = getattr(getattr(entry, "runtime_data", None), "coordinator", None)
    quota = getattr(coordinator, "quota", None)
    return quota if isinstance(quota, Quota) else None


def has_daily_budget(data: Mapping[str, Any], options: Mapping[str, Any]) -> bool:
    """A daily budget sets the pace of polling; the interval matters otherwise."""
    return any(
        budget.kind is BudgetKind.DAILY and not budget.endpoints
        for budget in budgets_for(data, options)
    )


def _text(kind: TextSelectorType, autocomplete: str | None = None) -> TextSelector:
    config = TextSelectorConfig(type=kind)
    if autocomplete:
        config["autocomplete"] = autocomplete
    return TextSelector(config)


def _suggested(value: Any) -> dict[str, Any] | None:
    return {"suggested_value": value} if value else None


# The collapsed section that holds the server URL where advanced mode is gone.
SECTION_ADVANCED = "advanced"


def credentials_schema(
    spec: ProviderSpec,
    *,
    url: bool,
    current: Mapping[str, Any] | None = None,
) -> vol.Schema:
    """The credentials form of a provider. With `current` (reconfigure) the
    other fields are filled in and secrets may be left empty (kept)."""
    current = current or {}
    required = not spec.alternatives and not current
    fields: dict[Any, Any] = {}
    for name in credential_fields(spec):
        secret = name in SECRET_FIELDS
        selector = (
            _text(TextSelectorType.PASSWORD, "current-password")
            if secret
            else _text(TextSelectorType.TEXT, "username")
        )
        # Suggested, not default: a default would come back when cleared.
        description = None if secret else _suggested(current.get(name))
        marker = vol.Required if required else vol.Optional
        fields[marker(name, description=description)] = selector
    for choice, options in (spec.choices or {}).items():
        fields[vol.Required(choice, default=current.get(choice, options[0]))] = SelectSelector(
            SelectSelectorConfig(
                options=list(options), translation_key=choice, mode=SelectSelectorMode.DROPDOWN
            )
        )
    if url:
        url_field = vol.Optional(CONF_URL, description=_suggested(current.get(CONF_URL)))
        if ADVANCED_MODE_DEPRECATED:  # ha-lane: newest
            # No advanced mode any more: a collapsed section keeps it out of the way.
            from homeassistant.data_entry_flow import section

            fields[vol.Optional(SECTION_ADVANCED)] = section(
                vol.Schema({url_field: _text(TextSelectorType.URL)}), {"collapsed": True}
            )
        else:  # ha-lane: 2024.3 2025.4
            fields[url_field] = _text(TextSelectorType.URL)
    return vol.Schema(fields)


def flat(user_input: dict[str, Any] | None) -> dict[str, Any] | None:
    """The form's input with the advanced section's fields at the top level."""
    if user_input is not None and SECTION_ADVANCED in user_input:  # ha-lane: newest
        flattened = {k: v for k, v in user_input.items() if k != SECTION_ADVANCED}
        flattened.update(user_input[SECTION_ADVANCED] or {})
        return flattened
    return user_input


def _secrets_schema(names: list[str]) -> vol.Schema:
    return vol.Schema(
        {vol.Required(name): _text(TextSelectorType.PASSWORD, "current-password") for name in names}
    )


class FleetConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a provider account; reauthenticate or reconfigure one."""

    VERSION = 1

    def __init__(self) -> None:
        self._provider: str | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> FleetOptionsFlow:
        return FleetOptionsFlow(config_entry)

    def _offers_url(self) -> bool:
        """The server URL field (the simulators, a proxy) is for advanced users:
        shown in advanced mode, or in a collapsed section where that mode is gone
        (its deprecated flag then always answers yes)."""
        return ADVANCED_MODE_DEPRECATED or bool(self.show_advanced_options)

    # --- a new account --------------------------------------------------------------
    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is not None:
            self._provider = user_input[CONF_PROVIDER]
            return await self.async_step_credentials()
        schema = vol.Schema(
            {
                vol.Required(CONF_PROVIDER): SelectSelector(
                    SelectSelectorConfig(
                        options=list(PROVIDERS),
                        translation_key=CONF_PROVIDER,
                        mode=SelectSelectorMode.LIST,
                    )
                )
            }
        )
        return self.async_show_form(step_id="user", data_schema=schema)

    async def async_step_credentials(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        assert self._provider is not None  # the user step chose it
        spec = PROVIDERS[self._provider]
        errors: dict[str, str] = {}
        placeholders = {"provider": spec.title}
        if user_input is not None:
            data, errors = collect(spec, flat(user_input) or {})
            if not errors:
                # Saves a call of the quota (FLEETIZE: one of 100 a day).
                if any(
                    _identity(entry.data) == _identity(data)
                    for entry in self._async_current_entries(include_ignore=False)
                ):
                    return self.async_abort(reason="already_configured")
                key = ledger_key(data)
                ledger = validation_ledger(self.hass)
                uid, error, extra = await self._async_validate(data, {}, ledger, key)
                if uid is not None:
                    return await self._async_create(spec, data, uid, key)
                errors = {"base": error}
                placeholders.update(extra)
        schema = credentials_schema(spec, url=self._offers_url())
        return self.async_show_form(
            step_id="credentials",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_create(
        self, spec: ProviderSpec, data: dict[str, Any], uid: str, key: str
    ) -> ConfigFlowResult:
        # The call counts for the account from now on, even when the account
        # turns out to be configured already (its running store must know of it).
        # Adopting only unknown calls keeps a repeated flow from counting twice.
        store = await async_get_store(self.hass, uid)
        known = set(store.load_calls(uid, EPOCH))
        store.adopt_calls(
            c for c in validation_ledger(self.hass).load_calls(key, EPOCH) if c not in known
        )
        await store.async_flush()
        await self.async_set_unique_id(uid)
        self._abort_if_unique_id_configured()
        return self.async_create_entry(
            title=self._title(spec, data, uid), data=data, options=dict(DEFAULT_OPTIONS)
        )

    def _title(self, spec: ProviderSpec, data: Mapping[str, Any], uid: str) -> str:
        """The provider's name, and Samsara's region: FLEETIZE, Samsara (eu). A
        second account of the same title gets the start of its id, so that the
        two can be told apart."""
        region = data.get(CONF_REGION)
        title = f"{spec.title} ({region})" if region else spec.title
        if any(entry.title == title for entry in self._async_current_entries()):
            title = f"{title} {uid[:SHORT_ID]}"
        return title

    async def _async_validate(
        self,
        data: Mapping[str, Any],
        options: Mapping[str, Any],
        ledger: CallLedger,
        account: str,
        quota: Quota | None = None,
    ) -> tuple[str | None, str, dict[str, str]]:
        """(account id, "", {}) or (None, form error, its placeholders)."""
        session = async_get_clientsession(self.hass)
        if quota is None:
            provider, quota = build_client(session, data, options, ledger, account)
        else:
            provider = create_provider(data[CONF_PROVIDER], session, settings_for(data), quota)
        _interactive(provider)
        try:
            return await provider.validate(), "", {}
        except Exception as err:  # the form must show every failure
            error, placeholders = describe_error(err)
            if error == "unknown":
                LOGGER.exception("Unexpected error checking a %s account", data[CONF_PROVIDER])
            else:
                # Bridge errors never carry secrets (bridge.errors).
                LOGGER.debug("%s check failed: %s", data[CONF_PROVIDER], err)
            return None, error, placeholders
        finally:
            await provider.close()

    # --- an account whose credentials stopped working ---------------------------------
    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self.hass.config_entries.async_get_entry(self.context["entry_id"])
        if entry is None:
            return self.async_abort(reason="entry_not_found")
        spec = PROVIDERS[entry.data[CONF_PROVIDER]]
        # Only the secrets in use (Metrotec: the password of the same username,
        # or the API key), the rest identifies the account and stays.
        names = [n for n in credential_fields(spec) if n in SECRET_FIELDS and entry.data.get(n)]
        errors: dict[str, str] = {}
        placeholders = {"title": entry.title}
        if user_input is not None:
            data = {**entry.data, **{n: _clean(n, user_input.get(n)) for n in names}}
            result = await self._async_revalidate(entry, data, REASON_REAUTH, errors, placeholders)
            if result is not None:
                return result
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=_secrets_schema(names),
            errors=errors,
            description_placeholders=placeholders,
        )

    # --- other credentials, region, plan or server for the same account ----------------
    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        entry = self.hass.config_entries.async_get_entry(self.context["entry_id"])
        if entry is None:
            return self.async_abort(reason="entry_not_found")
        spec = PROVIDERS[entry.data[CONF_PROVIDER]]
        errors: dict[str, str] = {}
        placeholders = {"title": entry.title, "provider": spec.title}
        if user_input is not None:
            data, errors = collect(spec, flat(user_input) or {}, entry.data)
            if not errors:
                result = await self._async_revalidate(
                    entry, data, REASON_RECONFIGURE, errors, placeholders
                )
                if result is not None:
                    return result
        # An entry on another server keeps the field, or it could not be cleared.
        url = self._offers_url() or CONF_URL in entry.data
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=credentials_schema(spec, url=url, current=entry.data),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def _async_revalidate(
        self,
        entry: ConfigEntry,
        data: dict[str, Any],
        reason: str,
        errors: dict[str, str],
        placeholders: dict[str, str],
    ) -> ConfigFlowResult | None:
        """Check new settings of an existing account on the account's own quota;
        the end of the flow, or None with `errors` filled in."""
        account = entry.unique_id or entry.entry_id
        store = await async_get_store(self.hass, account)
        try:
            uid, error, extra = await self._async_validate(
                data, entry.options, store, account, running_quota(entry)
            )
        finally:
            await store.async_flush()  # a call made is on disk at once
        if uid is None:
            errors["base"] = error
            placeholders.update(extra)
            return None
        if uid != account and names_the_account(data) and names_the_account(entry.data):
            # Other credentials would silently turn the entry (its devices,
            # history and quota ledger) into another account's. Where the id is
            # only the secret's fingerprint, a new token (the usual fix for a
            # blocked one) cannot be told apart, and the entry keeps its id.
            return self.async_abort(reason="wrong_account")
        ir.async_delete_issue(self.hass, DOMAIN, f"{ISSUE_TOKEN_BLOCKED}_{entry.entry_id}")
        return self.async_update_reload_and_abort(entry, data=data, reason=reason)


class FleetOptionsFlow(OptionsFlow):
    """How much of the quota polling may use, and how often to poll."""

    def __init__(self, config_entry: ConfigEntry) -> None:
        # Not `self.config_entry`: Home Assistant sets that itself from 2024.11
        # on, and assigning it is deprecated (an error from 2025.12).
        self._entry = config_entry

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        options = self._entry.options
        if user_input is not None:
            # A field not shown (the interval) keeps its value.
            return self.async_create_entry(title="", data={**options, **user_input})
        fields: dict[Any, Any] = {
            vol.Required(
                CONF_RESERVE, default=options.get(CONF_RESERVE, DEFAULT_RESERVE)
            ): NumberSelector(
                NumberSelectorConfig(
                    min=0.0, max=MAX_RESERVE, step=0.05, mode=NumberSelectorMode.SLIDER
                )
            ),
            vol.Required(
                CONF_ADAPTIVE, default=options.get(CONF_ADAPTIVE, DEFAULT_ADAPTIVE)
            ): BooleanSelector(),
        }
        if not has_daily_budget(self._entry.data, options):
            fields[
                vol.Required(CONF_INTERVAL, default=options.get(CONF_INTERVAL, DEFAULT_INTERVAL))
            ] = NumberSelector(
                NumberSelectorConfig(
                    min=MIN_INTERVAL,
                    max=MAX_INTERVAL,
                    step=1,
                    unit_of_measurement="s",
                    mode=NumberSelectorMode.BOX,
                )
            )
        return self.async_show_form(
            step_id="init",
            data_schema=vol.Schema(fields),
            description_placeholders={"title": self._entry.title},
        )
