"""A simulated Telemax API over its own simulated fleet (mounted under `/telemax`).

    POST /api/v2/authentication/token/api-key          form body apiKey=<key>
    GET  /api/v2/companies
    GET  /api/v2/companies/{id}/vehicles                (the vehicle list; path invented)
    GET  /api/v2/companies/{id}/vehicles/last-position  ?page=&pageSize=
    GET  /api/v2/vehicles/{id}/last-position
    GET  /api/v2/safety-score/{id}                      ?start=&finish= | ?intervalType=1..4
    GET  /api/v2/replay/{id}                            ?from=&to=&page=&pageSize=
    GET  /api/v2/companies/{id}/alert-records           ?from=&to=&page=&pageSize=

Telemax's rules: the login takes a form body (JSON is refused with 415) and gives
a bearer token that lives 86,399 simulated seconds; errors are
`{type, code, description, requestId, docUrl}` (the values of `type`, `code` and
`docUrl` are invented); sliding-window limits per token on real (monotonic) time,
as documented: 60 requests / 60 s overall, and per endpoint `LIMITS`. Past one: 429
with an integer `Retry-After`. Every response carries `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Reset` (whole seconds until the oldest
counted request leaves the window) for the window closest to its limit; requests
without a valid token are not counted and show a fresh overall window.

The documented safety-score bug is on by default (`preset_bug`): with
`intervalType` 2-4 and no start/finish, the window is [end of today - N days, end
of today + N days] instead of ending tonight, and a trip still going on is
reported as ending at that `finish` (tomorrow or later): future-dated nonsense.

Tests reach in through `counters`, `throttled`, `limiters`, `expire_tokens()`,
`fail_next()` and `latency`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator.telemax_json import (
    BadQuery,
    alerts_of,
    envelope,
    paging,
    parse_time,
    position_json,
    replay_json,
    score_json,
    vehicle_json,
)
from bridge.simulator.traffic import Fault, FaultQueue, RequestCounters, SlidingWindowLimiter
from bridge.simulator.vehicle import DAY_MS, SimVehicle, Trip
from bridge.simulator.world import World

_LOGGER = logging.getLogger(__name__)

PREFIX = "/telemax"
DEFAULT_API_KEY = "demo-telemax-key"
TOKEN_LIFETIME_S = 86_399
COMPANY_ID = 1042
COMPANY_NAME = "Demo Transport Pty Ltd"
DOC_URL = "https://developer.telemax.com.au/docs/errors"
WINDOW_S = 60.0
OVERALL = "overall"
#: Requests per token per 60 s: overall, and per endpoint (by route name).
LIMITS: dict[str, int] = {
    OVERALL: 60,
    "fleet-last-position": 20,
    "vehicle-last-position": 120,
    "safety-score": 30,
    "replay": 20,
    "vehicles-list": 60,
}
#: intervalType -> days of the preset window (1 is "instant": now to now).
PRESET_DAYS = {2: 1, 3: 3, 4: 7}
PATH_LOGIN = "/api/v2/authentication/token/api-key"
_ROUTES = (
    ("GET", "/api/v2/companies", "companies"),
    ("GET", "/api/v2/companies/{company}/vehicles", "vehicles-list"),
    ("GET", "/api/v2/companies/{company}/vehicles/last-position", "fleet-last-position"),
    ("GET", "/api/v2/vehicles/{vehicle}/last-position", "vehicle-last-position"),
    ("GET", "/api/v2/safety-score/{vehicle}", "safety-score"),
    ("GET", "/api/v2/replay/{vehicle}", "replay"),
    ("GET", "/api/v2/companies/{company}/alert-records", "alert-records"),
)
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class _ApiError(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def naming(seq: int) -> tuple[str, str]:
    """Telemax's (legacy) vehicle ids are integers."""
    return str(40_000 + seq), f"Fleet {seq:03d}"


