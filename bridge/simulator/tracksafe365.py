"""A simulated TrackSafe365 API over its own simulated fleet (mounted under
`/tracksafe365`): production at `/tracksafe365/v2` (for
https://api.tracksafe365.com/v2) and the sandbox at `/tracksafe365/sandbox/v2` (for
https://sandbox-api.tracksafe365.com/v2), one fleet behind both.

Paths (documented; the scope each needs):

    GET  /fleet/vehicles            fleet:read   ?limit=1..500 (100)&cursor=&tagIds=&vehicleIds=
    GET  /fleet/vehicles/{id}       fleet:read   -> {"data": vehicle}
    GET  /fleet/vehicles/stats      fleet:read   odometer, engine hours, fuel (paged)
    GET  /fleet/vehicles/locations  fleet:read   vehicles with the ignition on (paged)
    GET  /fleet/locations           fleet:read   live locations of every vehicle (paged)
    GET  /devices/dashcams          fleet:read   dashcams and `online` (paged)
    GET  /safety/events             safety:read  ?startTime=&endTime= (ISO 8601; last 24 h)
                                                 &include_media=true: `media` links
    GET  /safety/dms/events         safety:read  the same, driver monitoring
    POST /media/snapshots           media:read   {"vehicleId", "camera": "road"|"driver"}
                                                 -> 201 {"data": {"taskId", "status", ...}}
    GET  /media/snapshots/{taskId}  media:read   poll: pending -> processing -> completed
                                                 (with `imageUrl`) | failed (with `error`)

(The scopes of the dashcam list and of the snapshot endpoints, the snapshot poll
path, the request body and every response shape but the vehicle's are guesses.)
Lists answer `{"data": [...], "pagination": {"endCursor", "hasNextPage"}}`.

Images are served by the simulator at `GET /tracksafe365/media/<taskId>.jpg`
without a key (a signed-URL stand-in), so that a Home Assistant image entity can
fetch them (event clips under `/tracksafe365/media/events/` are links only,
never served). A snapshot takes `snapshot_pending_s` (3) simulated seconds to be taken
and `snapshot_processing_s` (7) more to upload; it fails if the dashcam was offline
when asked, if `fail_snapshots` is on, or if it is every `snapshot_fail_every`-th
(10th) snapshot.

Keys, environments, scopes and limits are in `tracksafe365_keys`. Errors are
`{"code", "message"}`; a 403 names the missing scope. A key in the query string
(`?api_key=`, deprecated on 2026-03-02 and removed on 2026-12-01) is never
accepted: 401 without an Authorization header (a URL key is no credential), 400
with one; both are counted (`api_key_query_attempts`), because a key in a URL
leaks into logs. Past a plan's limit: 429 with `Retry-After` in whole seconds.

Tests reach in through `keys`, `limits`, `counters`, `snapshots`,
`fail_snapshots`, `fail_next()` and `latency`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator.cursor import CursorCodec, CursorError
from bridge.simulator.tracksafe365_json import (
    CAMERAS,
    COMPLETED,
    FAILED,
    Snapshot,
    dashcam_json,
    dashcam_online,
    dms_events,
    event_media,
    location_json,
    safety_events,
    stats_json,
    tag_of,
    vehicle_json,
)
from bridge.simulator.tracksafe365_keys import (
    PLANS,
    PRODUCTION,
    SANDBOX,
    ApiKey,
    KeyLimits,
    default_keys,
    environment_of,
)
from bridge.simulator.traffic import Fault, FaultQueue, RequestCounters
from bridge.simulator.vehicle import DAY_MS, Engine, SimVehicle, Stat, Trip
from bridge.simulator.world import World, dashcam_jpeg

_LOGGER = logging.getLogger(__name__)

PREFIX = "/tracksafe365"
ROOTS = {PRODUCTION: "/v2", SANDBOX: "/sandbox/v2"}
MEDIA_PATH = "/media/{file}"
PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 500
SNAPSHOT_PENDING_S = 3.0
SNAPSHOT_PROCESSING_S = 7.0
SNAPSHOT_FAIL_EVERY = 10
#: name -> (method, path under the base URL, scope).
PATHS: dict[str, tuple[str, str, str]] = {
    "vehicles": ("GET", "/fleet/vehicles", "fleet:read"),
    "vehicle_stats": ("GET", "/fleet/vehicles/stats", "fleet:read"),
    "vehicle_locations": ("GET", "/fleet/vehicles/locations", "fleet:read"),
    "vehicle": ("GET", "/fleet/vehicles/{id}", "fleet:read"),
    "locations": ("GET", "/fleet/locations", "fleet:read"),
    "dashcams": ("GET", "/devices/dashcams", "fleet:read"),
    "safety_events": ("GET", "/safety/events", "safety:read"),
    "dms_events": ("GET", "/safety/dms/events", "safety:read"),
    "request_snapshot": ("POST", "/media/snapshots", "media:read"),
    "snapshot": ("GET", "/media/snapshots/{id}", "media:read"),
}

Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class TrackSafe365Sim:
    """TrackSafe365's API for one organisation, plus the switches tests turn."""

    name: ClassVar[str] = "tracksafe365"

    def __init__(
        self,
        world: World,
        *,
        keys: Iterable[ApiKey] | None = None,
        plan: str = "starter",
        monotonic: Callable[[], float] = time.monotonic,
        snapshot_pending_s: float = SNAPSHOT_PENDING_S,
        snapshot_processing_s: float = SNAPSHOT_PROCESSING_S,
        snapshot_fail_every: int = SNAPSHOT_FAIL_EVERY,
    ) -> None:
        """`keys` default to `default_keys(plan)`: ts365_test_demo (sandbox),
        ts365_live_demo and ts365_rk_demo (production, fleet:read only)."""
        self.world = world
        self.keys: dict[str, ApiKey] = {k.key: k for k in (keys or default_keys(plan))}
        self.plan = PLANS[plan.lower()]
        self.limits = KeyLimits(world.clock, monotonic=monotonic)
        self.snapshot_pending_s = snapshot_pending_s
        self.snapshot_processing_s = snapshot_processing_s
        self.snapshot_fail_every = snapshot_fail_every
        #: Every snapshot still to come fails (a dashcam fleet having a bad day).
        self.fail_snapshots = False
        self.snapshots: dict[str, Snapshot] = {}
        self.counters = RequestCounters()
        self.cursors = CursorCodec()
        self.faults = FaultQueue()
        self.latency = 0.0
        self.api_key_query_attempts = 0
        self.wrong_environment = 0
        self.images_served = 0
        #: 403s served, by the scope that was missing.
        self.forbidden: Counter[str] = Counter()
        #: 429s served by the limits: "minute" or "day".
        self.throttled: Counter[str] = Counter()
        self.snapshot_counts: Counter[str] = Counter()

    # --- switches for tests -------------------------------------------------
    def expire_cursors(self) -> None:
        self.cursors.expire_all()

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` as `{"code", "message"}`
        (429 with `Retry-After`, 1 s unless given)."""
        self.faults.add(Fault(status, retry_after, body), count)

    def settle(self) -> int:
        """Count the snapshots finished by now."""
        now = self.world.clock.now_ms()
        for snapshot in self.snapshots.values():
            if not snapshot.reported and snapshot.status(now) in (COMPLETED, FAILED):
                snapshot.reported = True
                self.snapshot_counts[snapshot.status(now)] += 1
        return now

    def stats(self) -> dict[str, Any]:
        self.settle()
        counts = self.snapshot_counts
        return {
            **self.counters.to_json(),
            "vehicles": len(self.world),
            "plan": self.plan.name,
            "snapshots": {
                "requested": len(self.snapshots),
                "completed": counts[COMPLETED],
                "failed": counts[FAILED],
                "pending": len(self.snapshots) - counts[COMPLETED] - counts[FAILED],
            },
            "fail_snapshots": self.fail_snapshots,
            "images_served": self.images_served,
            "api_key_query_attempts": self.api_key_query_attempts,
            "wrong_environment": self.wrong_environment,
            "forbidden_by_scope": dict(self.forbidden),
            "throttled": dict(self.throttled),
            "faults_pending": self.faults.pending,
            "latency": self.latency,
        }

    def control_actions(self) -> dict[str, Callable[[Mapping[str, str]], dict[str, Any]]]:
        """`POST /_sim/tracksafe365/<name>` of the control API."""

        def fail_snapshots(query: Mapping[str, str]) -> dict[str, Any]:
            self.fail_snapshots = query.get("on", "1").lower() in ("1", "true", "yes", "on")
            return {"fail_snapshots": self.fail_snapshots}

        def reset_limits(_: Mapping[str, str]) -> dict[str, Any]:
            self.limits.reset()
            return {"reset": True}

        return {"fail-snapshots": fail_snapshots, "reset-limits": reset_limits}

    # --- the HTTP side ------------------------------------------------------------
    def app(self) -> web.Application:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._gate(request, handler)

        handlers: dict[str, Endpoint] = {
            "vehicles": self._vehicles,
            "vehicle_stats": self._vehicle_stats,
            "vehicle_locations": self._vehicle_locations,
            "vehicle": self._vehicle,
            "locations": self._locations,
            "dashcams": self._dashcams,
            "safety_events": self._safety_events,
            "dms_events": self._dms_events,
            "request_snapshot": self._request_snapshot,
            "snapshot": self._snapshot,
        }
        by_path: dict[str, dict[str, tuple[str, Endpoint]]] = {}
        for name, (method, path, scope) in PATHS.items():
            by_path.setdefault(path, {})[method] = (scope, handlers[name])
        app = web.Application(middlewares=[gate])
        app.router.add_get(MEDIA_PATH, self._image, name="image")
        for root in ROOTS.values():
            for path, methods in by_path.items():
                app.router.add_route("*", root + path, self._dispatcher(methods))
        app.router.add_route("*", "/{tail:.*}", self._not_found, name="missing")
        return app

    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        return await self.counters.count(
            request.path.removeprefix(PREFIX), self._answer(request, handler)
        )

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name == "image":
            return await handler(request)  # the media host: no key, no faults
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        fault = self.faults.take()
        if fault is not None:
            return _fault_response(fault)
        try:
            key = self._authorise(request)
            self.counters.by_token[key.key] += 1
            refused = self.limits.admit(key)
            if refused is not None:
                window, wait = refused
                self.throttled[window] += 1
                per = f"{key.plan.per_minute} requests per minute"
                if window == "day":
                    per = f"{key.plan.per_day} requests per day"
                response = _error(
                    429,
                    "rate_limit_exceeded",
                    f"Rate limit of {per} exceeded for this API key ({key.plan.name} "
                    f"plan); retry after {wait} s",
                )
                response.headers["Retry-After"] = str(wait)
                return response
            self.settle()
            return await handler(request)
        except _ApiError as err:
            return _error(err.status, err.code, err.message)
        except web.HTTPException:
            raise
        except Exception:
            _LOGGER.exception("TrackSafe365 simulator failed on %s", request.path_qs)
            return _error(500, "internal_error", "An unexpected error occurred")

    def _authorise(self, request: web.Request) -> ApiKey:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        token = raw.strip() if scheme.lower() == "bearer" else ""
        if "api_key" in request.query:
            self.api_key_query_attempts += 1
            raise _ApiError(
                400 if token else 401,
                "api_key_query_removed",
                "The api_key query parameter is no longer accepted (deprecated 2026-03-02, "
                "removed 2026-12-01): send the key as Authorization: Bearer <key>",
            )
        environment = _environment(request.path)
        if not token:
            raise _ApiError(401, "unauthorized", "Invalid or missing API key")
        key_environment = environment_of(token)
        key = self.keys.get(token)
        if key_environment and environment and key_environment != environment:
            self.wrong_environment += 1
            hint = (
                "ts365_test_ keys only work on https://sandbox-api.tracksafe365.com/v2"
                if environment == PRODUCTION
                else "the sandbox takes ts365_test_ keys only"
            )
            raise _ApiError(
                401,
                "wrong_environment",
                f"This {key_environment} key does not work on the {environment} API: {hint}",
            )
        if key is None:
            raise _ApiError(401, "unauthorized", "Invalid or missing API key")
        return key

    def _dispatcher(self, methods: Mapping[str, tuple[str, Endpoint]]) -> Handler:
        async def dispatch(request: web.Request) -> web.StreamResponse:
            entry = methods.get(request.method)
            if entry is None:
                response = _error(
                    405, "method_not_allowed", f"{request.method} is not allowed here"
                )
                response.headers["Allow"] = ", ".join(sorted(methods))
                return response
            scope, endpoint = entry
            if scope not in self._authorise(request).scopes:
                self.forbidden[scope] += 1
                raise _ApiError(403, "insufficient_scope", f"Key lacks {scope} permission.")
            return await endpoint(request)

        return dispatch

    # --- endpoints ------------------------------------------------------------------
    async def _vehicles(self, request: web.Request) -> web.Response:
        query = request.query
        wanted_ids = _csv(query.get("vehicleIds"))
        wanted_tags = _csv(query.get("tagIds"))

        def chosen(vehicle: SimVehicle) -> bool:
            return (not wanted_ids or vehicle.vehicle_id in wanted_ids) and (
                not wanted_tags or tag_of(vehicle)[0] in wanted_tags
            )

        return self._vehicle_page(request, "vehicles", chosen, vehicle_json)

    async def _vehicle(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        if key not in self.world:
            raise _ApiError(404, "not_found", "Vehicle not found")
        return web.json_response({"data": vehicle_json(self.world.vehicle(key))})

    async def _vehicle_stats(self, request: web.Request) -> web.Response:
        self.world.update()
        now = self.world.clock.now_ms()
        return self._vehicle_page(request, "stats", None, lambda v: stats_json(v, now))

    async def _vehicle_locations(self, request: web.Request) -> web.Response:
        self.world.update()

        def active(vehicle: SimVehicle) -> bool:
            engine = vehicle.last(Stat.ENGINE)
            return engine is not None and engine.value is not Engine.OFF

        return self._vehicle_page(request, "active-locations", active, location_json)

    async def _locations(self, request: web.Request) -> web.Response:
        self.world.update()
        return self._vehicle_page(request, "locations", None, location_json)

    async def _dashcams(self, request: web.Request) -> web.Response:
        self.world.update()
        now = self.world.clock.now_ms()
        return self._vehicle_page(request, "dashcams", None, lambda v: dashcam_json(v, now))

    async def _safety_events(self, request: web.Request) -> web.Response:
        return self._events_page(request, "safety", safety_events)

    async def _dms_events(self, request: web.Request) -> web.Response:
        return self._events_page(request, "dms", dms_events)

    async def _request_snapshot(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise _ApiError(400, "invalid_request", "The body must be a JSON object")
        vehicle_id, camera = body.get("vehicleId"), body.get("camera", "road")
        if not isinstance(vehicle_id, str) or not vehicle_id:
            raise _ApiError(400, "invalid_request", "vehicleId is required")
        if camera not in CAMERAS:
            raise _ApiError(400, "invalid_request", f"camera must be one of {', '.join(CAMERAS)}")
        if vehicle_id not in self.world:
            raise _ApiError(404, "not_found", "Vehicle not found")
        self.world.update()
        vehicle = self.world.vehicle(vehicle_id)
        now = self.world.clock.now_ms()
        number = len(self.snapshots) + 1
        failure: str | None = None
        if self.fail_snapshots:
            failure = "capture_failed"
        elif not dashcam_online(vehicle, now):
            failure = "dashcam_offline"
        elif self.snapshot_fail_every and number % self.snapshot_fail_every == 0:
            failure = "capture_failed"
        processing = now + round(self.snapshot_pending_s * 1000)
        snapshot = Snapshot(
            task_id=f"snap_{uuid.uuid4().hex[:20]}",
            vehicle_id=vehicle_id,
            camera=camera,
            requested_ms=now,
            processing_ms=processing,
            done_ms=processing + round(self.snapshot_processing_s * 1000),
            failure=failure,
            shade=(vehicle.seq * 13 + number * 7) % 61 - 30,
        )
        self.snapshots[snapshot.task_id] = snapshot
        return web.json_response({"data": self._snapshot_json(request, snapshot)}, status=201)

    async def _snapshot(self, request: web.Request) -> web.Response:
        snapshot = self.snapshots.get(request.match_info["id"])
        if snapshot is None:
            raise _ApiError(404, "not_found", "Snapshot task not found")
        return web.json_response({"data": self._snapshot_json(request, snapshot)})

    async def _image(self, request: web.Request) -> web.Response:
        task_id = request.match_info["file"].removesuffix(".jpg")
        snapshot = self.snapshots.get(task_id)
        now = self.world.clock.now_ms()
        if snapshot is None or snapshot.status(now) != COMPLETED:
            return _error(404, "not_found", "No such image")
        self.images_served += 1
        image = dashcam_jpeg(snapshot.camera == "driver", shade=snapshot.shade)
        return web.Response(body=image, content_type="image/jpeg")

    async def _not_found(self, request: web.Request) -> web.Response:
        raise _ApiError(404, "not_found", "No such endpoint")

    # --- helpers ------------------------------------------------------------------
    def _snapshot_json(self, request: web.Request, snapshot: Snapshot) -> dict[str, Any]:
        url = f"{request.url.origin()}{PREFIX}/media/{snapshot.task_id}.jpg"
        return snapshot.to_json(self.world.clock.now_ms(), url)

    def _limit(self, query: Mapping[str, str]) -> int:
        raw = query.get("limit")
        if raw is None or raw == "":
            return PAGE_LIMIT
        try:
            limit = int(raw)
        except ValueError:
            raise _ApiError(
                400, "invalid_parameter", f"limit must be an integer: {raw!r}"
            ) from None
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise _ApiError(400, "invalid_parameter", f"limit must be 1 to {MAX_PAGE_LIMIT}")
        return limit

    def _cursor(self, query: Mapping[str, str], kind: str, count: int) -> tuple[int, ...] | None:
        raw = query.get("cursor")
        if not raw:
            return None
        try:
            return self.cursors.decode(raw, kind, count)
        except CursorError:
            raise _ApiError(400, "invalid_cursor", "Invalid or expired cursor") from None

    def _vehicle_page(
        self,
        request: web.Request,
        kind: str,
        chosen: Callable[[SimVehicle], bool] | None,
        convert: Callable[[SimVehicle], dict[str, Any]],
    ) -> web.Response:
        limit = self._limit(request.query)
        (after,) = self._cursor(request.query, kind, 1) or (0,)
        page: list[SimVehicle] = []
        has_next = False
        for vehicle in self.world.vehicles_after(after):
            if chosen is not None and not chosen(vehicle):
                continue
            if len(page) == limit:
                has_next = True
                break
            page.append(vehicle)
        cursor = self.cursors.encode(kind, page[-1].seq) if has_next else ""
        return _page([convert(v) for v in page], cursor, has_next)

    def _events_page(
        self,
        request: web.Request,
        kind: str,
        draw: Callable[[SimVehicle, Trip, int], list[dict[str, Any]]],
    ) -> web.Response:
        query = request.query
        limit = self._limit(query)
        self.world.update()
        now = self.world.clock.now_ms()
        fields = self._cursor(query, kind, 3)
        if fields is not None:
            start, end, offset = fields
        else:
            start = _time_param(query, "startTime", now - DAY_MS)
            end = _time_param(query, "endTime", now)
            offset = 0
            if end <= start:
                raise _ApiError(400, "invalid_parameter", "endTime must be after startTime")
        wanted = _csv(query.get("vehicleIds"))
        events = sorted(
            (
                event
                for vehicle in _vehicles(self.world, wanted)
                for trip in vehicle.trip_history()
                for event in draw(vehicle, trip, self.world.seed)
            ),
            key=lambda event: (event["time"], event["id"]),
        )
        events = [e for e in events if _in_range(e["time"], start, end)]
        page = events[offset : offset + limit]
        if query.get("include_media", "").lower() in ("true", "1"):
            origin = f"{request.url.origin()}{PREFIX}/media/events"
            page = [{**event, "media": event_media(event, origin)} for event in page]
        has_next = offset + limit < len(events)
        cursor = self.cursors.encode(kind, start, end, offset + limit) if has_next else ""
        return _page(page, cursor, has_next)


def _vehicles(world: World, wanted: set[str]) -> Iterator[SimVehicle]:
    for vehicle in world.vehicles():
        if not wanted or vehicle.vehicle_id in wanted:
            yield vehicle


def _environment(path: str) -> str | None:
    rest = path.removeprefix(PREFIX)
    for environment, root in ROOTS.items():
        if rest == root or rest.startswith(root + "/"):
            return environment
    return None


def _csv(raw: str | None) -> set[str]:
    return {part.strip() for part in (raw or "").split(",") if part.strip()}


def _time_param(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _ApiError(400, "invalid_parameter", f"{name} must be ISO 8601: {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _in_range(text: str, start: int, end: int) -> bool:
    at = int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    return start <= at < end


def _page(data: list[dict[str, Any]], cursor: str, has_next: bool) -> web.Response:
    return web.json_response(
        {"data": data, "pagination": {"endCursor": cursor, "hasNextPage": has_next}}
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _fault_response(fault: Fault) -> web.Response:
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = f"HTTP {fault.status}"
    code = {429: "rate_limit_exceeded"}.get(fault.status, "injected_fault")
    if fault.status >= 500:
        code = "internal_error"
    response = _error(fault.status, code, fault.body or phrase)
    if fault.status == 429:
        retry = 1.0 if fault.retry_after is None else fault.retry_after
        response.headers["Retry-After"] = str(max(1, -int(-retry // 1)))
    return response
