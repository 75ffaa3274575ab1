"""The simulator's own control API under `/_sim`, for tests that drive it from
another process (the bridge runs as a subprocess in end-to-end tests).

    POST   /_sim/advance?seconds=N              move the simulated clock forward
    POST   /_sim/speed?value=X                  simulated seconds per real second
    POST   /_sim/park-all   /_sim/release       hold every vehicle parked / let go
    GET    /_sim/vehicles                       what was last served, per vehicle
    POST   /_sim/vehicles                       add a vehicle (201, {"id": ...})
    DELETE /_sim/vehicles/{id}                  remove one
    GET    /_sim/stats                          request counters per provider
    POST   /_sim/faults?kind=reset&provider=&count=...
                                                add a fault rule (bridge.simulator.faults)
    GET    /_sim/faults   DELETE /_sim/faults   the rules and what they injected / clear
    POST   /_sim/vehicles/{id}/hide  .../show   a vehicle leaves the provider's lists
                                                and comes back with the same id
    POST   /_sim/{provider}/expire-cursors
    POST   /_sim/{provider}/fail?status=500&count=3[&retry_after=0.5]
    POST   /_sim/{provider}/latency?seconds=0.2
    POST   /_sim/{provider}/reset-stats
    POST   /_sim/{provider}/{action}            a provider's own switches, e.g.
           /_sim/samsara/expire-safety-cursors  the safety stream's cursors expire
           /_sim/fleetize/unblock[?token=]      lift a FLEETIZE token block
           /_sim/fleetize/reset-quota           forget FLEETIZE's daily counts and spacing
           /_sim/fleetize/error?device=&code=   pin a device fault (no code: unpin)
           /_sim/fleetize/quirks?on=0|1         documentation quirks off / on
           /_sim/telemax/expire-tokens          every Telemax token expires now
           /_sim/telemax/reset-limits           empty Telemax's rate-limit windows
           /_sim/metrotec/handle-events         devices carry out every pending event now
           /_sim/metrotec/set-handle-delay?seconds=N|never
                                                delay of events created from now on
           /_sim/metrotec/expire-tokens         every Metrotec JWT expires now
           /_sim/tracksafe365/fail-snapshots?on=0|1
                                                snapshots requested from now on fail
           /_sim/tracksafe365/reset-limits      forget TrackSafe365's minute and day counts

Each provider has a fleet of its own. The vehicle endpoints take `?provider=<name>`
(default: the Samsara fleet); park-all and release without it act on every fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.simulator.base import ProviderSim
from bridge.simulator.faults import SimFaults, rule_from_query
from bridge.simulator.world import World


class _BadRequest(Exception):
    pass


Action = Callable[[Mapping[str, str]], dict[str, Any]]


@runtime_checkable
class HasControlActions(Protocol):
    def control_actions(self) -> Mapping[str, Action]:
        """Named switches: each takes the query and answers JSON."""


def control_app(
    world: World,
    providers: Mapping[str, ProviderSim],
    worlds: Mapping[str, World] | None = None,
    faults: SimFaults | None = None,
) -> web.Application:
    """`world` is the default fleet; `worlds` every provider's, by provider name."""
    app = web.Application(middlewares=[_bad_requests])
    routes = web.RouteTableDef()
    every_world = list({id(w): w for w in (world, *(worlds or {}).values())}.values())

    def world_of(request: web.Request) -> World:
        name = request.query.get("provider")
        if name is None:
            return world
        if worlds is None or name not in worlds:
            raise web.HTTPNotFound(text=f"no fleet for a provider named {name!r}")
        return worlds[name]

    def chosen(request: web.Request) -> list[World]:
        return [world_of(request)] if "provider" in request.query else every_world

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
    async def park_all(request: web.Request) -> web.Response:
        targets = chosen(request)
        for each in targets:
            each.park_all()
        return web.json_response({"now": now(), "parked": sum(map(len, targets))})

    @routes.post("/release")
    async def release(request: web.Request) -> web.Response:
        for each in chosen(request):
            each.release()
        return web.json_response({"now": now()})

    @routes.get("/vehicles")
    async def vehicles(request: web.Request) -> web.Response:
        truths = world_of(request).truths()
        return web.json_response({"now": now(), "vehicles": [t.to_json() for t in truths]})

    @routes.post("/vehicles")
    async def add_vehicle(request: web.Request) -> web.Response:
        return web.json_response({"id": world_of(request).add_vehicle()}, status=201)

    @routes.delete("/vehicles/{vehicle_id}")
    async def remove_vehicle(request: web.Request) -> web.Response:
        try:
            world_of(request).remove_vehicle(request.match_info["vehicle_id"])
        except KeyError:
            return web.json_response({"error": "no such vehicle"}, status=404)
        return web.Response(status=204)

    @routes.get("/stats")
    async def stats(_: web.Request) -> web.Response:
        body: dict[str, Any] = {"now": now(), "revision": world.revision, "vehicles": len(world)}
        body.update({name: provider.stats() for name, provider in providers.items()})
        return web.json_response(body)

    @routes.post("/vehicles/{vehicle_id}/hide")
    async def hide_vehicle(request: web.Request) -> web.Response:
        try:
            world_of(request).hide_vehicle(request.match_info["vehicle_id"])
        except KeyError:
            return web.json_response({"error": "no such vehicle"}, status=404)
        return web.Response(status=204)

    @routes.post("/vehicles/{vehicle_id}/show")
    async def show_vehicle(request: web.Request) -> web.Response:
        try:
            world_of(request).show_vehicle(request.match_info["vehicle_id"])
        except KeyError:
            return web.json_response({"error": "no such hidden vehicle"}, status=404)
        return web.Response(status=204)

    @routes.get("/faults")
    async def faults_get(_: web.Request) -> web.Response:
        return web.json_response(faults.to_json() if faults else {})

    @routes.post("/faults")
    async def faults_add(request: web.Request) -> web.Response:
        if faults is None:
            raise web.HTTPNotFound(text="no fault switches")
        try:
            rule = faults.add(rule_from_query(request.query))
        except (ValueError, TypeError) as err:
            raise _BadRequest(str(err)) from None
        return web.json_response({"added": rule.kind}, status=201)

    @routes.delete("/faults")
    async def faults_clear(_: web.Request) -> web.Response:
        if faults is not None:
            faults.clear()
        return web.Response(status=204)

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

    @routes.post("/{provider}/{action}")
    async def action(request: web.Request) -> web.Response:
        provider: object = provider_of(request)
        name = request.match_info["action"]
        actions = provider.control_actions() if isinstance(provider, HasControlActions) else {}
        if name not in actions:
            raise web.HTTPNotFound(text=f"no action {name!r} for {request.match_info['provider']}")
        try:
            return web.json_response(actions[name](request.query))
        except KeyError as err:
            return web.json_response({"error": f"not found: {err}"}, status=404)
        except ValueError as err:
            raise _BadRequest(str(err)) from None

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
