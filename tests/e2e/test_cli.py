"""End to end: `fleet-bridge simulate` and `fleet-bridge run` as processes, real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mqtt import Mosquitto, Recorder, free_port

pytestmark = pytest.mark.e2e

FLEET_BRIDGE = [sys.executable, "-m", "bridge"]


class Process:
    """A child process whose output lines can be awaited."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.popen = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip())
            self._queue.put(line)
        self._queue.put(None)

    def wait_line(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        regex = re.compile(pattern)
        for line in self.lines:
            if match := regex.search(line):
                return match
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r}:\n" + "\n".join(self.lines)
                ) from None
            if line is None:
                raise AssertionError(
                    f"process ended without {pattern!r}:\n" + "\n".join(self.lines)
                )
            if match := regex.search(line):
                return match

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.popen.wait(timeout)


@pytest.fixture
def simulate() -> Iterator[Process]:
    port = free_port()
    process = Process(
        [*FLEET_BRIDGE, "simulate", "--port", str(port), "--vehicles", "5", "--speed", "60"]
    )
    process.wait_line(r"Simulator at http://")
    yield process
    process.stop()


def write_config(tmp_path: Path, mosquitto: Mosquitto, samsara_url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
mqtt:
  host: {mosquitto.host}
  port: {mosquitto.port}
  client_id: e2e-bridge
store:
  path: store.sqlite
accounts:
  - id: e2e
    provider: samsara
    token: ${{E2E_SAMSARA_TOKEN}}
    base_url: {samsara_url}
    poll_interval: 5
"""
    )
    return path


async def test_run_publishes_the_fleet_and_stops_cleanly_on_sigterm(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder, simulate: Process
) -> None:
    samsara_url = simulate.wait_line(r"Samsara: (\S+)").group(1)
    config = write_config(tmp_path, mosquitto, samsara_url)

    check = await asyncio.to_thread(
        subprocess.run,
        [*FLEET_BRIDGE, "check-config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "E2E_SAMSARA_TOKEN": "demo-samsara-token"},
        check=False,
    )
    assert check.returncode == 0, check.stderr

    bridge = Process(
        [*FLEET_BRIDGE, "run", "--config", str(config)],
        env={"E2E_SAMSARA_TOKEN": "demo-samsara-token"},
    )
    try:
        await recorder.wait_for(
            lambda: (
                sum(1 for t in recorder.retained if re.fullmatch(r"fleet/e2e/(?!quota$)[^/]+", t))
                == 5
                and recorder.retained.get("fleet/bridge/state") == b"online"
            ),
            timeout=30,
        )
        state = json.loads(
            next(
                v
                for t, v in recorder.retained.items()
                if re.fullmatch(r"fleet/e2e/(?!quota$)[^/]+", t)
            )
        )
        assert state["name"].startswith("Truck")
        assert -90 <= state["latitude"] <= 90
    finally:
        code = bridge.stop()
    assert code == 0, "\n".join(bridge.lines)
    await recorder.wait_for(lambda: recorder.retained.get("fleet/bridge/state") == b"offline")
    assert (tmp_path / "store.sqlite").exists()
    # The token never reaches the log.
    assert not any("demo-samsara-token" in line for line in bridge.lines)


def test_check_config_names_every_problem_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("mqtt:\n  port: 70000\naccounts:\n  - id: x\n    provider: samsara\n")
    result = subprocess.run(
        [*FLEET_BRIDGE, "check-config", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "accounts[0].token (line 4): field required" in result.stderr
    assert "mqtt.port (line 2)" in result.stderr


def test_run_with_a_bad_config_exits_non_zero_without_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts:\n  - id: bridge\n    provider: samsara\n    token: x\n")
    result = subprocess.run(
        [*FLEET_BRIDGE, "run", "--config", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "accounts[0].id (line 2): 'bridge' is reserved" in result.stderr


async def test_demo_falls_back_to_a_free_port_and_publishes(mosquitto: Mosquitto) -> None:
    # Our Mosquitto holds a port; the demo is asked for it and must take another.
    demo = Process([*FLEET_BRIDGE, "demo", "--vehicles", "3", "--mqtt-port", str(mosquitto.port)])
    try:
        match = demo.wait_line(r"MQTT broker\s+127\.0\.0\.1:(\d+)")
        port = int(match.group(1))
        assert port != mosquitto.port
        assert "was taken" in demo.lines[-1] or any("was taken" in line for line in demo.lines)
        demo.wait_line(rf"mosquitto_sub -h 127\.0\.0\.1 -p {port}")
        # It prints what it publishes: the vehicles' states.
        demo.wait_line(r"fleet/demo-samsara/\S+\s+Truck", timeout=30)
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, "\n".join(demo.lines)
