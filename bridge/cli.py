"""`fleet-bridge run | demo | check-config | migrate-store | simulate`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from bridge import __version__
from bridge.errors import ConfigError

_LOGGER = logging.getLogger("bridge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleet-bridge",
        description="Fleet telematics to MQTT and Home Assistant.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="override the config's log_level",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bridge with a YAML config")
    run.add_argument("--config", "-c", required=True, help="path to the YAML config")

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config", help="path to the YAML config")
    for command in (run, check):
        command.add_argument(
            "--allow-readable-config",
            action="store_true",
            help="accept a config file that other users can read although it holds "
            "secrets (default: refuse it)",
        )

    demo = sub.add_parser(
        "demo", help="simulators + embedded MQTT broker + bridge, nothing else needed"
    )
    demo.add_argument("--vehicles", type=int, default=10, help="simulated vehicles (10)")
    demo.add_argument("--speed", type=float, default=10.0, help="simulated clock speed (10x)")
    demo.add_argument(
        "--mqtt-port", type=int, default=1883, help="broker port; a free one if taken (1883)"
    )
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the broker and simulators listen on (127.0.0.1: this machine only; "
        "0.0.0.0 for a Home Assistant elsewhere)",
    )
    demo.add_argument("--quiet", action="store_true", help="do not print each message")
    demo.add_argument(
        "--http-port", type=int, default=8743, help="dashboard port; a free one if taken (8743)"
    )
    demo.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")

    migrate = sub.add_parser(
        "migrate-store", help="copy an SQLite store into a PostgreSQL store, in one transaction"
    )
    migrate.add_argument(
        "--config", "-c", help="the YAML config whose store.path and store.url to use"
    )
    migrate.add_argument(
        "--from",
        dest="source",
        metavar="PATH",
        help="the SQLite store to copy (default: the config's store.path)",
    )
    migrate.add_argument(
        "--to",
        dest="target",
        metavar="URL",
        help="the PostgreSQL store to fill (default: the config's store.url); it must be empty",
    )

    sim = sub.add_parser("simulate", help="serve the provider simulators over HTTP")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--vehicles", type=int, default=20)
    sim.add_argument("--speed", type=float, default=1.0, help="simulated clock speed")
    sim.add_argument("--seed", type=int, default=1)
    return parser


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[object]]) -> None:
    """Run `main(stop)`; SIGINT and SIGTERM set `stop` for a clean shutdown."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        await main(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner())


# Options that hold secrets (as in bridge.config), and `${...}` references / `$$`.
_SECRET_OPTIONS = frozenset({"token", "password", "api_key", "secret"})
_REFERENCES = re.compile(r"\$\$|\$\{([^}]*)\}")


def _outside_references(value: str) -> str:
    """What of a secret option's text is written out in the file: everything but
    its references, and the default of `${NAME:-default}` (an inline default is
    an inline secret)."""

    def keep_default(match: re.Match[str]) -> str:
        body = match.group(1) or ""
        name, sep, default = body.partition(":-")
        return default if sep and not name.startswith("file:") else ""

    return _REFERENCES.sub(keep_default, value)


