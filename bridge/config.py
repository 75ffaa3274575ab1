"""The daemon's configuration: one YAML file in, one frozen `BridgeConfig` out.

Loading runs in stages so that a user fixing a config sees every problem at once:
YAML is parsed (keeping each option's line number), `${VAR}` / `${file:...}`
references are substituted in the parsed tree, pydantic validates the schema, and
the cross-field checks (duplicate account ids) run on the same data. Every problem
becomes one `path (line N): reason` line of a `ConfigError`, built from the error's
location and reason only: input values, which may be secrets, are never echoed.

pydantic stays in this module; the rest of the bridge gets plain values
(`SamsaraAccount.provider_settings()` returns the provider's own dataclass).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeAlias, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from bridge.errors import ConfigError
from bridge.mqtt.topics import RESERVED_ACCOUNT_ID
from bridge.planner import Cadence
from bridge.providers.fleetize import BASE_URL as FLEETIZE_URL
from bridge.providers.fleetize import FleetizeSettings
from bridge.providers.http import USER_AGENT
from bridge.providers.metrotec import API_VERSION as METROTEC_API_VERSION
from bridge.providers.metrotec import BASE_URL as METROTEC_URL
from bridge.providers.metrotec import DEFAULT_TIMEZONE as METROTEC_TIMEZONE
from bridge.providers.metrotec import PATHS as METROTEC_PATHS
from bridge.providers.metrotec import MetrotecSettings
from bridge.providers.samsara import BASE_URLS, FEED_MIN_INTERVAL_S, SamsaraSettings
from bridge.providers.telemax import BASE_URL as TELEMAX_URL
from bridge.providers.telemax import TelemaxSettings
from bridge.providers.tracksafe365 import (
    BUDGET_PER_DAY,
    BUDGET_PER_MINUTE,
    PRODUCTION_URL,
    SANDBOX,
    SANDBOX_URL,
    TracksafeSettings,
    effective_plan,
    key_environment,
    plan_budgets,
)
from bridge.quota import DEFAULT_EGRESS, Budget, BudgetKind, Scope, Scopes, apply_overrides
from bridge.store.url import SCHEMES as POSTGRES_SCHEMES
from bridge.store.url import url_passwords

Loc: TypeAlias = tuple[str | int, ...]

# Keys of the validation context that `parse_config` passes to the models.
_BASE_DIR = "base_dir"
_CROSS_CHECKED = "cross_checked"

FLEETIZE_SPACING_S = 60.0
_ACCOUNT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# An egress or organisation name (it becomes part of a ledger key).
_SCOPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose reason is exactly `message` (no input value in it)."""
    return PydanticCustomError("bridge_config", message)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """A relative path is relative to the config file's directory, when known."""
    path = value.expanduser()
    context = info.context if isinstance(info.context, Mapping) else {}
    base_dir = context.get(_BASE_DIR)
    if isinstance(base_dir, Path) and not path.is_absolute():
        path = base_dir / path
    return path


def _check_topic(value: str) -> str:
    if not value:
        raise _invalid("must not be empty")
    if "+" in value or "#" in value:
        raise _invalid("must not contain the MQTT wildcards '+' or '#'")
    if value.startswith("/") or value.endswith("/"):
        raise _invalid("must not start or end with '/'")
    if "//" in value:
        raise _invalid("must not contain empty topic levels ('//')")
    if "\x00" in value:
        raise _invalid("must not contain NUL characters")
    return value


def _check_not_blank(value: str) -> str:
    if not value.strip():
        raise _invalid("must not be empty")
    return value


