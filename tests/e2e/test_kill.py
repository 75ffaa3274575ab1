"""SIGKILL the bridge right after a FLEETIZE call, twice within a minute: no violation.

The quota ledger is written before each call leaves; a restarted bridge reads it
and waits out FLEETIZE's 60 s spacing instead of calling again (which FLEETIZE
answers with #1055 and, repeated, a blocked token).
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import FLEET_BRIDGE, Process
from tests.support.mqtt import Mosquitto, Recorder, free_port

pytestmark = pytest.mark.e2e


def sim_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/_sim/stats", timeout=10) as response:
        data: dict[str, Any] = json.load(response)
        return data


def quota_messages(recorder: Recorder, since: int) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in recorder.since(since, "fleet/kill/quota") if m.payload]


async def test_killed_twice_in_a_minute_never_breaks_the_fleetize_spacing(
    tmp_path: Path, mosquitto: Mosquitto, recorder: Recorder
) -> None:
    port = free_port()
    simulate = Process(
        [*FLEET_BRIDGE, "simulate", "--port", str(port), "--vehicles", "1", "--speed", "1"]
    )
    try:
        base = simulate.wait_line(r"Simulator at (http://\S+)").group(1)
        config = tmp_path / "config.yaml"
        config.write_text(
            f"mqtt: {{host: {mosquitto.host}, port: {mosquitto.port}, client_id: kill}}\n"
            "store: {path: store.sqlite}\n"
            "accounts:\n"
            "  - id: kill\n"
            "    provider: fleetize\n"
            "    token: demo-fleetize-token\n"
            f"    base_url: {base}/fleetize/v2\n"
        )
        config.chmod(0o600)  # it holds the token: fleet-bridge refuses it readable by all
        mark = recorder.mark()
        bridge = Process([*FLEET_BRIDGE, "run", "--config", str(config)])
        await recorder.wait_for(
            lambda: any(q["budgets"]["daily"]["used"] == 1 for q in quota_messages(recorder, mark)),
            timeout=30,
        )
        assert bridge.stop(signal.SIGKILL) == -signal.SIGKILL

        for _ in range(2):
            mark = recorder.mark()
            bridge = Process([*FLEET_BRIDGE, "run", "--config", str(config)])
            # The restarted bridge knows the call it made before it died, and
            # says it is waiting for the spacing instead of calling.
            await recorder.wait_for(
                lambda since=mark: any(
                    "spacing" in (q.get("reason") or "") for q in quota_messages(recorder, since)
                ),
                timeout=30,
            )
            assert bridge.stop(signal.SIGKILL) == -signal.SIGKILL

        fleetize = sim_stats(base)["fleetize"]
        assert fleetize["calls_today"] == 1
        assert fleetize["violations"] == 0
        assert fleetize["blocked"] is False
    finally:
        simulate.stop()
