"""Commands an attacker or a careless client sends, against a real Mosquitto.

Each of these once broke the bridge (issue 16): an answer that landed on a topic
the bridge consumes (and it answered itself forever), a request nested too deep
to parse (never answered), a task whose stop time cannot be converted to UTC
(never answered, and blocking crash recovery), answers carrying the wrong
transaction, and a reused transaction id answered as if it were the same command.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import running
from tests.bridge.test_commands import answers, metrotec_config, publish
from tests.support.mqtt import Mosquitto, Recorder


@pytest.fixture
async def metrotec_sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=1, metrotec_vehicles=3, speed=0, seed=4) as server:
        yield server


def task_body(vehicle: str, order_ref: str, **changes: Any) -> dict[str, Any]:
    return {
        "account": "tallinn",
        "vehicle": vehicle,
        "order_ref": order_ref,
        "latitude": 59.437,
        "longitude": 24.7536,
        "start_time": "2026-11-23T08:00:00Z",
        "stop_time": "2026-11-23T10:00:00Z",
        **changes,
    }


async def sentinel(mosquitto: Mosquitto, recorder: Recorder, transaction: str) -> None:
    """Wait until a refresh sent now is answered: whatever the bridge would have
    sent in reaction to earlier messages on its one message loop is out by then."""
    await publish(
        mosquitto,
        "fleet/bridge/request/refresh",
        json.dumps({"transaction": transaction}).encode(),
    )
    await recorder.wait_for(
        lambda: any(a["transaction"] == transaction for a in answers(recorder, "refresh")),
        timeout=30,
    )


async def test_a_bad_set_is_answered_once_and_the_bridge_never_answers_itself(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        mark = recorder.mark()
        await publish(mosquitto, f"fleet/tallinn/{vehicle}/set", b'{"lights":"ON","x":1}')
        await recorder.wait_for(
            lambda: any(m.topic.startswith("fleet/bridge/response/") for m in recorder.since(mark))
        )
        # Somebody else publishing on the reserved account's level: not a vehicle.
        await publish(mosquitto, "fleet/bridge/response/set", b'{"lights":"ON"}')
        await publish(mosquitto, "fleet/bridge/state/set", b'{"snapshot": true}')
        # A request named like the vehicle channel, answered where nobody listens
        # for commands.
        await publish(mosquitto, "fleet/bridge/request/set", b'{"transaction": "s"}')
        await sentinel(mosquitto, recorder, "after-set")
        responses = [
            m for m in recorder.since(mark, "fleet/bridge/response/") if "refresh" not in m.topic
        ]
    # (The test's own message on the reserved level is not an answer.)
    bodies = [json.loads(m.payload) for m in responses if m.payload != b'{"lights":"ON"}']
    # One answer for the bad set, one for the request named "set": nothing else.
    assert len(bodies) == 2, [m.topic for m in responses]
    bad_set, named_set = bodies
    assert bad_set["status"] == "error"
    assert bad_set["error"] == "x: unknown field"
    assert named_set["transaction"] == "s"
    assert named_set["error"].startswith("command: unknown command 'set'")
    assert metrotec_sim.metrotec.stats()["events"]["created"] == 0


async def test_a_request_nested_too_deep_is_answered_with_an_error(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    nested = "[" * 5000 + "]" * 5000
    deep = json.dumps({"transaction": "deep", "account": "tallinn", "vehicle": vehicle})
    deep = deep[:-1] + f', "state": {nested}}}'
    deep_object = '{"transaction": "deep-2", "x": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}"
    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        await publish(mosquitto, "fleet/bridge/request/lights", deep.encode())
        await publish(mosquitto, "fleet/bridge/request/lights", deep_object.encode())
        await publish(mosquitto, f"fleet/tallinn/{vehicle}/set", b'{"lights": ' + b"[" * 5000)
        await publish(mosquitto, "fleet/bridge/request/refresh", b"[" * 5000 + b"]" * 5000)
        await recorder.wait_for(
            lambda: (
                len(answers(recorder, "lights")) == 2
                and len(answers(recorder, "set")) == 1
                and len(answers(recorder, "refresh")) == 1
            )
        )
    lights = answers(recorder, "lights")
    # The transaction is read even from a request too deep to parse whole.
    assert [a["transaction"] for a in lights] == ["deep", "deep-2"]
    for answer in [*lights, *answers(recorder, "set"), *answers(recorder, "refresh")]:
        assert answer["status"] == "error"
        assert answer["error"].startswith("payload: nested too deeply"), answer["error"]
    assert metrotec_sim.metrotec.stats()["events"]["created"] == 0


async def test_a_task_time_out_of_range_is_refused_by_name_and_nothing_is_sent(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    cases = {
        "far": ("stop_time", {"stop_time": "9999-12-31T23:59:59-14:00"}),
        "early": ("start_time", {"start_time": "0001-01-01T00:00:00+14:00"}),
    }
    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        for transaction, (_, change) in cases.items():
            body = {**task_body(vehicle, f"R-{transaction}", **change), "transaction": transaction}
            await publish(mosquitto, "fleet/bridge/request/task/create", json.dumps(body).encode())
        update = {
            "transaction": "upd",
            "account": "tallinn",
            "order_ref": "R-far",
            "stop_time": "9999-12-31T23:59:59-14:00",
        }
        await publish(mosquitto, "fleet/bridge/request/task/update", json.dumps(update).encode())
        await recorder.wait_for(
            lambda: (
                len(answers(recorder, "task/create")) == 2
                and len(answers(recorder, "task/update")) == 1
            )
        )
    every = answers(recorder, "task/create") + answers(recorder, "task/update")
    by_transaction = {a["transaction"]: a for a in every}
    for transaction, (field, _) in {**cases, "upd": ("stop_time", {})}.items():
        answer = by_transaction[transaction]
        assert answer["status"] == "error"
        assert answer["error"].startswith(f"{field}: must be between"), answer["error"]
    assert metrotec_sim.metrotec.stats()["tasks"]["created"] == 0


async def test_each_delivery_of_a_known_order_is_answered_with_its_own_transaction(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[1]
    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        for transaction in ("T1", "T2", "T2"):
            body = {**task_body(vehicle, "ORDER-7"), "transaction": transaction}
            await publish(mosquitto, "fleet/bridge/request/task/create", json.dumps(body).encode())
        await recorder.wait_for(lambda: len(answers(recorder, "task/create")) == 3)
    first, second, third = answers(recorder, "task/create")
    assert [first["transaction"], second["transaction"], third["transaction"]] == [
        "T1",
        "T2",
        "T2",
    ]
    assert first["status"] == second["status"] == third["status"] == "ok"
    assert second["data"] == first["data"] == third["data"]
    assert metrotec_sim.metrotec.stats()["tasks"]["created"] == 1


async def test_a_reused_transaction_with_other_content_is_refused_naming_the_conflict(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    on = {"transaction": 77, "account": "tallinn", "vehicle": vehicle, "state": "ON"}
    async with running(metrotec_config(mosquitto, metrotec_sim, tmp_path)) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        await publish(mosquitto, "fleet/bridge/request/lights", json.dumps(on).encode())
        await recorder.wait_for(lambda: len(answers(recorder, "lights")) == 1)
        # The same id as text is the same id (documented: ids compare as text) ...
        off = {**on, "transaction": "77", "state": "OFF"}
        await publish(mosquitto, "fleet/bridge/request/lights", json.dumps(off).encode())
        # ... a retry of the very same command is not a conflict ...
        await publish(mosquitto, "fleet/bridge/request/lights", json.dumps(on).encode())
        # ... and another command under it is.
        update = {"transaction": "77", "account": "tallinn", "order_ref": "X"}
        update["status"] = "cancelled"
        await publish(mosquitto, "fleet/bridge/request/task/update", json.dumps(update).encode())
        task = {**task_body(vehicle, "ORDER-9"), "transaction": "t9"}
        await publish(mosquitto, "fleet/bridge/request/task/create", json.dumps(task).encode())
        other = {**task_body(vehicle, "ORDER-9", description="other"), "transaction": "t10"}
        await publish(mosquitto, "fleet/bridge/request/task/create", json.dumps(other).encode())
        await recorder.wait_for(
            lambda: (
                len(answers(recorder, "lights")) == 3
                and len(answers(recorder, "task/update")) == 1
                and len(answers(recorder, "task/create")) == 2
            )
        )
    first, conflict, retry = answers(recorder, "lights")
    assert first["status"] == "ok"
    assert first["transaction"] == "77"
    assert conflict["status"] == "error"
    assert conflict["transaction"] == "77"
    assert conflict["error"].startswith("transaction: '77' was already used for lights"), conflict
    assert retry == first
    (update_answer,) = answers(recorder, "task/update")
    assert update_answer["status"] == "error"
    assert update_answer["error"].startswith("transaction: '77' was already used for lights")
    created, clash = answers(recorder, "task/create")
    assert created["status"] == "ok"
    assert clash["status"] == "error"
    assert clash["transaction"] == "t10"
    assert clash["error"].startswith("order_ref: 'ORDER-9' was already used for another task")
    stats = metrotec_sim.metrotec.stats()
    assert stats["events"]["created"] == 1  # only the first ON
    assert stats["tasks"]["created"] == 1
    assert stats["tasks"]["updated"] == 0


def journal_entry(key: str, command: str, body: dict[str, Any], created_at: float) -> Any:
    from bridge.store import JournalEntry

    return JournalEntry(
        key=f"tallinn/{key}",
        command=command,
        account="tallinn",
        vehicle=body.get("vehicle"),
        order_ref=body.get("order_ref") if command == "task/create" else None,
        transaction_id=key,
        body=json.dumps(body),
        status="accepted",
        handle=None,
        response=None,
        created_at=created_at,
        updated_at=created_at,
    )


async def test_recovery_answers_an_entry_it_cannot_finish_and_goes_on(
    mosquitto: Mosquitto, recorder: Recorder, metrotec_sim: SimulatorServer, tmp_path: Path
) -> None:
    from bridge.store import Store

    vehicle = metrotec_sim.metrotec_world.ids()[0]
    config = metrotec_config(mosquitto, metrotec_sim, tmp_path)
    # What a crash left in the journal of a version that let the first through.
    bad = task_body(vehicle, "R-bad", stop_time="9999-12-31T23:59:59-14:00")
    lights = {"account": "tallinn", "vehicle": vehicle, "state": "ON"}
    gone = {"account": "oslo", "vehicle": vehicle, "state": "ON"}
    with Store(config.store.path) as store:
        await store.journal_accept(journal_entry("bad-task", "task/create", bad, 1.0))
        await store.journal_accept(journal_entry("lights-after", "lights", lights, 2.0))
        await store.journal_accept(
            journal_entry("other-account", "lights", gone, 3.0)._replace(
                key="oslo/other-account", account="oslo"
            )
        )
    async with running(config):
        await recorder.wait_for(
            lambda: (
                len(answers(recorder, "task/create")) == 1 and len(answers(recorder, "lights")) == 2
            )
        )
    (task_answer,) = answers(recorder, "task/create")
    assert task_answer["transaction"] == "bad-task"
    assert task_answer["status"] == "error"
    assert task_answer["error"].startswith("stop_time: must be between")
    by_transaction = {a["transaction"]: a for a in answers(recorder, "lights")}
    assert by_transaction["lights-after"]["status"] == "ok"
    assert by_transaction["other-account"]["error"].startswith("account: 'oslo' is no longer")
    assert metrotec_sim.metrotec.stats()["events"]["created"] == 1
    assert metrotec_sim.metrotec.stats()["tasks"]["created"] == 0
    with Store(config.store.path) as store:
        # Nothing left to finish (the lights are pending: followed up, answered).
        assert [e.key for e in await store.journal_open()] == ["tallinn/lights-after"]
        assert (await store.journal_open())[0].status == "pending"
        assert await store.journal_unanswered() == []


async def test_a_provider_bug_in_a_command_is_answered_and_closed(
    mosquitto: Mosquitto,
    recorder: Recorder,
    metrotec_sim: SimulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge.providers.metrotec import MetrotecProvider
    from bridge.store import Store

    async def broken(*_: object, **__: object) -> None:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(MetrotecProvider, "create_task", broken)
    vehicle = metrotec_sim.metrotec_world.ids()[0]
    config = metrotec_config(mosquitto, metrotec_sim, tmp_path)
    async with running(config) as bridge:
        await bridge.pollers["tallinn"].wait_polls(1)
        body = {**task_body(vehicle, "R-1"), "transaction": "bug"}
        await publish(mosquitto, "fleet/bridge/request/task/create", json.dumps(body).encode())
        await recorder.wait_for(lambda: len(answers(recorder, "task/create")) == 1)
    (answer,) = answers(recorder, "task/create")
    assert answer["transaction"] == "bug"
    assert answer["error"] == "command: failed: internal error (OverflowError)"
    with Store(config.store.path) as store:
        assert await store.journal_open() == []
