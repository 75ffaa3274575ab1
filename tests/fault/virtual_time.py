"""A real `fleet-bridge run` process on a clock the test moves.

The simulated day of a quota test cannot run on the wall clock (a day in a
minute makes a millisecond of latency 1.4 s of FLEETIZE's spacing), nor in the
test's process (it must be SIGKILLed). So the bridge process reads the time
from a file the test maps too (`SharedClock`): the test moves the simulator's
frozen clock, writes it there and sends SIGUSR1; the bridge's event loop takes
its time from the file as well (`VirtualLoop.time`), so a planned wait of 432
simulated seconds ends exactly when the test moves the clock past it, and the
time the bridge records a call at is the time the simulator receives it.

Everything else is the daemon's own: `load_config`, `setup_logging`,
`Bridge(config).run` with SIGTERM for a clean stop (what `cmd_run` does, with
the clock injected), its SQLite store, its MQTT link. One difference: a budget
about to free up (within 10 s) is waited for between polls, where the test sees
the wait as the account's next poll, rather than inside the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import signal
import struct
from datetime import datetime
from pathlib import Path

from bridge.simulator.clock import SimClock, from_ms

_FORMAT = "<q"  # simulated milliseconds since the epoch
_SIZE = struct.calcsize(_FORMAT)


class SharedClock:
    """The test's side: the simulator's clock, published to the bridge process."""

    def __init__(self, path: Path, clock: SimClock) -> None:
        self.path = path
        self.clock = clock
        path.write_bytes(b"\0" * _SIZE)
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), _SIZE)
        self.publish()

    def publish(self) -> None:
        struct.pack_into(_FORMAT, self._map, 0, self.clock.now_ms())

    def advance_to(self, when: datetime, pid: int | None) -> None:
        """Move the simulator's clock (never back) and wake the bridge."""
        seconds = (when - self.clock.now()).total_seconds()
        if seconds > 0:
            self.clock.advance(seconds)
        self.publish()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

    def close(self) -> None:
        self._map.close()
        self._file.close()


class _Reader:
    def __init__(self, path: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (lives as long as the process)
        self._map = mmap.mmap(self._file.fileno(), _SIZE, access=mmap.ACCESS_READ)

    def ms(self) -> int:
        value: int = struct.unpack_from(_FORMAT, self._map, 0)[0]
        return value

    def now(self) -> datetime:
        return from_ms(self.ms())


def run_child(config_path: str, clock_path: str) -> int:
    """The bridge process (after the fork): `fleet-bridge run` on the shared clock."""
    # The test wakes this process with SIGUSR1 after each move of the clock.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    from bridge.app import Bridge
    from bridge.config import load_config
    from bridge.logs import setup_logging

    reader = _Reader(clock_path)

    class VirtualLoop(asyncio.SelectorEventLoop):
        def __init__(self) -> None:
            super().__init__()
            # The clock ticks in milliseconds and stands still between moves: a
            # timer due "now" must count as due (asyncio's default resolution,
            # a nanosecond, is below a float's at 1.7e9 s, so it never would).
            self._clock_resolution = 0.001

        def time(self) -> float:
            return reader.ms() / 1000.0

    config = load_config(config_path)
    setup_logging(config.log_level, config.secrets())
    loop = VirtualLoop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Nothing to do: the signal's arrival wakes the loop, which then sees the time.
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    bridge = Bridge(config, now=reader.now)

    async def run() -> None:
        task = asyncio.create_task(bridge.run(stop))
        await asyncio.wait(
            [task, asyncio.create_task(bridge.started.wait())], return_when="FIRST_COMPLETED"
        )
        for poller in bridge.pollers.values():
            # A budget about to free up is waited for between polls, not inside
            # the request: a wait the test cannot see would stand still.
            poller.provider._http.retry.max_quota_wait = 0.0  # type: ignore[attr-defined]
        await task

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return 0