class _Model(BaseModel):
    # extra="forbid" names a mistyped option instead of ignoring it;
    # hide_input_in_errors keeps secrets out of str(ValidationError).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class TlsConfig(_Model):
    """TLS to the MQTT broker; all fields empty means the system's CAs."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _existing_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(value, info)
        if not path.is_file():
            reason = "is not a file" if path.exists() else "does not exist"
            raise _invalid(f"file {path} {reason}")
        return path

    @field_validator("key_file")
    @classmethod
    def _key_needs_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Absent from info.data means cert_file failed on its own: already reported.
        if value is not None and "cert_file" in info.data and info.data["cert_file"] is None:
            raise _invalid("requires cert_file (the client certificate)")
        return value


class MqttConfig(_Model):
    """The MQTT broker and the topics the bridge publishes under."""

    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "fleet-bridge"
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 60
    tls: TlsConfig | None = None
    base_topic: str = "fleet"
    discovery: bool = True
    # entity: one retained config per entity (any Home Assistant version);
    # device: one per vehicle, entities under `cmps` (Home Assistant 2024.11+).
    discovery_mode: Literal["entity", "device"] = "entity"
    # Discovery messages a second at most, after a burst of one second's worth.
    discovery_rate: Annotated[float, Field(gt=0, le=100_000)] = 300.0
    discovery_prefix: str = "homeassistant"
    qos: Literal[0, 1] = 1

    @field_validator("host", "client_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return _check_not_blank(value)

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_topic(value)

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_shorthand(cls, value: Any) -> Any:
        # `tls: true` is TLS with the system's CAs, `tls: false` no TLS.
        if value is True:
            return {}
        if value is False:
            return None
        if value is None or isinstance(value, dict | TlsConfig):
            return value
        raise _invalid("must be true, false or a mapping of TLS options")


class StoreConfig(_Model):
    """Where the bridge keeps feed cursors and last known states across restarts."""

    # validate_default: the default is relative to the config file's directory too.
    path: Annotated[Path, Field(validate_default=True)] = Path("fleet-bridge.sqlite")
    # A PostgreSQL database instead of the file (postgresql://user:password@host/db,
    # best with ${VAR} for the password): what several instances share to split
    # the accounts between them. The password is redacted from every log line.
    url: Annotated[str | None, Field(repr=False)] = None
    # Seconds an instance holds its share of the accounts without renewing it (on
    # a PostgreSQL store): when an instance dies, another takes its accounts over
    # after at most this long. Shorter means a faster takeover, but a pause longer
    # than it (a GC pause, a network blip to the database, a suspended VM) makes
    # the others take over from an instance that was still alive: it then stops
    # writing (fencing), yet its accounts are polled late meanwhile.
    lease_time: Annotated[float, Field(ge=2, le=300)] = 10.0

    @field_validator("path")
    @classmethod
    def _relative_to_config(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve_path(value, info)

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(POSTGRES_SCHEMES):
            raise _invalid(
                "must be a PostgreSQL URL: postgresql://user:password@host:5432/database"
            )
        try:
            urlsplit(value).port  # noqa: B018 (a port that is no number raises)
        except ValueError:
            raise _invalid("is not a valid URL (its port?)") from None
        return value


class BudgetOverride(_Model):
    """Corrections to one of a provider's published budgets (or a new one)."""

    kind: Literal["window", "daily", "spacing"] | None = None
    limit: Annotated[int, Field(ge=1)] | None = None
    period: Annotated[float, Field(gt=0)] | None = None
    endpoints: list[str] | None = None
    # Whose calls count against it (docs/quota.md); a new budget: the token's.
    scope: Literal["token", "account", "organisation", "egress"] | None = None


