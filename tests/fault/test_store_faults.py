"""The store's disk fills up or turns read-only while the bridge runs.

The bridge stops by itself with one clear error naming the store, says `offline`
on MQTT, and leaves a store that SQLite finds intact and a restart can use.
A full disk is SQLite's own limit on the file's pages; a read-only remount is
SQLite's query-only mode (root ignores file modes, so chmod would prove nothing).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.simulator.server import SimulatorServer
from bridge.store import Store, StoreError
from tests.fault.conftest import Tally, fast, make_config, poll_all, running
from tests.support.mqtt import Mosquitto, Recorder


@pytest.mark.parametrize(
    ("fault", "pragma", "reason"),
    [
        ("disk full", "PRAGMA max_page_count={pages}", "full"),
        ("read-only", "PRAGMA query_only=ON", "readonly"),
    ],
)
async def test_the_bridge_stops_safely_and_the_store_stays_intact(
    fault: str,
    pragma: str,
    reason: str,
    tmp_path: Path,
    mosquitto: Mosquitto,
    recorder: Recorder,
    sim: SimulatorServer,
    tally: Tally,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = make_config(mosquitto, sim, tmp_path)
    bridge = Bridge(config, now=sim.clock.now)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    async with asyncio.timeout(10):
        await bridge.started.wait()
    fast(bridge)
    await poll_all(bridge)
    assert bridge.store is not None
    db = bridge.store._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(pragma.format(pages=pages))
    tally.injected(fault)
    sim.clock.advance(120)  # vehicles move: the next poll has states to write
    for poller in bridge.pollers.values():
        poller.request_poll()
    with pytest.raises(StoreError) as raised:
        async with asyncio.timeout(20):
            await task
    message = str(raised.value)
    assert str(config.store.path) in message
    assert reason in message.replace(" ", "").replace("-", "").lower()
    assert any("stopping safely" in r.getMessage() for r in caplog.records)
    await recorder.wait_for(lambda: recorder.retained.get("fleet/bridge/state") == b"offline")
    # Not corrupt, and a restart can open and use it.
    with Store(config.store.path) as store:
        assert await store.integrity() == "ok"
        assert await store.load_states("sam")


def test_the_cli_names_the_store_and_exits_2(tmp_path: Path) -> None:
    """`fleet-bridge run` with a store it cannot open: one line, exit code 2."""
    store = tmp_path / "store.sqlite"
    store.mkdir()  # a directory where the file should be
    config = tmp_path / "config.yaml"
    config.write_text(
        f"store: {{path: {store}}}\naccounts:\n  - {{id: a, provider: samsara, token: '${{T}}'}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"T": "x" * 20, "PATH": ""},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"fleet-bridge: stopped: cannot open the store at {store}" in result.stderr


async def test_a_store_from_before_answers_were_tracked_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '4');"
            "CREATE TABLE command_journal (key TEXT PRIMARY KEY, command TEXT NOT NULL,"
            " account TEXT NOT NULL, vehicle TEXT, order_ref TEXT, transaction_id TEXT,"
            " body TEXT NOT NULL, status TEXT NOT NULL, handle TEXT, response TEXT,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL);"
            "INSERT INTO command_journal VALUES ('a/t1', 'lights', 'a', 'v', NULL, 't1', '{}',"
            " 'confirmed', NULL, '{\"status\": \"ok\"}', 1, 2);"
        )
    db.close()
    with Store(path) as store:
        # What the older bridge answered is not sent a second time.
        assert await store.journal_unanswered() == []
        assert await store.integrity() == "ok"


async def test_the_store_is_private_and_keeps_no_bearer_token(
    tmp_path: Path, mosquitto: Mosquitto, sim: SimulatorServer
) -> None:
    """The store holds command bodies, positions and the ledger: its owner's only;
    and no provider token (Telemax's daily bearer token, Metrotec's JWT) at rest."""
    previous = os.umask(0o022)  # what most users run with: files 0644, directories 0755
    config = make_config(mosquitto, sim, tmp_path)
    store = tmp_path / "state" / "bridge.sqlite"
    config = config.model_copy(update={"store": config.store.model_copy(update={"path": store})})
    async with running(config, sim) as bridge:
        await poll_all(bridge)
        sim.clock.advance(120)
        await poll_all(bridge)
        tokens = [*sim.telemax._tokens, *sim.metrotec._tokens]
    assert len(tokens) >= 2, "both providers issued a token"
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    files = [p for p in store.parent.iterdir() if p.name.startswith(store.name)]
    assert store in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    data = b"".join(path.read_bytes() for path in files)
    leaked = [t for t in tokens if t.encode() in data]
    os.umask(previous)
    assert leaked == []
