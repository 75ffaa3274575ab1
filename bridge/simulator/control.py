"""The simulator's own control API under `/_sim`, for tests that drive it from
another process (the bridge runs as a subprocess in end-to-end tests).

    POST   /_sim/advance?seconds=N              move the simulated clock forward
    POST   /_sim/speed?value=X                  simulated seconds per real second
    POST   /_sim/park-all   /_sim/release       hold every vehicle parked / let go
    GET    /_sim/vehicles                       what was last served, per vehicle
    POST   /_sim/vehicles                       add a vehicle (201, {"id": ...})
    DELETE /_sim/vehicles/{id}                  remove one
    GET    /_sim/stats                          request counters per provider
    POST   /_sim/{provider}/expire-cursors
    POST   /_sim/{provider}/fail?status=500&count=3[&retry_after=0.5]
    POST   /_sim/{provider}/latency?seconds=0.2
    POST   /_sim/{provider}/reset-stats
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator.base import ProviderSim
from bridge.simulator.world import World


class _BadRequest(Exception):
    pass


def control_app(world: World, providers: Mapping[str, ProviderSim]) -> web.Application:
    app = web.Application(middlewares=[_bad_requests])
    routes = web.RouteTableDef()

    def now() -> str:
        return world.clock.now().isoformat().replace("+00:00", "Z")

    @routes.post("/advance")
    async def advance(request: web.Request) -> web.Response:
        seconds = _number(request, "seconds")
        if seconds < 0:
            raise _BadRequest("seconds must be >= 0")
        world.clock.advance(seconds)
        world.update()
        return web.json_response({"now": now(), "revision": world.revision})

    @routes.post("/speed")
    async def speed(request: web.Request) -> web.Response:
        value = _number(request, "value")
        if value < 0:
            raise _BadRequest("value must be >= 0")
        world.clock.speed = value
        return web.json_response({"now": now(), "speed": world.clock.speed})

    @routes.post("/park-all")
    async def park_all(_: web.Request) -> web.Response:
        world.park_all()
        return web.json_response({"now": now(), "parked": len(world)})

    @routes.post("/release")
    async def release(_: web.Request) -> web.Response:
        world.release()
        return web.json_response({"now": now()})

    @routes.get("/vehicles")
    async def vehicles(_: web.Request) -> web.Response:
        return web.json_response(
            {"now": now(), "vehicles": [truth.to_json() for truth in world.truths()]}
        )

    @routes.post("/vehicles")
    async def add_vehicle(_: web.Request) -> web.Response:
        return web.json_response({"id": world.add_vehicle()}, status=201)

    @routes.delete("/vehicles/{vehicle_id}")
    async def remove_vehicle(request: web.Request) -> web.Response:
        try:
            world.remove_vehicle(request.match_info["vehicle_id"])
        except KeyError:
            return web.json_response({"error": "no such vehicle"}, status=404)
        return web.Response(status=204)

    @routes.get("/stats")
    async def stats(_: web.Request) -> web.Response:
        body: dict[str, Any] = {"now": now(), "revision": world.revision, "vehicles": len(world)}
        body.update({name: provider.stats() for name, provider in providers.items()})
        return web.json_response(body)

    def provider_of(request: web.Request) -> ProviderSim:
        name = request.match_info["provider"]
        if name not in providers:
            raise web.HTTPNotFound(text=f"no provider simulator named {name!r}")
        return providers[name]

    @routes.post("/{provider}/expire-cursors")
    async def expire_cursors(request: web.Request) -> web.Response:
        provider_of(request).expire_cursors()
        return web.json_response({"expired": True})

    @routes.post("/{provider}/fail")
    async def fail(request: web.Request) -> web.Response:
        provider = provider_of(request)
        status = int(_number(request, "status", 500))
        count = int(_number(request, "count", 1))
        retry_after = _number(request, "retry_after", -1.0)
        if not 400 <= status <= 599 or count < 0:
            raise _BadRequest("status must be 400-599 and count >= 0")
        provider.fail_next(
            count, status=status, retry_after=retry_after if retry_after >= 0 else None
        )
        return web.json_response({"status": status, "count": count})

    @routes.post("/{provider}/latency")
    async def latency(request: web.Request) -> web.Response:
        provider = provider_of(request)
        seconds = _number(request, "seconds")
        if seconds < 0:
            raise _BadRequest("seconds must be >= 0")
        provider.latency = seconds
        return web.json_response({"latency": seconds})

    @routes.post("/{provider}/reset-stats")
    async def reset_stats(request: web.Request) -> web.Response:
        provider_of(request).counters.reset()
        return web.json_response({"reset": True})

    app.add_routes(routes)
    return app


def _number(request: web.Request, name: str, default: float | None = None) -> float:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise _BadRequest(f"query parameter {name!r} is required")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _BadRequest(f"{name} must be finite")
    return value


@web.middleware
async def _bad_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _BadRequest as err:
        return web.json_response({"error": str(err)}, status=400)