class QuotaConfig(_Model):
    """Budgets of an account: the provider's defaults, corrected here."""

    # Share of every budget kept for commands and on-demand refreshes.
    reserve: Annotated[float, Field(ge=0, le=0.9)] = 0.1
    # The time zone whose midnight starts the provider's day.
    day_zone: str = "UTC"
    budgets: dict[str, BudgetOverride] = Field(default_factory=dict)

    @field_validator("day_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _invalid("must be an IANA time zone such as UTC or Europe/Berlin") from None
        return value

    def budgets_for(self, defaults: tuple[Budget, ...]) -> tuple[Budget, ...]:
        overrides = {name: o.model_dump(exclude_none=True) for name, o in self.budgets.items()}
        return apply_overrides(defaults, overrides, reserve=self.reserve, day_zone=self.day_zone)


class CadenceConfig(_Model):
    """How polls are paced against a daily budget (see docs/quota.md)."""

    adaptive: bool = True
    busy_factor: Annotated[float, Field(gt=0, le=1)] = 0.5
    idle_factor: Annotated[float, Field(ge=1, le=50)] = 3.0
    max_interval: Annotated[float, Field(ge=60)] = 3600.0


class _AccountBase(_Model):
    """Options every provider account has."""

    id: str
    name: str | None = None
    vehicle_list_interval: Annotated[float, Field(ge=60)] = 3600.0
    offline_after: Annotated[float, Field(ge=60)] = 3600.0
    unavailable_after: Annotated[float, Field(ge=0)] = 600.0
    # No fresh data for this long: the account's vehicles show as unavailable.
    # Default: three planned poll intervals, at least unavailable_after.
    staleness: Annotated[float, Field(ge=1)] | None = None
    request_timeout: Annotated[float, Field(gt=0, le=120)] = 30.0
    quota: QuotaConfig = Field(default_factory=QuotaConfig)
    cadence: CadenceConfig = Field(default_factory=CadenceConfig)
    # The address its calls leave from, by name: accounts on one egress share
    # the budgets a provider counts per address (FLEETIZE's 60 s spacing).
    egress: str = DEFAULT_EGRESS

    @field_validator("id")
    @classmethod
    def _account_id(cls, value: str) -> str:
        return _check_account_id(value)

    @field_validator("egress", "organisation", check_fields=False)
    @classmethod
    def _scope_name(cls, value: str | None) -> str | None:
        if value is not None and not _SCOPE_NAME.fullmatch(value):
            raise _invalid(
                "must be 1 to 64 characters: letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        return value

    def credential(self) -> str:
        """What the provider knows the account by (its token, API key or user)."""
        for name in ("token", "api_key", "username"):
            value = getattr(self, name, None)
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, str):
                return value
        raise AssertionError(f"{type(self).__name__} has no credential")  # pragma: no cover

    def budgets(self) -> tuple[Budget, ...]:
        """The provider's default budgets with this account's corrections."""
        from bridge.providers import default_budgets

        provider: str = getattr(self, "provider")  # noqa: B009 (each subclass has it)
        return self.quota.budgets_for(default_budgets(provider))

    def scopes(self) -> Scopes:
        """The ledger keys of the account's budgets (bridge.quota.Scopes)."""
        provider: str = getattr(self, "provider")  # noqa: B009 (each subclass has it)
        return Scopes.of(
            provider,
            self.credential(),
            egress=self.egress,
            organisation=getattr(self, "organisation", None),
        )

    @field_validator("token", check_fields=False)
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        return _check_secret(value)

    @field_validator("base_url", "sandbox_url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _invalid("must be an http:// or https:// URL")
        return value

    @field_validator("name", "api_version", check_fields=False)
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return None if value is None else _check_not_blank(value)

    def cadence_settings(self, interval: float, min_interval: float) -> Cadence:
        return Cadence(
            interval=interval,
            min_interval=min_interval,
            max_interval=self.cadence.max_interval,
            busy_factor=self.cadence.busy_factor,
            idle_factor=self.cadence.idle_factor,
            adaptive=self.cadence.adaptive,
        )


class SamsaraAccount(_AccountBase):
    """One Samsara organisation, reached with one API token."""

    provider: Literal["samsara"]
    token: SecretStr
    # The Samsara organisation the token belongs to: accounts naming the same
    # one share its 200 requests/s (unnamed: each token counts alone).
    organisation: str | None = None
    region: Literal["us", "eu"] = "us"
    base_url: str | None = None
    api_version: str | None = None
    poll_interval: Annotated[float, Field(ge=FEED_MIN_INTERVAL_S)] = 10.0
    # Read the safety events stream for alerts (one more call per poll).
    safety_events: bool = True

    def cadence_plan(self) -> Cadence:
        return self.cadence_settings(self.poll_interval, FEED_MIN_INTERVAL_S)

    def provider_settings(self) -> SamsaraSettings:
        """The plain settings the Samsara client takes (the override URL wins)."""
        return SamsaraSettings(
            token=self.token.get_secret_value(),
            base_url=self.base_url or BASE_URLS[self.region],
            api_version=self.api_version,
            request_timeout=self.request_timeout,
            safety_events=self.safety_events,
        )


class FleetizeAccount(_AccountBase):
    """One FLEETIZE account: 100 calls a day, one a minute (see docs/quota.md)."""

    provider: Literal["fleetize"]
    token: SecretStr
    base_url: str | None = None

    def cadence_plan(self) -> Cadence:
        # The daily budget drives FLEETIZE's cadence; `interval` is unused.
        return self.cadence_settings(FLEETIZE_SPACING_S, FLEETIZE_SPACING_S)

    def provider_settings(self) -> FleetizeSettings:
        return FleetizeSettings(
            token=self.token.get_secret_value(),
            base_url=self.base_url or FLEETIZE_URL,
            request_timeout=self.request_timeout,
        )


class TelemaxAccount(_AccountBase):
    """One Telemax company, reached with one API key."""

    provider: Literal["telemax"]
    api_key: SecretStr
    base_url: str | None = None
    # Fleet positions cost one call per 500 vehicles against 20 per minute.
    poll_interval: Annotated[float, Field(ge=10)] = 30.0
    safety_score_interval: Annotated[float, Field(ge=300)] = 3600.0
    safety_score_days: Annotated[int, Field(ge=1, le=31)] = 7

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr) -> SecretStr:
        return _check_secret(value)

    def cadence_plan(self) -> Cadence:
        return self.cadence_settings(self.poll_interval, 10.0)

    def provider_settings(self) -> TelemaxSettings:
        return TelemaxSettings(
            api_key=self.api_key.get_secret_value(),
            base_url=self.base_url or TELEMAX_URL,
            request_timeout=self.request_timeout,
            safety_score_interval=self.safety_score_interval,
            safety_score_days=self.safety_score_days,
        )


_VERSION = re.compile(r"\d+\.\d+\.\d+")


class MetrotecAccount(_AccountBase):
    """One Metrotec account: a username and password, or an API key."""

    provider: Literal["metrotec"]
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    api_version: str = METROTEC_API_VERSION
    user_agent: str | None = None
    timezone: str = METROTEC_TIMEZONE
    # A poll is 4 calls (6 with the vehicle list) against the 60-a-minute default.
    poll_interval: Annotated[float, Field(ge=10)] = 30.0
    paths: dict[str, str] = Field(default_factory=dict)
    # Geozone enter/exit alerts: derived from positions against the zones the
    # vehicles are linked to, or taken from the alarm log's zone alarms.
    geozones_from: Literal["positions", "alarm_log"] = "positions"

    @field_validator("password", "api_key")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else _check_secret(value)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        return None if value is None else _check_not_blank(value)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.fullmatch(value):
            raise _invalid("must be a version X.Y.Z such as 1.1.0")
        return value

    @field_validator("user_agent")
    @classmethod
    def _user_agent(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.strip() or not all(" " <= char <= "~" for char in value)
        ):
            raise _invalid("must be printable ASCII text that names your integration")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _invalid("must be an IANA time zone such as Europe/Tallinn") from None
        return value

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if name not in METROTEC_PATHS:
                known = ", ".join(METROTEC_PATHS)
                raise _invalid(f"unknown path name '{name}' (known: {known})")
            if not path.startswith("/"):
                raise _invalid(f"the path of '{name}' must start with '/'")
        return value

    @model_validator(mode="after")
    def _one_login(self) -> MetrotecAccount:
        if self.api_key is not None:
            if self.username is not None or self.password is not None:
                raise _invalid("give either api_key, or username and password, not both")
        elif self.username is None or self.password is None:
            raise _invalid("needs api_key, or username and password")
        return self

    def cadence_plan(self) -> Cadence:
        return self.cadence_settings(self.poll_interval, 10.0)

    def provider_settings(self) -> MetrotecSettings:
        return MetrotecSettings(
            base_url=self.base_url or METROTEC_URL,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            api_version=self.api_version,
            user_agent=self.user_agent or USER_AGENT,
            request_timeout=self.request_timeout,
            timezone=self.timezone,
            paths=dict(self.paths),
            geozones_from=self.geozones_from,
        )


class TracksafeAccount(_AccountBase):
    """One TrackSafe365 organisation, reached with one API key."""

    provider: Literal["tracksafe365"]
    api_key: SecretStr
    base_url: str | None = None
    sandbox_url: str | None = None
    plan: Literal["sandbox", "starter", "growth", "enterprise"] | None = None
    # A poll is 3 calls per 500 vehicles (4 with the vehicle list).
    poll_interval: Annotated[float, Field(ge=10)] = 30.0

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: SecretStr) -> SecretStr:
        _check_secret(value)
        if key_environment(value.get_secret_value()) is None:
            raise _invalid(
                "must be a TrackSafe365 key: ts365_live_... (production), "
                "ts365_test_... (sandbox) or ts365_rk_... (restricted)"
            )
        return value

    @model_validator(mode="after")
    def _plan_budgets(self) -> TracksafeAccount:
        """The plan's limits become the defaults of `quota.budgets` (the user's
        own values win); Enterprise limits are custom, so the user must give them."""
        key = self.api_key.get_secret_value()
        if key_environment(key) == SANDBOX and self.plan not in (None, "sandbox"):
            raise _invalid(
                f"plan '{self.plan}' does not apply: ts365_test_ keys are on the Sandbox plan"
            )
        plan = effective_plan(key, self.plan)
        budgets = dict(self.quota.budgets)
        defaults = plan_budgets(plan)
        if defaults is None:
            missing = [
                name
                for name in (BUDGET_PER_MINUTE, BUDGET_PER_DAY)
                if name not in budgets or budgets[name].limit is None
            ]
            if missing:
                raise _invalid(
                    f"plan '{plan}' has no published limits: set "
                    + " and ".join(f"quota.budgets.{name}.limit" for name in missing)
                    + " to your contract's (for a day without a limit, a number you never reach)"
                )
            return self
        for budget in defaults:
            given = budgets.get(budget.name)
            if given is None:
                budgets[budget.name] = BudgetOverride(limit=budget.limit)
            elif given.limit is None:
                budgets[budget.name] = given.model_copy(update={"limit": budget.limit})
        quota = self.quota.model_copy(update={"budgets": budgets})
        return self.model_copy(update={"quota": quota})

    def cadence_plan(self) -> Cadence:
        return self.cadence_settings(self.poll_interval, 10.0)

    def provider_settings(self) -> TracksafeSettings:
        return TracksafeSettings(
            api_key=self.api_key.get_secret_value(),
            base_url=self.base_url or PRODUCTION_URL,
            sandbox_url=self.sandbox_url or SANDBOX_URL,
            request_timeout=self.request_timeout,
            plan=self.plan,
        )


