"""A simulated Samsara API over the simulated world (mounted under `/samsara`).

Serves what the bridge reads: `GET /fleet/vehicles`, the stats feed
`GET /fleet/vehicles/stats/feed` and the snapshot `GET /fleet/vehicles/stats`,
with Samsara's rules: Bearer tokens, pages of at most 512, at most 3 stat types a
call, cursors that expire, 150 requests per second per token answered with 429 and
a fractional `Retry-After`, and 5xx bodies that are plain text, not JSON.

Camera stills: `POST /cameras/media/retrieval` with `{vehicleId, startTime,
endTime, inputs: [dashcamRoadFacing|dashcamDriverFacing|analog1..4], mediaType:
"image"}` answers 200 `{"data": {"retrievalId"}}`; `GET /cameras/media/retrieval
?retrievalId=` answers `{"data": {"media": [...]}}`, each entry `pending` until
`media_ready_s` (30) simulated seconds after the request (the first
`media_requested_s` (5) of them not yet picked up by the device), then
`available` with `urlInfo: {url, urlExpiryTime}` (or `invalid` from the 5th
second: see `samsara_json`). The create answer is `{"data": {"retrievalId",
"quotaStatus"}}`. Each poll signs a fresh URL that expires 8
simulated hours later; the simulator serves it itself (`/samsara/media/...`, no
token: a signed S3 URL's stand-in, answering S3's 403 XML once expired). Limits
per token, on top of the 150/s: create 100 per minute, status 5 per second (as
NOTES.md says; Samsara's OpenAPI says 100/min for the status too).

Safety events: `GET /safety-events/stream?startTime=<RFC 3339>[&endTime=][&after=]
[&includeAsset=true][&includeDriver=true]` answers the events created since
`startTime` (see `samsara_safety`: drawn from the trips the fleet drives, so the
world needs trip history, which `SimulatorServer` gives it), oldest first, pages
of `page_limit`, with an `endCursor` on every answer: without `endTime` a client
keeps polling with it for what is new. A cursor must come with the `startTime`
(and `endTime`) it was made for, else 400 "Parameters differ from previous
paginated request"; a missing or unreadable `startTime` is a 400 too. Limit: 5
requests a second per token (NOTES.md). The media URLs of events are served
without a token (`/samsara/safety-media/<event>/<input>.jpg`). These cursors are
apart from the feed's: `expire_safety_cursors()` expires them (the feed's
`expire_cursors()` leaves them alone).

Tests reach in through `counters`, `limiter`, `media_limiters`, `retrievals`,
`safety`, `safety_limiter`, `fail_next()`, `latency`, `expire_cursors()` and
`expire_safety_cursors()`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiMapping

from bridge.simulator.cursor import CursorCodec, CursorError
from bridge.simulator.samsara_json import (
    AVAILABLE,
    FEED_TYPES,
    MEDIA_INPUTS,
    QUOTA_STATUS,
    SNAPSHOT_KEYS,
    MediaRetrieval,
    camera_inputs,
    sample_json,
    vehicle_json,
    vehicle_ref,
)
from bridge.simulator.samsara_safety import SafetyEvent, SafetyJournal, event_json
from bridge.simulator.traffic import Fault, FaultQueue, RequestCounters, SlidingWindowLimiter
from bridge.simulator.vehicle import Sample, SimVehicle, Stat
from bridge.simulator.world import World, dashcam_jpeg

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
PATH_MEDIA_RETRIEVAL = "/cameras/media/retrieval"
PATH_MEDIA_FILE = "/media/{retrieval}/{file}"  # the signed URLs' stand-in
PATH_SAFETY_STREAM = "/safety-events/stream"
PATH_SAFETY_MEDIA = "/safety-media/{event}/{file}"
SAFETY_STREAM_PER_S = 5  # per token
PARAMETERS_DIFFER = "Parameters differ from previous paginated request"
MEDIA_CREATE_PER_MIN = 100  # per token
MEDIA_STATUS_PER_S = 5  # per token
MEDIA_REQUESTED_S = 5.0
MEDIA_READY_S = 30.0
MEDIA_URL_LIFETIME_S = 8 * 3600
_ALLOWED = {PATH_MEDIA_RETRIEVAL: "GET, POST"}
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
        media_requested_s: float = MEDIA_REQUESTED_S,
        media_ready_s: float = MEDIA_READY_S,
    ) -> None:
        self.world = world
        self.tokens = frozenset(tokens)
        self.limiter = SlidingWindowLimiter(rate_limit, 1.0, clock=monotonic)
        #: Per token, by method on the media retrieval path: create and status.
        self.media_limiters = {
            "POST": SlidingWindowLimiter(MEDIA_CREATE_PER_MIN, 60.0, clock=monotonic),
            "GET": SlidingWindowLimiter(MEDIA_STATUS_PER_S, 1.0, clock=monotonic),
        }
        self.media_requested_s = media_requested_s
        self.media_ready_s = max(media_ready_s, media_requested_s)
        self.retrievals: dict[str, MediaRetrieval] = {}
        self.media_downloads = 0
        self._url_secret = os.urandom(16)
        self.counters = RequestCounters()
        self.faults = FaultQueue()
        self.latency = 0.0
        self.page_limit = page_limit
        self.cursors = CursorCodec()
        self.safety = SafetyJournal(world)
        self.safety_limiter = SlidingWindowLimiter(SAFETY_STREAM_PER_S, 1.0, clock=monotonic)
        self.safety_cursors = CursorCodec()
        # createdAtTime of each vehicle: the first fleet was set up a year and a
        # bit before the simulation starts; vehicles added later, when first listed.
        start = world.clock.now_ms() // 1000 * 1000
        self._created_ms = {
            v.vehicle_id: start - (365 + v.seq) * 86_400_000 for v in world.vehicles()
        }

    # --- switches for tests -------------------------------------------------
    @property
    def generation(self) -> int:
        return self.cursors.generation

    def expire_cursors(self) -> None:
        self.cursors.expire_all()

    def expire_safety_cursors(self) -> None:
        self.safety_cursors.expire_all()

    def control_actions(self) -> dict[str, Callable[[Mapping[str, str]], dict[str, Any]]]:
        """`POST /_sim/samsara/<name>` of the control API."""

        def expire_safety_cursors(_: Mapping[str, str]) -> dict[str, Any]:
            self.expire_safety_cursors()
            return {"safety_cursor_generation": self.safety_cursors.generation}

        return {"expire-safety-cursors": expire_safety_cursors}

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
            "media_retrievals": len(self.retrievals),
            "media_downloads": self.media_downloads,
            "safety_events": len(self.safety),
            "safety_cursor_generation": self.safety_cursors.generation,
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
        app.router.add_post(PATH_MEDIA_RETRIEVAL, self._create_retrieval)
        app.router.add_get(PATH_MEDIA_RETRIEVAL, self._retrieval_status)
        app.router.add_get(PATH_MEDIA_FILE, self._media_file, name="media_file")
        app.router.add_get(PATH_SAFETY_STREAM, self._safety_stream)
        app.router.add_get(PATH_SAFETY_MEDIA, self._safety_media, name="safety_media")
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name in ("media_file", "safety_media"):
            return await handler(request)  # the media host, not the API: no token
        return await self.counters.count(
            request.path.removeprefix(PREFIX), self._answer(request, handler)
        )

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
        limiters = [self.limiter]
        path = request.path.removeprefix(PREFIX)
        if path == PATH_MEDIA_RETRIEVAL:
            endpoint = self.media_limiters.get(request.method)
            limiters += [endpoint] if endpoint is not None else []
        elif path == PATH_SAFETY_STREAM:
            limiters.append(self.safety_limiter)
        waits = [wait for limiter in limiters if (wait := limiter.wait(token)) is not None]
        if waits:
            return _too_many_requests(max(waits))
        for limiter in limiters:
            limiter.record(token)
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
        now = self.world.clock.now_ms() // 1000 * 1000
        created = [self._created_ms.setdefault(v.vehicle_id, now) for v in page]
        return _page(
            [vehicle_json(v, at) for v, at in zip(page, created, strict=True)], cursor, has_next
        )

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

    async def _create_retrieval(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise _ApiError(400, "Invalid request body: expected a JSON object")
        vehicle_id = body.get("vehicleId")
        if not isinstance(vehicle_id, str) or not vehicle_id:
            raise _ApiError(400, "Parameter 'vehicleId' is required")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise _ApiError(400, "Parameter 'inputs' must be a non-empty list")
        unknown = [i for i in inputs if i not in MEDIA_INPUTS]
        if unknown:
            raise _ApiError(400, f"Invalid value for inputs: {unknown[0]!r}")
        if body.get("mediaType", "image") != "image":
            raise _ApiError(400, "Invalid value for mediaType: only 'image' is supported")
        now = self.world.clock.now_ms()
        start = _rfc3339(body.get("startTime"), "startTime")
        end = start if body.get("endTime") is None else _rfc3339(body["endTime"], "endTime")
        if end < start:
            raise _ApiError(400, "endTime must not be before startTime")
        if vehicle_id not in self.world:
            raise _ApiError(404, "Object not found.")
        vehicle = self.world.vehicle(vehicle_id)
        retrieval = MediaRetrieval(
            retrieval_id=str(uuid.uuid4()),
            vehicle_id=vehicle_id,
            inputs=tuple(dict.fromkeys(inputs)),
            start_ms=start,
            end_ms=end,
            pending_ms=now + round(self.media_requested_s * 1000),
            available_ms=now + round(self.media_ready_s * 1000),
            has=camera_inputs(vehicle),
            shade=(vehicle.seq * 11 + len(self.retrievals) * 7) % 61 - 30,
        )
        self.retrievals[retrieval.retrieval_id] = retrieval
        return web.json_response(
            {"data": {"retrievalId": retrieval.retrieval_id, "quotaStatus": QUOTA_STATUS}}
        )

    async def _retrieval_status(self, request: web.Request) -> web.Response:
        key = request.query.get("retrievalId")
        if not key:
            raise _ApiError(400, "Parameter 'retrievalId' is required")
        retrieval = self.retrievals.get(key)
        if retrieval is None:
            raise _ApiError(404, "Object not found.")
        now = self.world.clock.now_ms()
        origin = str(request.url.origin())

        def url_for(media_input: str) -> tuple[str, int]:
            expiry = now + MEDIA_URL_LIFETIME_S * 1000
            signature = self._sign(retrieval.retrieval_id, media_input, expiry // 1000)
            url = (
                f"{origin}{PREFIX}/media/{retrieval.retrieval_id}/{media_input}.jpg"
                f"?expires={expiry // 1000}&signature={signature}"
            )
            return url, expiry

        return web.json_response({"data": {"media": retrieval.media_json(now, url_for)}})

    async def _media_file(self, request: web.Request) -> web.Response:
        retrieval = self.retrievals.get(request.match_info["retrieval"])
        media_input = request.match_info["file"].removesuffix(".jpg")
        expires = request.query.get("expires", "")
        signature = request.query.get("signature", "")
        if (
            retrieval is None
            or not expires.isdigit()
            or not hmac.compare_digest(
                signature, self._sign(retrieval.retrieval_id, media_input, int(expires))
            )
        ):
            return _s3_error("SignatureDoesNotMatch", "The request signature we calculated "
                             "does not match the signature you provided.")  # fmt: skip
        now = self.world.clock.now_ms()
        if now >= int(expires) * 1000:
            return _s3_error("AccessDenied", "Request has expired")
        if retrieval.status(media_input, now) != AVAILABLE:
            return _s3_error("NoSuchKey", "The specified key does not exist.", 404)
        self.media_downloads += 1
        image = dashcam_jpeg(media_input == "dashcamDriverFacing", shade=retrieval.shade)
        return web.Response(body=image, content_type="image/jpeg")

    async def _safety_stream(self, request: web.Request) -> web.Response:
        query = request.query
        start = _rfc3339(query.get("startTime"), "startTime")
        end = None if query.get("endTime") is None else _rfc3339(query["endTime"], "endTime")
        if end is not None and end < start:
            raise _ApiError(400, "endTime must not be before startTime")
        after = (-1, -1)
        raw = query.get("after")
        if raw:
            try:
                cursor_start, cursor_end, *last = self.safety_cursors.decode(raw, "safety", 4)
            except CursorError:
                raise _ApiError(400, CURSOR_MESSAGE) from None
            if cursor_start != start or cursor_end != (_OPEN if end is None else end):
                raise _ApiError(400, PARAMETERS_DIFFER)
            after = (last[0], last[1])
        now = self.safety.catch_up()
        until = now if end is None else min(end, now)
        page: list[SafetyEvent] = []
        has_next = False
        for event in self.safety.after(after, start, until):
            if len(page) == self.page_limit:
                has_next = True
                break
            page.append(event)
        last_key = page[-1].key if page else after
        cursor = self.safety_cursors.encode(
            "safety", start, _OPEN if end is None else end, *last_key
        )
        origin = str(request.url.origin())

        def media_url(event: SafetyEvent, media_input: str) -> str:
            return f"{origin}{PREFIX}/safety-media/{event.event_id}/{media_input}.jpg"

        include_asset = query.get("includeAsset", "").lower() == "true"
        include_driver = query.get("includeDriver", "").lower() == "true"
        data = [
            event_json(
                event,
                self.world.vehicle(event.vehicle_id) if event.vehicle_id in self.world else None,
                media_url,
                include_asset=include_asset,
                include_driver=include_driver,
            )
            for event in page
        ]
        return _page(data, cursor, has_next)

    async def _safety_media(self, request: web.Request) -> web.Response:
        media_input = request.match_info["file"].removesuffix(".jpg")
        event_id = request.match_info["event"]
        event = next((e for e in self.safety.events() if e.event_id == event_id), None)
        if event is None or media_input not in event.inputs:
            return _s3_error("NoSuchKey", "The specified key does not exist.", 404)
        shade = sum(map(ord, event_id)) % 61 - 30
        image = dashcam_jpeg(media_input == "dashcamDriverFacing", shade=shade)
        return web.Response(body=image, content_type="image/jpeg")

    def _sign(self, retrieval_id: str, media_input: str, expires: int) -> str:
        message = f"{retrieval_id}/{media_input}/{expires}".encode()
        return hmac.new(self._url_secret, message, hashlib.sha256).hexdigest()[:32]

    async def _not_found(self, request: web.Request) -> web.Response:
        path = request.path.removeprefix(PREFIX)
        if path in (
            PATH_VEHICLES,
            PATH_FEED,
            PATH_SNAPSHOT,
            PATH_MEDIA_RETRIEVAL,
            PATH_SAFETY_STREAM,
        ):
            response = _error(405, f"Method {request.method} not allowed")
            response.headers["Allow"] = _ALLOWED.get(path, "GET")
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


def _types(query: MultiMapping[str]) -> StatTypes:
    # Both spellings Samsara takes: `types=a,b,c` (the reference's) and
    # `types=a&types=b&types=c` (what its own SDK sends).
    names = list(
        dict.fromkeys(
            t.strip() for raw in query.getall("types", []) for t in raw.split(",") if t.strip()
        )
    )
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


def _rfc3339(raw: object, name: str) -> int:
    if not isinstance(raw, str) or not raw:
        raise _ApiError(400, f"Parameter '{name}' is required (RFC 3339)")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _ApiError(400, f"Invalid value for {name}: {raw!r} is not RFC 3339") from None
    if value.tzinfo is None:
        raise _ApiError(400, f"Invalid value for {name}: {raw!r} has no time zone")
    return int(value.timestamp() * 1000)


def _s3_error(code: str, message: str, status: int = 403) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


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
