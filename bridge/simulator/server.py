"""One HTTP server for every provider simulator, plus the control API.

    async with SimulatorServer(vehicles=50, speed=0) as server:
        url = server.samsara_url          # http://127.0.0.1:<port>/samsara
        server.clock.advance(600)

Each provider serves a fleet of its own (`all_worlds`, by provider name; also
`world` = Samsara's, `fleetize_world`, `telemax_world`, `metrotec_world` (around
Tallinn) and `tracksafe365_world`; `worlds` has the first three), so that a
bridge with accounts at all of them sees five fleets, not one truck five times.
All run on the one `clock`.

`run()` is the blocking entry point behind `fleet-bridge simulate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Self

from aiohttp import web

from bridge.simulator import fleetize, metrotec, telemax, tracksafe365, tracksafe365_keys
from bridge.simulator.base import ProviderSim
from bridge.simulator.clock import SimClock
from bridge.simulator.control import control_app
from bridge.simulator.faults import SimFaults
from bridge.simulator.fleetize import FleetizeSim
from bridge.simulator.metrotec import MetrotecSim
from bridge.simulator.metrotec_geo import TALLINN
from bridge.simulator.samsara import DEFAULT_TOKEN, PREFIX, SamsaraSim
from bridge.simulator.telemax import TelemaxSim
from bridge.simulator.tracksafe365 import TrackSafe365Sim
from bridge.simulator.tracksafe365_json import naming as tracksafe365_naming
from bridge.simulator.tracksafe365_keys import ApiKey
from bridge.simulator.vehicle import City, WorkHours
from bridge.simulator.world import Naming, World

CONTROL_PREFIX = "/_sim"
FLEETIZE_VEHICLES = 5
TELEMAX_VEHICLES = 5
METROTEC_VEHICLES = 5
TRACKSAFE365_VEHICLES = 5
#: Days of trips the fleets other than Samsara's keep (routes, scores, replays,
#: task progress, safety events).
HISTORY_DAYS = 8
#: Samsara's fleet can be thousands of vehicles: it keeps two hours of trips, enough
#: for the safety events stream, which a client reads every few seconds.
SAMSARA_HISTORY_DAYS = 2 / 24
# Each fleet's seed is the server's plus this, so that the fleets differ.
_SEED_OFFSETS = {
    SamsaraSim.name: 0,
    FleetizeSim.name: 1000,
    TelemaxSim.name: 2000,
    MetrotecSim.name: 3000,
    TrackSafe365Sim.name: 4000,
}


class SimulatorServer:
    """The simulated world and every provider's API on one local port."""

    def __init__(
        self,
        *,
        vehicles: int = 20,
        seed: int = 1,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        samsara_tokens: Iterable[str] = (DEFAULT_TOKEN,),
        start: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        fleetize_vehicles: int = FLEETIZE_VEHICLES,
        telemax_vehicles: int = TELEMAX_VEHICLES,
        fleetize_tokens: Iterable[str] = (fleetize.DEFAULT_TOKEN,),
        telemax_api_keys: Iterable[str] = (telemax.DEFAULT_API_KEY,),
        work_hours: WorkHours | Mapping[str, WorkHours | None] | None = None,
        metrotec_vehicles: int = METROTEC_VEHICLES,
        tracksafe365_vehicles: int = TRACKSAFE365_VEHICLES,
        metrotec_users: Mapping[str, str] | None = None,
        metrotec_api_keys: Iterable[str] = (metrotec.DEFAULT_API_KEY,),
        tracksafe365_keys: Iterable[ApiKey] | None = None,
        tracksafe365_plan: str = "starter",
    ) -> None:
        """`start` is the simulated time at creation (default: now); `monotonic`
        is the real-time source of the clock and the rate limiters. `vehicles` is
        the size of the Samsara fleet. `work_hours` (UTC hours, e.g. (7, 17)) holds
        for every fleet, or per provider name ({"fleetize": (7, 17)}).
        `metrotec_users`: username -> password (default demo /
        demo-metrotec-password); `tracksafe365_keys` default to the demo keys
        (`tracksafe365_keys.default_keys`), production ones on `tracksafe365_plan`."""
        self.host = host
        self.port = port
        self.clock = SimClock(start, speed, monotonic=monotonic)

        def hours(provider: str) -> WorkHours | None:
            if work_hours is None or isinstance(work_hours, tuple):
                return work_hours
            return work_hours.get(provider)

        def world(
            provider: str,
            count: int,
            history_days: float = 0,
            naming: Naming | None = None,
            city: City | None = None,
        ) -> World:
            return World(
                count,
                seed + _SEED_OFFSETS[provider],
                self.clock,
                work_hours=hours(provider),
                history_days=history_days,
                naming=naming,
                city=city,
            )

        self.world = world(SamsaraSim.name, vehicles, history_days=SAMSARA_HISTORY_DAYS)
        self.fleetize_world = world(
            FleetizeSim.name, fleetize_vehicles, history_days=HISTORY_DAYS, naming=fleetize.naming
        )
        self.telemax_world = world(
            TelemaxSim.name, telemax_vehicles, history_days=HISTORY_DAYS, naming=telemax.naming
        )
        self.metrotec_world = world(
            MetrotecSim.name,
            metrotec_vehicles,
            history_days=HISTORY_DAYS,
            naming=metrotec.naming,
            city=TALLINN,
        )
        self.tracksafe365_world = world(
            TrackSafe365Sim.name,
            tracksafe365_vehicles,
            history_days=HISTORY_DAYS,
            naming=tracksafe365_naming,
        )
        #: The Samsara, FLEETIZE and Telemax fleets, by provider name (as before
        #: Metrotec and TrackSafe365 came; `all_worlds` has every fleet).
        self.worlds: dict[str, World] = {
            SamsaraSim.name: self.world,
            FleetizeSim.name: self.fleetize_world,
            TelemaxSim.name: self.telemax_world,
        }
        self.all_worlds: dict[str, World] = {
            **self.worlds,
            MetrotecSim.name: self.metrotec_world,
            TrackSafe365Sim.name: self.tracksafe365_world,
        }
        self.samsara = SamsaraSim(self.world, tokens=samsara_tokens, monotonic=monotonic)
        self.fleetize = FleetizeSim(self.fleetize_world, tokens=fleetize_tokens)
        self.telemax = TelemaxSim(
            self.telemax_world, api_keys=telemax_api_keys, monotonic=monotonic
        )
        self.metrotec = MetrotecSim(
            self.metrotec_world,
            users=metrotec_users,
            api_keys=metrotec_api_keys,
            monotonic=monotonic,
        )
        self.tracksafe365 = TrackSafe365Sim(
            self.tracksafe365_world,
            keys=tracksafe365_keys,
            plan=tracksafe365_plan,
            monotonic=monotonic,
        )
        self.providers: dict[str, ProviderSim] = {
            SamsaraSim.name: self.samsara,
            FleetizeSim.name: self.fleetize,
            TelemaxSim.name: self.telemax,
            MetrotecSim.name: self.metrotec,
            TrackSafe365Sim.name: self.tracksafe365,
        }
        #: Fault switches for every provider, and the log of provider requests.
        self.faults = SimFaults(clock=monotonic, sim_clock=lambda: self.clock.now_ms() / 1000)
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults.middleware()])
        app.add_subapp(PREFIX, self.samsara.app())
        app.add_subapp(fleetize.PREFIX, self.fleetize.app())
        app.add_subapp(telemax.PREFIX, self.telemax.app())
        app.add_subapp(metrotec.PREFIX, self.metrotec.app())
        app.add_subapp(tracksafe365.PREFIX, self.tracksafe365.app())
        app.add_subapp(
            CONTROL_PREFIX, control_app(self.world, self.providers, self.all_worlds, self.faults)
        )
        return app

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the simulator is not started")
        # A wildcard bind is reachable on loopback; clients cannot dial the wildcard.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def samsara_url(self) -> str:
        """The base URL to give a Samsara client instead of https://api.samsara.com."""
        return self.base_url + PREFIX

    @property
    def fleetize_url(self) -> str:
        """The base URL instead of https://api.fleetize.com/v2 (the documented API
        root, and the bridge client's `base_url`): append /{ActionCode}."""
        return self.base_url + fleetize.PREFIX + fleetize.API_ROOT

    @property
    def telemax_url(self) -> str:
        """The base URL instead of https://api.telemax.com.au (append /api/v2/...)."""
        return self.base_url + telemax.PREFIX

    @property
    def metrotec_url(self) -> str:
        """The API root instead of https://api.metrotec.ee/api (append the paths of
        `metrotec.PATHS`, e.g. /lastpositions/)."""
        return self.base_url + metrotec.PREFIX + metrotec.API_ROOT

    @property
    def tracksafe365_url(self) -> str:
        """Production, instead of https://api.tracksafe365.com/v2."""
        return (
            self.base_url + tracksafe365.PREFIX + tracksafe365.ROOTS[tracksafe365_keys.PRODUCTION]
        )

    @property
    def tracksafe365_sandbox_url(self) -> str:
        """The sandbox, instead of https://sandbox-api.tracksafe365.com/v2."""
        return self.base_url + tracksafe365.PREFIX + tracksafe365.ROOTS[tracksafe365_keys.SANDBOX]

    async def start(self) -> None:
        if self._runner is not None:
            return
        # A short shutdown timeout: the simulator holds nothing worth waiting for.
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def banner(server: SimulatorServer) -> str:
    """The one line `fleet-bridge simulate` prints: where to point a client."""
    token = next(iter(sorted(server.samsara.tokens)), "")
    apitoken = next(iter(sorted(server.fleetize.tokens)), "")
    api_key = next(iter(sorted(server.telemax.api_keys)), "")
    user, password = next(iter(sorted(server.metrotec.users.items())), ("", ""))
    metrotec_key = next(iter(sorted(server.metrotec.api_keys)), "")
    ts365_keys = ", ".join(_key_line(key) for key in server.tracksafe365.keys.values())
    return (
        f"Fleet simulator at {server.base_url} "
        f"({len(server.world)} vehicles, speed {server.clock.speed:g}x) | "
        f"Samsara: base_url={server.samsara_url} token={token} | "
        f"FLEETIZE: base_url={server.fleetize_url} apitoken={apitoken} "
        f"({len(server.fleetize_world)} vehicles) | "
        f"Telemax: base_url={server.telemax_url} apiKey={api_key} "
        f"({len(server.telemax_world)} vehicles) | "
        f"Metrotec: base_url={server.metrotec_url} username={user} password={password} "
        f"api_key={metrotec_key} ({len(server.metrotec_world)} vehicles) | "
        f"TrackSafe365: base_url={server.tracksafe365_url} "
        f"sandbox_url={server.tracksafe365_sandbox_url} keys: {ts365_keys} "
        f"({len(server.tracksafe365_world)} vehicles)"
    )