def _check_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    if not secret.strip():
        raise _invalid("must not be empty")
    if _CONTROL_CHARACTERS.search(secret):
        raise _invalid("must not contain line breaks or other control characters")
    return value


def _check_account_id(value: str) -> str:
    if not _ACCOUNT_ID.fullmatch(value):
        raise _invalid(
            "must be 1 to 64 characters: lower-case letters a-z, digits, '_' or '-', "
            "starting with a letter or digit (it becomes an MQTT topic level)"
        )
    if value == RESERVED_ACCOUNT_ID:
        raise _invalid(f"'{RESERVED_ACCOUNT_ID}' is reserved for the bridge's own topics")
    return value


def _provider_of(value: Any) -> str | None:
    """The discriminator: the `provider:` of a raw mapping or of a built account."""
    provider = (
        value.get("provider") if isinstance(value, dict) else getattr(value, "provider", None)
    )
    if provider is None:
        return None  # pydantic reports union_tag_not_found: we say "field required"
    return provider if isinstance(provider, str) else ""


# A new provider is one account class above and one `| Annotated[...]` line here.
Account: TypeAlias = Annotated[
    Annotated[SamsaraAccount, Tag("samsara")]
    | Annotated[FleetizeAccount, Tag("fleetize")]
    | Annotated[TelemaxAccount, Tag("telemax")]
    | Annotated[MetrotecAccount, Tag("metrotec")]
    | Annotated[TracksafeAccount, Tag("tracksafe365")],
    Discriminator(_provider_of),
]


