"""Faithful fake provider APIs over one simulated fleet, for demos, tests and
benchmarks. Standard library, aiohttp and yarl only.

Layout: `clock` (simulated time), `world` and `vehicle` (a fleet and its
routine; each provider has a fleet of its own), one module per provider API
(`samsara`, `fleetize`, `telemax`, with their JSON shapes in `*_json` and
FLEETIZE's limits in `fleetize_quota`), `traffic` and `cursor` (what every
provider API shares), `control` (the `/_sim` API) and `server` (all of it on one
port).
"""

from bridge.simulator.clock import SimClock
from bridge.simulator.fleetize import FleetizeSim
from bridge.simulator.samsara import SamsaraSim
from bridge.simulator.server import SimulatorServer, run, serve_forever
from bridge.simulator.telemax import TelemaxSim
from bridge.simulator.world import VehicleTruth, World

__all__ = [
    "FleetizeSim",
    "SamsaraSim",
    "SimClock",
    "SimulatorServer",
    "TelemaxSim",
    "VehicleTruth",
    "World",
    "run",
    "serve_forever",
]
