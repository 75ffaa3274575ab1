"""Telemax: fleet last positions, paginated, and safety scores spread over time.

Auth is an API key exchanged (form-encoded, JSON is refused) for a bearer token
that lives a day, with no refresh endpoint: the token is cached (in the
checkpoint, so a restart does not log in again), renewed 5 minutes before it
expires, and renewed once when a call answers 401. Limits are sliding windows
per token and per endpoint; the safety-score window (30 per 60 s) is the
tightest, so scores are fetched a few vehicles per poll, oldest first, with
explicit start and finish (the preset windows are documented as buggy).

Alerts are the company's alert records, read at most every `alert_interval`
from the second poll of a run on (the first publishes the vehicles and their
event entities), over the window from `alert_overlap` before the end of the
last one read (records arrive late) to now; the first reaches back
`alert_lookback`. Repeats are expected: the poller publishes each record once.
The same records pushed to the webhook receiver are parsed by `webhook_alerts`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from bridge.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    QuotaExhaustedError,
)
from bridge.model import (
    Alert,
    AlertType,
    Capability,
    PollPlan,
    Position,
    Priority,
    Severity,
    Update,
    VehicleState,
    format_time,
    parse_time,
)
from bridge.providers.http import HttpClient, RetryPolicy
from bridge.providers.parse import (
    clip,
    fingerprint,
    integer,
    number,
    text,
    valid_coordinates,
)
from bridge.quota import Budget, BudgetKind, Quota, endpoint_window

_LOGGER = logging.getLogger(__name__)

# --- Endpoints, limits and units, in one place (NOTES.md, telemax-safety-score.txt)
BASE_URL = "https://api.telemax.com.au"
PATH_TOKEN = "api/v2/authentication/token/api-key"
PATH_COMPANIES = "api/v2/companies"
PATH_FLEET_POSITIONS = "api/v2/companies/{company}/vehicles/last-position"
PATH_SAFETY_SCORE = "api/v2/safety-score/{vehicle}"
PATH_ALERT_RECORDS = "api/v2/companies/{company}/alert-records"
ENDPOINT_AUTH = "auth"
ENDPOINT_COMPANIES = "companies"
ENDPOINT_FLEET_POSITIONS = "fleet_last_position"
ENDPOINT_VEHICLE_POSITION = "vehicle_last_position"
ENDPOINT_SAFETY_SCORE = "safety_score"
ENDPOINT_REPLAY = "replay"
ENDPOINT_VEHICLES_LIST = "vehicles_list"
ENDPOINT_ALERT_RECORDS = "alert_records"
PAGE_SIZE = 500  # documented maximum (default 50)
# Alert pages read per poll at most (the rest of the window comes next poll).
MAX_ALERT_PAGES = 10
# Renew the token this long before it expires (documented advice).
TOKEN_MARGIN = timedelta(minutes=5)
DEFAULT_BUDGETS = (
    Budget("per_token", BudgetKind.WINDOW, limit=60, period=60.0),
    endpoint_window(ENDPOINT_FLEET_POSITIONS, limit=20, period=60.0),
    endpoint_window(ENDPOINT_VEHICLE_POSITION, limit=120, period=60.0),
    endpoint_window(ENDPOINT_SAFETY_SCORE, limit=30, period=60.0),
    endpoint_window(ENDPOINT_REPLAY, limit=20, period=60.0),
    endpoint_window(ENDPOINT_VEHICLES_LIST, limit=60, period=60.0),
)

# --- Alerts: record types in the bridge's vocabulary -----------------------------
#: Record `type` -> alert type, keyed by the type in lower case without
#: separators (`HarshBraking`, `harsh_braking` and `Harsh braking` are one). The
#: documentation names the endpoint only; `Speeding` and `HarshBraking` are
#: what we have seen, the rest the usual names of rules a company can set up.
#: Anything else is OTHER, with its name in `details.provider_type`.
ALERT_TYPES: dict[str, AlertType] = {
    "speeding": AlertType.SPEEDING,
    "overspeed": AlertType.SPEEDING,
    "harshbraking": AlertType.HARSH_BRAKING,
    "harshacceleration": AlertType.HARSH_ACCELERATION,
    "harshcornering": AlertType.HARSH_CORNERING,
    "harshturn": AlertType.HARSH_CORNERING,
    "crash": AlertType.CRASH,
    "impact": AlertType.CRASH,
    "geofenceenter": AlertType.GEOZONE_ENTER,
    "geofenceentry": AlertType.GEOZONE_ENTER,
    "geofenceexit": AlertType.GEOZONE_EXIT,
    "idling": AlertType.IDLING,
    "excessiveidle": AlertType.IDLING,
    "panic": AlertType.PANIC,
    "sos": AlertType.PANIC,
    "powerdisconnected": AlertType.UNPLUGGED,
    "tamper": AlertType.TAMPER,
    "lowbattery": AlertType.LOW_BATTERY,
}
#: Severity of a record by type (a record carries none); anything else: WARNING.
ALERT_SEVERITIES: dict[AlertType, Severity] = {
    AlertType.CRASH: Severity.CRITICAL,
    AlertType.PANIC: Severity.CRITICAL,
    AlertType.TAMPER: Severity.CRITICAL,
    AlertType.GEOZONE_ENTER: Severity.INFO,
    AlertType.GEOZONE_EXIT: Severity.INFO,
    AlertType.IDLING: Severity.INFO,
    AlertType.OTHER: Severity.INFO,
}
#: A record's own severity or priority, should it have one.
SEVERITY_WORDS: dict[str, Severity] = {
    "low": Severity.INFO,
    "info": Severity.INFO,
    "medium": Severity.WARNING,
    "warning": Severity.WARNING,
    "high": Severity.CRITICAL,
    "critical": Severity.CRITICAL,
}
# After an outage the window never reaches back further than this.
MAX_ALERT_CATCH_UP = timedelta(days=1)
# A key without access to alert records is asked again this often.
ALERT_ACCESS_RETRY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class TelemaxSettings:
    api_key: str
    base_url: str = BASE_URL
    request_timeout: float = 30.0
    # How often each vehicle's safety score is refreshed, and over how many days.
    safety_score_interval: float = 3600.0
    safety_score_days: int = 7
    # At most this many safety-score calls per poll (the rest come next poll).
    safety_scores_per_poll: int = 10
    # Alert records: read at most this often; the first read reaches back
    # `alert_lookback`, later ones start `alert_overlap` before the last window's end.
    alert_interval: float = 60.0
    alert_lookback: float = 3600.0
    alert_overlap: float = 3600.0


@dataclass(slots=True)
class TelemaxProvider:
    """One Telemax company (one API key)."""

    name: ClassVar[str] = "telemax"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.POSITION,
            Capability.SPEED,
            Capability.ODOMETER,
            Capability.FUEL_LEVEL,
            Capability.FUEL_VOLUME,
            Capability.IGNITION,
            Capability.BATTERY_VOLTAGE,
            Capability.ENGINE_HOURS,
            Capability.RISK_SCORE,
        }
    )
    default_budgets: ClassVar[tuple[Budget, ...]] = DEFAULT_BUDGETS
    poll_endpoint: ClassVar[str] = ENDPOINT_FLEET_POSITIONS
    # Alert rules are the company's own: types outside the table come as OTHER.
    alert_types: ClassVar[frozenset[AlertType]] = frozenset(
        {*ALERT_TYPES.values(), AlertType.OTHER}
    )

    session: aiohttp.ClientSession
    settings: TelemaxSettings
    quota: Quota | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _http: HttpClient = field(init=False)
    _states: dict[str, VehicleState] = field(default_factory=dict, init=False)
    _token: str | None = field(default=None, init=False)
    _token_expires: datetime | None = field(default=None, init=False)
    _company: str | None = field(default=None, init=False)
    _scored_at: dict[str, datetime] = field(default_factory=dict, init=False)
    _scores_allowed: bool = field(default=True, init=False)
    # The end of the last alert window read whole (checkpointed).
    _alerts_until: datetime | None = field(default=None, init=False)
    # The window being read page by page: (start, end, next page).
    _alert_window: tuple[datetime, datetime, int] | None = field(default=None, init=False)
    _alerts_armed: bool = field(default=False, init=False)
    _alerts_due: datetime | None = field(default=None, init=False)
    _alerts_denied_until: datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._http = HttpClient(
            self.session,
            "Telemax",
            timeout=self.settings.request_timeout,
            retry=self.retry,
            quota=self.quota,
        )

    # --- persistence -------------------------------------------------------
    def checkpoint(self) -> dict[str, str]:
        checkpoint: dict[str, str] = {}
        if self._company:
            checkpoint["company"] = self._company
        # No bearer token: one kept at rest is a credential anyone who can read
        # the store could use for a day; a restart logs in again (one call).
        if self._alerts_until is not None:
            checkpoint["alerts_until"] = self._alerts_until.isoformat()
        return checkpoint

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        self._states = {v.vehicle_id: v for v in vehicles}
        self._company = checkpoint.get("company")
        self._token, self._token_expires = None, None
        self._alerts_until = parse_time(checkpoint.get("alerts_until"))

    async def validate(self) -> str:
        """A token for the API key and its company: the company is the account."""
        now = self.quota.now() if self.quota is not None else datetime.now(UTC)
        self._company = await self._first_company(now, Priority.COMMAND)
        return fingerprint(self.name, self.settings.base_url, self._company)

    async def close(self) -> None:
        """Nothing to release: the session is injected."""

    # --- polling -----------------------------------------------------------
    async def poll(self, plan: PollPlan) -> Update:
        now = plan.now or datetime.now(UTC)
        if self._company is None:
            self._company = await self._first_company(now, plan.priority)
        before = dict(self._states)
        listed: set[str] = set()
        page = 1
        while True:
            body = await self._get(
                PATH_FLEET_POSITIONS.format(company=self._company),
                ENDPOINT_FLEET_POSITIONS,
                now,
                plan.priority,
                params={"page": str(page), "pageSize": str(PAGE_SIZE)},
            )
            for item in _items(body):
                state = self._parse_record(item)
                if state is not None:
                    listed.add(state.vehicle_id)
                    self._states[state.vehicle_id] = state
            pages = integer(body.get("numberOfPages")) if isinstance(body, dict) else None
            if pages is None or page >= pages:
                break
            page += 1
        removed = [vid for vid in self._states if vid not in listed]
        for vid in removed:
            del self._states[vid]
            self._scored_at.pop(vid, None)
        await self._refresh_scores(now, plan.priority)
        changed = [s for vid, s in self._states.items() if before.get(vid) != s]
        alerts = await self._poll_alerts(now, plan.priority)
        return Update(vehicles=changed, removed=removed, alerts=alerts)

    async def _first_company(self, now: datetime, priority: Priority) -> str:
        body = await self._get(PATH_COMPANIES, ENDPOINT_COMPANIES, now, priority)
        items = _items(body)
        company = text(items[0].get("Id")) if items and isinstance(items[0], dict) else None
        if company is None:
            raise ProviderDataError("Telemax: the API key's token lists no company")
        return company

    async def _refresh_scores(self, now: datetime, priority: Priority) -> None:
        if not self._scores_allowed:
            return
        due = sorted(
            (
                vid
                for vid in self._states
                if vid not in self._scored_at
                or (now - self._scored_at[vid]).total_seconds()
                >= self.settings.safety_score_interval
            ),
            key=lambda vid: self._scored_at.get(vid, datetime.min.replace(tzinfo=UTC)),
        )
        room = self.settings.safety_scores_per_poll
        if self.quota is not None:
            # Spend only what the window has right now: scores never delay a poll.
            room = min(room, self.quota.available(ENDPOINT_SAFETY_SCORE, priority))
        for vid in due[:room]:
            try:
                score = await self._risk_score(vid, now, priority)
            except (ProviderError, QuotaExhaustedError) as err:
                _LOGGER.info("Telemax: no safety score for %s now: %s", vid, err)
                return
            self._scored_at[vid] = now
            if score is not _NO_ACCESS:
                self._states[vid] = self._states[vid].merged(risk_score=score)

    async def _risk_score(self, vehicle: str, now: datetime, priority: Priority) -> Any:
        start = now - timedelta(days=self.settings.safety_score_days)
        response = await self._get(
            PATH_SAFETY_SCORE.format(vehicle=vehicle),
            ENDPOINT_SAFETY_SCORE,
            now,
            priority,
            # Always explicit: the preset windows extend `finish` forward (a
            # documented bug), which would mix in nonsense.
            params={"start": _iso(start), "finish": _iso(now)},
            passthrough=frozenset({403, 404}),
        )
        if response is _NO_ACCESS:
            return _NO_ACCESS
        trips = [t for t in response if isinstance(t, dict)] if isinstance(response, list) else []
        weighted = [
            (score, max(distance, 0.001))
            for t in trips
            if (score := number(t.get("riskScore"))) is not None
            and (distance := number(t.get("distance"))) is not None
        ]
        if not weighted:
            return None
        total = sum(d for _, d in weighted)
        return round(sum(s * d for s, d in weighted) / total, 1)

    # --- alerts ------------------------------------------------------------------
    async def _poll_alerts(self, now: datetime, priority: Priority) -> list[Alert]:
        """The company's alert records, when due; a failure never fails the poll."""
        if not self._alerts_armed:
            # The first poll of a run publishes the vehicles (and their event
            # entities); alerts start with the next, the window covers the gap.
            self._alerts_armed = True
            return []
        if self._alerts_due is not None and now < self._alerts_due:
            return []
        if self._alerts_denied_until is not None and now < self._alerts_denied_until:
            return []
        if self.quota is not None and self.quota.available(ENDPOINT_ALERT_RECORDS, priority) < 1:
            _LOGGER.debug("Telemax: no quota to spare for alert records this poll")
            return []
        if self._alert_window is None:
            self._alert_window = (self._alert_start(now), now, 1)
        start, end, first_page = self._alert_window
        alerts: list[Alert] = []
        try:
            for page in range(first_page, first_page + MAX_ALERT_PAGES):
                body = await self._get(
                    PATH_ALERT_RECORDS.format(company=self._company),
                    ENDPOINT_ALERT_RECORDS,
                    now,
                    priority,
                    params={
                        "from": _iso(start),
                        "to": _iso(end),
                        "page": str(page),
                        "pageSize": str(PAGE_SIZE),
                    },
                    passthrough=frozenset({403}),
                )
                if body is _NO_ACCESS:
                    if self._alerts_denied_until is None:
                        _LOGGER.warning(
                            "Telemax: the API key may not read alert records (HTTP 403); "
                            "alerts are skipped (positions keep coming), asked again hourly"
                        )
                    self._alerts_denied_until = now + ALERT_ACCESS_RETRY
                    self._alert_window = None
                    return alerts
                alerts += _record_alerts(_items(body))
                pages = integer(body.get("numberOfPages")) if isinstance(body, dict) else None
                if pages is None or page >= pages:
                    break
                # Remembered page by page: a failure or the page limit resumes here.
                self._alert_window = (start, end, page + 1)
            else:
                self._alerts_due = now + timedelta(seconds=self.settings.alert_interval)
                return alerts
        except ProviderAuthError:
            raise
        except (ProviderError, QuotaExhaustedError) as err:
            _LOGGER.info("Telemax: no alert records this poll: %s", err)
            return alerts
        if self._alerts_denied_until is not None:
            _LOGGER.info("Telemax: alert records are readable again")
            self._alerts_denied_until = None
        self._alerts_until, self._alert_window = end, None
        self._alerts_due = now + timedelta(seconds=self.settings.alert_interval)
        return alerts

    def _alert_start(self, now: datetime) -> datetime:
        if self._alerts_until is None:
            start = now - timedelta(seconds=self.settings.alert_lookback)
        else:
            start = self._alerts_until - timedelta(seconds=self.settings.alert_overlap)
        if start >= now:  # the clock went back
            start = now - timedelta(seconds=self.settings.alert_overlap)
        return max(start, now - MAX_ALERT_CATCH_UP)

    # --- HTTP ----------------------------------------------------------------
    async def _get(
        self,
        path: str,
        endpoint: str,
        now: datetime,
        priority: Priority,
        *,
        params: dict[str, str] | None = None,
        passthrough: frozenset[int] = frozenset(),
    ) -> Any:
        url = URL(self.settings.base_url.rstrip("/") + "/" + path)
        for attempt in (1, 2):
            token = await self._valid_token(now, priority)
            response = await self._http.request(
                "GET",
                url,
                headers={"Authorization": f"Bearer {token}"},
                params=params,
                endpoint=endpoint,
                priority=priority,
                passthrough_statuses=passthrough | {401},
            )
            if response.status == 401:
                # An expired or revoked token: log in again, once.
                self._token = None
                if attempt == 2:
                    raise ProviderAuthError(
                        "Telemax refused a fresh token (HTTP 401): check the API key"
                    )
                continue
            if response.status in (403, 404) and endpoint == ENDPOINT_SAFETY_SCORE:
                if response.status == 403:
                    _LOGGER.warning(
                        "Telemax: the API key's scope does not include safety scores "
                        "(HTTP 403); risk scores stay unknown"
                    )
                    self._scores_allowed = False
                return _NO_ACCESS
            if response.status == 403 and endpoint == ENDPOINT_ALERT_RECORDS:
                return _NO_ACCESS
            return response.json()
        raise AssertionError("unreachable")

    async def _valid_token(self, now: datetime, priority: Priority) -> str:
        if (
            self._token
            and self._token_expires is not None
            and now < self._token_expires - TOKEN_MARGIN
        ):
            return self._token
        url = URL(self.settings.base_url.rstrip("/") + "/" + PATH_TOKEN)
        response = await self._http.request(
            "POST",
            url,
            form={"apiKey": self.settings.api_key},
            endpoint=ENDPOINT_AUTH,
            priority=priority,
            passthrough_statuses=frozenset({400}),
        )
        body = response.json()
        if response.status == 400 or not isinstance(body, dict):
            raise ProviderAuthError(f"Telemax refused the API key: {_describe(body)}")
        token = body.get("access_token")
        lifetime = number(body.get("expires_in"))
        if not isinstance(token, str) or not token or lifetime is None:
            raise ProviderDataError("Telemax: the token answer lacks access_token/expires_in")
        self._token = token
        self._token_expires = now + timedelta(seconds=lifetime)
        return token

    # --- mapping into the model -------------------------------------------
    def _parse_record(self, item: Any) -> VehicleState | None:
        if not isinstance(item, dict):
            return None
        vid = text(item.get("id"))
        if vid is None:
            return None
        state = self._states.get(vid) or VehicleState(vehicle_id=vid, name=vid)
        lat, lng = number(item.get("lat")), number(item.get("lng"))
        when = parse_time(item.get("utcTime"))
        position = state.position
        if lat is not None and lng is not None and valid_coordinates(lat, lng):
            address = item.get("address")
            position = Position(
                latitude=lat,
                longitude=lng,
                time=when,
                heading=number(item.get("course")),
                address=address if isinstance(address, str) and address else None,
            )
        ignition = item.get("ignition")
        online = item.get("isOnline")
        return state.merged(
            name=text(item.get("deviceName")) or state.name,
            position=position,
            speed_kmh=number(item.get("speed")),
            odometer_km=number(item.get("odometer")),
            battery_voltage=number(item.get("voltage")),
            engine_hours=number(item.get("engineHours")),
            fuel_percent=number(item.get("fuelLevel")),
            fuel_volume_l=number(item.get("fuelVolume")),
            ignition=ignition if isinstance(ignition, bool) else None,
            reported_online=online if isinstance(online, bool) else None,
            last_seen=max((t for t in (when, state.last_seen) if t), default=None),
            vin=text(item.get("vin")) or state.vin,
        )


