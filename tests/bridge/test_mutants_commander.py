"""The command path in one process, without a broker: what each command is
answered, what reaches the provider (the simulator), what the journal keeps and
what is retained on MQTT. Written for what mutation testing of
bridge/commander.py found untested (docs/mutants-webhooks-commander.md); the
suites with Mosquitto (test_commands.py, test_hostile_commands.py) cover the
same path end to end, at a second or more a test.

The commander, the pollers, the quota and the providers' clients are the
daemon's own; the broker is a sink of the test's own and the answers a list.
The simulator's clock is frozen and moved by the commander's own sleeps, so a
follow-up is decided, never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import poller_settings
from bridge.commander import Commander
from bridge.config import BridgeConfig
from bridge.errors import ProviderError, QuotaExhaustedError
from bridge.model import CommandResult, CommandStatus
from bridge.mqtt.commands import parse_command
from bridge.mqtt.publisher import Publisher
from bridge.mqtt.requests import RequestError
from bridge.mqtt.topics import Topics
from bridge.poller import AccountPoller
from bridge.providers import create_provider
from bridge.providers.metrotec import MetrotecProvider
from bridge.quota import QuotaBook
from bridge.simulator import SimulatorServer
from bridge.store import (
    DuplicateEntryError,
    JournalEntry,
    LeaseLostError,
    SqliteStore,
    StoreError,
)
from tests.bridge.test_mutants_publisher import Down
from tests.bridge.test_mutants_publisher import Sink as PublisherSink

START = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
TOPICS = Topics("fleet")
MT, SAM = "mt", "fleet"


class Sink(PublisherSink):
    """The broker: every message the publisher sends, in order."""

    def last(self, topic: str) -> tuple[dict[str, Any], bool] | None:
        for sent, payload, retain in reversed(self.sent):
            if sent == topic:
                return json.loads(payload), retain
        return None

    def topics(self) -> list[str]:
        return [topic for topic, _payload, _retain in self.sent]


@dataclass
class Answer:
    command: str
    response: dict[str, Any]
    key: str | None


@dataclass
class Desk:
    """One commander and what it touches."""

    server: SimulatorServer
    commander: Commander
    store: SqliteStore
    pollers: dict[str, AccountPoller]
    sink: Sink
    spare: dict[str, AccountPoller]
    answers: list[Answer] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def respond(self, command: str, response: dict[str, Any], key: str | None) -> None:
        self.answers.append(Answer(command, response, key))
        if key is not None:  # as the daemon does once the broker has the answer
            await self.store.journal_answered(key)
        self.answered.set()

    async def ask(self, name: str, body: dict[str, Any] | bytes) -> list[Answer]:
        """Send one command on `fleet/bridge/request/<name>`: the answers it got."""
        before = len(self.answers)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.commander.request(name, payload)
        return self.answers[before:]

    async def one(self, name: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
        answers = await self.ask(name, body)
        assert len(answers) == 1, answers
        assert answers[0].command == name
        return answers[0].response

    async def wait_answers(self, count: int) -> list[Answer]:
        async with asyncio.timeout(10):
            while len(self.answers) < count:
                self.answered.clear()
                await self.answered.wait()
        return self.answers

    async def journal(self, key: str) -> JournalEntry:
        entry = await self.store.journal_get(key)
        assert entry is not None, key
        return entry

    def hold_follow_ups(self) -> None:
        """Follow-ups wait at their first interval until cancelled."""

        async def never(seconds: float) -> None:
            await asyncio.Event().wait()

        self.commander._sleep = never

    async def take_over(self, account: str) -> None:
        """Hold an account another instance held (as the daemon does on a lease)."""
        poller = self.spare.pop(account)
        provider = poller.provider
        poller.publisher.register_account(account, provider.name, provider.capabilities)
        await poller.poll_once()
        self.pollers[account] = poller

    def mt(self, index: int = 0) -> str:
        return self.server.metrotec_world.ids()[index]

    def sam(self, index: int = 1) -> str:
        return self.server.world.ids()[index]

    def name(self, account: str, vehicle: str) -> str:
        return self.pollers[account].publisher.states(account)[vehicle].name

    async def settle(self) -> None:
        """Until every follow-up of the commander has ended."""
        async with asyncio.timeout(10):
            while self.commander._tasks:
                await asyncio.gather(*self.commander._tasks, return_exceptions=True)


ALLOW_ALL = [{"accounts": ["*"], "vehicles": ["*"], "commands": ["*"]}]


def bridge_config(
    server: SimulatorServer,
    tmp_path: Path,
    quotas: dict[str, dict[str, Any]] | None = None,
    **commands: Any,
) -> BridgeConfig:
    quotas = quotas or {}
    return BridgeConfig.model_validate(
        {
            "mqtt": {"host": "127.0.0.1", "port": 1},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": MT,
                    "provider": "metrotec",
                    "api_key": "demo-metrotec-key",
                    "base_url": server.metrotec_url,
                    **({"quota": quotas[MT]} if MT in quotas else {}),
                },
                {
                    "id": SAM,
                    "provider": "samsara",
                    "token": "demo-samsara-token",
                    "base_url": server.samsara_url,
                    **({"quota": quotas[SAM]} if SAM in quotas else {}),
                },
            ],
            "commands": {"allow": ALLOW_ALL, "lights_timeout": 30, **commands},
        }
    )


@contextlib.asynccontextmanager
async def desk(
    tmp_path: Path,
    *,
    held: Collection[str] = (MT, SAM),
    leader: bool = True,
    server: SimulatorServer | None = None,
    store: SqliteStore | None = None,
    poll: bool = True,
    quotas: dict[str, dict[str, Any]] | None = None,
    **commands: Any,
) -> AsyncIterator[Desk]:
    async with contextlib.AsyncExitStack() as stack:
        if server is None:
            server = await stack.enter_async_context(
                SimulatorServer(
                    vehicles=2,
                    metrotec_vehicles=3,
                    fleetize_vehicles=1,
                    telemax_vehicles=1,
                    tracksafe365_vehicles=1,
                    speed=0,
                    start=START,
                )
            )
        config = bridge_config(server, tmp_path, quotas, **commands)
        if store is None:
            store = SqliteStore(config.store.path)
            stack.push_async_callback(store.close)
        session = await stack.enter_async_context(aiohttp.ClientSession())
        sink = Sink()
        publisher = Publisher(sink, TOPICS, discovery=False, unavailable=Down)
        book = QuotaBook(store)
        pollers: dict[str, AccountPoller] = {}
        spare: dict[str, AccountPoller] = {}  # held by another instance, for a takeover
        for account in config.accounts:
            quota = book.quota(
                account.id, account.budgets(), account.scopes(), now=server.clock.now
            )
            provider = create_provider(
                account.provider, session, account.provider_settings(), quota
            )
            stack.push_async_callback(provider.close)
            poller = AccountPoller(
                poller_settings(account), provider, publisher, store, quota, now=server.clock.now
            )
            if account.id not in held:
                spare[account.id] = poller
                continue
            publisher.register_account(account.id, provider.name, provider.capabilities)
            if poll:
                await poller.poll_once()
            pollers[account.id] = poller

        async def sleep(seconds: float) -> None:
            # The commander's sleep: the simulated time passes at once, and the
            # follow-up still yields to the loop as a real sleep would.
            server.clock.advance(seconds)
            await asyncio.sleep(0)

        made: dict[str, Any] = {}

        async def respond(command: str, response: dict[str, Any], key: str | None) -> None:
            await made["desk"].respond(command, response, key)

        commander = Commander(
            config.commands,
            pollers,
            store,
            TOPICS,
            respond,
            redact=lambda text: text.replace("demo-metrotec-key", "**REDACTED**"),
            now=server.clock.now,
            sleep=sleep,
            configured=frozenset(a.id for a in config.accounts),
            leader=lambda: leader,
        )
        stack.push_async_callback(commander.close)
        made["desk"] = Desk(server, commander, store, pollers, sink, spare)
        yield made["desk"]


def error(transaction: str | None, message: str, **data: Any) -> dict[str, Any]:
    return {"status": "error", "data": data or None, "error": message, "transaction": transaction}


def ok(transaction: str | None, **data: Any) -> dict[str, Any]:
    return {"status": "ok", "data": data, "error": None, "transaction": transaction}


def task_body(desk: Desk, transaction: str, order_ref: str = "A-1", **more: Any) -> dict[str, Any]:
    return {
        "transaction": transaction,
        "account": MT,
        "vehicle": desk.mt(),
        "order_ref": order_ref,
        "latitude": 59.437,
        "longitude": 24.7536,
        "start_time": "2026-11-21T12:00:00Z",
        "stop_time": "2026-11-21T13:00:00Z",
        **more,
    }


def update_body(transaction: str, order_ref: str = "A-1", **more: Any) -> dict[str, Any]:
    return {
        "transaction": transaction,
        "account": MT,
        "order_ref": order_ref,
        "status": "cancelled",
        **more,
    }


# --- lights ---------------------------------------------------------------------------


async def test_lights_go_pending_then_confirmed_and_the_vehicle_shows_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with desk(tmp_path) as d:
        vid = d.mt()
        answer = await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": vid, "state": "ON"}
        )
        assert answer["status"] == "ok"
        assert answer["transaction"] == "L1"
        assert answer["data"]["state"] == "pending"
        entry = await d.journal(f"{MT}/L1")
        assert (entry.command, entry.account, entry.vehicle, entry.status) == (
            "lights",
            MT,
            vid,
            "pending",
        )
        assert entry.handle is not None
        lights = TOPICS.vehicle_lights(MT, vid)
        assert d.sink.last(lights) == (
            {"status": "pending", "requested": "ON", "at": "2026-11-21T10:00:00Z", "error": None},
            True,
        )
        await d.settle()
        confirmed = d.sink.last(lights)
        assert confirmed is not None
        assert confirmed[0]["status"] == "confirmed"
        assert confirmed[0]["requested"] == "ON"
        assert confirmed[0]["error"] is None
        assert confirmed[1] is True
        assert confirmed[0]["at"] > "2026-11-21T10:00:00Z"  # when it was confirmed
        assert (await d.journal(f"{MT}/L1")).status == "confirmed"
        assert d.server.metrotec.lights_on(vid) is True
        state = d.sink.last(TOPICS.vehicle_state(MT, vid))
        assert state is not None
        assert state[0]["lights_on"] is True
        assert d.pollers[MT].publisher.states(MT)[vid].lights_on is True
        assert d.commander.retained[lights]["status"] == "confirmed"
        # Followed up every 5 s: the device handles it 20 s after the request.
        assert d.server.clock.now() == datetime(2026, 11, 21, 10, 0, 20, tzinfo=UTC)
        # (The follow-up's own done callbacks ran before settle's gather returned.)
        assert [r.getMessage() for r in caplog.records] == []  # no error, no warning


async def test_lights_off_are_asked_for_off(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt(1)
        await d.one("lights", {"transaction": "L1", "account": MT, "vehicle": vid, "state": "ON"})
        await d.settle()
        await d.one("lights", {"transaction": "L2", "account": MT, "vehicle": vid, "state": "OFF"})
        await d.settle()
        assert d.server.metrotec.lights_on(vid) is False
        last = d.sink.last(TOPICS.vehicle_lights(MT, vid))
        assert last is not None
        assert last[0]["requested"] == "OFF"
        assert d.pollers[MT].publisher.states(MT)[vid].lights_on is False


async def test_lights_never_confirmed_fail_after_the_timeout_and_say_so(tmp_path: Path) -> None:
    async with desk(tmp_path, lights_timeout=12) as d:
        vid = d.mt()
        d.server.metrotec.events.handle_delay_s = 3600  # the device never gets to it
        await d.one("lights", {"transaction": "L1", "account": MT, "vehicle": vid, "state": "ON"})
        await d.settle()
        last = d.sink.last(TOPICS.vehicle_lights(MT, vid))
        assert last is not None
        assert last[0]["status"] == "failed"
        assert last[0]["error"] == "the provider did not confirm within 12 s"
        assert (await d.journal(f"{MT}/L1")).status == "failed"
        assert d.pollers[MT].publisher.states(MT)[vid].lights_on is None
        # Asked at 5 and 10 s; 15 s is past the deadline: no third ask.
        assert d.server.clock.now() == datetime(2026, 11, 21, 10, 0, 15, tzinfo=UTC)


async def test_a_follow_up_that_fails_once_asks_again(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt()
        await d.one("lights", {"transaction": "L1", "account": MT, "vehicle": vid, "state": "ON"})
        d.server.metrotec.fail_next(2, status=500)
        await d.settle()
        last = d.sink.last(TOPICS.vehicle_lights(MT, vid))
        assert last is not None
        assert last[0]["status"] == "confirmed"


async def test_a_lights_command_by_the_vehicles_name(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt(2)
        name = d.name(MT, vid)
        answer = await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": name, "state": "ON"}
        )
        assert answer["status"] == "ok"
        assert (await d.journal(f"{MT}/L1")).vehicle == vid
        await d.settle()
        assert d.server.metrotec.lights_on(vid) is True
        # The retained topics are the vehicle's, not its name's.
        assert d.sink.last(TOPICS.vehicle_lights(MT, vid)) is not None
        assert d.sink.last(TOPICS.vehicle_lights(MT, name)) is None


# --- snapshots ------------------------------------------------------------------------


async def test_a_snapshot_ends_with_its_url_on_both_topics(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.sam()
        answer = await d.one(
            "snapshot", {"transaction": "S1", "account": SAM, "vehicle": vid, "camera": "driver"}
        )
        assert answer["status"] == "ok"
        assert answer["data"]["state"] == "pending"
        snapshot = TOPICS.vehicle_snapshot(SAM, vid)
        first = d.sink.last(snapshot)
        assert first == (
            {
                "status": "pending",
                "camera": "driver",
                "url": None,
                "at": "2026-11-21T10:00:00Z",
                "error": None,
            },
            True,
        )
        assert d.sink.last(f"{snapshot}/url") is None  # never a pending or empty URL
        await d.settle()
        done = d.sink.last(snapshot)
        assert done is not None
        assert done[0]["status"] == "confirmed"
        url = done[0]["url"]
        assert url.startswith(d.server.samsara_url)
        assert d.sink.last(f"{snapshot}/url") == ({"url": url}, True)
        assert d.commander.retained[f"{snapshot}/url"] == {"url": url}
        assert (await d.journal(f"{SAM}/S1")).status == "confirmed"
        # Followed up every 3 s: ready 30 s after the request.
        assert d.server.clock.now() == datetime(2026, 11, 21, 10, 0, 30, tzinfo=UTC)


async def test_a_snapshot_not_ready_in_time_fails(tmp_path: Path) -> None:
    async with desk(tmp_path, snapshot_timeout=10) as d:
        vid = d.sam()
        await d.one("snapshot", {"transaction": "S1", "account": SAM, "vehicle": vid})
        await d.settle()
        done = d.sink.last(TOPICS.vehicle_snapshot(SAM, vid))
        assert done is not None
        assert done[0]["status"] == "failed"
        assert done[0]["camera"] == "road"
        assert done[0]["error"] == "the provider did not confirm within 10 s"
        assert d.sink.last(f"{TOPICS.vehicle_snapshot(SAM, vid)}/url") is None


# --- tasks ----------------------------------------------------------------------------


async def test_a_task_is_created_once_per_order_ref_and_each_delivery_keeps_its_id(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path) as d:
        body = task_body(d, "T1", description="Deliver pallets", contact_name="Mari")
        first = await d.one("task/create", body)
        assert first["status"] == "ok"
        assert first["transaction"] == "T1"
        assert first["data"]["state"] == "confirmed"
        tasks = list(d.server.metrotec.tasks)
        assert len(tasks) == 1
        assert d.pollers[MT]._wake.is_set()  # the active-tasks sensor follows at the next poll
        again = await d.one("task/create", {**body, "transaction": "T2"})
        assert again == {**first, "transaction": "T2"}
        same = await d.one("task/create", body)
        assert same == first
        assert len(list(d.server.metrotec.tasks)) == 1
        entry = await d.journal(f"{MT}/T1")
        assert (entry.order_ref, entry.status, entry.vehicle) == ("A-1", "confirmed", d.mt())
        assert await d.store.journal_get(f"{MT}/T2") is None


async def test_a_task_update_changes_the_task(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        await d.one("task/create", task_body(d, "T1"))
        answer = await d.one("task/update", update_body("U1", description="not needed"))
        assert answer["status"] == "ok", answer
        assert answer["data"]["state"] == "confirmed"
        (task,) = list(d.server.metrotec.tasks)
        assert task.task_description == "not needed"
        missing = await d.one(
            "task/update",
            {"transaction": "U2", "account": MT, "order_ref": "nope", "status": "cancelled"},
        )
        assert missing["status"] == "error"
        assert "nope" in missing["error"]
        assert (await d.journal(f"{MT}/U2")).status == "failed"


# --- refusals -------------------------------------------------------------------------


async def test_each_refusal_names_its_field(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt()
        long = "x" * 100  # a vehicle reference may be long; an account id is 64 at most
        cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            (
                "lights",
                {"transaction": "R1", "account": "nope", "vehicle": vid, "state": "ON"},
                error("R1", "account: unknown account 'nope'", field="account"),
            ),
            (
                "lights",
                {"transaction": "R2", "account": MT, "vehicle": long, "state": "ON"},
                error(
                    "R2",
                    f"vehicle: unknown vehicle '{'x' * 64}' in account 'mt'",
                    field="vehicle",
                ),
            ),
            (
                "lights",
                {"transaction": "R3", "account": SAM, "vehicle": d.sam(), "state": "ON"},
                error("R3", "command: samsara cannot do 'lights'", field="command"),
            ),
            (
                "snapshot",
                {"transaction": "R4", "account": MT, "vehicle": vid},
                error("R4", "command: metrotec cannot do 'snapshot'", field="command"),
            ),
            (
                "lights",
                {"transaction": "R5", "account": MT, "vehicle": vid, "state": "on!"},
                error("R5", "state: input should be 'ON' or 'OFF'", field="state"),
            ),
        ]
        for name, body, expected in cases:
            assert await d.one(name, body) == expected, body
        assert [e.key for e in await d.store.journal_open()] == []
        assert list(d.server.metrotec.tasks) == []
        assert d.server.metrotec.lights_on(vid) is False


async def test_commands_allow_by_name_id_and_group(tmp_path: Path) -> None:
    async with desk(tmp_path) as probe:
        ids = [probe.mt(i) for i in range(3)]
        names = [probe.name(MT, vid) for vid in ids]
    allow = [
        {"accounts": [MT], "vehicles": [names[0]], "commands": ["lights"]},
        {"accounts": [MT], "vehicles": ["group:yard"], "commands": ["lights"]},
        {"accounts": [MT], "vehicles": ["*"], "commands": ["task/create"]},
    ]
    async with desk(tmp_path / "2", allow=allow, groups={"yard": [ids[1]]}) as d:
        refused = error(
            None,
            "command: 'lights' is not allowed for this vehicle by the bridge's "
            "configuration (commands.allow)",
            field="command",
        )
        for index, allowed in ((0, True), (1, True), (2, False)):
            answer = await d.one("lights", {"account": MT, "vehicle": ids[index], "state": "ON"})
            if allowed:
                assert answer["status"] == "ok", (index, answer)
            else:
                assert answer == refused
        update = await d.one(
            "task/update", {"account": MT, "order_ref": "A", "status": "cancelled"}
        )
        assert update["error"] == (
            "command: 'task/update' is not allowed for this vehicle by the bridge's "
            "configuration (commands.allow)"
        )


async def test_a_transaction_reused_for_something_else_is_refused(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt()
        await d.one("lights", {"transaction": "X1", "account": MT, "vehicle": vid, "state": "ON"})
        other_body = await d.one(
            "lights", {"transaction": "X1", "account": MT, "vehicle": vid, "state": "OFF"}
        )
        assert other_body == error(
            "X1",
            "transaction: 'X1' was already used for lights with different content "
            "(send this command with a new transaction id)",
            field="transaction",
        )
        other_command = await d.one("task/create", task_body(d, "X1"))
        assert other_command["error"].startswith("transaction: 'X1' was already used for lights ")
        other_account = await d.one(
            "snapshot", {"transaction": "X1", "account": SAM, "vehicle": d.sam()}
        )
        assert other_account == error(
            "X1",
            "transaction: 'X1' was already used for lights in account 'mt' with different "
            "content (send this command with a new transaction id)",
            field="transaction",
        )
        assert list(d.server.metrotec.tasks) == []
        long = "t" * 80
        await d.one("lights", {"transaction": long, "account": MT, "vehicle": vid, "state": "ON"})
        again = await d.one(
            "lights", {"transaction": long, "account": MT, "vehicle": vid, "state": "OFF"}
        )
        assert again["error"].startswith(f"transaction: '{'t' * 64}' was already used")


async def test_an_order_ref_reused_with_other_content_is_refused(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        await d.one("task/create", task_body(d, "T1", order_ref="B" * 70))
        answer = await d.one("task/create", task_body(d, "T2", order_ref="B" * 70, latitude=58.0))
        assert answer == error(
            "T2",
            f"order_ref: '{'B' * 64}' was already used for another task with different content "
            "(a task's order_ref is its identity: use a new one)",
            field="order_ref",
        )
        assert len(list(d.server.metrotec.tasks)) == 1
        assert await d.store.journal_get(f"{MT}/T2") is None


# --- provider failures ----------------------------------------------------------------


async def test_a_provider_error_is_answered_redacted_and_closed(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        d.server.metrotec.fail_next(
            5, status=400, body='{"detail": "key demo-metrotec-key has no write access"}'
        )
        answer = await d.one(
            "lights", {"transaction": "P1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        assert answer["status"] == "error"
        assert answer["transaction"] == "P1"
        assert "has no write access" in answer["error"]
        assert "demo-metrotec-key" not in json.dumps(answer)
        assert "**REDACTED**" in answer["error"]
        entry = await d.journal(f"{MT}/P1")
        assert entry.status == "failed"
        assert entry.response is not None
        assert json.loads(entry.response) == answer
        last = d.sink.last(TOPICS.vehicle_lights(MT, d.mt()))
        assert last is not None
        assert last[0]["status"] == "failed"
        assert d.pollers[MT].publisher.states(MT)[d.mt()].lights_on is None


async def test_a_spent_budget_says_which_and_until_when(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:
        until = datetime(2026, 11, 21, 10, 5, tzinfo=UTC)

        async def spent(*args: object) -> CommandResult:
            raise QuotaExhaustedError("2 calls a minute, spent", "commands", until, 300.0)

        monkeypatch.setattr(MetrotecProvider, "set_lights", spent)
        answer = await d.one(
            "lights", {"transaction": "Q1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        assert answer == error(
            "Q1",
            "not sent: 2 calls a minute, spent",
            budget="commands",
            available_at="2026-11-21T10:05:00Z",
        )
        assert (await d.journal(f"{MT}/Q1")).status == "failed"


async def test_an_unexpected_failure_is_answered_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with desk(tmp_path) as d:

        async def broken(*args: object) -> CommandResult:
            raise RuntimeError("bug near demo-metrotec-key")

        monkeypatch.setattr(MetrotecProvider, "create_task", broken)
        with caplog.at_level(logging.ERROR, logger="bridge.commander"):
            answer = await d.one("task/create", task_body(d, "B1"))
        assert answer == error("B1", "command: failed: internal error (RuntimeError)")
        entry = await d.journal(f"{MT}/B1")
        assert entry.status == "failed"
        assert json.loads(entry.response or "") == answer
        (record,) = [r for r in caplog.records if r.name == "bridge.commander"]
        assert record.levelno == logging.ERROR
        assert record.getMessage() == (
            "command failed unexpectedly: RuntimeError('bug near **REDACTED**')"
        )
        assert record.exc_info is not None
        # Nothing is left open for the recovery to trip over.
        assert await d.store.journal_open() == []


async def test_a_provider_answer_that_is_not_an_error_still_reaches_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:

        async def refused(*args: object) -> CommandResult:
            return CommandResult(CommandStatus.FAILED, data={"code": 7})

        monkeypatch.setattr(MetrotecProvider, "create_task", refused)
        answer = await d.one("task/create", task_body(d, "F1"))
        assert answer == error("F1", "failed", code=7)
        assert not d.pollers[MT]._wake.is_set()  # a failed task changes no sensor

        async def provider_error(*args: object) -> CommandResult:
            raise ProviderError("metrotec: 503")

        monkeypatch.setattr(MetrotecProvider, "create_task", provider_error)
        answer = await d.one("task/create", task_body(d, "F2", order_ref="A-2"))
        assert answer == error("F2", "metrotec: 503")


# --- the store ------------------------------------------------------------------------


async def test_a_command_the_journal_cannot_take_is_refused_and_the_error_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:

        async def full(entry: JournalEntry) -> None:
            raise StoreError("disk full")

        monkeypatch.setattr(d.store, "journal_accept", full)
        body = {"transaction": "D1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        with pytest.raises(StoreError):
            await d.commander.request("lights", json.dumps(body).encode())
        assert [(a.command, a.response, a.key) for a in d.answers] == [
            ("lights", error("D1", "command: not accepted: disk full"), None)
        ]
        assert d.server.metrotec.lights_on(d.mt()) is False
        assert d.commander._running == {}


async def test_a_command_for_an_account_held_nowhere_is_refused_by_the_leader_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for leader, expected in ((True, 1), (False, 0)):
        async with desk(tmp_path / str(leader), held=(MT,), leader=leader) as d:

            async def full(entry: JournalEntry) -> None:
                raise StoreError("disk full")

            monkeypatch.setattr(d.store, "journal_accept", full)
            body = {"transaction": "D1", "account": SAM, "vehicle": "v", "camera": "road"}
            with pytest.raises(StoreError):
                await d.commander.request("snapshot", json.dumps(body).encode())
            assert len(d.answers) == expected


async def test_a_lost_lease_leaves_the_command_to_the_new_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with desk(tmp_path) as d:
        gate = Gate()

        async def taken(*args: object) -> CommandResult:
            await gate.passing()
            raise LeaseLostError(MT)

        monkeypatch.setattr(MetrotecProvider, "create_task", taken)
        first = asyncio.ensure_future(d.ask("task/create", task_body(d, "T1")))
        await asyncio.wait_for(gate.entered.wait(), 10)
        again = asyncio.ensure_future(d.ask("task/create", task_body(d, "T1")))
        with caplog.at_level(logging.INFO, logger="bridge.commander"):
            gate.open.set()
            # Neither the first delivery nor the one waiting for it is left hanging.
            async with asyncio.timeout(10):
                await asyncio.wait([first, again])
        assert first.result() == []
        assert d.answers == []
        assert (await d.journal(f"{MT}/T1")).status == "accepted"
        assert "task/create for mt left to the account's new holder" in [
            r.getMessage() for r in caplog.records
        ]
        # Nothing is left running here: a release does not wait for it.
        async with asyncio.timeout(3):
            await d.commander.release([MT], timeout=30)


# --- several instances ----------------------------------------------------------------


async def test_an_instance_that_does_not_lead_answers_only_its_accounts(tmp_path: Path) -> None:
    async with desk(tmp_path, held=(MT,), leader=False) as d:
        assert await d.ask("lights", b"{not json") == []
        assert await d.ask("lights", {"account": "nope", "vehicle": "v", "state": "ON"}) == []
        # Its own account's refusals are its to answer.
        answer = await d.one("lights", {"account": MT, "vehicle": "ghost", "state": "ON"})
        assert answer["error"] == "vehicle: unknown vehicle 'ghost' in account 'mt'"
        # /set: a bad payload for an account held here is answered, for one held
        # elsewhere not (its holder answers), for an unknown one by the leader.
        await d.commander.set(MT, d.mt(), b"{not json")
        assert len(d.answers) == 2
        assert d.answers[-1].command == "set"
        await d.commander.set(SAM, "v", b"{not json")
        await d.commander.set("nope", "v", b"{not json")
        assert len(d.answers) == 2
    async with desk(tmp_path / "2", held=(MT,), leader=True) as d:
        await d.commander.set("nope", "v", b'{"transaction": "W0", "lights": 1')
        assert [(a.command, a.response["transaction"]) for a in d.answers] == [("set", "W0")]
        assert d.answers[-1].response["error"].startswith("payload: not valid JSON")
        await d.commander.set(SAM, "v", b"{not json")  # held elsewhere: its holder answers
        assert len(d.answers) == 1
        # A /set payload that names a command answers on that command's topic.
        await d.commander.set(MT, d.mt(), b'{"transaction": "W1", "lights": "maybe"}')
        assert d.answers[-1].command == "lights"
        assert d.answers[-1].response == error(
            "W1", "state: input should be 'ON' or 'OFF'", field="state"
        )
        answer = await d.one("lights", b"{not json")
        assert answer["error"].startswith("payload: not valid JSON")
        assert answer["data"] == {"field": "payload"}


async def test_set_switches_the_lights(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt()
        await d.commander.set(MT, vid, b'{"transaction": "W1", "lights": "ON"}')
        (answer,) = d.answers
        assert answer.command == "lights"
        assert answer.response["transaction"] == "W1"
        assert answer.key == f"{MT}/W1"
        await d.settle()
        assert d.server.metrotec.lights_on(vid) is True


async def test_a_command_journalled_elsewhere_is_carried_out_by_its_holder(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path) as holder:
        vid = holder.mt()
        async with desk(tmp_path, held=(SAM,), server=holder.server, store=holder.store) as other:
            body = {"transaction": "E1", "account": MT, "vehicle": vid, "state": "ON"}
            assert await other.ask("lights", body) == []
            entry = await other.journal(f"{MT}/E1")
            assert (entry.status, entry.vehicle) == ("accepted", None)
            assert other.server.metrotec.lights_on(vid) is False
            # Without a transaction id twins cannot be told apart: not taken here.
            assert await other.ask("lights", {**body, "transaction": None}) == []
            assert [e.key for e in await other.store.journal_open()] == [f"{MT}/E1"]
            # A second delivery to the instance that journalled it: still silent.
            assert await other.ask("lights", body) == []
            lights = {k: v for k, v in body.items() if k != "transaction"}
            command = parse_command("lights", lights, "E2")
            assert await other.commander.execute(command) == ok("E2", state="accepted")
        await holder.commander.pick_up()
        (answer,) = [a for a in holder.answers if a.key == f"{MT}/E1"]
        assert answer.command == "lights"
        assert answer.response["status"] == "ok"
        assert (await holder.journal(f"{MT}/E1")).vehicle is None
        await holder.settle()
        assert holder.server.metrotec.lights_on(vid) is True
        assert (await holder.journal(f"{MT}/E1")).status == "confirmed"


async def test_a_command_journalled_elsewhere_for_a_vehicle_not_there_fails(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path) as holder:
        async with desk(tmp_path, held=(), server=holder.server, store=holder.store) as other:
            body = {"transaction": "E1", "account": MT, "vehicle": "ghost", "state": "ON"}
            assert await other.ask("lights", body) == []
        await holder.commander.pick_up()
        (answer,) = holder.answers
        assert answer.response == error(
            "E1", "vehicle: unknown vehicle 'ghost' in account 'mt'", field="vehicle"
        )
        assert answer.key == f"{MT}/E1"
        assert answer.command == "lights"
        entry = await holder.journal(f"{MT}/E1")
        assert entry.status == "failed"
        assert json.loads(entry.response or "") == answer.response  # a redelivery gets it


# --- after a restart ------------------------------------------------------------------


def journalled(
    desk: Desk, tid: str, payload: dict[str, Any], *, ago: float = 0, **fields: Any
) -> JournalEntry:
    """A journal entry as an earlier run left it (accepted, never sent)."""
    at = desk.server.clock.now().timestamp() - ago
    name = fields.get("command", "lights")
    payload = {k: v for k, v in payload.items() if k != "transaction"}  # the envelope's
    try:  # the body as the commander journals it
        body = parse_command(name, dict(payload), tid).payload.model_dump_json()
    except RequestError:
        body = json.dumps(payload)  # one an older version accepted
    values: dict[str, Any] = {
        "key": f"{fields.get('account', MT)}/{tid}",
        "command": "lights",
        "account": MT,
        "vehicle": desk.mt(),
        "order_ref": None,
        "transaction_id": tid,
        "body": body,
        "status": "accepted",
        "handle": None,
        "response": None,
        "created_at": at,
        "updated_at": at,
    }
    return JournalEntry(**{**values, **fields})


async def test_a_restart_sends_answers_again_and_finishes_what_was_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with desk(tmp_path, held=()) as first:
        server, store = first.server, first.store
        vid = first.mt()
        lights = {"account": MT, "vehicle": vid, "state": "ON"}
        # Another instance's accounts come first in the journal: skipped, not the end.
        sam = {"account": SAM, "vehicle": first.sam(), "camera": "road"}
        await store.journal_accept(
            journalled(first, "B1", sam, ago=20, account=SAM, command="snapshot")
        )
        await store.journal_accept(
            journalled(first, "B2", sam, ago=20, account=SAM, command="snapshot")
        )
        await store.journal_update(f"{SAM}/B2", "confirmed", response=json.dumps(ok("B2")))
        await store.journal_accept(journalled(first, "A1", lights, ago=10))  # never sent
        await store.journal_accept(journalled(first, "A2", {"nonsense": 1}))  # an older body
        await store.journal_accept(journalled(first, "A3", lights))
        answered = ok("A3", state="confirmed")
        await store.journal_update(f"{MT}/A3", "confirmed", response=json.dumps(answered))
        await store.journal_accept(journalled(first, "A4", lights, account="gone"))
        await store.journal_accept(journalled(first, "A6", lights, body="{not json"))
        async with desk(tmp_path, server=server, store=store, held=(MT,)) as second:
            with caplog.at_level(logging.INFO, logger="bridge.commander"):
                await second.commander.resume([MT, "gone"])
            answers = {a.key: a for a in second.answers}
            assert {a.command for a in second.answers} == {"lights"}
            await second.settle()
            assert server.metrotec.lights_on(vid) is True
            # Each answer was sent once: a second recovery sends none of them again.
            await second.commander.resume([MT, "gone"])
            assert len(second.answers) == len(answers)
            # A redelivery after the recovery gets the first answer, no second effect.
            again = await second.one("lights", {**lights, "transaction": "A1"})
            assert again == answers[f"{MT}/A1"].response
        assert set(answers) == {f"{MT}/A1", f"{MT}/A2", f"{MT}/A3", "gone/A4", f"{MT}/A6"}
        assert answers[f"{MT}/A3"].response == answered  # sent again as it was
        assert answers[f"{MT}/A1"].response == ok("A1", state="pending")
        assert answers[f"{MT}/A2"].response == error(
            "A2", "account: field required", field="account"
        )
        assert answers["gone/A4"].response == error("A4", "account: 'gone' is no longer configured")
        assert answers[f"{MT}/A6"].response == error(
            "A6", "command: failed: internal error (JSONDecodeError)"
        )
        for key, answer in answers.items():
            assert key is not None
            entry = await store.journal_get(key)
            assert entry is not None
            assert entry.response is not None
            assert json.loads(entry.response) == answer.response
        for key in ("gone/A4", f"{MT}/A2", f"{MT}/A6"):
            assert (await first.journal(key)).status == "failed"
        # Not one of the accounts resumed: left as they were.
        assert (await first.journal(f"{SAM}/B1")).status == "accepted"
        assert [e.key for e in await store.journal_unanswered()] == [f"{SAM}/B2"]
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert "Sending the answer to lights mt/A3 again" in lines
        assert "Carrying out lights mt/A1 from the journal" in lines


async def test_a_stale_read_of_the_journal_does_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt()
        await d.one("lights", {"transaction": "L1", "account": MT, "vehicle": vid, "state": "ON"})
        stale = await d.store.journal_open()  # pending, as a recovery read it
        await d.settle()  # meanwhile the follow-up confirmed it
        gone = journalled(d, "G1", {"account": MT, "vehicle": vid, "state": "OFF"})

        async def as_read() -> list[JournalEntry]:
            return [*stale, gone]  # and one no longer in the journal at all

        monkeypatch.setattr(d.store, "journal_open", as_read)
        events = len(list(d.server.metrotec.events.of(vid)))
        await d.commander.resume()
        assert d.commander._tasks == set()  # no second follow-up
        assert len(list(d.server.metrotec.events.of(vid))) == events
        assert len(d.answers) == 1
        assert d.server.metrotec.lights_on(vid) is True


async def test_a_restart_follows_up_what_the_provider_had_accepted(tmp_path: Path) -> None:
    async with desk(tmp_path) as first:
        vid = first.mt()
        await first.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": vid, "state": "ON"}
        )
        await first.commander.close()  # the process ends before the device confirmed
        assert (await first.journal(f"{MT}/L1")).status == "pending"
        async with desk(tmp_path, server=first.server, store=first.store) as second:
            await second.commander.resume()
            await second.settle()
            assert (await second.journal(f"{MT}/L1")).status == "confirmed"
            last = second.sink.last(TOPICS.vehicle_lights(MT, vid))
            assert last is not None
            assert last[0]["status"] == "confirmed"


async def test_a_release_stops_the_follow_ups_of_the_accounts_given(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        d.server.metrotec.events.handle_delay_s = 3600

        d.hold_follow_ups()
        await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        await d.one("snapshot", {"transaction": "S1", "account": SAM, "vehicle": d.sam()})
        assert len(d.commander._tasks) == 2
        await d.commander.release([MT])
        assert len(d.commander._tasks) == 1
        assert (await d.journal(f"{MT}/L1")).status == "pending"  # the next holder goes on
        await d.commander.release([SAM])
        assert d.commander._tasks == set()


# --- the first run's survivors (docs/mutants-webhooks-commander.md) -------------------


class Gate:
    """Holds a provider call until the test opens it."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()

    async def passing(self) -> None:
        self.entered.set()
        await self.open.wait()


