"""One HTTP server for every provider simulator, plus the control API.

    async with SimulatorServer(vehicles=50, speed=0) as server:
        url = server.samsara_url          # http://127.0.0.1:<port>/samsara
        server.clock.advance(600)

`run()` is the blocking entry point behind `fleet-bridge simulate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Self

from aiohttp import web

from bridge.simulator.base import ProviderSim
from bridge.simulator.clock import SimClock
from bridge.simulator.control import control_app
from bridge.simulator.samsara import DEFAULT_TOKEN, PREFIX, SamsaraSim
from bridge.simulator.world import World

CONTROL_PREFIX = "/_sim"


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
    ) -> None:
        """`start` is the simulated time at creation (default: now); `monotonic`
        is the real-time source of the clock and the rate limiters."""
        self.host = host
        self.port = port
        self.clock = SimClock(start, speed, monotonic=monotonic)
        self.world = World(vehicles, seed, self.clock)
        self.samsara = SamsaraSim(self.world, tokens=samsara_tokens, monotonic=monotonic)
        self.providers: dict[str, ProviderSim] = {SamsaraSim.name: self.samsara}
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.add_subapp(PREFIX, self.samsara.app())
        app.add_subapp(CONTROL_PREFIX, control_app(self.world, self.providers))
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
    return (
        f"Fleet simulator at {server.base_url} "
        f"({len(server.world)} vehicles, speed {server.clock.speed:g}x) | "
        f"Samsara: base_url={server.samsara_url} token={token}"
    )


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
) -> None:
    """Blocking: serve the simulator until Ctrl-C or SIGTERM."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(host=host, port=port, vehicles=vehicles, speed=speed, seed=seed))


def _print_line(line: str) -> None:
    # Flushed at once: a parent process waits for this line to know the port.
    print(line, flush=True)