class _NoAccess:
    """The safety-score endpoint is closed to this key (403) or vehicle (404)."""


_NO_ACCESS: Any = _NoAccess()


def _items(body: Any) -> list[Any]:
    items = body.get("items") if isinstance(body, dict) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise ProviderDataError("Telemax: `items` is not a list")
    return items


def _describe(body: Any) -> str:
    if isinstance(body, dict):
        return clip(str(body.get("description") or body.get("code") or "no reason given"))
    return "no reason given"


def _iso(value: datetime) -> str:
    return format_time(value) or ""


# --- alerts: one mapping for polled and pushed records ----------------------------------


def record_alert(item: Mapping[str, Any]) -> Alert | None:
    """An alert record as an Alert; None without an id, a vehicle or a time."""
    record_id = text(item.get("id"))
    vehicle_id = text(item.get("vehicleId"))
    when = parse_time(item.get("time")) or parse_time(item.get("utcTime"))
    if record_id is None or vehicle_id is None or when is None:
        return None
    provider_type = text(item.get("type")) or text(item.get("alertType")) or "unknown"
    kind = ALERT_TYPES.get(_type_key(provider_type), AlertType.OTHER)
    own = text(item.get("severity")) or text(item.get("priority"))
    severity = SEVERITY_WORDS.get((own or "").lower()) or ALERT_SEVERITIES.get(
        kind, Severity.WARNING
    )
    details: dict[str, Any] = {"provider_type": provider_type}
    description = text(item.get("details")) or text(item.get("description"))
    if description:
        details["description"] = description
    speed = number(item.get("speed"))
    if speed is not None and speed >= 0:
        details["speed_kmh"] = speed
    position = None
    lat = number(item.get("lat", item.get("latitude")))
    lng = number(item.get("lng", item.get("longitude")))
    if lat is not None and lng is not None and valid_coordinates(lat, lng):
        address = text(item.get("address"))
        position = Position(latitude=lat, longitude=lng, time=when, address=address)
    media = text(item.get("mediaUrl"))
    return Alert(
        alert_id=record_id,
        vehicle_id=vehicle_id,
        type=kind,
        time=when,
        severity=severity,
        driver=text(item.get("driverName")) or text(item.get("driver")),
        position=position,
        media_url=media if media and media.lower().startswith(("https://", "http://")) else None,
        details=details,
    )


def _record_alerts(items: Iterable[Any]) -> list[Alert]:
    alerts = []
    for item in items:
        alert = record_alert(item) if isinstance(item, dict) else None
        if alert is None:
            _LOGGER.debug("Telemax: skipped an alert record without id, vehicle or time")
        else:
            alerts.append(alert)
    return alerts


def webhook_alerts(body: bytes) -> list[Alert]:
    """The alerts in a webhook delivery (signature already checked).

    NOTES.md names the signature and delivery headers, not the body; accepted are
    an alert record as `alert-records` lists them, a list of them, or an envelope
    holding them under `data`, `items` or `alerts` (one or a list). Raises
    ProviderDataError (never quoting the body) for anything else."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProviderDataError("Telemax webhook: the body is not JSON") from None
    records: Any = payload
    if isinstance(payload, dict):
        for key in ("data", "items", "alerts", "alert"):
            if key in payload:
                records = payload[key]
                break
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise ProviderDataError("Telemax webhook: no alert record in the body")
    alerts = []
    for record in records:
        alert = record_alert(record) if isinstance(record, dict) else None
        if alert is None:
            raise ProviderDataError("Telemax webhook: an alert record lacks id, vehicleId or time")
        alerts.append(alert)
    return alerts


def _type_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())