class TelemaxSim:
    """Telemax's API for one company, plus the switches tests turn."""

    name: ClassVar[str] = "telemax"

    def __init__(
        self,
        world: World,
        *,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        monotonic: Callable[[], float] = time.monotonic,
        limits: Mapping[str, int] | None = None,
        token_lifetime_s: int = TOKEN_LIFETIME_S,
        preset_bug: bool = True,
    ) -> None:
        """`limits` overrides entries of `LIMITS` (e.g. `{"overall": 1000}`)."""
        self.world = world
        self.api_keys = frozenset(api_keys)
        self.token_lifetime_s = token_lifetime_s
        self.preset_bug = preset_bug
        self.company_id = COMPANY_ID
        table = {**LIMITS, **(limits or {})}
        self.limiters = {
            name: SlidingWindowLimiter(limit, WINDOW_S, clock=monotonic)
            for name, limit in table.items()
        }
        self.counters = RequestCounters()
        #: 429s served by the limits, per window name.
        self.throttled: Counter[str] = Counter()
        self.faults = FaultQueue()
        self.latency = 0.0
        self.tokens_issued = 0
        self._tokens: dict[str, int] = {}  # token -> expiry (simulated ms)

    # --- switches for tests -------------------------------------------------
    def expire_cursors(self) -> None:
        """Telemax pages by number; there are no cursors."""

    def expire_tokens(self) -> None:
        """Every token handed out so far expires now."""
        now = self.world.clock.now_ms()
        for token in self._tokens:
            self._tokens[token] = min(self._tokens[token], now)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` in the error shape (429
        with `Retry-After`, 1 s unless given)."""
        self.faults.add(Fault(status, retry_after, body), count)

    def stats(self) -> dict[str, Any]:
        now = self.world.clock.now_ms()
        return {
            **self.counters.to_json(),
            "vehicles": len(self.world),
            "tokens_issued": self.tokens_issued,
            "tokens_live": sum(expiry > now for expiry in self._tokens.values()),
            "throttled": dict(self.throttled),
            "faults_pending": self.faults.pending,
            "latency": self.latency,
            "preset_bug": self.preset_bug,
        }

    def control_actions(self) -> dict[str, Callable[[Mapping[str, str]], dict[str, Any]]]:
        """`POST /_sim/telemax/<name>` of the control API."""

        def expire_tokens(_: Mapping[str, str]) -> dict[str, Any]:
            self.expire_tokens()
            return {"expired": len(self._tokens)}

        def reset_limits(_: Mapping[str, str]) -> dict[str, Any]:
            for limiter in self.limiters.values():
                limiter.reset()
            return {"reset": True}

        return {"expire-tokens": expire_tokens, "reset-limits": reset_limits}

    # --- the HTTP side ------------------------------------------------------------
    def app(self) -> web.Application:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._gate(request, handler)

        app = web.Application(middlewares=[gate])
        app.router.add_post(PATH_LOGIN, self._login, name="login")
        handlers = {
            "companies": self._companies,
            "vehicles-list": self._vehicles,
            "fleet-last-position": self._fleet_positions,
            "vehicle-last-position": self._vehicle_position,
            "safety-score": self._safety_score,
            "replay": self._replay,
            "alert-records": self._alerts,
        }
        for method, path, name in _ROUTES:
            app.router.add_route(method, path, handlers[name], name=name)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await self.counters.count(
            request.path.removeprefix(PREFIX), self._answer(request, handler)
        )

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        route = request.match_info.route.name
        windows = [OVERALL] + ([route] if route in self.limiters and route != OVERALL else [])
        fault = self.faults.take()
        if fault is not None:
            return self._with_limits(_fault_response(fault), None, windows)
        if request.path.removeprefix(PREFIX) == PATH_LOGIN:
            return self._with_limits(await self._call(request, handler), None, windows)
        try:
            token = self._authorise(request)
        except _ApiError as err:
            return self._with_limits(_error(err.status, err.code, err.description), None, windows)
        self.counters.by_token[token] += 1
        waits = {
            name: wait for name in windows if (wait := self.limiters[name].wait(token)) is not None
        }
        if waits:
            name = max(waits, key=lambda key: waits[key])
            self.throttled[name] += 1
            retry_after = max(1, math.ceil(waits[name]))
            response = _error(
                429,
                "rate_limit_exceeded",
                f"Rate limit of {self.limiters[name].limit} requests per "
                f"{WINDOW_S:g} seconds exceeded ({name}); retry after {retry_after} s",
            )
            response.headers["Retry-After"] = str(retry_after)
            return self._with_limits(response, token, [name])
        for name in windows:
            self.limiters[name].record(token)
        return self._with_limits(await self._call(request, handler), token, windows)

    async def _call(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except _ApiError as err:
            return _error(err.status, err.code, err.description)
        except BadQuery as err:
            return _error(400, "invalid_parameter", str(err))
        except web.HTTPException:
            raise
        except Exception:
            _LOGGER.exception("Telemax simulator failed on %s", request.path_qs)
            return _error(500, "internal_error", "An unexpected error occurred")

    def _with_limits(
        self, response: web.StreamResponse, token: str | None, windows: list[str]
    ) -> web.StreamResponse:
        if token is None:
            limit = self.limiters[OVERALL].limit
            remaining, reset = limit, 0
        else:
            name = min(
                windows,
                key=lambda key: (self.limiters[key].remaining(token), self.limiters[key].limit),
            )
            limiter = self.limiters[name]
            limit, remaining = limiter.limit, limiter.remaining(token)
            reset = math.ceil(limiter.reset_in(token))
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(reset)
        return response

    def _authorise(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _ApiError(401, "unauthorized", "Authorization: Bearer <token> is required")
        expiry = self._tokens.get(token)
        if expiry is None:
            raise _ApiError(401, "invalid_token", "The access token is invalid")
        if self.world.clock.now_ms() >= expiry:
            raise _ApiError(401, "token_expired", "The access token has expired")
        return token

    # --- endpoints ------------------------------------------------------------------
    async def _login(self, request: web.Request) -> web.Response:
        if request.content_type not in _FORMS:
            raise _ApiError(
                415,
                "unsupported_media_type",
                "Send the API key as a form (application/x-www-form-urlencoded): apiKey=<key>",
            )
        form = await request.post()
        key = form.get("apiKey")
        if not isinstance(key, str) or not key:
            raise _ApiError(400, "missing_api_key", "The form field 'apiKey' is required")
        if key not in self.api_keys:
            raise _ApiError(401, "invalid_api_key", "The API key is invalid or revoked")
        now = self.world.clock.now_ms()
        token = self._issue(now)
        self._tokens[token] = now + self.token_lifetime_s * 1000
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime_s}
        )

    async def _companies(self, request: web.Request) -> web.Response:
        items = [{"Id": self.company_id, "Name": COMPANY_NAME, "ParentId": None}]
        return web.json_response(envelope(items, paging(request.query)))

    async def _vehicles(self, request: web.Request) -> web.Response:
        self._company(request)
        page = paging(request.query)
        items = [vehicle_json(v, self.world.seed) for v in self.world.vehicles()]
        return web.json_response(envelope(items, page))

    async def _fleet_positions(self, request: web.Request) -> web.Response:
        self._company(request)
        page = paging(request.query)
        self.world.update()
        now = self.world.clock.now_ms()
        body = envelope(
            self.world.vehicles(), page, lambda v: position_json(v, self.world.seed, now)
        )
        return web.json_response(body)

    async def _vehicle_position(self, request: web.Request) -> web.Response:
        vehicle = self._vehicle(request)
        self.world.update()
        return web.json_response(position_json(vehicle, self.world.seed, self.world.clock.now_ms()))

    async def _safety_score(self, request: web.Request) -> web.Response:
        vehicle = self._vehicle(request)
        self.world.update()
        start, finish = self._score_window(request.query, self.world.clock.now_ms())
        scores = []
        for trip in vehicle.trip_history():
            # An open trip has no end yet; the query treats it as ending at `finish`.
            end = trip.end_ms if trip.end_ms is not None else finish
            if start <= trip.start_ms <= finish and end <= finish and trip.points:
                scores.append(score_json(trip, self.world.seed, vehicle.seq, end))
        return web.json_response(scores)

    async def _replay(self, request: web.Request) -> web.Response:
        vehicle = self._vehicle(request)
        page = paging(request.query)
        self.world.update()
        start, end = _range(request.query, "from", "to", None)
        trips = [replay_json(vehicle, t) for t in _trips_in(vehicle, start, end)]
        return web.json_response(envelope(trips, page))

    async def _alerts(self, request: web.Request) -> web.Response:
        self._company(request)
        page = paging(request.query)
        self.world.update()
        now = self.world.clock.now_ms()
        start, end = _range(request.query, "from", "to", (now - DAY_MS, now))
        alerts = [
            alert
            for vehicle in self.world.vehicles()
            for trip in _trips_in(vehicle, start, end)
            for alert in alerts_of(vehicle, trip, self.world.seed)
        ]
        alerts.sort(key=lambda alert: (alert["time"], alert["id"]))
        return web.json_response(envelope(alerts, page))

    async def _not_found(self, request: web.Request) -> web.Response:
        if request.path.removeprefix(PREFIX) == PATH_LOGIN:
            response = _error(405, "method_not_allowed", f"{request.method} is not allowed")
            response.headers["Allow"] = "POST"
            return response
        return _error(404, "not_found", "No such endpoint")

    # --- parameters ---------------------------------------------------------------
    def _company(self, request: web.Request) -> None:
        if request.match_info["company"] != str(self.company_id):
            raise _ApiError(404, "company_not_found", "Company not found")

    def _vehicle(self, request: web.Request) -> SimVehicle:
        key = request.match_info["vehicle"]
        if key not in self.world:
            raise _ApiError(404, "vehicle_not_found", "Vehicle not found")
        return self.world.vehicle(key)

    def _score_window(self, query: Mapping[str, str], now: int) -> tuple[int, int]:
        if query.get("start") or query.get("finish"):
            return _range(query, "start", "finish", None)
        raw = query.get("intervalType")
        if not raw:
            raise _ApiError(400, "invalid_date_range", "Give start and finish, or intervalType")
        if raw not in ("1", "2", "3", "4"):
            raise _ApiError(400, "invalid_parameter", "intervalType must be 1, 2, 3 or 4")
        if raw == "1":
            return now, now
        days = PRESET_DAYS[int(raw)] * DAY_MS
        end_of_today = now - now % DAY_MS + DAY_MS  # UTC is the simulated user's zone
        # The documented bug: finish = endOfToday - TimeSpan.FromDays(-N).
        finish = end_of_today + days if self.preset_bug else end_of_today
        return end_of_today - days, finish

    def _issue(self, now_ms: int) -> str:
        self.tokens_issued += 1
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "sub": f"apikey-{self.tokens_issued}",
            "company": self.company_id,
            "iat": now_ms // 1000,
            "exp": now_ms // 1000 + self.token_lifetime_s,
            "jti": uuid.uuid4().hex,
        }
        parts = [_b64(json.dumps(part).encode()) for part in (header, claims)]
        return ".".join([*parts, _b64(os.urandom(32))])


def _range(
    query: Mapping[str, str], first: str, last: str, default: tuple[int, int] | None
) -> tuple[int, int]:
    raw_start, raw_end = query.get(first), query.get(last)
    if not raw_start and not raw_end and default is not None:
        return default
    if not raw_start or not raw_end:
        raise _ApiError(400, "invalid_date_range", f"Both '{first}' and '{last}' are required")
    start, end = parse_time(raw_start, first), parse_time(raw_end, last)
    if end <= start:
        raise _ApiError(400, "invalid_date_range", f"'{last}' must be after '{first}'")
    return start, end


def _trips_in(vehicle: SimVehicle, start: int, end: int) -> list[Trip]:
    return [t for t in vehicle.trip_history() if t.points and start <= t.start_ms < end]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _error(status: int, code: str, description: str) -> web.Response:
    return web.json_response(
        {
            "type": _TYPES.get(status, "api_error"),
            "code": code,
            "description": description,
            "requestId": str(uuid.uuid4()),
            "docUrl": f"{DOC_URL}#{code}",
        },
        status=status,
    )


def _fault_response(fault: Fault) -> web.Response:
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = f"HTTP {fault.status}"
    response = _error(fault.status, "injected_fault", fault.body or phrase)
    if fault.status == 429:
        retry = 1.0 if fault.retry_after is None else fault.retry_after
        response.headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return response