def _tags(annotation: object) -> list[str]:
    found = [m.tag for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Tag)]
    for arg in get_args(annotation):
        found += [tag for tag in _tags(arg) if tag not in found]
    return found


#: The `provider:` values the config accepts, in declaration order.
PROVIDERS: tuple[str, ...] = tuple(_tags(Account))


class CommandRule(_Model):
    """Who may drive what over MQTT: every listed account x vehicle x command."""

    accounts: list[str] = Field(default_factory=lambda: ["*"])
    # Vehicle ids, names, or `group:<name>` from `commands.groups`; "*" = all.
    vehicles: list[str] = Field(default_factory=lambda: ["*"])
    commands: list[Literal["lights", "snapshot", "task/create", "task/update", "*"]]


class CommandsConfig(_Model):
    """The write side. Deny by default: nothing is allowed until a rule says so."""

    allow: list[CommandRule] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    # How long a pending command is followed up before it is answered as failed.
    lights_timeout: Annotated[float, Field(ge=10)] = 300.0
    snapshot_timeout: Annotated[float, Field(ge=10)] = 180.0

    def allows(self, account: str, vehicle: str | None, names: set[str], command: str) -> bool:
        """`names`: the vehicle's id and name (and nothing for account-wide commands)."""
        for rule in self.allow:
            if "*" not in rule.commands and command not in rule.commands:
                continue
            if "*" not in rule.accounts and account not in rule.accounts:
                continue
            if "*" in rule.vehicles or vehicle is None:
                return True
            for entry in rule.vehicles:
                members = self.groups.get(entry[6:], []) if entry.startswith("group:") else [entry]
                if names & set(members):
                    return True
        return False


class AlertsConfig(_Model):
    """How alerts are published (see docs/alerts.md)."""

    # Alerts older than this (seconds) when first seen, e.g. after an outage, are
    # published with "stale": true and do not fire Home Assistant's event entity.
    max_age: Annotated[float, Field(ge=60)] = 3600.0
    # How long the ids of published alerts are kept to recognise repeats (days).
    retention_days: Annotated[int, Field(ge=1, le=365)] = 30


class WebhookAccountConfig(_Model):
    """One provider account's webhook: where it posts and how it signs."""

    path: str
    secret: SecretStr
    # The header carrying the delivery id, to ignore replays (Telemax:
    # X-Telemax-Delivery; configurable because its source is secondary).
    delivery_header: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise _invalid("must start with '/' and contain no spaces")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        return _check_secret(value)


