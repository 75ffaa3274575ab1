"""`python -m bridge.simulator`: the simulator without the rest of the bridge."""

from __future__ import annotations

import argparse

from bridge.simulator.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bridge.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--vehicles", type=int, default=20)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated s per real s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    run(args.host, args.port, args.vehicles, args.speed, args.seed)


if __name__ == "__main__":
    main()
