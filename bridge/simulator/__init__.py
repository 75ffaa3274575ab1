"""Faithful fake provider APIs over one simulated fleet, for demos, tests and
benchmarks. Standard library, aiohttp and yarl only.

Layout: `clock` (simulated time), `world` and `vehicle` (the fleet and its
routine), one module per provider API (`samsara`, with its JSON shapes in
`samsara_json`), `traffic` and `cursor` (what every provider API shares),
`control` (the `/_sim` API) and `server` (all of it on one port).
"""

from bridge.simulator.clock import SimClock
from bridge.simulator.samsara import SamsaraSim
from bridge.simulator.server import SimulatorServer, run, serve_forever
from bridge.simulator.world import VehicleTruth, World

__all__ = [
    "SamsaraSim",
    "SimClock",
    "SimulatorServer",
    "VehicleTruth",
    "World",
    "run",
    "serve_forever",
]