class WebhooksConfig(_Model):
    """The optional receiver for providers that push (TrackSafe365, Telemax)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8742
    max_body: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    # Seconds a client may take to send its request (slow bodies are cut off).
    read_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    accounts: dict[str, WebhookAccountConfig] = Field(default_factory=dict)


#: OpenStreetMap's standard tiles; their usage policy asks for the attribution.
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = "© OpenStreetMap contributors"
_TILE_FIELDS = ("{z}", "{x}", "{y}")


class HttpConfig(_Model):
    """The bridge's own web server: the dashboard, /metrics and /healthz (docs/dashboard.md)."""

    # The live depot dashboard (map, vehicles, quota, alerts, commands).
    dashboard: bool = False
    # /metrics (Prometheus) and /healthz; also served whenever the dashboard is.
    metrics: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8743
    # Either or both: the token for scripts and links, the password for people.
    token: SecretStr | None = None
    password: SecretStr | None = None
    # Viewing without logging in (commands still need the token or password).
    dashboard_public: bool = False
    # /metrics without a token (it holds counts and account ids, no secrets).
    metrics_public: bool = True
    # Map tiles ({z}/{x}/{y}, optionally {s}); "" draws the coordinate grid only.
    tile_url: str = OSM_TILES
    tile_attribution: str = OSM_ATTRIBUTION
    # How long a login lasts, in hours.
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0

    @property
    def enabled(self) -> bool:
        return self.dashboard or self.metrics

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_not_blank(value)

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        _check_secret(value)
        if len(value.get_secret_value()) < 16:
            raise _invalid("must be at least 16 characters (e.g. `openssl rand -hex 16`)")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        _check_secret(value)
        if len(value.get_secret_value()) < 8:
            raise _invalid("must be at least 8 characters")
        return value

    @field_validator("tile_url")
    @classmethod
    def _tiles(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise _invalid('must be an http:// or https:// URL template, or "" for no tiles')
        missing = [name for name in _TILE_FIELDS if name not in value]
        if missing:
            raise _invalid(f"must contain {', '.join(missing)} (e.g. {OSM_TILES})")
        return value

    @model_validator(mode="after")
    def _login(self) -> HttpConfig:
        if self.dashboard and not self.dashboard_public and not (self.token or self.password):
            raise _invalid(
                "the dashboard needs http.token or http.password "
                "(or dashboard_public: true to show it without logging in)"
            )
        if not self.metrics_public and not self.token:
            raise _invalid("metrics_public: false needs http.token (the scraper's bearer token)")
        return self


class BridgeConfig(_Model):
    """The whole daemon configuration."""

    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    accounts: list[Account]
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # A section whose options are all commented out parses as null: use defaults
        # (and validate them, so a relative store path is resolved too).
        if isinstance(data, dict):
            data = dict(data)
            for section in ("mqtt", "store", "http"):
                if data.get(section, {}) is None:
                    data[section] = {}
            data.setdefault("store", {})
            if "accounts" in data and data["accounts"] is None:
                data["accounts"] = []
        return data

    @field_validator("accounts")
    @classmethod
    def _at_least_one(cls, value: list[Account]) -> list[Account]:
        if not value:
            raise _invalid("at least one account is required")
        return value

    @model_validator(mode="after")
    def _unique_ids(self, info: ValidationInfo) -> BridgeConfig:
        # parse_config runs this check itself on the raw data, so that it is reported
        # together with schema errors; here it guards configs built in Python.
        context = info.context if isinstance(info.context, Mapping) else {}
        if not context.get(_CROSS_CHECKED):
            problems = _duplicate_ids([account.id for account in self.accounts])
            if problems:
                raise _invalid("; ".join(_format_loc(loc) + ": " + msg for loc, msg in problems))
        return self

    @model_validator(mode="after")
    def _webhook_accounts(self) -> BridgeConfig:
        known = {account.id for account in self.accounts}
        unknown = sorted(set(self.webhooks.accounts) - known)
        if unknown:
            raise _invalid(f"webhooks.accounts.{unknown[0]}: no account has this id")
        return self

    def warnings(self) -> list[str]:
        """What is valid but worth a word: `check-config` prints these, `run`
        logs them at start, and each says what the bridge does about it."""
        found: list[str] = []
        ids = sorted(account.id for account in self.accounts)
        for short in ids:
            for long in ids:
                if long.startswith(short + "_"):
                    rest = long[len(short) + 1 :]
                    found.append(
                        f"accounts '{short}' and '{long}': Home Assistant unique ids are "
                        f"fleet_<account>_<vehicle>_..., so a vehicle 'x' of '{long}' and a "
                        f"vehicle '{rest}_x' of '{short}' would share one; their topics stay "
                        f"apart, but rename one account (e.g. '{short}-{rest}') before "
                        "its vehicles reach Home Assistant"
                    )
        found += _shared_scope_warnings(self.accounts)
        return found

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the logger to redact."""
        values: list[SecretStr | None] = [self.mqtt.password]
        values += [hook.secret for hook in self.webhooks.accounts.values()]
        values += [self.http.token, self.http.password]
        for account in self.accounts:
            # Every SecretStr option of an account, whatever the provider calls it.
            values += [v for v in dict(account).values() if isinstance(v, SecretStr)]
        found = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        if self.store.url is not None:
            found += url_passwords(self.store.url)
        return found


def _names(ids: list[str]) -> str:
    return ", ".join(ids[:-1]) + " and " + ids[-1] if len(ids) > 1 else ids[0]


def _shared_scope_warnings(accounts: list[Account]) -> list[str]:
    """Accounts that spend from one budget: one credential used twice, and
    accounts behind one egress on a spacing counted per address."""
    found: list[str] = []
    by_token: dict[str, list[Account]] = {}
    by_egress: dict[str, list[Account]] = {}
    for account in accounts:
        scopes = account.scopes()
        by_token.setdefault(scopes.token, []).append(account)
        if any(b.kind is BudgetKind.SPACING and b.scope is Scope.EGRESS for b in account.budgets()):
            by_egress.setdefault(scopes.egress, []).append(account)
    for group in by_token.values():
        if len(group) < 2:
            continue
        ids = [a.id for a in group]
        first = group[0]
        shared = [
            b.describe()
            for b in first.budgets()
            if b.scope in (Scope.TOKEN, Scope.ACCOUNT) and not b.endpoints
        ]
        found.append(
            f"accounts {_names(ids)} ({first.provider}) use the same credentials: "
            f"{first.provider} counts them as one account, so they spend from one "
            f"budget ({', '.join(shared) or 'its limits'}) and each plans its share of it; "
            "one account would poll the same vehicles once instead of "
            f"{len(group)} times"
        )
    for group in by_egress.values():
        if len(group) < 2:
            continue
        ids = [a.id for a in group]
        spacing = max(
            b.period
            for a in group
            for b in a.budgets()
            if b.kind is BudgetKind.SPACING and b.scope is Scope.EGRESS
        )
        found.append(
            f"{group[0].provider} accounts {_names(ids)} share egress '{group[0].egress}' "
            f"({group[0].provider} counts its {spacing:g} s spacing per address): they take "
            f"turns, each polls at most every {spacing * len(group):g} s, never two "
            "within the spacing; give an account its own `egress:` only if its calls "
            "really leave from another address"
        )
    return found


def _duplicate_ids(ids: list[object]) -> list[tuple[Loc, str]]:
    first: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = []
    for index, account_id in enumerate(ids):
        if not isinstance(account_id, str):
            continue
        if account_id in first:
            problems.append(
                (
                    ("accounts", index, "id"),
                    f"duplicate account id {account_id!r} "
                    f"(also used by accounts[{first[account_id]}])",
                )
            )
        else:
            first[account_id] = index
    return problems


# --- loading ----------------------------------------------------------------------


def load_config(path: str | Path) -> BridgeConfig:
    """Read and validate a YAML config file; raise ConfigError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{file}: configuration file not found"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{file}: the configuration file is not UTF-8 text"]) from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError([f"{file}: cannot read the configuration file ({reason})"]) from None
    return parse_config(text, source=str(file), base_dir=file.absolute().parent)