def _key_line(key: ApiKey) -> str:
    every = key.scopes == frozenset(tracksafe365_keys.SCOPES)
    scopes = "" if every else ", " + ",".join(sorted(key.scopes))
    return f"{key.key} ({key.environment}{scopes})"


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    vehicles: int = 20,
    speed: float = 1.0,
    seed: int = 1,
    samsara_tokens: Iterable[str] = (DEFAULT_TOKEN,),
    announce: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    fleetize_vehicles: int = FLEETIZE_VEHICLES,
    telemax_vehicles: int = TELEMAX_VEHICLES,
    work_hours: WorkHours | Mapping[str, WorkHours | None] | None = None,
    metrotec_vehicles: int = METROTEC_VEHICLES,
    tracksafe365_vehicles: int = TRACKSAFE365_VEHICLES,
) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set), announcing the URLs once."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows or outside the main thread; Ctrl-C then
        # arrives as KeyboardInterrupt, which `run` absorbs.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        async with SimulatorServer(
            vehicles=vehicles,
            seed=seed,
            speed=speed,
            host=host,
            port=port,
            samsara_tokens=samsara_tokens,
            fleetize_vehicles=fleetize_vehicles,
            telemax_vehicles=telemax_vehicles,
            work_hours=work_hours,
            metrotec_vehicles=metrotec_vehicles,
            tracksafe365_vehicles=tracksafe365_vehicles,
        ) as server:
            (announce or _print_line)(banner(server))
            await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    vehicles: int = 20,
    speed: float = 1.0,
    seed: int = 1,
    *,
    fleetize_vehicles: int = FLEETIZE_VEHICLES,
    telemax_vehicles: int = TELEMAX_VEHICLES,
    work_hours: WorkHours | Mapping[str, WorkHours | None] | None = None,
    metrotec_vehicles: int = METROTEC_VEHICLES,
    tracksafe365_vehicles: int = TRACKSAFE365_VEHICLES,
) -> None:
    """Blocking: serve the simulator until Ctrl-C or SIGTERM."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_forever(
                host=host,
                port=port,
                vehicles=vehicles,
                speed=speed,
                seed=seed,
                fleetize_vehicles=fleetize_vehicles,
                telemax_vehicles=telemax_vehicles,
                work_hours=work_hours,
                metrotec_vehicles=metrotec_vehicles,
                tracksafe365_vehicles=tracksafe365_vehicles,
            )
        )


def _print_line(line: str) -> None:
    # Flushed at once: a parent process waits for this line to know the port.
    print(line, flush=True)
