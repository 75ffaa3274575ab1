"""Faithful fake provider APIs over one simulated fleet, for demos, tests and
benchmarks. Standard library, aiohttp and yarl only.

Layout: `clock` (simulated time), `world` and `vehicle` (a fleet and its
routine; each provider has a fleet of its own), one module per provider API
(`samsara`, `fleetize`, `telemax`, `metrotec`, `tracksafe365`, with their JSON
shapes in `*_json`, FLEETIZE's limits in `fleetize_quota`, Metrotec's events and
tasks in `metrotec_commands` and Tallinn in `metrotec_geo`, TrackSafe365's keys
and plans in `tracksafe365_keys`), `traffic` and `cursor` (what every provider API
shares), `control` (the `/_sim` API) and `server` (all of it on one port).
"""

from bridge.simulator.clock import SimClock
from bridge.simulator.fleetize import FleetizeSim
from bridge.simulator.metrotec import MetrotecSim
from bridge.simulator.samsara import SamsaraSim
from bridge.simulator.server import SimulatorServer, run, serve_forever
from bridge.simulator.telemax import TelemaxSim
from bridge.simulator.tracksafe365 import TrackSafe365Sim
from bridge.simulator.vehicle import City
from bridge.simulator.world import VehicleTruth, World

__all__ = [
    "City",
    "FleetizeSim",
    "MetrotecSim",
    "SamsaraSim",
    "SimClock",
    "SimulatorServer",
    "TelemaxSim",
    "TrackSafe365Sim",
    "VehicleTruth",
    "World",
    "run",
    "serve_forever",
]