def parse_config(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> BridgeConfig:
    """Validate YAML text; relative paths are relative to `base_dir` (default: cwd)."""
    base = (base_dir if base_dir is not None else Path.cwd()).absolute()
    data, collected = _parse_yaml(text, source)
    if data is None:
        raise ConfigError(
            [f"{source}: the configuration is empty; it needs at least an 'accounts' list"]
        )
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{source} (line {collected.lines.get((), 1)}): the top level must be a mapping of "
                f"options (like 'mqtt:' and 'accounts:'), not {_kind(data)}"
            ]
        )

    failed: set[Loc] = set()
    data = _substitute_tree(data, (), base, collected, failed)
    accounts = data.get("accounts")
    if isinstance(accounts, list):
        ids = [item.get("id") if isinstance(item, dict) else None for item in accounts]
        cross_field = _duplicate_ids(ids)
    else:
        cross_field = []

    config: BridgeConfig | None = None
    try:
        config = BridgeConfig.model_validate(data, context={_BASE_DIR: base, _CROSS_CHECKED: True})
    except ValidationError as err:
        for error in err.errors(include_url=False, include_input=False):
            loc, reason = _describe(error, data)
            if not any(loc[: len(bad)] == bad for bad in failed):
                collected.add(loc, reason)
    for loc, reason in cross_field:
        collected.add(loc, reason)

    if collected.problems or config is None:
        raise ConfigError(collected.render(_secret_values(data)))
    return config


class _Problems:
    """Problems as (location, reason), rendered with line numbers at the end."""

    def __init__(self, lines: dict[Loc, int]) -> None:
        self.lines = lines
        self.problems: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, reason: str) -> None:
        if (loc, reason) not in self.problems:
            self.problems.append((loc, reason))

    def line_of(self, loc: Loc) -> int | None:
        # A missing option has no line: use its parent mapping's, and so on up.
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def render(self, secrets: list[str]) -> list[str]:
        rendered: list[tuple[int, str]] = []
        for loc, reason in self.problems:
            line = self.line_of(loc)
            where = _format_loc(loc) + ("" if line is None else f" (line {line})")
            message = f"{where}: {reason}"
            for secret in secrets:
                message = message.replace(secret, "***")
            rendered.append((line if line is not None else 0, message))
        # Top to bottom of the file, as the user will fix them.
        return [message for _, message in sorted(rendered, key=lambda item: item[0])]


def _format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # A name that would break the one-line message is quoted.
            name = part if part.strip() and part.isprintable() else repr(part)
            text += f".{name}" if text else name
    return text or "(top level)"


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a " + type(value).__name__


# --- YAML ---------------------------------------------------------------------------