def gated(monkeypatch: pytest.MonkeyPatch, method: str) -> Gate:
    gate = Gate()
    original = getattr(MetrotecProvider, method)

    async def held(self: MetrotecProvider, *args: Any) -> CommandResult:
        await gate.passing()
        result: CommandResult = await original(self, *args)
        return result

    monkeypatch.setattr(MetrotecProvider, method, held)
    return gate


def on_done(task: asyncio.Future[Any], read: Callable[[], Any]) -> list[Any]:
    """What `read` gives the moment `task` ends: an order of events, observed
    without a sleep (done callbacks run before anything else resumes)."""
    seen: list[Any] = []
    task.add_done_callback(lambda _task: seen.append(read()))
    return seen


async def test_a_task_carries_every_field_and_an_update_every_change(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        body = task_body(
            d,
            "T1",
            description="Deliver pallets",
            address="Peterburi tee 2",
            contact_name="Mari",
            contact_phone="+372 5555 0101",
        )
        assert (await d.one("task/create", body))["status"] == "ok"
        (task,) = list(d.server.metrotec.tasks)
        assert (task.task_description, task.task_address, task.order_details) == (
            "Deliver pallets",
            "Peterburi tee 2",
            "Mari, +372 5555 0101",
        )
        assert task.object_id == d.mt()
        other = d.mt(1)
        answer = await d.one(
            "task/update",
            update_body(
                "U1",
                start_time="2026-11-21T14:00:00Z",
                stop_time="2026-11-21T15:00:00Z",
                vehicle=d.name(MT, other),  # by name: sent as the vehicle's id
            ),
        )
        assert answer["status"] == "ok"
        (task,) = list(d.server.metrotec.tasks)
        assert task.object_id == other
        assert task.start_time == int(datetime(2026, 11, 21, 14, tzinfo=UTC).timestamp() * 1000)
        assert task.stop_time == int(datetime(2026, 11, 21, 15, tzinfo=UTC).timestamp() * 1000)
        assert task.open is False  # cancelled


async def test_commands_spend_the_reserve_that_polls_may_not(tmp_path: Path) -> None:
    # Half of each budget is kept for commands; the polls' half is spent.
    quotas = {
        MT: {"reserve": 0.5, "budgets": {"per_account": {"limit": 40, "period": 3600}}},
        SAM: {"reserve": 0.5, "budgets": {"per_token": {"limit": 40, "period": 3600}}},
    }
    async with desk(tmp_path, quotas=quotas) as d:
        for account in (MT, SAM):
            quota = d.pollers[account].quota
            while quota.check("spent") is None:
                await quota.completed(await quota.acquire("spent"))
        await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        await d.one("snapshot", {"transaction": "S1", "account": SAM, "vehicle": d.sam()})
        await d.one("task/create", task_body(d, "T1"))
        update = {"transaction": "U1", "account": MT, "order_ref": "A-1", "status": "cancelled"}
        assert (await d.one("task/update", update))["status"] == "ok"
        await d.settle()
        lights = d.sink.last(TOPICS.vehicle_lights(MT, d.mt()))
        snapshot = d.sink.last(TOPICS.vehicle_snapshot(SAM, d.sam()))
        assert lights is not None
        assert lights[0]["status"] == "confirmed"
        assert snapshot is not None
        assert snapshot[0]["status"] == "confirmed"
        assert len(list(d.server.metrotec.tasks)) == 1


async def test_a_follow_up_asks_at_its_deadline_and_not_after(tmp_path: Path) -> None:
    # The device handles the event 20 s after the request; the deadline is 15 s.
    async with desk(tmp_path, lights_timeout=15) as d:
        await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        await d.settle()
        last = d.sink.last(TOPICS.vehicle_lights(MT, d.mt()))
        assert last is not None
        assert last[0]["status"] == "failed"
        assert d.server.clock.now() == datetime(2026, 11, 21, 10, 0, 15, tzinfo=UTC)


async def test_a_confirmed_answer_with_a_handle_is_not_followed_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:

        async def at_once(*args: object) -> CommandResult:
            return CommandResult(CommandStatus.CONFIRMED, handle="42")

        monkeypatch.setattr(MetrotecProvider, "set_lights", at_once)
        answer = await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        assert answer == ok("L1", state="confirmed")
        await d.settle()
        topic = TOPICS.vehicle_lights(MT, d.mt())
        assert [t for t in d.sink.topics() if t == topic] == [topic]  # no follow-up said more
        assert d.server.clock.now() == START  # and nothing was waited for


async def test_a_vehicle_gone_while_followed_up_is_still_asked_about(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt()
        await d.one("lights", {"transaction": "L1", "account": MT, "vehicle": vid, "state": "ON"})
        await d.pollers[MT].publisher.vehicles_removed(MT, [vid])
        await d.settle()
        last = d.sink.last(TOPICS.vehicle_lights(MT, vid))
        assert last is not None
        assert last[0]["status"] == "confirmed"
        assert d.server.metrotec.lights_on(vid) is True


async def test_a_redelivery_while_the_first_is_under_way_gets_the_same_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:
        gate = gated(monkeypatch, "create_task")
        first = asyncio.ensure_future(d.ask("task/create", task_body(d, "T1")))
        await asyncio.wait_for(gate.entered.wait(), 10)
        # The same transaction again, and the same order_ref under another one.
        again = asyncio.ensure_future(d.ask("task/create", task_body(d, "T1")))
        other = asyncio.ensure_future(d.ask("task/create", task_body(d, "T2")))
        gate.open.set()
        async with asyncio.timeout(10):
            await asyncio.gather(first, again, other)
        # The journalled answer first; the two repeats waited for it.
        assert [a.key for a in d.answers] == [f"{MT}/T1", None, None]
        ones = [a.response for a in d.answers if a.response["transaction"] == "T1"]
        (three,) = [a.response for a in d.answers if a.response["transaction"] == "T2"]
        assert len(ones) == 2
        assert ones[0]["status"] == "ok"
        assert ones[1] == ones[0]
        assert three == {**ones[0], "transaction": "T2"}
        assert len(list(d.server.metrotec.tasks)) == 1


async def test_a_redelivery_journalled_elsewhere_is_carried_out_once_here(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path) as holder:
        async with desk(tmp_path, held=(SAM,), server=holder.server, store=holder.store) as other:
            assert await other.ask("task/create", task_body(holder, "T1")) == []
        # The holder reads the same delivery: it carries it out and answers once.
        (answer,) = await holder.ask("task/create", task_body(holder, "T1"))
        assert answer.key == f"{MT}/T1"
        assert answer.response["status"] == "ok"
        assert answer.response["transaction"] == "T1"
        assert len(list(holder.server.metrotec.tasks)) == 1
        # Its order_ref under another transaction, while none is under way: the first answer.
        assert await holder.one("task/create", task_body(holder, "T2")) == {
            **answer.response,
            "transaction": "T2",
        }


async def test_an_order_ref_journalled_elsewhere_and_not_yet_done_says_so(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path) as holder:
        async with desk(tmp_path, held=(SAM,), server=holder.server, store=holder.store) as other:
            assert await other.ask("task/create", task_body(holder, "T1")) == []
        answer = await holder.one("task/create", task_body(holder, "T2"))
        assert answer == error("T2", "command: already accepted, being finished")
        assert list(holder.server.metrotec.tasks) == []


@contextlib.asynccontextmanager
async def recovering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Desk, Gate, asyncio.Future[None], dict[str, Any]]]:
    """A restart recovering task T1 that an earlier run accepted, held at the
    provider until the gate opens."""
    async with desk(tmp_path, held=()) as first:
        body = task_body(first, "T1")
        await first.store.journal_accept(journalled(first, "T1", body, command="task/create"))
        async with desk(tmp_path, server=first.server, store=first.store) as d:
            gate = gated(monkeypatch, "create_task")
            recovery = asyncio.ensure_future(d.commander.resume())
            await asyncio.wait_for(gate.entered.wait(), 10)
            yield d, gate, recovery, body


