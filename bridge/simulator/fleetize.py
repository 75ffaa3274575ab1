"""A simulated FLEETIZE API over its own simulated fleet (mounted under `/fleetize`).

Every call is `POST /v2/{ActionCode}` with form parameters, `apitoken` among them
(a GET, or a JSON body, carries no POST parameters and so no token). Serves
`devicelist` (`scope`, `activity_after`) and `device` (`device`, `time`, `scope`:
the device and that UTC day's routes).

Errors are text bodies, with HTTP 200 by default (`error_status`), as the service
words them:

    ERROR #1000 - INVALID API TOKEN
    ERROR #1055 - QUERY-THRESHOLD EXCEEDED - PLEASE REDUCE QUERY-INTERVAL, OTHERWISE
        YOUR TOKEN WILL BE BLOCKED                     (one line in the answer)
    ERROR #1002 - QUERY-THRESHOLD EXCEEDED - API TOKEN BLOCKED

and three the documentation does not name, invented here: `ERROR #1056 - DAILY
QUERY LIMIT REACHED`, `ERROR #1003 - INVALID DEVICE-ID` and `ERROR #1004 - UNKNOWN
ACTION-CODE`. The limits are in `fleetize_quota`, the JSON shapes and quirks in
`fleetize_json`.

Tests reach in through `quota`, `counters`, `error_counts`, `action_counts`,
`quirks`, `set_error()`, `fail_next()` and `latency`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator.fleetize_json import (
    DEVICE_FIELDS,
    DeviceError,
    Loose,
    device_json,
    encode,
    error_at,
    route_json,
)
from bridge.simulator.fleetize_quota import (
    BLOCK_AFTER,
    BLOCK_WINDOW_S,
    DAILY_LIMIT,
    DAILY_LIMIT_REACHED,
    MIN_INTERVAL_S,
    THRESHOLD_EXCEEDED,
    TOKEN_BLOCKED,
    FleetizeQuota,
)
from bridge.simulator.traffic import Fault, FaultQueue, RequestCounters
from bridge.simulator.vehicle import DAY_MS, SimVehicle
from bridge.simulator.world import World

_LOGGER = logging.getLogger(__name__)

PREFIX = "/fleetize"
DEFAULT_TOKEN = "demo-fleetize-token"
API_ROOT = "/v2"
PATH_ACTION = API_ROOT + "/{action}"
INVALID_TOKEN = 1000
INVALID_DEVICE = 1003  # invented
UNKNOWN_ACTION = 1004  # invented
ERRORS = {
    INVALID_TOKEN: "ERROR #1000 - INVALID API TOKEN",
    THRESHOLD_EXCEEDED: "ERROR #1055 - QUERY-THRESHOLD EXCEEDED - PLEASE REDUCE QUERY-INTERVAL, "
    "OTHERWISE YOUR TOKEN WILL BE BLOCKED",
    TOKEN_BLOCKED: "ERROR #1002 - QUERY-THRESHOLD EXCEEDED - API TOKEN BLOCKED",
    DAILY_LIMIT_REACHED: "ERROR #1056 - DAILY QUERY LIMIT REACHED",
    INVALID_DEVICE: "ERROR #1003 - INVALID DEVICE-ID",
    UNKNOWN_ACTION: "ERROR #1004 - UNKNOWN ACTION-CODE",
}
_JSON = "application/json"


class _Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(ERRORS[code])
        self.code = code


def naming(seq: int) -> tuple[str, str]:
    """FLEETIZE device ids are small integers ("Device-API-ID"), like 492."""
    return str(480 + seq), f"Fahrzeug {seq:02d}"


class FleetizeSim:
    """FLEETIZE's API for one account, plus the switches tests turn."""

    name: ClassVar[str] = "fleetize"

    def __init__(
        self,
        world: World,
        *,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        quirks: bool = True,
        error_status: int = 200,
        min_interval_s: float = MIN_INTERVAL_S,
        daily_limit: int = DAILY_LIMIT,
        block_after: int = BLOCK_AFTER,
        block_window_s: float = BLOCK_WINDOW_S,
        device_errors: bool = True,
    ) -> None:
        """`quirks`: answer like the documentation's examples (trailing commas,
        numbers as strings); `error_status`: the HTTP status of `ERROR #...`
        answers; `device_errors`: let devices report faults now and then."""
        self.world = world
        self.tokens = frozenset(tokens)
        self.quirks = quirks
        self.error_status = error_status
        self.device_errors = device_errors
        self.quota = FleetizeQuota(
            world.clock,
            min_interval_s=min_interval_s,
            daily_limit=daily_limit,
            block_after=block_after,
            block_window_s=block_window_s,
        )
        self.counters = RequestCounters()
        #: `ERROR #n` answers served, by n.
        self.error_counts: Counter[int] = Counter()
        #: Calls answered with data, by action code.
        self.action_counts: Counter[str] = Counter()
        self.faults = FaultQueue()
        self.latency = 0.0
        self._forced_errors: dict[str, DeviceError | None] = {}

    # --- switches for tests -------------------------------------------------
    def expire_cursors(self) -> None:
        """FLEETIZE has no cursors."""

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` and a text body (`body`,
        e.g. an `ERROR #...` line with status 200, or the status's phrase)."""
        self.faults.add(Fault(status, retry_after, body), count)

    def set_error(self, device: str | int, code: int | None) -> None:
        """Pin a device fault from now on (0: pin "no fault"; None: back to the
        episodes)."""
        key = str(device)
        if key not in self.world:
            raise KeyError(key)
        if code is None:
            self._forced_errors.pop(key, None)
        elif code == 0:
            self._forced_errors[key] = None
        elif 1 <= code <= 5:
            self._forced_errors[key] = DeviceError(code, self.world.clock.now_ms())
        else:
            raise ValueError("error codes are 0..5")

    def error_of(self, vehicle: SimVehicle, at_ms: int) -> DeviceError | None:
        key = vehicle.vehicle_id
        if key in self._forced_errors:
            return self._forced_errors[key]
        if not self.device_errors:
            return None
        return error_at(self.world.seed, vehicle.seq, at_ms)

    def stats(self) -> dict[str, Any]:
        quota = self.quota
        return {
            **self.counters.to_json(),
            "vehicles": len(self.world),
            "calls_today": quota.calls_today(),
            "daily_limit": quota.daily_limit,
            "violations": sum(quota.violations.values()),
            "blocked": bool(quota.blocked),
            "errors": {str(code): n for code, n in sorted(self.error_counts.items())},
            "by_action": dict(self.action_counts),
            "faults_pending": self.faults.pending,
            "latency": self.latency,
            "quirks": self.quirks,
        }

    def control_actions(self) -> dict[str, Callable[[Mapping[str, str]], dict[str, Any]]]:
        """`POST /_sim/fleetize/<name>` of the control API."""

        def unblock(query: Mapping[str, str]) -> dict[str, Any]:
            self.quota.unblock(query.get("token") or None)
            return {"blocked": bool(self.quota.blocked)}

        def reset_quota(_: Mapping[str, str]) -> dict[str, Any]:
            self.quota.reset()
            return {"reset": True}

        def error(query: Mapping[str, str]) -> dict[str, Any]:
            code = query.get("code", "")
            self.set_error(query.get("device", ""), None if code == "" else int(code))
            return {"device": query.get("device"), "code": code or None}

        def quirks(query: Mapping[str, str]) -> dict[str, Any]:
            self.quirks = query.get("on", "1").lower() in ("1", "true", "yes", "on")
            return {"quirks": self.quirks}

        return {"unblock": unblock, "reset-quota": reset_quota, "error": error, "quirks": quirks}

    # --- the HTTP side ------------------------------------------------------------
    def app(self) -> web.Application:
        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._gate(request, handler)

        app = web.Application(middlewares=[gate])
        app.router.add_route("*", PATH_ACTION, self._action)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
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
        try:
            return await handler(request)
        except _Refused as refused:
            self.error_counts[refused.code] += 1
            return web.Response(status=self.error_status, text=ERRORS[refused.code])
        except web.HTTPException:
            raise
        except Exception:
            _LOGGER.exception("FLEETIZE simulator failed on %s", request.path_qs)
            return web.Response(status=500, text="Internal Server Error")

    async def _action(self, request: web.Request) -> web.Response:
        form: Mapping[str, Any] = await request.post() if request.method == "POST" else {}
        params = {key: value for key, value in form.items() if isinstance(value, str)}
        token = params.get("apitoken", "")
        if token not in self.tokens:
            raise _Refused(INVALID_TOKEN)
        self.counters.by_token[token] += 1
        refused = self.quota.admit(token, request.remote or "")
        if refused is not None:
            raise _Refused(refused)
        action = request.match_info["action"]
        body: Any
        if action == "devicelist":
            body = self._devicelist(params)
        elif action == "device":
            body = self._device(params)
        else:
            raise _Refused(UNKNOWN_ACTION)
        self.action_counts[action] += 1
        return web.Response(text=encode(body), content_type=_JSON, charset="utf-8")

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="404 Not Found")

    # --- actions ------------------------------------------------------------------
    def _devicelist(self, params: Mapping[str, str]) -> list[Any]:
        self.world.update()
        now = self.world.clock.now_ms()
        scope = _scope(params.get("scope"))
        after = _int(params.get("activity_after"))
        devices = []
        for vehicle in self.world.vehicles():
            data = self._device_data(vehicle, now, now - now % DAY_MS)
            if after is not None and data["online_timestamp"] <= after:
                continue
            devices.append(self._shape(vehicle, data, scope))
        return devices

    def _device(self, params: Mapping[str, str]) -> dict[str, Any]:
        self.world.update()
        key = params.get("device", "").strip()
        if key not in self.world:
            raise _Refused(INVALID_DEVICE)
        vehicle = self.world.vehicle(key)
        now = self.world.clock.now_ms()
        data = self._device_data(vehicle, now, now - now % DAY_MS)
        when = _int(params.get("time"))
        # No time: the day of the latest activity.
        day_ms = (data["online_timestamp"] if when is None else when) * 1000
        day_start = day_ms - day_ms % DAY_MS
        data["timestamp"] = day_start // 1000
        loose = self.quirks and vehicle.seq % 2 == 1
        routes: list[dict[str, Any]] = []
        for trip in vehicle.trip_history():
            if day_start <= trip.start_ms < day_start + DAY_MS and trip.points:
                route = route_json(trip, now)
                routes.append(Loose(route) if loose else route)
        return {
            "device": self._shape(vehicle, data, _scope(params.get("scope"))),
            "routes": routes,
        }

    def _device_data(self, vehicle: SimVehicle, now: int, day_start: int) -> dict[str, Any]:
        return device_json(
            vehicle,
            seed=self.world.seed,
            now_ms=now,
            error=self.error_of(vehicle, now),
            quirks=self.quirks,
            day_start_ms=day_start,
        )

    def _shape(
        self, vehicle: SimVehicle, data: dict[str, Any], scope: frozenset[str] | None
    ) -> dict[str, Any]:
        if scope is not None:
            data = {name: value for name, value in data.items() if name in scope}
        return Loose(data) if self.quirks and vehicle.seq % 2 == 1 else data


def _scope(raw: str | None) -> frozenset[str] | None:
    """Field names separated by semicolons; unknown ones are ignored. None: all."""
    if raw is None or not raw.strip(" ;"):
        return None
    return frozenset(name.strip() for name in raw.split(";")) & frozenset(DEVICE_FIELDS)


def _int(raw: str | None) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(float(raw))
    except (ValueError, OverflowError):
        return None


def _fault_response(fault: Fault) -> web.Response:
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = f"HTTP {fault.status}"
    response = web.Response(status=fault.status, text=fault.body or phrase)
    if fault.status == 429:
        response.headers["Retry-After"] = (
            f"{1.0 if fault.retry_after is None else fault.retry_after:g}"
        )
    return response