def _parse_yaml(text: str, source: str) -> tuple[Any, _Problems]:
    """The parsed document, and problems that know every option's line (1-based)."""
    problems = _Problems({})
    try:
        # The reader refuses control characters already here.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as err:
        reason = str(getattr(err, "reason", "")) or "unreadable text"
        raise ConfigError([f"{source}: invalid YAML: {reason}"]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, problems
        _map_lines(node, (), problems, set())
        return loader.construct_document(node), problems
    except yaml.MarkedYAMLError as err:
        # Built from the problem and its mark only: str(err) quotes the input line.
        mark = err.problem_mark or err.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = err.problem or err.context or "unreadable"
        if err.context and reason.startswith("but "):
            reason = f"{err.context}, {reason}"
        raise ConfigError([f"{source}{where}: invalid YAML: {reason}"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"{source}: invalid YAML"]) from None
    finally:
        loader.dispose()


def _map_lines(node: yaml.Node, loc: Loc, problems: _Problems, active: set[int]) -> None:
    """Record the line of every option and list item; note options given twice."""
    if id(node) in active:
        # The tree would be infinite: nothing below could be validated.
        raise ConfigError(
            [
                *problems.render([]),
                f"{_format_loc(loc)} (line {node.start_mark.line + 1}): "
                "a YAML alias refers to the node that contains it",
            ]
        )
    active.add(id(node))
    lines = problems.lines
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # reported after construction: option names must be text
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                problems.add((*loc, key), f"option given twice (also on line {seen[key]})")
                lines[(*loc, key)] = line
                continue
            seen[key] = line
            lines[(*loc, key)] = line
            _map_lines(value_node, (*loc, key), problems, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(item, (*loc, index), problems, active)
    active.discard(id(node))


# --- ${...} substitution ------------------------------------------------------------

# `$$`, or `${...}`, or an unterminated `${`.
_REFERENCE = re.compile(r"\$(?:(\$)|\{([^}]*)(\}?))")
_ENV_REFERENCE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


class _SubstitutionError(Exception):
    pass


def _substitute_tree(
    value: Any, loc: Loc, base_dir: Path, problems: _Problems, failed: set[Loc]
) -> Any:
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                problems.add(loc, f"option name {key!r} must be text (put it in quotes)")
                continue
            result[key] = _substitute_tree(item, (*loc, key), base_dir, problems, failed)
        return result
    if isinstance(value, list):
        return [
            _substitute_tree(item, (*loc, index), base_dir, problems, failed)
            for index, item in enumerate(value)
        ]
    if isinstance(value, str) and "$" in value:
        try:
            return _substitute(value, base_dir)
        except _SubstitutionError as err:
            problems.add(loc, str(err))
            failed.add(loc)
            return ""
    return value


def _substitute(value: str, base_dir: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        body, closed = match.group(2), match.group(3)
        if not closed:
            raise _SubstitutionError("'${' without a closing '}' (write '$$' for a literal '$')")
        return _resolve_reference(body, base_dir)

    return _REFERENCE.sub(replace, value)


def _resolve_reference(body: str, base_dir: Path) -> str:
    if body.startswith("file:"):
        return _read_secret_file(body.removeprefix("file:"), base_dir)
    match = _ENV_REFERENCE.fullmatch(body)
    if match is None:
        # The text between the braces is not quoted back: it might be a secret.
        raise _SubstitutionError(
            "invalid reference: expected ${NAME}, ${NAME:-default} or ${file:path} "
            "(write '$$' for a literal '$')"
        )
    name, default = match.group(1), match.group(2)
    value = os.environ.get(name)
    if default is not None and not value:
        return default
    if value is None:
        raise _SubstitutionError(f"environment variable {name} is not set")
    return value


def _read_secret_file(name: str, base_dir: Path) -> str:
    if not name.strip():
        raise _SubstitutionError("'${file:...}' needs a file path")
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _SubstitutionError(f"secret file {path} does not exist") from None
    except UnicodeDecodeError:
        raise _SubstitutionError(f"secret file {path} is not UTF-8 text") from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise _SubstitutionError(f"cannot read secret file {path} ({reason})") from None
    if content.endswith("\r\n"):
        return content[:-2]
    return content.removesuffix("\n")


# --- pydantic errors into problems --------------------------------------------------

_SECRET_OPTIONS = frozenset({"token", "password", "api_key", "secret"})


def _describe(error: ErrorDetails, data: Any) -> tuple[Loc, str]:
    """The user's location and a lower-case reason, from `loc`, `type` and `msg` only."""
    loc = _strip_tags(tuple(error["loc"]))
    kind = error["type"]
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        item = _lookup(data, loc)
        if not isinstance(item, dict):
            return loc, "must be a mapping of account options"
        expected = ", ".join(PROVIDERS)
        provider = item.get("provider")
        if provider is None:
            return (*loc, "provider"), "field required"
        if not isinstance(provider, str):
            return (*loc, "provider"), f"must be one of: {expected}"
        return (*loc, "provider"), f"unknown provider '{provider}' (expected one of: {expected})"
    if kind == "missing":
        return loc, "field required"
    if kind == "extra_forbidden":
        return loc, "unknown option"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, "must be a mapping of options"
    reason = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        reason = reason.removeprefix(prefix)
    if reason.startswith("Input should be "):
        reason = "must be " + reason.removeprefix("Input should be ")
    return loc, reason[:1].lower() + reason[1:]


def _strip_tags(loc: Loc) -> Loc:
    """('accounts', 0, 'samsara', 'token') -> ('accounts', 0, 'token')."""
    return tuple(
        part
        for index, part in enumerate(loc)
        if not (
            index >= 2
            and part in PROVIDERS
            and isinstance(loc[index - 1], int)
            and loc[index - 2] == "accounts"
        )
    )


def _lookup(data: Any, loc: Loc) -> Any:
    for part in loc:
        in_list = isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data)
        in_mapping = isinstance(part, str) and isinstance(data, dict) and part in data
        if not (in_list or in_mapping):
            return None
        data = data[part]
    return data


def _secret_values(data: Any, under_secret: bool = False) -> list[str]:
    """Every scalar given for a secret option: a last guard on rendered messages."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _secret_values(value, under_secret or key in _SECRET_OPTIONS)
    elif isinstance(data, list):
        for item in data:
            found += _secret_values(item, under_secret)
    elif under_secret and data is not None and not isinstance(data, bool):
        text = str(data)
        if len(text) >= 4:
            found.append(text)
    return sorted(set(found), key=len, reverse=True)