async def test_a_redelivery_of_a_command_being_recovered_is_left_to_the_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recovering(tmp_path, monkeypatch) as (d, gate, recovery, body):
        assert await d.ask("task/create", body) == []  # the recovery answers it
        gate.open.set()
        await asyncio.wait_for(recovery, 10)
        (answer,) = d.answers
        assert answer.response["status"] == "ok"
        assert len(list(d.server.metrotec.tasks)) == 1


async def test_a_command_journalled_elsewhere_waits_for_the_holders_first_poll(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path, held=(SAM,)) as other:
        vid = other.mt()
        body = {"transaction": "E1", "account": MT, "vehicle": vid, "state": "ON"}
        assert await other.ask("lights", body) == []
        async with desk(tmp_path, server=other.server, store=other.store, poll=False) as holder:
            picking = asyncio.ensure_future(holder.commander.pick_up())
            polling = asyncio.ensure_future(holder.pollers[MT].poll_once())
            # No vehicles known yet: it waits for them, answering after the poll.
            after_poll = on_done(picking, polling.done)
            async with asyncio.timeout(10):
                await asyncio.gather(picking, polling)
            assert after_poll == [True]
            (answer,) = holder.answers
            assert answer.response["status"] == "ok"
            assert answer.response["data"] == {"state": "pending"}


