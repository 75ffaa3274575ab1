"""A simulated Samsara API over the simulated world (mounted under `/samsara`).

Serves what the bridge reads: `GET /fleet/vehicles`, the stats feed
`GET /fleet/vehicles/stats/feed` and the snapshot `GET /fleet/vehicles/stats`,
with Samsara's rules: Bearer tokens, pages of at most 512, at most 3 stat types a
call, cursors that expire, 150 requests per second per token answered with 429 and
a fractional `Retry-After`, and 5xx bodies that are plain text, not JSON.

Tests reach in through `counters`, `limiter`, `fail_next()`, `latency` and
`expire_cursors()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator.cursor import CursorCodec, CursorError
from bridge.simulator.samsara_json import (
    FEED_TYPES,
    SNAPSHOT_KEYS,
    sample_json,
    vehicle_json,
    vehicle_ref,
)
from bridge.simulator.traffic import Fault, FaultQueue, RequestCounters, SlidingWindowLimiter
from bridge.simulator.vehicle import Sample, SimVehicle, Stat
from bridge.simulator.world import World

_LOGGER = logging.getLogger(__name__)

PREFIX = "/samsara"
DEFAULT_TOKEN = "demo-samsara-token"
PAGE_LIMIT = 512  # default and maximum
MAX_TYPES = 3
RATE_LIMIT_PER_S = 150  # per token
CURSOR_MESSAGE = "Invalid or expired cursor"
PATH_VEHICLES = "/fleet/vehicles"
PATH_FEED = "/fleet/vehicles/stats/feed"
PATH_SNAPSHOT = "/fleet/vehicles/stats"
_SERVER_ERROR_TEXT = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    504: "upstream request timeout",
}
# Feed cursor fields: (since, until, last vehicle seq). `since` is the revision the
# client has seen (none yet: a snapshot of last known values); `until` the revision
# this pass answers up to, fixed on its first page so that later pages agree.
_SNAPSHOT = -1
_OPEN = -1

StatTypes = list[tuple[str, Stat]]


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SamsaraSim:
    """Samsara's API for one organisation, plus the switches tests turn."""

    name: ClassVar[str] = "samsara"

    def __init__(
        self,
        world: World,
        *,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        rate_limit: int = RATE_LIMIT_PER_S,
        monotonic: Callable[[], float] = time.monotonic,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        self.world = world
        self.tokens = frozenset(tokens)
        self.limiter = SlidingWindowLimiter(rate_limit, 1.0, clock=monotonic)
        self.counters = RequestCounters()
        self.faults = FaultQueue()
        self.latency = 0.0
        self.page_limit = page_limit
        self.cursors = CursorCodec()

    # --- switches for tests -------------------------------------------------
    @property
    def generation(self) -> int:
        return self.cursors.generation

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
        """Answer the next `count` requests with `status`: 5xx as plain text, 429
        with `Retry-After` (1 s unless given), anything else as a JSON error."""
        self.faults.add(Fault(status, retry_after, body), count)

    def stats(self) -> dict[str, Any]:
        return {
            **self.counters.to_json(),
            "faults_pending": self.faults.pending,
            "cursor_generation": self.generation,
            "latency": self.latency,
        }

    # --- the HTTP side ------------------------------------------------------------
    def app(self) -> web.Application:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._gate(request, handler)

        app = web.Application(middlewares=[gate])
        app.router.add_get(PATH_VEHICLES, self._list_vehicles)
        app.router.add_get(PATH_FEED, self._stats_feed)
        app.router.add_get(PATH_SNAPSHOT, self._stats_snapshot)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.counters.by_path[request.path.removeprefix(PREFIX) or "/"] += 1
        try:
            response = await self._answer(request, handler)
        except web.HTTPException as exc:
            self.counters.by_status[exc.status] += 1
            raise
        self.counters.by_status[response.status] += 1
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        fault = self.faults.take()
        if fault is not None:
            return _fault_response(fault)
        token = _bearer_token(request.headers)
        if token is None or token not in self.tokens:
            return _error(401, "Unauthorized: missing or invalid API token")
        self.counters.by_token[token] += 1
        wait = self.limiter.acquire(token)
        if wait is not None:
            return _too_many_requests(wait)
        try:
            return await handler(request)
        except _ApiError as err:
            return _error(err.status, err.message)
        except web.HTTPException:
            raise
        except Exception:
            _LOGGER.exception("Samsara simulator failed on %s", request.path_qs)
            return web.Response(status=500, text=_SERVER_ERROR_TEXT[500])

    async def _list_vehicles(self, request: web.Request) -> web.Response:
        limit = self._limit(request.query)
        (after,) = self._cursor(request.query, "vehicles", 1) or (0,)
        page, has_next = _take(self.world.vehicles_after(after), limit)
        cursor = self.cursors.encode("vehicles", page[-1].seq) if has_next else ""
        return _page([vehicle_json(v) for v in page], cursor, has_next)

    async def _stats_snapshot(self, request: web.Request) -> web.Response:
        types = _types(request.query)
        limit = self._limit(request.query)
        (after,) = self._cursor(request.query, "stats", 1) or (0,)
        self.world.update()
        page, has_next = _take(self.world.vehicles_after(after), limit)
        data = []
        for vehicle in page:
            entry = vehicle_ref(vehicle)
            for name, stat in types:
                sample = vehicle.last(stat)
                if sample is not None:
                    entry[SNAPSHOT_KEYS[name]] = sample_json(stat, sample)
            data.append(entry)
        cursor = self.cursors.encode("stats", page[-1].seq) if has_next else ""
        return _page(data, cursor, has_next)

    async def _stats_feed(self, request: web.Request) -> web.Response:
        """The first pass (no cursor) answers every vehicle's last known values; a
        pass with a cursor only the vehicles, types and samples new since it."""
        types = _types(request.query)
        fields = self._cursor(request.query, "feed", 3)
        revision = self.world.update()
        since, until, after = fields or (_SNAPSHOT, _OPEN, 0)
        if since > revision or until > revision:
            raise _ApiError(400, CURSOR_MESSAGE)
        if until == _OPEN:
            until = revision
        data: list[dict[str, Any]] = []
        last_seq, has_next = after, False
        for vehicle in self.world.vehicles_after(after):
            entry = _feed_entry(vehicle, types, since, until)
            if entry is None:
                continue
            if len(data) >= self.page_limit:
                has_next = True
                break
            data.append(entry)
            last_seq = vehicle.seq
        if has_next:
            cursor = self.cursors.encode("feed", since, until, last_seq)
        else:
            cursor = self.cursors.encode("feed", until, _OPEN, 0)
        return _page(data, cursor, has_next)

    async def _not_found(self, request: web.Request) -> web.Response:
        path = request.path.removeprefix(PREFIX)
        if path in (PATH_VEHICLES, PATH_FEED, PATH_SNAPSHOT):
            response = _error(405, f"Method {request.method} not allowed")
            response.headers["Allow"] = "GET"
            return response
        return _error(404, "Not Found")

    # --- parameters ------------------------------------------------------------
    def _limit(self, query: Mapping[str, str]) -> int:
        raw = query.get("limit")
        if raw is None:
            return self.page_limit
        try:
            limit = int(raw)
        except ValueError:
            raise _ApiError(400, f"Invalid value for limit: {raw!r}") from None
        if not 1 <= limit <= self.page_limit:
            raise _ApiError(400, f"limit must be between 1 and {self.page_limit}")
        return limit

    def _cursor(self, query: Mapping[str, str], kind: str, count: int) -> tuple[int, ...] | None:
        raw = query.get("after")
        if not raw:
            return None
        try:
            return self.cursors.decode(raw, kind, count)
        except CursorError:
            raise _ApiError(400, CURSOR_MESSAGE) from None


def _types(query: Mapping[str, str]) -> StatTypes:
    names = list(dict.fromkeys(t.strip() for t in query.get("types", "").split(",") if t.strip()))
    if not names:
        raise _ApiError(400, "Parameter 'types' is required")
    if len(names) > MAX_TYPES:
        raise _ApiError(400, f"At most {MAX_TYPES} stat types may be requested at once")
    unknown = [name for name in names if name not in FEED_TYPES]
    if unknown:
        raise _ApiError(400, f"Invalid stat type(s): {', '.join(unknown)}")
    return [(name, FEED_TYPES[name]) for name in names]


def _feed_entry(
    vehicle: SimVehicle, types: StatTypes, since: int, until: int
) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = None
    for name, stat in types:
        samples = vehicle.samples(stat)
        if not samples:
            continue
        if since == _SNAPSHOT:
            chosen = _latest_until(samples, until)
        elif samples[-1].revision <= since:
            continue  # the common case: nothing new
        else:
            chosen = [s for s in samples if since < s.revision <= until]
        if chosen:
            if entry is None:
                entry = vehicle_ref(vehicle)
            entry[name] = [sample_json(stat, s) for s in chosen]
    if entry is None and since == _SNAPSHOT:
        # The first pass lists every vehicle, even one lacking all requested types.
        entry = vehicle_ref(vehicle)
    return entry


def _latest_until(samples: list[Sample[Any]], until: int) -> list[Sample[Any]]:
    for sample in reversed(samples):
        if sample.revision <= until:
            return [sample]
    return []


def _take(vehicles: Iterable[SimVehicle], limit: int) -> tuple[list[SimVehicle], bool]:
    """Up to `limit` vehicles, and whether any are left."""
    page: list[SimVehicle] = []
    for vehicle in vehicles:
        if len(page) == limit:
            return page, True
        page.append(vehicle)
    return page, False


def _page(data: list[dict[str, Any]], cursor: str, has_next: bool) -> web.Response:
    return web.json_response(
        {"data": data, "pagination": {"endCursor": cursor, "hasNextPage": has_next}}
    )


def _bearer_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "requestId": str(uuid.uuid4())}, status=status)


def _too_many_requests(wait: float) -> web.Response:
    response = _error(429, "Rate limit exceeded: too many requests for this API token")
    response.headers["Retry-After"] = f"{max(wait, 0.001):.5f}"
    return response


def _fault_response(fault: Fault) -> web.Response:
    if fault.status == 429:
        return _too_many_requests(1.0 if fault.retry_after is None else fault.retry_after)
    if fault.status >= 500:
        text = fault.body or _SERVER_ERROR_TEXT.get(fault.status, _SERVER_ERROR_TEXT[500])
        return web.Response(status=fault.status, text=text)
    try:
        message = fault.body or HTTPStatus(fault.status).phrase
    except ValueError:
        message = f"HTTP {fault.status}"
    return _error(fault.status, message)
