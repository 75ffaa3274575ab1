"""Every command of README.md and docs/*.md that a user can run, run.

The fenced `sh` blocks are read from the docs; each command in them must be one
this file knows how to run (a new or changed line fails `test_every_documented
_command_is_known` until it is added here), and each known one is run as the
docs say, with only what must differ on a test machine substituted: the broker
and simulator ports (never the machine's own 1883 or 8765), and where the docs'
example points at a broker on another host, the test's Mosquitto.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import __version__
from tests.e2e.test_cli import Process
from tests.support.mqtt import Mosquitto, Recorder, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FLEET_BRIDGE = [sys.executable, "-m", "bridge"]
# Run elsewhere: this suite is part of it.
NOT_HERE = {"./scripts/test": "CI runs it (.ci/run), and it runs this test"}


def documented_commands() -> list[str]:
    commands: list[str] = []
    for doc in DOCS:
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", doc.read_text(), re.S):
            # A line ending in a backslash goes on on the next one.
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                text = " ".join(shlex.quote(w) for w in words).replace(" '&&' ", " && ")
                for command in text.split(" && "):
                    command = command.strip().removesuffix(" '&'").strip()
                    if command:
                        commands.append(command)
    return commands


def readme_yaml_block(starting: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if b.startswith(starting))


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT, **kwargs
    )


async def cmd_pip_install(_: Path, __: Mosquitto, ___: Recorder) -> None:
    # What pip would do with the project and its daemon extra, without
    # touching the environment (scripts/test's own install really installs it).
    result = run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                  "--disable-pip-version-check", ".[daemon]"])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fleet-telematics-bridge" in result.stdout.replace("_", "-")


async def cmd_pip_install_postgres(_: Path, __: Mosquitto, ___: Recorder) -> None:
    result = run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                  "--disable-pip-version-check", ".[daemon,postgres]"])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fleet-telematics-bridge" in result.stdout.replace("_", "-")


async def cmd_migrate_store(tmp: Path, _: Mosquitto, __: Recorder) -> None:
    """docs/scaling.md: an existing SQLite store copied into PostgreSQL (the
    test's own server), with the README's config plus `store.url`."""
    import psycopg

    from bridge.store import SqliteStore
    from tests.support.postgres import Postgres

    if os.geteuid() == 0:
        # The server runs as its service user: it must reach its data.
        for parent in [tmp, *tmp.parents]:
            if str(parent) in ("/", "/tmp"):
                break
            parent.chmod(parent.stat().st_mode | 0o111)
    server = Postgres(tmp / "pg")
    server.init()
    server.start()
    try:
        server.create_database()
        config = minimal_config(tmp, None, None)
        sqlite = tmp / "fleet-bridge.sqlite"
        async with SqliteStore(sqlite) as store:
            await store.save_poll("fleet", {"cursor": "c-1"}, [])
        config.write_text(config.read_text() + f"store:\n  path: {sqlite}\n  url: {server.url}\n")
        result = run(
            [*FLEET_BRIDGE, "migrate-store", "--config", str(config)],
            env={"MQTT_PASSWORD": "x", "PATH": ""},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "checkpoint: 1 row(s)" in result.stdout
        with psycopg.connect(server.url) as db:
            rows = db.execute("SELECT account, key, value FROM checkpoint").fetchall()
        assert rows == [("fleet", "cursor", "c-1")]
    finally:
        server.stop("immediate")


async def cmd_version(_: Path, __: Mosquitto, ___: Recorder) -> None:
    result = run([*FLEET_BRIDGE, "--version"])
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


async def cmd_demo(_: Path, __: Mosquitto, ___: Recorder) -> None:
    demo = Process([*FLEET_BRIDGE, "demo", "--vehicles", "3", "--mqtt-port", str(free_port())])
    try:
        demo.wait_line(r"try a command")
        demo.wait_line(r"fleet/demo-samsara/\S+\s+Truck", timeout=60)
    finally:
        assert demo.stop(signal.SIGINT) == 0, "\n".join(demo.lines)


def minimal_config(tmp: Path, mosquitto: Mosquitto | None, samsara_url: str | None) -> Path:
    """README's minimal config as printed; the secret file made, and optionally
    the broker and Samsara pointed at the test's."""
    text = readme_yaml_block("mqtt:")
    secret = tmp / "samsara-secret"
    secret.write_text("demo-samsara-token\n")
    secret.chmod(0o600)
    text = text.replace("/run/secrets/samsara", str(secret))
    if mosquitto is not None:
        text = text.replace(
            "host: 192.168.1.10", f"host: {mosquitto.host}\n  port: {mosquitto.port}"
        )
    if samsara_url is not None:
        text = text.replace("region: eu                          # api.eu.samsara.com",
                            f"base_url: {samsara_url}")  # fmt: skip
    path = tmp / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


async def cmd_check_config(tmp: Path, _: Mosquitto, __: Recorder) -> None:
    config = minimal_config(tmp, None, None)
    result = run(
        [*FLEET_BRIDGE, "check-config", str(config)], env={"MQTT_PASSWORD": "x", "PATH": ""}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and a problem is named by its path and line, as the README says.
    config.write_text(config.read_text().replace("    token:", "    tokn:"))
    result = run(
        [*FLEET_BRIDGE, "check-config", str(config)], env={"MQTT_PASSWORD": "x", "PATH": ""}
    )
    assert result.returncode != 0
    assert re.search(
        r"accounts\[0\]\.token \(line \d+\): field required", result.stdout + result.stderr
    )


def simulate(port: int) -> Process:
    process = Process([*FLEET_BRIDGE, "simulate", "--port", str(port), "--vehicles", "20"])
    process.wait_line(r"Samsara")
    return process


async def cmd_run_minimal(tmp: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    port = free_port()
    simulator = simulate(port)
    try:
        config = minimal_config(tmp, mosquitto, f"http://127.0.0.1:{port}/samsara")
        bridge = Process(
            [*FLEET_BRIDGE, "run", "--config", str(config)], env={"MQTT_PASSWORD": "x"}
        )
        try:
            await recorder.wait_for(
                lambda: (
                    sum(1 for t in recorder.retained if re.fullmatch(r"fleet/depot/\d+", t)) >= 20
                ),
                timeout=60,
            )
        finally:
            assert bridge.stop(signal.SIGTERM) == 0, "\n".join(bridge.lines)
    finally:
        simulator.stop(signal.SIGTERM)


async def cmd_simulate(_: Path, __: Mosquitto, ___: Recorder) -> None:
    simulator = simulate(free_port())
    simulator.stop(signal.SIGTERM)


async def cmd_run_example(tmp: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    port = free_port()
    simulator = simulate(port)
    try:
        text = (ROOT / "config.example.yaml").read_text()
        text = text.replace("port: 1883", f"port: {mosquitto.port}").replace(":8765/", f":{port}/")
        config = tmp / "config.example.yaml"
        config.write_text(text)
        config.chmod(0o600)
        bridge = Process([*FLEET_BRIDGE, "run", "--config", str(config)])
        try:
            await recorder.wait_for(
                lambda: recorder.retained.get("fleet/bridge/state") == b"online", timeout=30
            )
            # Vehicle states from the simulator, through the example's accounts.
            await recorder.wait_for(
                lambda: any(
                    t.count("/") == 2 and p.startswith(b'{"id"')
                    for t, p in recorder.retained.items()
                ),
                timeout=60,
            )
        finally:
            assert bridge.stop(signal.SIGTERM) == 0, "\n".join(bridge.lines)
    finally:
        simulator.stop(signal.SIGTERM)


DASHBOARD_CURL = (
    "curl -s -H 'Authorization: Bearer $FLEET_DASHBOARD_TOKEN' -H 'Content-Type: "
    "application/json' -X POST http://127.0.0.1:8743/api/command -d '{\"command\": "
    '"lights", "account": "tallinn", "vehicle": "001HAQ", "state": "ON"}\''
)


async def cmd_dashboard_curl(tmp: Path, mosquitto: Mosquitto, recorder: Recorder) -> None:
    """docs/dashboard.md's command through the dashboard's API, as written, with
    the dashboard's port the test's own."""
    import json
    import os
    import shutil

    if shutil.which("curl") is None:
        pytest.fail("curl is not installed")
    from bridge.simulator.metrotec import DEFAULT_API_KEY

    sim_port, web_port = free_port(), free_port()
    simulator = simulate(sim_port)
    token = "docs-dashboard-token-0123456789"
    try:
        config = tmp / "config.yaml"
        config.write_text(
            f"mqtt: {{host: {mosquitto.host}, port: {mosquitto.port}}}\n"
            f"store: {{path: {tmp / 'store.sqlite'}}}\n"
            f"http: {{dashboard: true, port: {web_port}, token: '${{FLEET_DASHBOARD_TOKEN}}'}}\n"
            "commands: {allow: [{accounts: [tallinn], commands: [lights]}]}\n"
            "accounts:\n"
            f"  - {{id: tallinn, provider: metrotec, api_key: {DEFAULT_API_KEY},\n"
            f"     base_url: 'http://127.0.0.1:{sim_port}/metrotec/api'}}\n"
        )
        config.chmod(0o600)
        env = {"FLEET_DASHBOARD_TOKEN": token}
        bridge = Process([*FLEET_BRIDGE, "run", "--config", str(config)], env=env)
        try:
            await recorder.wait_for(lambda: "fleet/tallinn/001HAQ" in recorder.retained, timeout=60)
            words = shlex.split(DASHBOARD_CURL.replace(":8743/", f":{web_port}/"))
            words = [w.replace("$FLEET_DASHBOARD_TOKEN", token) for w in words]
            result = run(words, env={**os.environ, **env})
            assert result.returncode == 0, result.stderr
            answer = json.loads(result.stdout)["answer"]
            assert answer["status"] == "ok", answer
            assert answer["data"]["state"] in ("pending", "confirmed")
        finally:
            assert bridge.stop(signal.SIGTERM) == 0, "\n".join(bridge.lines)
    finally:
        simulator.stop(signal.SIGTERM)


RUNNERS = {
    DASHBOARD_CURL: cmd_dashboard_curl,
    "pip install '.[daemon]'": cmd_pip_install,
    "pip install '.[daemon,postgres]'": cmd_pip_install_postgres,
    "fleet-bridge migrate-store --config config.yaml": cmd_migrate_store,
    "fleet-bridge demo": cmd_demo,
    "fleet-bridge --version": cmd_version,
    "fleet-bridge check-config config.yaml": cmd_check_config,
    "fleet-bridge run --config config.yaml": cmd_run_minimal,
    "fleet-bridge simulate --port 8765 --vehicles 20": cmd_simulate,
    "fleet-bridge run --config config.example.yaml": cmd_run_example,
}


def test_every_documented_command_is_known() -> None:
    unknown = set(documented_commands()) - set(RUNNERS) - set(NOT_HERE)
    assert unknown == set(), "a documented command no test runs: add it to RUNNERS"
    assert set(RUNNERS) <= set(documented_commands()), "RUNNERS has a command the docs dropped"


@pytest.mark.parametrize("command", sorted(RUNNERS))
async def test_documented_command(
    command: str, tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    await RUNNERS[command](tmp_path, mosquitto, recorder)