async def test_an_accepted_command_is_carried_out_under_the_rules_it_was_accepted_by(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path, held=()) as first:
        lights = {"account": MT, "vehicle": first.mt(), "state": "ON"}
        await first.store.journal_accept(journalled(first, "A1", lights))
        async with desk(tmp_path, server=first.server, store=first.store, allow=[]) as d:
            await d.commander.resume()
            (answer,) = d.answers
            assert answer.response == ok("A1", state="pending")


async def test_pick_up_does_not_follow_up_a_second_time(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        d.server.metrotec.events.handle_delay_s = 3600
        d.hold_follow_ups()
        await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        await d.commander.pick_up()
        await d.commander.pick_up()
        assert len(d.commander._tasks) == 1


async def test_a_release_waits_for_a_command_under_way_and_only_for_its_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:
        await d.commander.release(["nobody"])  # no follow-ups there: nothing to stop
        gate = gated(monkeypatch, "create_task")
        running = asyncio.ensure_future(d.ask("task/create", task_body(d, "T1")))
        await asyncio.wait_for(gate.entered.wait(), 10)
        # Another account's release does not wait for it.
        async with asyncio.timeout(3):
            await d.commander.release([SAM])
        # Its own waits until it is answered...
        releasing = asyncio.ensure_future(d.commander.release([MT], timeout=30))
        answered = on_done(releasing, lambda: len(d.answers))
        gate.open.set()
        async with asyncio.timeout(10):
            await releasing
        assert answered == [1]  # released only once the task was answered
        assert running.done()
        assert d.answers[0].response["status"] == "ok"


async def test_a_release_gives_up_waiting_at_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:
        gate = gated(monkeypatch, "create_task")
        running = asyncio.ensure_future(d.ask("task/create", task_body(d, "T1")))
        await asyncio.wait_for(gate.entered.wait(), 10)
        async with asyncio.timeout(10):
            await d.commander.release([MT], timeout=0.05)  # returns, does not raise
        assert not running.done()
        gate.open.set()
        await asyncio.wait_for(running, 10)


async def test_a_release_stops_a_follow_up_resumed_after_a_restart(tmp_path: Path) -> None:
    async with desk(tmp_path) as first:
        await first.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": first.mt(), "state": "ON"}
        )
        await first.commander.close()
        async with desk(tmp_path, server=first.server, store=first.store) as d:
            d.hold_follow_ups()
            await d.commander.resume()
            assert len(d.commander._tasks) == 1
            await d.commander.release([MT])
            assert d.commander._tasks == set()
            assert (await d.journal(f"{MT}/L1")).status == "pending"  # the next holder goes on


