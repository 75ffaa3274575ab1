"""The HACS install path in a real Home Assistant, without the test harness.

What a HACS user does, done by a program against a real `hass` process:

1. our sdist and wheel are served from a local package index (PEP 503, on a
   free port), beside the machine's normal index configuration; nothing of ours
   is installed in Home Assistant's venv (checked first); the wheel must hold
   every file of the checkout's bridge/ package and nothing else of ours;
2. the HACS zip is unpacked into <config>/custom_components/fleet_telematics of
   a fresh configuration directory, and `hass` starts on a free port;
3. onboarding over the REST API: the owner (`/api/onboarding/users`), the auth
   code exchanged for a token (`/auth/token`), then the core config, analytics
   and integration steps;
4. a Samsara account of the simulator (in this process, on a free port) is
   added through the config flow over REST. Starting the flow makes Home
   Assistant install the manifest's requirement `fleet-telematics-bridge==X.Y.Z`
   itself, with pip or uv under its own `package_constraints.txt`;
5. `/api/states` must show every simulated vehicle's tracker with a position and
   its sensors with real values, the wheel must have come from our index and be
   installed in the venv, Home Assistant 2026.3 and later must serve our brand/
   images, and Home Assistant's log must hold no error or deprecation report
   about the integration (start, setup and stop).

Run by scripts/ha-smoke with the bare Home Assistant venv's interpreter and the
checkout on PYTHONPATH (for the simulator, in this process only: `hass` gets an
environment without it and a working directory outside the checkout).

    python tests/hass/smoke/hacs_install.py --hass-venv V --dist D --zip Z --work W
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import html
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bridge.simulator import samsara
from bridge.simulator.server import SimulatorServer

REPO_ROOT = Path(__file__).resolve().parents[3]
PROJECT = "fleet-telematics-bridge"
DOMAIN = "fleet_telematics"
VEHICLES = 3
T = TypeVar("T")

# Log lines about us that are expected: Home Assistant's notice that a custom
# integration is not tested by it (every custom integration gets it).
EXPECTED = re.compile(r"We found a custom integration fleet_telematics which has not been tested")
# Home Assistant's log records start with a timestamp and a level.
# (2026.x adds the UTC offset to the time.)
RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)? (?P<level>[A-Z]+) ", re.M
)
# Ours: the domain (logger, paths of the component), the bridge's loggers, and
# our requirement. Not "fleet-telematics" alone: the cache's paths carry it.
ABOUT_US = re.compile(r"fleet_telematics|\[bridge[.\]]|fleet-telematics-bridge==")


class SmokeError(Exception):
    """The install path is broken; the message says where."""


def step(message: str, started: float) -> None:
    print(f"  [{time.monotonic() - started:6.1f} s] {message}", flush=True)


def free_port() -> int:
    """A port nobody listens on now (Home Assistant takes its port from YAML)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the package index ---------------------------------------------------------------


