"""`fleet-bridge migrate-store`: an SQLite store copied whole into PostgreSQL, once."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bridge.cli import main
from bridge.model import VehicleState
from bridge.quota import Call, Hold, LedgerView
from bridge.store import TABLES, AlertClaim, SqliteStore
from bridge.store.postgres import PostgresStore
from tests.bridge.test_store import TRUCK
from tests.bridge.test_store_postgres import entry, new_url
from tests.support.postgres import Postgres

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


async def migrate(argv: list[str]) -> int:
    """`fleet-bridge ...` as from a shell (it runs an event loop of its own)."""
    return await asyncio.to_thread(main, argv)


def allow(view: LedgerView) -> None:
    return None


async def fill(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    van = VehicleState(vehicle_id="113", name="Van")
    await store.save_poll("depot", {"feed:gps": "c-1", "feed:stats": "c-2"}, [TRUCK, van])
    await store.save_poll("yard", {"feed:gps": "y-1"}, [van])
    for n in range(3):
        await store.check_and_record(
            Call("vehicles", NOW + timedelta(seconds=n), "depot"),
            ["token:a", "egress:x"],
            [],
            [],
            allow,
        )
    await store.save_hold("token:a", Hold(NOW + timedelta(minutes=5), "429"))
    await store.journal_accept(entry("k1", order_ref="o-1"))
    await store.journal_update("k1", "confirmed", handle="h-1", response='{"ok": true}')
    await store.journal_answered("k1")
    await store.journal_accept(entry("k22", account="yard"))
    await store.journal_update("k22", "pending", response='{"queued": true}')
    await store.claim_alerts(
        "depot",
        [
            AlertClaim("a1", "fleet/depot/alert", '{"id": "a1"}', 20.0),
            AlertClaim("a2", "fleet/depot/alert", '{"id": "a2"}', 10.0),
        ],
    )
    await store.alerts_delivered("depot", ["a1"])
    return store


def config_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            accounts:
              - provider: samsara
                id: depot
                token: abc
            store:
              path: {tmp_path / "store.sqlite"}
              url: {url}
            """
        )
    )
    path.chmod(0o600)
    return path


async def test_everything_is_copied_once(
    postgres_shared: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite = await fill(tmp_path / "store.sqlite")
    before = await sqlite.export_rows()
    await sqlite.close()
    url = new_url(postgres_shared)
    config = config_file(tmp_path, url)

    assert await migrate(["migrate-store", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "quota_ledger: 6 row(s)" in out
    assert "command_journal: 2 row(s)" in out
    assert "alert_seen: 2 row(s)" in out

    store = await PostgresStore.open(url)
    try:
        after = await store.export_rows()
        for table in TABLES:
            assert sorted(after[table], key=repr) == sorted(before[table], key=repr), table
        # And through the store's own API, as a bridge would read it.
        assert await store.load_checkpoint("depot") == {"feed:gps": "c-1", "feed:stats": "c-2"}
        assert [s.vehicle_id for s in await store.load_states("depot")] == ["112", "113"]
        assert await store.load_states("depot") == [TRUCK, VehicleState("113", name="Van")]
        assert len(await store.recent("egress:x", NOW)) == 3
        assert await store.holds(["token:a"]) == {
            "token:a": Hold(NOW + timedelta(minutes=5), "429")
        }
        assert [e.key for e in await store.journal_open()] == ["k22"]
        assert [e.key for e in await store.journal_unanswered()] == ["k22"]
        answered = await store.journal_by_order("depot", "o-1")
        assert answered is not None
        assert answered.handle == "h-1"
        assert [a.alert_id for a in await store.alerts_undelivered("depot")] == ["a2"]
    finally:
        await store.close()

    # A second run finds the target filled: it refuses and changes nothing.
    assert await migrate(["migrate-store", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "holds data already" in err
    with psycopg.connect(url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM quota_ledger").fetchone() or (0,)
    assert count == 6


async def test_from_and_to_override_the_config(
    postgres_shared: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "old"
    elsewhere.mkdir()
    sqlite = await fill(elsewhere / "other.sqlite")
    await sqlite.close()
    unused = new_url(postgres_shared)
    url = new_url(postgres_shared)
    config = config_file(tmp_path, unused)
    argv = ["migrate-store", "-c", str(config), "--from", str(elsewhere / "other.sqlite")]
    assert await migrate([*argv, "--to", url]) == 0
    assert "copied" in capsys.readouterr().out
    with psycopg.connect(url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM command_journal").fetchone() or (0,)
    assert count == 2
    with psycopg.connect(unused) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename='checkpoint'")
        assert tables.fetchone() == (0,)
    # A missing source is an error, not an empty copy.
    assert (
        await migrate(["migrate-store", "--from", str(tmp_path / "none.sqlite"), "--to", url]) == 2
    )
    assert "no SQLite store" in capsys.readouterr().err


async def test_a_failed_copy_leaves_nothing(postgres_shared: Postgres, tmp_path: Path) -> None:
    sqlite = await fill(tmp_path / "store.sqlite")
    rows = await sqlite.export_rows()
    await sqlite.close()
    url = new_url(postgres_shared)
    store = await PostgresStore.open(url)
    try:
        # A row the target refuses (a NOT NULL column empty) after others were copied.
        rows["alert_seen"].append(("depot", None, 1.0, None, None, None, None))
        with pytest.raises(Exception, match="alert_id"):
            await store.import_rows(rows)
        assert await store.export_rows() == {table: [] for table in TABLES}
    finally:
        await store.close()