async def test_an_unplanned_failure_before_the_provider_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:

        async def broken(transaction: str) -> JournalEntry | None:
            raise RuntimeError("index corrupt")

        monkeypatch.setattr(d.store, "journal_by_transaction", broken)
        answers = await d.ask("task/create", task_body(d, "T1"))
        assert [(a.command, a.response, a.key) for a in answers] == [
            ("task/create", error("T1", "command: failed: internal error (RuntimeError)"), None)
        ]
        assert list(d.server.metrotec.tasks) == []


async def test_commands_without_a_transaction_are_each_carried_out(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        vid = d.mt()
        on = await d.one("lights", {"account": MT, "vehicle": vid, "state": "ON"})
        await d.settle()
        off = await d.one("lights", {"account": MT, "vehicle": vid, "state": "OFF"})
        await d.settle()
        assert on["transaction"] is None
        assert off["transaction"] is None
        assert d.server.metrotec.lights_on(vid) is False
        last = d.sink.last(TOPICS.vehicle_lights(MT, vid))
        assert last is not None
        assert last[0]["requested"] == "OFF"
        assert last[0]["status"] == "confirmed"


async def test_close_waits_for_the_follow_ups_it_stops(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        d.hold_follow_ups()
        await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        follow_ups = list(d.commander._tasks)
        assert len(follow_ups) == 1
        await d.commander.close()
        assert all(task.done() for task in follow_ups)


async def test_a_command_journalled_for_an_account_taken_over_later_is_carried_out(
    tmp_path: Path,
) -> None:
    async with desk(tmp_path, held=(SAM,)) as d:
        body = {"transaction": "E1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        assert await d.ask("lights", body) == []  # its holder is another instance
        await d.take_over(MT)  # ... which died: this one holds the account now
        await d.commander.pick_up()
        (answer,) = d.answers
        assert answer.key == f"{MT}/E1"
        assert answer.response["status"] == "ok"


async def test_a_transaction_journalled_in_between_is_answered_as_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the look-up by transaction and by order_ref, another instance
    journalled this very command: it is this delivery's, not a repeat."""
    async with desk(tmp_path) as holder:
        async with desk(tmp_path, held=(SAM,), server=holder.server, store=holder.store) as other:
            assert await other.ask("task/create", task_body(holder, "T1")) == []

        async def missed(transaction: str) -> JournalEntry | None:
            return None

        real = holder.store.journal_by_transaction
        monkeypatch.setattr(holder.store, "journal_by_transaction", missed)
        (answer,) = await holder.ask("task/create", task_body(holder, "T1"))
        assert answer.response["status"] == "ok"
        assert answer.response["transaction"] == "T1"
        assert answer.key == f"{MT}/T1"
        assert len(list(holder.server.metrotec.tasks)) == 1
        # Answered already: the same again, under its own transaction.
        again = await holder.one("task/create", task_body(holder, "T1"))
        assert again == answer.response
        monkeypatch.setattr(holder.store, "journal_by_transaction", real)


async def test_a_twin_journalled_between_look_up_and_insert_gets_the_twins_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:
        first = await d.one("task/create", task_body(d, "T1"))

        async def missed(*args: str) -> JournalEntry | None:
            return None

        # The look-ups ran before the twin was journalled: the insert finds it.
        monkeypatch.setattr(d.store, "journal_by_transaction", missed)
        real_by_order = d.store.journal_by_order
        calls: list[tuple[str, str]] = []

        async def by_order_late(account: str, order_ref: str) -> JournalEntry | None:
            calls.append((account, order_ref))
            return None if len(calls) == 1 else await real_by_order(account, order_ref)

        monkeypatch.setattr(d.store, "journal_by_order", by_order_late)
        assert await d.one("task/create", task_body(d, "T1")) == first  # same key
        calls.clear()
        assert await d.one("task/create", task_body(d, "T2")) == {**first, "transaction": "T2"}
        assert calls == [(MT, "A-1"), (MT, "A-1")]  # by its order_ref, in its account
        assert len(list(d.server.metrotec.tasks)) == 1
        async with asyncio.timeout(3):  # nothing left running
            await d.commander.release([MT], timeout=30)


async def test_an_insert_refused_for_a_twin_that_cannot_be_found_asks_to_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:

        async def duplicate(entry: JournalEntry) -> None:
            raise DuplicateEntryError(entry.key)

        monkeypatch.setattr(d.store, "journal_accept", duplicate)
        answer = await d.one(
            "lights", {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        )
        assert answer == error("L1", "command: could not be recorded, try again")
        assert d.server.metrotec.lights_on(d.mt()) is False


async def test_a_recovery_goes_past_a_command_under_way_and_a_release_waits_for_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path, held=()) as first:
        lights = {"account": MT, "vehicle": first.mt(), "state": "ON"}
        async with desk(tmp_path, server=first.server, store=first.store) as d:
            gate = gated(monkeypatch, "create_task")
            running = asyncio.ensure_future(d.ask("task/create", task_body(d, "T1")))
            await asyncio.wait_for(gate.entered.wait(), 10)
            # Journalled after it by another instance: the recovery finishes it too.
            await d.store.journal_accept(journalled(d, "A2", lights))
            await d.commander.resume()
            (answer,) = d.answers
            assert answer.key == f"{MT}/A2"
            assert answer.response == ok("A2", state="pending")
            # A release waits for the task still under way...
            releasing = asyncio.ensure_future(d.commander.release([MT], timeout=30))
            answered = on_done(releasing, lambda: len(d.answers))
            gate.open.set()
            async with asyncio.timeout(10):
                await asyncio.gather(running, releasing)
            assert answered == [2]  # A2's answer, then the task's


async def test_a_release_waits_for_a_recovered_command_and_not_once_it_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recovering(tmp_path, monkeypatch) as (d, gate, recovery, _body):
        releasing = asyncio.ensure_future(d.commander.release([MT], timeout=30))
        # The recovered task is under way: released only once it was answered.
        answered = on_done(releasing, lambda: len(d.answers))
        gate.open.set()
        async with asyncio.timeout(10):
            await asyncio.gather(recovery, releasing)
        assert answered == [1]
        assert d.answers[0].response["status"] == "ok"
        async with asyncio.timeout(3):  # done: nothing left to wait for
            await d.commander.release([MT], timeout=30)


async def test_a_twin_without_an_order_ref_is_found_by_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk(tmp_path) as d:
        body = {"transaction": "L1", "account": MT, "vehicle": d.mt(), "state": "ON"}
        first = await d.one("lights", body)

        async def missed(transaction: str) -> JournalEntry | None:
            return None

        # The look-up ran before the twin was journalled: the insert finds it.
        monkeypatch.setattr(d.store, "journal_by_transaction", missed)
        events = len(list(d.server.metrotec.events.of(d.mt())))
        assert await d.one("lights", body) == first
        assert len(list(d.server.metrotec.events.of(d.mt()))) == events