def write_index(dist: Path, root: Path) -> list[str]:
    """A static PEP 503 index of the files in `dist` under root/simple/."""
    files = sorted(p for p in dist.iterdir() if p.suffix in {".whl", ".gz"})
    wheels = [p for p in files if p.suffix == ".whl"]
    if not wheels or not any(p.name.endswith(".tar.gz") for p in files):
        raise SmokeError(f"{dist} must hold our wheel and sdist, has {[p.name for p in files]}")
    (root / "files").mkdir(parents=True)
    project = root / "simple" / PROJECT
    project.mkdir(parents=True)
    links = []
    for path in files:
        shutil.copy(path, root / "files" / path.name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        links.append(
            f'<a href="../../files/{html.escape(path.name)}#sha256={digest}"'
            f' data-requires-python="&gt;=3.11">{html.escape(path.name)}</a><br>'
        )
    page = "<!DOCTYPE html><html><body>\n{}\n</body></html>\n"
    (project / "index.html").write_text(page.format("\n".join(links)))
    (root / "simple" / "index.html").write_text(page.format(f'<a href="{PROJECT}/">{PROJECT}</a>'))
    return [p.name for p in files]


def wheel_problems(wheel: Path, source: Path) -> list[str]:
    """The wheel against the checkout's package: every file of bridge/ in it
    (a package-data pattern that misses a file fails here), nothing else but
    its metadata."""
    with zipfile.ZipFile(wheel) as opened:
        names = set(opened.namelist())
    package = {
        path.relative_to(source.parent).as_posix()
        for path in (source).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    problems = [f"the wheel lacks {name}" for name in sorted(package - names)]
    foreign = {n for n in names - package if not n.split("/")[0].endswith(".dist-info")}
    problems += [f"the wheel carries {name}, which is not ours to ship" for name in sorted(foreign)]
    return problems


class IndexServer:
    """The index over HTTP on 127.0.0.1, remembering which files were fetched."""

    def __init__(self, root: Path) -> None:
        self.fetched: list[str] = []
        fetched = self.fetched

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                if self.path.startswith("/files/"):
                    fetched.append(self.path.removeprefix("/files/"))
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # pip and uv ask for every package here; that is noise

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> IndexServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- Home Assistant's venv and process --------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_version(venv: Path) -> str | None:
    """Our distribution's version in the venv, or None (asked in a clean interpreter)."""
    code = (
        "import importlib.metadata as m, importlib.util as u\n"
        f"try: print(m.version({PROJECT!r}))\n"
        "except m.PackageNotFoundError: print('-' if u.find_spec('bridge') is None else '?')\n"
    )
    out = subprocess.run(
        [str(venv_python(venv)), "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    if out == "?":
        raise SmokeError(f"`bridge` is importable in {venv} without our distribution")
    return None if out == "-" else out


def bridge_location(venv: Path) -> Path:
    code = "import bridge, os; print(os.path.dirname(bridge.__file__))"
    out = subprocess.run(
        [str(venv_python(venv)), "-I", "-c", code], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def pip_extra_indexes(venv: Path) -> list[str]:
    """The extra indexes pip is configured with here (an environment variable
    replaces the configuration files' value, so ours must carry them on)."""
    if os.environ.get("PIP_EXTRA_INDEX_URL"):
        return os.environ["PIP_EXTRA_INDEX_URL"].split()
    listing = subprocess.run(
        [str(venv_python(venv)), "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".extra-index-url"):
            return value.strip().strip("'\"").split()
    return []


def hass_environment(venv: Path, index_url: str) -> dict[str, str]:
    """The machine's environment with our index added for pip (Home Assistant
    2024.x) and uv (2024.10 and newer: `python -m uv pip install`). Nothing of
    the checkout: no PYTHONPATH, no VIRTUAL_ENV of another venv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    }
    env["PIP_EXTRA_INDEX_URL"] = " ".join([*pip_extra_indexes(venv), index_url])
    env["UV_EXTRA_INDEX_URL"] = " ".join([*env.get("UV_EXTRA_INDEX_URL", "").split(), index_url])
    # uv trusts its own CA roots unless told: the machine's bundle, as pip has it.
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        env.setdefault("SSL_CERT_FILE", str(bundle))
    env.setdefault("HOME", str(Path.home()))
    return env


def write_config(config: Path, port: int) -> None:
    # Only what onboarding, the REST API and the config flow need: no
    # default_config (the frontend and dozens of integrations are not the test).
    (config / "configuration.yaml").write_text(
        "\n".join(
            [
                "homeassistant:",
                "  time_zone: UTC",
                "http:",
                "  server_host: 127.0.0.1",
                f"  server_port: {port}",
                "api:",
                "config:",
                "onboarding:",
                "logger:",
                "  default: warning",
                "  logs:",
                "    homeassistant.util.package: info",
                "    homeassistant.requirements: info",
                "",
            ]
        )
    )


def unpack_hacs_zip(archive: Path, config: Path) -> list[str]:
    """What HACS does with a `zip_release`: its contents become the folder."""
    target = config / "custom_components" / DOMAIN
    target.mkdir(parents=True)
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(target)
        return opened.namelist()


# -- REST ---------------------------------------------------------------------------------


async def wait_for(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    timeout: float,
    alive: Callable[[], None] = lambda: None,
) -> T:
    """Poll `probe` until it answers something, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise SmokeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.5)


class Rest:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token: str | None = None

    async def call(
        self, method: str, path: str, *, expect: int = 200, timeout: float = 60, **kw: Any
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.request(
            method,
            self.base + path,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            **kw,
        ) as response:
            text = await response.text()
            if response.status != expect:
                raise SmokeError(f"{method} {path}: HTTP {response.status} {text[:500]}")
            return json.loads(text) if text else None


async def onboard(rest: Rest, client_id: str) -> None:
    answer = await rest.call(
        "POST",
        "/api/onboarding/users",
        json={
            "client_id": client_id,
            "name": "Smoke Test",
            "username": "smoke",
            "password": "smoke-test-password",
            "language": "en",
        },
    )
    token = await rest.call(
        "POST",
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["auth_code"],
            "client_id": client_id,
        },
    )
    rest.token = token["access_token"]
    # Finishing core config starts the flows of Home Assistant's onboarding
    # integrations (met, radio_browser, ...), which install their requirements.
    await rest.call("POST", "/api/onboarding/core_config", timeout=600)
    await rest.call("POST", "/api/onboarding/analytics")
    await rest.call(
        "POST",
        "/api/onboarding/integration",
        json={"client_id": client_id, "redirect_uri": f"{client_id}?auth_callback=1"},
    )
    steps = await rest.call("GET", "/api/onboarding")
    if not all(s["done"] for s in steps):
        raise SmokeError(f"onboarding not done: {steps}")


async def add_simulator_account(rest: Rest, sim: SimulatorServer) -> dict[str, Any]:
    """The config flow as the frontend drives it. Its first request makes Home
    Assistant load the integration, so install its requirement first: pip or uv
    resolve against the indexes then (minutes allowed on a cold machine)."""
    form = await rest.call(
        "POST",
        "/api/config/config_entries/flow",
        json={"handler": DOMAIN, "show_advanced_options": True},
        timeout=600,
    )
    if form.get("type") != "form" or form.get("step_id") != "user":
        raise SmokeError(f"the flow did not open on the provider step: {form}")
    form = await rest.call(
        "POST", f"/api/config/config_entries/flow/{form['flow_id']}", json={"provider": "samsara"}
    )
    fields = {field["name"]: field for field in form.get("data_schema", [])}
    data: dict[str, Any] = {"token": samsara.DEFAULT_TOKEN, "region": "us"}
    # The server URL: top level in advanced mode (up to 2025), or in the
    # collapsed `advanced` section where advanced mode is gone (2026).
    if fields.get("advanced", {}).get("type") == "expandable":
        data["advanced"] = {"url": sim.samsara_url}
    elif "url" in fields:
        data["url"] = sim.samsara_url
    else:
        raise SmokeError(f"the credentials form offers no server URL: {sorted(fields)}")
    result = await rest.call(
        "POST", f"/api/config/config_entries/flow/{form['flow_id']}", json=data, timeout=120
    )
    if result.get("type") != "create_entry":
        raise SmokeError(f"the flow did not create an entry: {result}")
    return dict(result["result"])


async def brand_problems(rest: Rest, venv: Path, archive: Path) -> list[str] | None:
    """Home Assistant 2026.3 and later serve a custom integration's brand/
    images (the `brands` integration): ours must come back byte for byte. None
    where this Home Assistant has no such integration."""
    brands = list((venv / "lib").glob("python3.*/site-packages/homeassistant/components/brands"))
    if not brands:
        return None
    problems = []
    with zipfile.ZipFile(archive) as opened:
        for image in ("icon.png", "logo.png"):
            shipped = opened.read(f"brand/{image}")
            async with rest.session.get(
                f"{rest.base}/api/brands/integration/{DOMAIN}/{image}",
                params={"placeholder": "no"},
                headers={"Authorization": f"Bearer {rest.token}"},
            ) as response:
                served = await response.read()
                if response.status != 200 or served != shipped:
                    problems.append(f"{image}: HTTP {response.status}, {len(served)} bytes")
    return problems


async def our_states(rest: Rest) -> list[dict[str, Any]]:
    # The entity ids of our integration: a template is the one REST way to ask.
    ids = set(
        await rest.call(
            "POST",
            "/api/template",
            json={"template": "{{ integration_entities('fleet_telematics') | list | tojson }}"},
        )
    )
    return [s for s in await rest.call("GET", "/api/states") if s["entity_id"] in ids]


def vehicle_problems(states: list[dict[str, Any]]) -> list[str] | None:
    """None while the vehicles are not all there; else what is wrong with them."""
    trackers = [s for s in states if s["entity_id"].startswith("device_tracker.")]
    if len(trackers) < VEHICLES:
        return None
    problems = []
    for tracker in trackers:
        attrs = tracker["attributes"]
        if tracker["state"] in {"unknown", "unavailable"} or not isinstance(
            attrs.get("latitude"), float
        ):
            problems.append(f"{tracker['entity_id']} has no position: {tracker}")
    for device_class, unit in (("speed", "km/h"), ("distance", "km")):
        sensors = [
            s
            for s in states
            if s["entity_id"].startswith("sensor.")
            and s["attributes"].get("device_class") == device_class
            and s["attributes"].get("unit_of_measurement") == unit
        ]
        if len(sensors) < VEHICLES:
            problems.append(f"{len(sensors)} {device_class} sensors for {VEHICLES} vehicles")
        for sensor in sensors:
            try:
                float(sensor["state"])
            except ValueError:
                problems.append(f"{sensor['entity_id']} is {sensor['state']!r}, not a number")
    unavailable = [s["entity_id"] for s in states if s["state"] == "unavailable"]
    if unavailable:
        problems.append(f"unavailable: {unavailable}")
    return problems


def log_problems(log: str) -> list[str]:
    """Warnings and errors of Home Assistant's log that are about us (a record
    runs from its timestamp to the next: tracebacks and frame reports included)."""
    starts = [m.start() for m in RECORD.finditer(log)] + [len(log)]
    if len(starts) < 2:
        return ["no log record could be read: the log's format is not known here"]
    found = []
    for begin, end in pairwise(starts):
        record = log[begin:end]
        level = RECORD.match(record)
        if level is None or level.group("level") not in {"WARNING", "ERROR", "CRITICAL"}:
            continue
        if ABOUT_US.search(record) and not EXPECTED.search(record):
            found.append(record.strip())
    return found


# -- the run ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_hass(
    venv: Path, config: Path, env: dict[str, str], output: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(venv / "bin" / "hass"),
            "--config",
            str(config),
            cwd=str(config),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 90)
                except TimeoutError:
                    os.killpg(process.pid, signal.SIGKILL)
                    await process.wait()
            # What hass started and left running (an installer it ran for
            # itself when a test failed early) ends with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)


@dataclasses.dataclass
class Run:
    """One smoke run's inputs, prepared before anything starts."""

    venv: Path
    archive: Path
    work: Path
    config: Path
    version: str
    port: int
    started: float

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs(self) -> tuple[Path, Path]:
        return self.config / "home-assistant.log", self.work / "hass-output.log"


def prepare(args: argparse.Namespace) -> Run:
    """A fresh configuration directory with the HACS zip unpacked, the index."""
    started = time.monotonic()
    venv: Path = args.hass_venv
    work: Path = args.work
    if work.exists():
        shutil.rmtree(work)
    config = work / "config"
    config.mkdir(parents=True)
    ha_version = subprocess.run(
        [str(venv / "bin" / "hass"), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with zipfile.ZipFile(args.zip) as opened:
        wanted = json.loads(opened.read("manifest.json"))["requirements"]
    (requirement,) = (r for r in wanted if r.startswith(f"{PROJECT}=="))
    version = requirement.split("==", 1)[1]
    print(f"HACS install smoke test: Home Assistant {ha_version}, {requirement}", flush=True)

    if (found := installed_version(venv)) is not None:
        raise SmokeError(f"{PROJECT} {found} is already installed in {venv}: not a fresh install")
    served = write_index(args.dist, work / "index")
    wheels = [name for name in served if name.startswith(f"fleet_telematics_bridge-{version}-")]
    if not wheels:
        raise SmokeError(f"no wheel of version {version} in {args.dist}: {served}")
    if problems := wheel_problems(args.dist / wheels[0], REPO_ROOT / "bridge"):
        raise SmokeError("; ".join(problems))
    files = unpack_hacs_zip(args.zip, config)
    step(f"HACS zip unpacked ({len(files)} files); index serves {', '.join(served)}", started)
    port = free_port()
    write_config(config, port)
    return Run(venv, args.zip, work, config, version, port, started)


async def exercise(run: Run, index: IndexServer) -> None:
    """Start hass, onboard, add the account, read the states, stop hass."""
    env = hass_environment(run.venv, index.url)
    async with (
        SimulatorServer(vehicles=VEHICLES, speed=1.0) as sim,
        running_hass(run.venv, run.config, env, run.logs[1]) as process,
        aiohttp.ClientSession() as session,
    ):

        def alive() -> None:
            if process.returncode is not None:
                raise SmokeError(f"hass exited with {process.returncode}")

        async def up() -> bool | None:
            # Any answer means the server is up; whether it is the right one,
            # the onboarding calls tell.
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{run.base}/api/onboarding"):
                    return True
            return None

        await wait_for("Home Assistant's HTTP server", up, 600, alive)
        step(f"hass is up on port {run.port}", run.started)
        rest = Rest(session, run.base)
        await onboard(rest, f"{run.base}/")
        step("onboarded over REST (user, token, core config, analytics, integration)", run.started)

        async def running() -> bool | None:
            # The HTTP server answers while Home Assistant still sets up (and
            # installs for) its own integrations; it handles SIGTERM only once
            # it runs.
            config = await rest.call("GET", "/api/config")
            return True if config.get("state") == "RUNNING" else None

        await wait_for("Home Assistant to finish starting", running, 900, alive)
        step("Home Assistant is running", run.started)

        entry = await add_simulator_account(rest, sim)
        step(f"config flow created {entry.get('title')!r} ({entry.get('state')})", run.started)
        if not any(name.startswith("fleet_telematics_bridge-") for name in index.fetched):
            raise SmokeError(f"Home Assistant never fetched our files: {index.fetched}")
        installed = await asyncio.to_thread(installed_version, run.venv)
        if installed != run.version:
            raise SmokeError(f"Home Assistant installed {PROJECT} {installed}, not {run.version}")
        location = await asyncio.to_thread(bridge_location, run.venv)
        if not location.is_relative_to(run.venv):
            raise SmokeError(f"bridge imports from {location}, not from {run.venv}")
        step(f"Home Assistant installed {PROJECT} {installed} from our index", run.started)

        async def vehicles() -> list[str] | None:
            return vehicle_problems(await our_states(rest))

        problems = await wait_for("the vehicles' entities", vehicles, 120, alive)
        if problems:
            raise SmokeError("entities: " + "; ".join(problems))
        states = await our_states(rest)
        kinds = sorted({s["entity_id"].split(".")[0] for s in states})
        step(f"{len(states)} entities with states ({', '.join(kinds)})", run.started)
        brand = await brand_problems(rest, run.venv, run.archive)
        if brand:
            raise SmokeError("brand images: " + "; ".join(brand))
        if brand is not None:
            step("Home Assistant serves our brand/icon.png and logo.png", run.started)
    step(f"hass stopped (exit {process.returncode})", run.started)
    if process.returncode != 0:
        raise SmokeError(f"hass exited with {process.returncode} on SIGTERM")


def smoke(args: argparse.Namespace) -> None:
    run = prepare(args)
    ok = False
    try:
        with IndexServer(run.work / "index") as index:
            asyncio.run(exercise(run, index))
        log_file, output = run.logs
        log = log_file.read_text() if log_file.exists() else output.read_text()
        if reports := log_problems(log):
            raise SmokeError("Home Assistant's log about us:\n" + "\n".join(reports))
        ok = True
    finally:
        if not ok:
            for path in run.logs:
                if path.exists():
                    tail = path.read_text(errors="replace")[-6000:]
                    print(f"--- {path} (tail) ---\n{tail}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hass-venv", type=Path, required=True)
    parser.add_argument("--dist", type=Path, required=True, help="our sdist and wheel")
    parser.add_argument("--zip", type=Path, required=True, help="the HACS zip")
    parser.add_argument("--work", type=Path, required=True, help="emptied, then used")
    args = parser.parse_args()
    try:
        smoke(args)
    except SmokeError as err:
        print(f"HACS install smoke test FAILED: {err}", file=sys.stderr)
        return 1
    print("HACS install smoke test passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