def inline_secrets(text: str) -> list[str]:
    """The options of a YAML config that hold a secret written out in the file
    (not a `${ENV_VAR}` or `${file:...}` reference), by path."""
    import yaml

    from bridge.store.url import SCHEMES, url_passwords

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                if key in _SECRET_OPTIONS and isinstance(item, str | int | float):
                    if _outside_references(str(item)).strip():
                        found.append(path)
                elif key == "url" and isinstance(item, str) and item.startswith(SCHEMES):
                    # store.url: the password in it (postgresql://user:pw@host/db).
                    if url_passwords(_outside_references(item)):
                        found.append(path)
                else:
                    walk(item, path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    walk(data, "")
    return found


def readable_config_problem(path: str) -> str | None:
    """Why a config file must not be used as it is: other users can read it and
    it holds secrets inline. None when it is fine."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        if not mode & stat.S_IROTH:
            return None
        inline = inline_secrets(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None  # load_config has said what is wrong with it
    if not inline:
        return None
    return (
        f"{path} can be read by every user of this machine (mode "
        f"{stat.S_IMODE(mode):03o}) and holds secrets in {', '.join(inline)}: "
        f"run `chmod 600 {path}`, or move the secrets to ${{ENV_VAR}} or "
        "${file:/path} references; --allow-readable-config runs it anyway"
    )


def cmd_check_config(path: str, allow_readable: bool = False) -> int:
    from bridge.config import load_config

    try:
        config = load_config(path)
    except ConfigError as err:
        print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    readable = None if allow_readable else readable_config_problem(path)
    if readable is not None:
        print(f"{path}: 1 problem(s)\n  {readable}", file=sys.stderr)
        return 1
    accounts = ", ".join(f"{a.id} ({a.provider})" for a in config.accounts)
    print(f"{path}: OK; MQTT {config.mqtt.host}:{config.mqtt.port}; accounts: {accounts}")
    for warning in config.warnings():
        print(f"  warning: {warning}")
    return 0


def cmd_run(path: str, log_level: str | None, allow_readable: bool = False) -> int:
    from bridge.app import Bridge
    from bridge.config import load_config
    from bridge.logs import setup_logging
    from bridge.store import StoreError

    try:
        config = load_config(path)
    except ConfigError as err:
        print(f"{path}: invalid configuration", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    readable = None if allow_readable else readable_config_problem(path)
    if readable is not None:
        print(f"fleet-bridge: refusing to start: {readable}", file=sys.stderr)
        return 1
    setup_logging(log_level or config.log_level, config.secrets())
    _LOGGER.info("fleet-bridge %s starting with %d account(s)", __version__, len(config.accounts))
    for warning in config.warnings():
        _LOGGER.warning("%s", warning)
    try:
        _run_until_signal(Bridge(config).run)
    except StoreError as err:
        # Also on stderr by itself: the one line a service manager shows.
        print(f"fleet-bridge: stopped: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        for problem in err.problems:
            _LOGGER.error("%s", problem)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import new_token, run_demo
    from bridge.logs import setup_logging

    # The dashboard's token is printed once, in the banner; never in a log line.
    token = None if args.no_dashboard else new_token()
    setup_logging(args.log_level or "warning", [token] if token else [])

    async def main(stop: asyncio.Event) -> None:
        await run_demo(
            stop,
            vehicles=args.vehicles,
            speed=args.speed,
            broker_port=args.mqtt_port,
            host=args.host,
            quiet=args.quiet,
            dashboard=not args.no_dashboard,
            http_port=args.http_port,
            token=token,
        )

    _run_until_signal(main)
    return 0


def cmd_migrate_store(args: argparse.Namespace) -> int:
    """Copy every row of an SQLite store into an empty PostgreSQL store: all of it
    in one transaction, or nothing (exit 2) when the target holds data already."""
    import importlib.util

    from bridge.logs import setup_logging
    from bridge.store import POSTGRES_MISSING, SqliteStore, StoreError
    from bridge.store.url import SCHEMES, redact_url, url_passwords

    source: str | None = args.source
    target: str | None = args.target
    if args.config is not None:
        from bridge.config import load_config

        try:
            config = load_config(args.config)
        except ConfigError as err:
            print(f"{args.config}: invalid configuration", file=sys.stderr)
            for problem in err.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        source = source or str(config.store.path)
        target = target or config.store.url
    if source is None or target is None:
        print(
            "fleet-bridge migrate-store: name the SQLite store (--from or the config's "
            "store.path) and the PostgreSQL store (--to or the config's store.url)",
            file=sys.stderr,
        )
        return 2
    if not target.startswith(SCHEMES):
        print("fleet-bridge migrate-store: the target must be a postgresql:// URL", file=sys.stderr)
        return 2
    if not Path(source).is_file():
        print(f"fleet-bridge migrate-store: no SQLite store at {source}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("psycopg") is None:
        print(f"fleet-bridge migrate-store: {POSTGRES_MISSING}", file=sys.stderr)
        return 2
    setup_logging(args.log_level or "warning", url_passwords(target))
    from bridge.store.postgres import PostgresStore

    path, url = source, target

    async def copy() -> dict[str, int]:
        sqlite = SqliteStore(path)
        try:
            rows = await sqlite.export_rows()
        finally:
            await sqlite.close()
        postgres = await PostgresStore.open(url)
        try:
            return await postgres.import_rows(rows)
        finally:
            await postgres.close()

    try:
        counts = asyncio.run(copy())
    except StoreError as err:
        print(f"fleet-bridge migrate-store: {err}", file=sys.stderr)
        return 2
    print(f"copied {source} into {redact_url(target)}:")
    for table, count in counts.items():
        print(f"  {table}: {count} row(s)")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from bridge.logs import setup_logging
    from bridge.simulator.server import SimulatorServer

    setup_logging(args.log_level or "info")

    async def main(stop: asyncio.Event) -> None:
        async with SimulatorServer(
            vehicles=args.vehicles,
            seed=args.seed,
            speed=args.speed,
            host=args.host,
            port=args.port,
        ) as server:
            print(
                f"Simulator at {server.base_url} ({args.vehicles} vehicles, clock "
                f"x{args.speed:g}); Samsara: {server.samsara_url} token demo-samsara-token",
                flush=True,
            )
            await stop.wait()

    _run_until_signal(main)
    return 0


# What `run`, `check-config` and `demo` import beyond the core (the `daemon` extra).
_DAEMON_MODULES = ("pydantic", "yaml", "paho.mqtt", "aiomqtt")


def _missing_daemon_modules() -> list[str]:
    import importlib.util

    missing = []
    for name in _DAEMON_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "simulate" and (missing := _missing_daemon_modules()):
        # The base install is the core Home Assistant uses; the daemon is an extra.
        print(
            f"fleet-bridge {args.command} needs the daemon's dependencies "
            f"(missing: {', '.join(missing)}): "
            "pip install 'fleet-telematics-bridge[daemon]'",
            file=sys.stderr,
        )
        return 2
    if args.command == "check-config":
        return cmd_check_config(args.config, args.allow_readable_config)
    if args.command == "run":
        return cmd_run(args.config, args.log_level, args.allow_readable_config)
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "migrate-store":
        return cmd_migrate_store(args)
    return cmd_simulate(args)


if __name__ == "__main__":
    sys.exit(main())
