"""The SQLite store: what a restart finds, and what a failed write leaves."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.model import EngineState, Position, VehicleState
from bridge.store import Store, StoreError

TRUCK = VehicleState(
    vehicle_id="112",
    name="Truck A7",
    position=Position(
        41.88, -87.63, datetime(2026, 11, 21, 10, 0, tzinfo=UTC), 90.0, None, "Main St"
    ),
    speed_kmh=54.7,
    odometer_km=1234.5,
    fuel_percent=63,
    engine_state=EngineState.ON,
    ignition=True,
    battery_voltage=14.1,
    engine_hours=12.5,
    last_seen=datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC),
    online=True,
    vin="1FUJA6CK14LM94383",
    year=2019,
)


async def test_a_poll_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with Store(path) as store:
        await store.save_poll("depot", {"feed:gps": "cursor-1"}, [TRUCK])
    with Store(path) as reopened:
        assert await reopened.load_checkpoint("depot") == {"feed:gps": "cursor-1"}
        assert await reopened.load_states("depot") == [TRUCK]
        assert await reopened.load_states("other") == []


async def test_checkpoint_replaced_and_removed_vehicles_forgotten(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        van = VehicleState(vehicle_id="113", name="Van")
        await store.save_poll("depot", {"a": "1", "b": "1"}, [TRUCK, van])
        await store.save_poll("depot", {"a": "2"}, [], removed=["112"])
        assert await store.load_checkpoint("depot") == {"a": "2"}
        assert [s.vehicle_id for s in await store.load_states("depot")] == ["113"]


async def test_a_failed_write_leaves_the_previous_poll_intact(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite") as store:
        await store.save_poll("depot", {"a": "1"}, [TRUCK])

        class Boom(Exception):
            pass

        def broken() -> list[VehicleState]:
            raise Boom

        class Exploding:
            def __iter__(self):  # type: ignore[no-untyped-def]
                return iter(broken())

        with pytest.raises(Boom):
            await store.save_poll("depot", {"a": "2"}, Exploding())  # type: ignore[arg-type]
        # Neither the new cursor nor anything else of the failed poll is kept.
        assert await store.load_checkpoint("depot") == {"a": "1"}
        assert await store.load_states("depot") == [TRUCK]


def test_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer fleet-bridge"):
        Store(path)


def test_unreadable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(blocker / "s.sqlite")


async def test_a_corrupt_row_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        await store.save_poll("depot", {}, [TRUCK])
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO vehicle_state VALUES('depot', '999', '{not json', '2026-01-01')")
    with Store(path) as store:
        assert [s.vehicle_id for s in await store.load_states("depot")] == ["112"]
