"""A simulated Metrotec API over its own simulated fleet around Tallinn (mounted
under `/metrotec`; the API root `/metrotec/api` stands for https://api.metrotec.ee/api).

The documentation shows bodies but hardly any paths; these are the simulator's,
relative to the API root, and a client should keep them in a table of its own
(each also answers without its trailing slash):

    POST  /token/                    {"username", "password"} (JSON or form)
                                     -> {"jwt", "expires": <unix s, UTC>}      GUESS
    GET   /objects/                  vehicle list                              GUESS
    GET   /objects/settings/         ?object_id= -> {..., "repInts", "events"} GUESS
    POST  /objects/events/           {"object_id", "eventType", "description"}
                                     -> 201 {"id", "handled": 0, "description",
                                        "eventDate", "date"}                   GUESS
    GET   /lastpositions/            every vehicle's last position record      GUESS
    GET   /lastpositions/{object_id}/   one vehicle's                          GUESS
    GET   /fuel/                     last records of every vehicle with tank data GUESS
    GET   /fuel/refill/              ?object_id= -> [record + Counter, next_refill_time] GUESS
    GET   /routetasks/               ?limit=-1|N&offset=&all=0|1&object_id=&order_ref=
                                     -> [task]; without all=1 only active ones GUESS
    POST  /routetasks/               task fields -> 201 task                   GUESS
    GET   /routetasks/{id}/          -> task                                   GUESS
    PATCH /routetasks/{id}/          some task fields -> task                  GUESS
    GET   /routelog/                 ?period_start=&period_stop=&vehicle_id=   (documented)
    GET   /alarmlog/                 ?datetime[]=<from>&datetime[]=<to>[&object_id=]
                                     -> [entry] (the request is documented, the
                                        answer GUESSED: see `metrotec_alarms`)
    GET   /geozones/                 -> [zone] as documented, with `zObjects`  GUESS

Geozones and the alarm log (`metrotec_alarms`): zones around the depots' yards and
over the old town, linked to most vehicles (`zones` in their settings too); the
alarm log holds their enter and exit alarms and a few device alarms, all drawn from
the trips the fleet drives. `alarmlog_requires_object_id` makes the alarm log
insist on `object_id` (400 naming the field), as some accounts might.

Every request must carry an identifying `User-Agent` (missing, blank or not
printable ASCII: 400) and `Accept: application/json; version=X.Y.Z` with a known
version (1.0.0 or 1.1.0): otherwise 406, as Django REST Framework's Accept-header
versioning answers (`{"detail": "Invalid version in \\"Accept\\" header."}`; a
missing version is refused the same way, since production requests must carry
one: `require_version=False` lets it through as the browsable API would). Then a
Bearer token: a JWT from `/token/` (lives `jwt_lifetime_s` simulated seconds,
default 3600: a guess) or an API key; missing, unknown or expired: 401.

Errors are DRF's (`metrotec_json`): `{"detail"}` or `{"<field>": [messages]}`. No
rate limit is published and none is enforced (`rate_limit_per_min` adds one,
answered like DRF's throttling: 429, `Retry-After` in whole seconds). Injected 5xx
faults answer Django's HTML error pages, as a production Django does.

Events and tasks (`metrotec_commands`) live on the simulated clock. Tests reach in
through `events`, `tasks`, `zones`, `alarms`, `counters`, `fail_next()`, `latency`
and `expire_tokens()`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator.metrotec_alarms import AlarmLog, linked, make_zones, zone_links_json
from bridge.simulator.metrotec_commands import (
    HANDLE_DELAY_S,
    EventBook,
    RouteTask,
    TaskBook,
    read_event,
)
from bridge.simulator.metrotec_json import (
    DEFAULT_TIMEZONE,
    ApiError,
    FieldErrors,
    fuel_json,
    local_clock,
    object_json,
    parse_time,
    position_json,
    refill_json,
    rep_ints,
    routelog_json,
)
from bridge.simulator.traffic import Fault, FaultQueue, RequestCounters, SlidingWindowLimiter
from bridge.simulator.vehicle import SimVehicle
from bridge.simulator.world import World

_LOGGER = logging.getLogger(__name__)

PREFIX = "/metrotec"
API_ROOT = "/api"
DEFAULT_USERNAME = "demo"
DEFAULT_PASSWORD = "demo-metrotec-password"
DEFAULT_API_KEY = "demo-metrotec-key"
ACCOUNT = "demo"  # the `oid` of the simulated account
VERSIONS = ("1.0.0", "1.1.0")
JWT_LIFETIME_S = 3600
#: name -> (method, path under the API root).
PATHS: dict[str, tuple[str, str]] = {
    "token": ("POST", "/token/"),
    "objects": ("GET", "/objects/"),
    "settings": ("GET", "/objects/settings/"),
    "create_event": ("POST", "/objects/events/"),
    "last_positions": ("GET", "/lastpositions/"),
    "last_position": ("GET", "/lastpositions/{object_id}/"),
    "fuel": ("GET", "/fuel/"),
    "fuel_refill": ("GET", "/fuel/refill/"),
    "tasks": ("GET", "/routetasks/"),
    "create_task": ("POST", "/routetasks/"),
    "task": ("GET", "/routetasks/{id}/"),
    "update_task": ("PATCH", "/routetasks/{id}/"),
    "routelog": ("GET", "/routelog/"),
    "alarm_log": ("GET", "/alarmlog/"),
    "geozones": ("GET", "/geozones/"),
}
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_JSON_TYPES = ("application/json", "application/*", "*/*")
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
# What a production Django (DEBUG off) answers on a crash.
_SERVER_ERROR_HTML = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n'
    "</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)


def naming(seq: int) -> tuple[str, str]:
    """Metrotec's object ids are Estonian registration numbers, like 010PNR."""
    digits, block = seq % 1000, seq // 1000
    code = (block + digits * 37 + 4_711) % 26**3
    letters = "".join(chr(65 + code // 26**power % 26) for power in (2, 1, 0))
    return f"{digits:03d}{letters}", f"CAR{seq:02d}"


class MetrotecSim:
    """Metrotec's API for one account, plus the switches tests turn."""

    name: ClassVar[str] = "metrotec"

    def __init__(
        self,
        world: World,
        *,
        users: Mapping[str, str] | None = None,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        versions: Iterable[str] = VERSIONS,
        require_version: bool = True,
        jwt_lifetime_s: int = JWT_LIFETIME_S,
        handle_delay_s: float | None = HANDLE_DELAY_S,
        timezone: str = DEFAULT_TIMEZONE,
        rate_limit_per_min: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        alarmlog_requires_object_id: bool = False,
    ) -> None:
        """`users`: username -> password (default demo / demo-metrotec-password);
        `handle_delay_s`: simulated seconds until a device carries out an event
        (None: never on its own); `rate_limit_per_min`: per token (default none)."""
        self.world = world
        self.users = dict(users if users is not None else {DEFAULT_USERNAME: DEFAULT_PASSWORD})
        self.api_keys = frozenset(api_keys)
        self.versions = frozenset(versions)
        self.require_version = require_version
        self.jwt_lifetime_s = jwt_lifetime_s
        self.local = local_clock(timezone)
        self.events = EventBook(handle_delay_s)
        self.tasks = TaskBook(ACCOUNT)
        self.zones = make_zones(world)
        self.alarms = AlarmLog(world, self.zones)
        self.alarmlog_requires_object_id = alarmlog_requires_object_id
        self.limiter = (
            None
            if rate_limit_per_min is None
            else SlidingWindowLimiter(rate_limit_per_min, 60.0, clock=monotonic)
        )
        self.counters = RequestCounters()
        #: Requests refused before authentication, by reason ("user_agent", "version").
        self.refused: Counter[str] = Counter()
        self.faults = FaultQueue()
        self.latency = 0.0
        self.logins = 0
        self._tokens: dict[str, tuple[str, int]] = {}  # jwt -> (username, expiry ms)
        self._created_ms = world.clock.now_ms()

    # --- switches for tests -------------------------------------------------
    def expire_cursors(self) -> None:
        """Metrotec pages by offset; there are no cursors."""

    def expire_tokens(self) -> None:
        now = self.world.clock.now_ms()
        for token, (user, expiry) in self._tokens.items():
            self._tokens[token] = (user, min(expiry, now))

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status`: 5xx as Django's HTML
        page, 429 as DRF's throttling (`Retry-After`, 1 s unless given), anything
        else as `{"detail": ...}`."""
        self.faults.add(Fault(status, retry_after, body), count)

    def settle(self) -> int:
        """Catch the world, the devices and the tasks up with the clock."""
        self.world.update()
        now = self.world.clock.now_ms()
        self.events.settle(now)
        self.tasks.progress(self.world, now)
        return now

    def lights_on(self, object_id: str) -> bool:
        """The vehicle's lights as its device last set them."""
        self.settle()
        return self.events.lights_on(object_id)

    def stats(self) -> dict[str, Any]:
        now = self.settle()
        events, tasks = self.events, self.tasks
        return {
            **self.counters.to_json(),
            "vehicles": len(self.world),
            "logins": self.logins,
            "tokens_live": sum(expiry > now for _, expiry in self._tokens.values()),
            "refused": dict(self.refused),
            "events": {
                "created": events.created,
                "handled": events.handled,
                "pending": events.pending,
            },
            "handle_delay_s": events.handle_delay_s,
            "lights": {key: "ON" if on else "OFF" for key, on in sorted(events.lights.items())},
            "tasks": {
                "created": tasks.created,
                "updated": tasks.updated,
                "duplicate_order_refs": tasks.duplicates,
                "active": len(tasks.listing()),
                "by_status": tasks.by_status(),
            },
            "faults_pending": self.faults.pending,
            "latency": self.latency,
            "zones": len(self.zones),
            "alarms": len(self.alarms),
        }

    def control_actions(self) -> dict[str, Callable[[Mapping[str, str]], dict[str, Any]]]:
        """`POST /_sim/metrotec/<name>` of the control API."""

        def handle_events(_: Mapping[str, str]) -> dict[str, Any]:
            now = self.settle()
            return {"handled": self.events.handle_all(now)}

        def set_handle_delay(query: Mapping[str, str]) -> dict[str, Any]:
            raw = query.get("seconds", "").strip().lower()
            if raw in ("never", "none"):
                self.events.handle_delay_s = None
            else:
                seconds = float(raw)  # a ValueError is the control API's 400
                if not 0 <= seconds < math.inf:
                    raise ValueError("seconds must be >= 0 (or 'never')")
                self.events.handle_delay_s = seconds
            return {"handle_delay_s": self.events.handle_delay_s}

        def expire_tokens(_: Mapping[str, str]) -> dict[str, Any]:
            self.expire_tokens()
            return {"expired": len(self._tokens)}

        return {
            "handle-events": handle_events,
            "set-handle-delay": set_handle_delay,
            "expire-tokens": expire_tokens,
        }

    # --- the HTTP side ------------------------------------------------------------
    def app(self) -> web.Application:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._gate(request, handler)

        handlers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "token": self._token,
            "objects": self._objects,
            "settings": self._settings,
            "create_event": self._create_event,
            "last_positions": self._last_positions,
            "last_position": self._last_position,
            "fuel": self._fuel,
            "fuel_refill": self._fuel_refill,
            "tasks": self._list_tasks,
            "create_task": self._create_task,
            "task": self._get_task,
            "update_task": self._update_task,
            "routelog": self._routelog,
            "alarm_log": self._alarm_log,
            "geozones": self._geozones,
        }
        by_path: dict[str, dict[str, Handler]] = {}
        for name, (method, path) in PATHS.items():
            by_path.setdefault(path, {})[method] = handlers[name]
        app = web.Application(middlewares=[gate])
        for path, methods in by_path.items():
            dispatch = _dispatcher(methods)
            app.router.add_route("*", API_ROOT + path, dispatch)
            app.router.add_route("*", API_ROOT + path.rstrip("/"), dispatch)
        app.router.add_route("*", "/{tail:.*}", self._not_found, name="missing")
        return app

    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await self.counters.count(
            request.path.removeprefix(PREFIX), self._answer(request, handler)
        )

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        fault = self.faults.take()
        if fault is not None:
            return _fault_response(fault)
        if request.match_info.route.name == "missing":
            return await handler(request)
        try:
            self._check_headers(request)
            path = request.path.removeprefix(PREFIX + API_ROOT).rstrip("/") + "/"
            if path != PATHS["token"][1]:
                principal = self._authorise(request)
                self.counters.by_token[principal] += 1
                if self.limiter is not None:
                    wait = self.limiter.acquire(principal)
                    if wait is not None:
                        return _throttled(wait)
                self.settle()
            return await handler(request)
        except ApiError as err:
            return _detail(err.status, err.detail, auth=err.status == 401)
        except FieldErrors as err:
            return web.json_response(err.errors, status=400)
        except web.HTTPException:
            raise
        except Exception:
            _LOGGER.exception("Metrotec simulator failed on %s", request.path_qs)
            return web.Response(status=500, text=_SERVER_ERROR_HTML, content_type="text/html")

    def _check_headers(self, request: web.Request) -> None:
        agent = request.headers.get("User-Agent", "")
        if not agent.strip() or not all(" " <= char <= "~" for char in agent):
            self.refused["user_agent"] += 1
            raise ApiError(
                400,
                "Set a User-Agent header that identifies your company and integration "
                "(printable ASCII), e.g. MyApplication/1.0.0.",
            )
        json_ok, version = _accepted_version(request.headers.get("Accept", "*/*"))
        if not json_ok:
            self.refused["version"] += 1
            raise ApiError(406, "Could not satisfy the request Accept header.")
        if version is None:
            if not self.require_version:
                return
            self.refused["version"] += 1
            raise ApiError(
                406,
                'Missing version in "Accept" header: send Accept: application/json; version=X.Y.Z.',
            )
        if not _VERSION.match(version) or version not in self.versions:
            self.refused["version"] += 1
            raise ApiError(406, 'Invalid version in "Accept" header.')

    def _authorise(self, request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "Authentication credentials were not provided.")
        if token in self.api_keys:
            return "api-key"
        issued = self._tokens.get(token)
        if issued is None:
            raise ApiError(401, "Invalid token.")
        user, expiry = issued
        if self.world.clock.now_ms() >= expiry:
            raise ApiError(401, "Token has expired.")
        return user

    # --- endpoints ------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.Response:
        body = await _body(request)
        errors = {
            name: ["This field is required."]
            for name in ("username", "password")
            if not isinstance(body.get(name), str) or not body[name]
        }
        if errors:
            raise FieldErrors(errors)
        username, password = body["username"], body["password"]
        if self.users.get(username) != password:
            raise ApiError(401, "No active account found with the given credentials.")
        now = self.world.clock.now_ms()
        expiry = now + self.jwt_lifetime_s * 1000
        token = _jwt(username, now, expiry)
        self._tokens[token] = (username, expiry)
        self.logins += 1
        return web.json_response({"jwt": token, "expires": expiry // 1000})

    async def _objects(self, request: web.Request) -> web.Response:
        intervals = self.events.report_intervals
        return web.json_response(
            [
                object_json(v, self._created_ms, intervals.get(v.vehicle_id, rep_ints(v)[0]))
                for v in self.world.vehicles()
            ]
        )

    async def _settings(self, request: web.Request) -> web.Response:
        vehicle = self._query_vehicle(request, "object_id")
        return web.json_response(
            {
                "hasTow": False,
                "hasGeo": True,
                "hasRepInt": True,
                "hasTamperLight": True,
                "hasLightSensor": True,
                "outputs": None,
                "repInts": list(rep_ints(vehicle)),
                "events": [e.settings_json(ACCOUNT) for e in self.events.of(vehicle.vehicle_id)],
                "alarm": None,
                "zones": zone_links_json(vehicle, self.zones),
            }
        )

    async def _create_event(self, request: web.Request) -> web.Response:
        object_id, event_type, description = read_event(await _body(request), self.world)
        event = self.events.create(object_id, event_type, description, self._now())
        return web.json_response(event.created_json(), status=201)

    async def _last_positions(self, request: web.Request) -> web.Response:
        now = self._now()
        return web.json_response([position_json(v, now, self.local) for v in self.world.vehicles()])

    async def _last_position(self, request: web.Request) -> web.Response:
        vehicle = self._path_vehicle(request)
        return web.json_response(position_json(vehicle, self._now(), self.local))

    async def _fuel(self, request: web.Request) -> web.Response:
        now = self._now()
        # Only vehicles with a fuel sensor (an OBD connection) have tank data.
        return web.json_response(
            [fuel_json(v, now, self.local) for v in self.world.vehicles() if v.has_obd]
        )

    async def _fuel_refill(self, request: web.Request) -> web.Response:
        vehicle = self._query_vehicle(request, "object_id")
        if not vehicle.has_obd:
            return web.json_response([])
        return web.json_response([refill_json(vehicle, self._now(), self.local)])

    async def _list_tasks(self, request: web.Request) -> web.Response:
        query = request.query
        limit = _int_param(query, "limit", -1)
        offset = max(0, _int_param(query, "offset", 0))
        tasks = self.tasks.listing(
            every=_int_param(query, "all", 0) == 1,
            object_id=query.get("object_id") or None,
            order_ref=query.get("order_ref") or None,
        )
        page = tasks[offset:] if limit < 0 else tasks[offset : offset + limit]
        return web.json_response([task.to_json() for task in page])

    async def _create_task(self, request: web.Request) -> web.Response:
        body = await _body(request)
        principal = self._authorise(request)  # the sender: a username, or "api-key"
        task = self.tasks.create(body, self.world, self._now(), principal)
        return web.json_response(task.to_json(), status=201)

    async def _get_task(self, request: web.Request) -> web.Response:
        return web.json_response(self._task_of(request).to_json())

    async def _update_task(self, request: web.Request) -> web.Response:
        task_id = self._task_of(request).id
        body = await _body(request)
        task = self.tasks.update(task_id, body, self.world, self._now())
        return web.json_response(task.to_json())

    async def _routelog(self, request: web.Request) -> web.Response:
        query = request.query
        errors: dict[str, list[str]] = {}
        bounds: list[int] = []
        for name in ("period_start", "period_stop"):
            raw = query.get(name)
            value = parse_time(raw) if raw else None
            if raw is None or not raw:
                errors[name] = ["This field is required."]
            elif value is None:
                errors[name] = ["Enter a valid date/time: YYYY-MM-DD HH:MM:SS."]
            else:
                bounds.append(value)
        if not query.get("vehicle_id"):
            errors["vehicle_id"] = ["This field is required."]
        if errors:
            raise FieldErrors(errors)
        vehicle = self._query_vehicle(request, "vehicle_id")
        start, stop = bounds
        trips = [t for t in vehicle.trip_history() if t.done and t.drive_start_ms is not None]
        records = [
            routelog_json(
                vehicle,
                trip,
                trips[index - 1] if index else None,
                trips[index + 1] if index + 1 < len(trips) else None,
            )
            for index, trip in enumerate(trips)
            if start <= (trip.drive_start_ms or trip.start_ms) <= stop
        ]
        return web.json_response(records)

    async def _alarm_log(self, request: web.Request) -> web.Response:
        query = request.query
        raw = query.getall("datetime[]", [])
        bounds = [parse_time(value) for value in raw]
        if len(raw) != 2:
            raise FieldErrors({"datetime[]": ["Two dates are required: the start and the end."]})
        start, stop = bounds
        if start is None or stop is None:
            raise FieldErrors({"datetime[]": ["Enter a valid date/time: YYYY-MM-DD HH:MM:SS."]})
        object_id = query.get("object_id") or None
        if object_id is None and self.alarmlog_requires_object_id:
            raise FieldErrors({"object_id": ["This field is required."]})
        if object_id is not None and object_id not in self.world:
            raise ApiError(404, "Not found.")
        self.alarms.catch_up()
        return web.json_response(
            [entry.to_json(ACCOUNT) for entry in self.alarms.between(start, stop, object_id)]
        )

    async def _geozones(self, request: web.Request) -> web.Response:
        members = [v.vehicle_id for v in self.world.vehicles() if linked(v)]
        return web.json_response([zone.to_json(members) for zone in self.zones])

    async def _not_found(self, request: web.Request) -> web.Response:
        return _detail(404, "Not found.")

    # --- parameters ---------------------------------------------------------------
    def _now(self) -> int:
        return self.world.clock.now_ms()

    def _path_vehicle(self, request: web.Request) -> SimVehicle:
        key = request.match_info["object_id"]
        if key not in self.world:
            raise ApiError(404, "Not found.")
        return self.world.vehicle(key)

    def _query_vehicle(self, request: web.Request, name: str) -> SimVehicle:
        key = request.query.get(name)
        if not key:
            raise FieldErrors({name: ["This field is required."]})
        if key not in self.world:
            raise ApiError(404, "Not found.")
        return self.world.vehicle(key)

    def _task_of(self, request: web.Request) -> RouteTask:
        try:
            return self.tasks.get(int(request.match_info["id"]))
        except (KeyError, ValueError):
            raise ApiError(404, "Not found.") from None


def _dispatcher(methods: Mapping[str, Handler]) -> Handler:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler = methods.get(request.method)
        if handler is None:
            response = _detail(405, f'Method "{request.method}" not allowed.')
            response.headers["Allow"] = ", ".join(sorted(methods))
            return response
        return await handler(request)

    return dispatch


def _accepted_version(accept: str) -> tuple[bool, str | None]:
    """(whether a media range accepts JSON, the version it asks for, if any)."""
    for media_range in accept.split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        if kind.lower() not in _JSON_TYPES:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "version":
                return True, value.strip().strip('"')
        return True, None
    return False, None


async def _body(request: web.Request) -> Mapping[str, Any]:
    if request.content_type in _FORMS:
        form = await request.post()
        return {key: value for key, value in form.items() if isinstance(value, str)}
    raw = await request.text()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as err:
        raise ApiError(400, f"JSON parse error - {err}") from None
    if not isinstance(body, dict):
        got = type(body).__name__
        raise FieldErrors(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {got}."]}
        )
    return body


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise FieldErrors({name: ["A valid integer is required."]}) from None


def _jwt(username: str, now_ms: int, expiry_ms: int) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "username": username,
        "oid": ACCOUNT,
        "iat": now_ms // 1000,
        "exp": expiry_ms // 1000,
        "jti": uuid.uuid4().hex,
    }
    parts = [_b64(json.dumps(part).encode()) for part in (header, claims)]
    return ".".join([*parts, _b64(os.urandom(32))])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _detail(status: int, detail: str, *, auth: bool = False) -> web.Response:
    response = web.json_response({"detail": detail}, status=status)
    if auth:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _throttled(wait: float) -> web.Response:
    seconds = max(1, math.ceil(wait))
    response = _detail(429, f"Request was throttled. Expected available in {seconds} seconds.")
    response.headers["Retry-After"] = str(seconds)
    return response


def _fault_response(fault: Fault) -> web.Response:
    if fault.status == 429:
        return _throttled(1.0 if fault.retry_after is None else fault.retry_after)
    if fault.status >= 500:
        if fault.body is not None:
            return web.Response(status=fault.status, text=fault.body, content_type="text/html")
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Server Error"
        html = _SERVER_ERROR_HTML.replace("Server Error (500)", f"{phrase} ({fault.status})")
        return web.Response(status=fault.status, text=html, content_type="text/html")
    try:
        message = fault.body or HTTPStatus(fault.status).phrase
    except ValueError:
        message = f"HTTP {fault.status}"
    return _detail(fault.status, message, auth=fault.status == 401)
