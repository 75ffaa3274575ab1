"""Commands from MQTT to providers: authorize, journal, dispatch, follow up, answer.

Exactly-once effects rest on the command journal (`bridge.store.CommandJournal`):
a command is written there, keyed by its transaction id (and, for a new task, by
its order_ref), before it reaches the provider. A redelivered or retried command
finds its entry and gets the first answer again without reaching the provider a
second time. After a crash, commands that were accepted but not answered are
carried out (lights, snapshots and order_ref-keyed tasks are safe to send again)
and answered; commands the provider accepted but had not confirmed are followed
up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from datetime import datetime
from typing import Any

from bridge.config import CommandsConfig
from bridge.errors import ProviderError, QuotaExhaustedError
from bridge.model import (
    CommandResult,
    CommandStatus,
    Priority,
    Task,
    TaskChange,
    VehicleState,
    format_time,
    utc_now,
)
from bridge.mqtt import requests
from bridge.mqtt.commands import (
    Command,
    LightsPayload,
    SnapshotPayload,
    TaskCreatePayload,
    TaskUpdatePayload,
    parse_command,
    parse_set,
)
from bridge.mqtt.discovery import snapshot_url_topic
from bridge.mqtt.requests import Request, RequestError, parse_request, transaction_of
from bridge.mqtt.topics import Topics, topic_level
from bridge.poller import AccountPoller
from bridge.providers.base import LightsControl, SnapshotControl, TaskControl
from bridge.store import (
    CommandJournal,
    DuplicateEntryError,
    JournalEntry,
    LeaseLostError,
    StoreError,
)

_LOGGER = logging.getLogger(__name__)

#: Sends an answer: (command, response, journal key). The sender marks the key
#: answered once the broker has the answer, and keeps what it cannot send yet.
Respond = Callable[[str, dict[str, Any], str | None], Awaitable[None]]
Redact = Callable[[str], str]

# How long a command journalled elsewhere waits for the account's vehicles.
FIRST_POLL_WAIT = 60.0
# How often a pending command is asked about while it is followed up.
FOLLOW_UP_INTERVAL = {"lights": 5.0, "snapshot": 3.0}
ABILITY = {
    "lights": LightsControl,
    "snapshot": SnapshotControl,
    "task/create": TaskControl,
    "task/update": TaskControl,
}


class Commander:
    def __init__(
        self,
        config: CommandsConfig,
        pollers: Mapping[str, AccountPoller],
        store: CommandJournal,
        topics: Topics,
        respond: Respond,
        *,
        redact: Redact = lambda text: text,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        configured: Collection[str] = (),
        leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self._config = config
        # The accounts held here; with several instances, `configured` has the
        # others too: their commands are journalled for their holder to carry out.
        self._pollers = pollers
        self._configured = frozenset(configured)
        # Whether this instance answers what no account holder answers (bad
        # payloads, unknown accounts): one instance of several, the leader.
        self._leader = leader
        # Journal keys being carried out here (a pick-up must not start them twice).
        # (key -> account; a release waits for those of its accounts to end).
        self._running: dict[str, str] = {}
        self._ended = asyncio.Event()
        # Follow-ups by account (stopped when another instance takes it over).
        self._follows: dict[str, set[asyncio.Task[None]]] = {}
        self._store = store
        self._topics = topics
        self._respond = respond
        self._redact = redact
        self._now = now
        self._sleep = sleep
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: The last lights / snapshot message per topic (retained on MQTT).
        self.retained: dict[str, dict[str, Any]] = {}

    # --- ways in -------------------------------------------------------------
    async def request(self, name: str, payload: bytes) -> None:
        """`fleet/bridge/request/<name>`: answered on `fleet/bridge/response/<name>`."""
        try:
            envelope = parse_request(name, payload)
            command = parse_command(name, dict(envelope.body), envelope.transaction)
        except RequestError as err:
            if self._leads():  # one answer from the instances that all read it
                await self._respond(
                    name, requests.error(transaction_of(payload), str(err), field=err.field), None
                )
            return
        await self._answer(name, command)

    async def set(self, account: str, vehicle: str, payload: bytes) -> None:
        """`fleet/<account>/<vehicle>/set` (Home Assistant's switch and button)."""
        name = "set"
        try:
            envelope: Request = parse_request(name, payload)
            name, body = parse_set(account, vehicle, dict(envelope.body))
            command = parse_command(name, body, envelope.transaction)
        except RequestError as err:
            if account in self._pollers or (account not in self._configured and self._leads()):
                await self._respond(
                    name, requests.error(transaction_of(payload), str(err), field=err.field), None
                )
            return
        await self._answer(name, command)

    async def _answer(self, name: str, command: Command) -> None:
        try:
            response, key = await self._execute(command)
            if response is None:
                return  # journalled for the instance holding the account: it answers
        except StoreError as err:
            # Not recorded means not accepted: say so (once: the holder, or the
            # leader for an account nobody holds), then the daemon stops or waits.
            if command.account in self._pollers or (
                command.account not in self._pollers and self._leads()
            ):
                await self._respond(
                    name,
                    requests.error(command.transaction, f"command: not accepted: {err}"),
                    None,
                )
            raise
        except LeaseLostError:
            # Not sent: the journal keeps it accepted, and the instance that took
            # the account over carries it out and answers.
            _LOGGER.info("%s for %s left to the account's new holder", name, command.account)
            return
        except Exception as err:
            response, key = self._internal_error(command.transaction, err), None
        await self._respond(name, response, key)

    def _internal_error(self, transaction: str | None, err: Exception) -> dict[str, Any]:
        """The answer to a command that failed in a way nobody planned for: every
        command is answered, and the log keeps the traceback (redacted)."""
        _LOGGER.error("%s", self._redact(f"command failed unexpectedly: {err!r}"), exc_info=err)
        reason = f"command: failed: internal error ({type(err).__name__})"
        return requests.error(transaction, reason)

    async def resume(self, accounts: Collection[str] | None = None) -> None:
        """After a restart (or taking accounts over from another instance): send
        answers that never left, finish what was accepted, follow up what was
        pending; of `accounts` only, when given."""
        for entry in await self._store.journal_unanswered():
            if accounts is not None and entry.account not in accounts:
                continue
            assert entry.response is not None
            _LOGGER.info("Sending the answer to %s %s again", entry.command, entry.key)
            await self._respond(entry.command, json.loads(entry.response), entry.key)
        for entry in await self._store.journal_open():
            if accounts is not None and entry.account not in accounts:
                continue
            if entry.key in self._running:
                continue
            await self._finish(entry)

    async def pick_up(self) -> None:
        """Commands another instance journalled for an account held here."""
        for entry in await self._store.journal_open():
            if (
                entry.status == "accepted"
                and entry.account in self._pollers
                and entry.key not in self._running
            ):
                await self._finish(entry)

    async def _finish(self, entry: JournalEntry) -> None:
        if entry.key in self._running:
            return
        self._running[entry.key] = entry.account
        try:
            # What the caller read may be stale (another path finished it since).
            fresh = await self._store.journal_get(entry.key)
            if fresh is None or fresh.status != entry.status or fresh.response != entry.response:
                return
            try:
                await self._resume_one(fresh)
            except (StoreError, LeaseLostError):
                raise  # the daemon stops: nothing more can be recorded
            except Exception as err:
                # One entry that cannot be finished (a body an older version
                # accepted, a provider client bug) is answered with an error and
                # closed: recovery goes on with the others.
                response = self._internal_error(entry.transaction_id, err)
                await self._store.journal_update(entry.key, "failed", response=json.dumps(response))
                await self._respond(entry.command, response, entry.key)
        finally:
            self._stopped(entry.key)

    async def _resume_one(self, entry: JournalEntry) -> None:
        poller = self._pollers.get(entry.account)
        if poller is None and entry.account in self._configured:
            return  # held by another instance now: it finishes it
        if poller is None:
            response = requests.error(
                entry.transaction_id, f"account: '{entry.account}' is no longer configured"
            )
            await self._store.journal_update(entry.key, "failed", response=json.dumps(response))
            await self._respond(entry.command, response, entry.key)
            return
        try:
            command = parse_command(entry.command, json.loads(entry.body), entry.transaction_id)
        except RequestError as err:
            response = requests.error(entry.transaction_id, str(err), field=err.field)
            await self._store.journal_update(entry.key, "failed", response=json.dumps(response))
            await self._respond(entry.command, response, entry.key)
            return
        if entry.status == "accepted":
            try:
                if entry.vehicle is None and command.vehicle is not None:
                    # Journalled by an instance that does not hold the account: the
                    # rules (vehicle known, commands.allow) are checked here, once
                    # the vehicles are known.
                    if not poller.publisher.states(poller.account):
                        with contextlib.suppress(TimeoutError):
                            await poller.wait_polls(1, timeout=FIRST_POLL_WAIT)
                    self._target(command)
            except RequestError as err:
                response = requests.error(entry.transaction_id, str(err), field=err.field)
                await self._store.journal_update(entry.key, "failed", response=json.dumps(response))
                await self._respond(entry.command, response, entry.key)
                return
            _LOGGER.info("Carrying out %s %s from the journal", entry.command, entry.key)
            response = await self._run(entry.key, command, poller)
            await self._respond(entry.command, response, entry.key)
        elif entry.handle is not None:
            self._follow_up(
                poller.account,
                self._follow(entry.key, command, poller, entry.handle, entry.created_at),
            )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def release(self, accounts: Collection[str], timeout: float = 5.0) -> None:
        """Another instance is to hold these accounts: it follows their pending
        commands up (from the journal), so ours stop; a command being carried
        out here is waited for (up to `timeout`), or the next holder would find
        it still accepted and send it a second time. Past the timeout the lease
        runs out all the same, and the store refuses what it still tries."""
        tasks = [t for account in accounts for t in self._follows.pop(account, set())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while any(account in accounts for account in self._running.values()):
                    self._ended.clear()
                    await self._ended.wait()

    def _stopped(self, key: str) -> None:
        if self._running.pop(key, None) is not None:
            self._ended.set()

    # --- the one path every command takes ----------------------------------------
    async def execute(self, command: Command) -> dict[str, Any]:
        response, _ = await self._execute(command)
        if response is None:
            return requests.ok(command.transaction, {"state": "accepted"})
        return response

    async def _execute(self, command: Command) -> tuple[dict[str, Any] | None, str | None]:
        """The answer, and the journal key it belongs to (None: not journalled).

        No answer (None): another instance answers. With several instances every
        one of them reads every command (a shared subscription would lose the
        commands a killed instance had taken but not journalled); the first to
        journal it wins, the holder of the account carries it out and answers,
        the others stay silent. Errors that no account holds are the leader's."""
        held = command.account in self._pollers
        elsewhere = not held and command.account in self._configured
        poller: AccountPoller | None = None
        vehicle: VehicleState | None = None
        if not elsewhere:
            try:
                poller, vehicle = self._target(command)
            except RequestError as err:
                if not held and not self._leads():
                    return None, None
                return requests.error(command.transaction, str(err), field=err.field), None
        if elsewhere and command.transaction is None:
            # Without a transaction id twins cannot be told apart: only the
            # holder takes such a command (send one for exactly-once).
            return None, None
        key = (
            f"{command.account}/{command.transaction}"
            if command.transaction is not None
            else f"anonymous/{uuid.uuid4()}"
        )
        order_ref = (
            command.payload.order_ref if isinstance(command.payload, TaskCreatePayload) else None
        )
        body = command.payload.model_dump_json()
        if command.transaction is not None:
            known = await self._store.journal_by_transaction(command.transaction)
            if known is not None:
                if elsewhere:
                    return None, None
                if (
                    known.account != command.account
                    or known.command != command.name
                    or (known.body != body)
                ):
                    return self._conflict("transaction", command, known), None
                return await self._known(known, command.transaction)
        if order_ref is not None:
            known = await self._store.journal_by_order(command.account, order_ref)
            if known is not None:
                if elsewhere:
                    return None, None
                if known.body != body:
                    return self._conflict("order_ref", command, known), None
                if known.key == key:
                    # Its own transaction, journalled in between by another instance.
                    return await self._known(known, command.transaction)
                return await self._repeat(known, command.transaction), None
        entry = JournalEntry(
            key=key,
            command=command.name,
            account=command.account,
            vehicle=vehicle.vehicle_id if vehicle else None,
            order_ref=order_ref,
            transaction_id=command.transaction,
            body=body,
            status="accepted",
            handle=None,
            response=None,
            created_at=self._now().timestamp(),
            updated_at=self._now().timestamp(),
        )
        self._running[key] = command.account
        try:
            await self._store.journal_accept(entry)
        except DuplicateEntryError:
            self._stopped(key)
            if elsewhere:
                return None, None
            # A twin arrived between our look-up and insert: answer as it is answered.
            twin = await self._store.journal_get(key)
            if twin is None and order_ref is not None:
                twin = await self._store.journal_by_order(command.account, order_ref)
            if twin is None:
                return requests.error(
                    command.transaction, "command: could not be recorded, try again"
                ), None
            if twin.key == key:
                return await self._known(twin, command.transaction)
            return await self._repeat(twin, command.transaction), None
        except BaseException:
            self._stopped(key)
            raise
        if poller is None:
            self._stopped(key)
            return None, None
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._run(key, command, poller)
            future.set_result(response)
            return response, key
        finally:
            self._stopped(key)
            self._inflight.pop(key, None)
            if not future.done():
                future.cancel()

    async def _known(
        self, known: JournalEntry, transaction: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """A command of an account held here, already in the journal under its
        transaction: answered again, or carried out here when another instance
        journalled it (it never answers), or left to the run that is carrying
        it out here already (it answers)."""
        if known.response is None and known.key not in self._inflight:
            if known.key in self._running:
                return None, None
            if known.status == "accepted":
                await self._finish(known)
                return None, None
        return await self._repeat(known, transaction), None

    def _leads(self) -> bool:
        return self._leader()

    async def _repeat(self, known: JournalEntry, transaction: str | None) -> dict[str, Any]:
        """A command seen before: the first answer again, never a second effect,
        under the transaction of this delivery (a client waiting for its own id
        must get it, also when an order_ref matched an earlier transaction)."""
        if known.response is not None:
            first: dict[str, Any] = json.loads(known.response)
        else:
            running = self._inflight.get(known.key)
            if running is not None:
                first = dict(await asyncio.shield(running))
            else:
                first = requests.error(None, "command: already accepted, being finished")
        return {**first, "transaction": transaction}

    @staticmethod
    def _conflict(field: str, command: Command, known: JournalEntry) -> dict[str, Any]:
        """A transaction id or order_ref reused for something else: refused, so
        that an `ok` never stands for a command that was not carried out."""
        if field == "transaction":
            what = f"'{(command.transaction or '')[:64]}' was already used for {known.command}"
            if known.account != command.account:
                what += f" in account '{known.account}'"
            advice = "send this command with a new transaction id"
        else:
            what = f"'{(known.order_ref or '')[:64]}' was already used for another task"
            advice = "a task's order_ref is its identity: use a new one"
        reason = f"{what} with different content ({advice})"
        return requests.error(command.transaction, f"{field}: {reason}", field=field)

    def _target(self, command: Command) -> tuple[AccountPoller, VehicleState | None]:
        poller = self._pollers.get(command.account)
        if poller is None:
            raise RequestError("account", f"unknown account '{command.account[:64]}'")
        ability = ABILITY[command.name]
        if not isinstance(poller.provider, ability):
            raise RequestError("command", f"{poller.provider.name} cannot do '{command.name}'")
        vehicle = None
        if command.vehicle is not None:
            vehicle = self._find_vehicle(poller, command.vehicle)
            if vehicle is None:
                raise RequestError(
                    "vehicle",
                    f"unknown vehicle '{command.vehicle[:64]}' in account '{command.account}'",
                )
        names = (
            {vehicle.vehicle_id, vehicle.name, topic_level(vehicle.vehicle_id)}
            if vehicle
            else set()
        )
        if not self._config.allows(
            command.account, vehicle.vehicle_id if vehicle else None, names, command.name
        ):
            raise RequestError(
                "command",
                f"'{command.name}' is not allowed for this vehicle by the bridge's "
                "configuration (commands.allow)",
            )
        return poller, vehicle

    @staticmethod
    def _find_vehicle(poller: AccountPoller, wanted: str) -> VehicleState | None:
        states = poller.publisher.states(poller.account)
        if wanted in states:
            return states[wanted]
        for state in states.values():
            if topic_level(state.vehicle_id) == wanted or state.name == wanted:
                return state
        return None

    async def _run(self, key: str, command: Command, poller: AccountPoller) -> dict[str, Any]:
        try:
            result = await self._call(command, poller)
        except QuotaExhaustedError as err:
            result = CommandResult(
                CommandStatus.FAILED,
                error=f"not sent: {err}",
                data={"budget": err.budget, "available_at": format_time(err.available_at)},
            )
        except ProviderError as err:
            result = CommandResult(CommandStatus.FAILED, error=self._redact(str(err)))
        except (StoreError, LeaseLostError):
            raise
        except Exception as err:
            # Answered and closed in the journal, never left open to block the
            # recovery of every command after it.
            response = self._internal_error(command.transaction, err)
            await self._store.journal_update(key, "failed", response=json.dumps(response))
            return response
        if result.status is CommandStatus.FAILED:
            response = requests.error(
                command.transaction, result.error or "failed", **dict(result.data)
            )
        else:
            response = requests.ok(
                command.transaction,
                {"state": result.status.value, **dict(result.data)},
            )
        await self._store.journal_update(
            key, result.status.value, handle=result.handle, response=json.dumps(response)
        )
        await self._effects(command, poller, result)
        if result.status is CommandStatus.PENDING and result.handle is not None:
            self._follow_up(
                poller.account,
                self._follow(key, command, poller, result.handle, self._now().timestamp()),
            )
        return response

    async def _call(self, command: Command, poller: AccountPoller) -> CommandResult:
        provider: Any = poller.provider
        payload = command.payload
        priority = Priority.COMMAND
        if isinstance(payload, LightsPayload):
            vid = self._vehicle_id(poller, payload.vehicle)
            result: CommandResult = await provider.set_lights(vid, payload.state == "ON", priority)
        elif isinstance(payload, SnapshotPayload):
            vid = self._vehicle_id(poller, payload.vehicle)
            result = await provider.request_snapshot(vid, payload.camera, priority)
        elif isinstance(payload, TaskCreatePayload):
            task = Task(
                vehicle_id=self._vehicle_id(poller, payload.vehicle),
                order_ref=payload.order_ref,
                latitude=payload.latitude,
                longitude=payload.longitude,
                start_time=payload.start_time,
                stop_time=payload.stop_time,
                description=payload.description,
                address=payload.address,
                contact_name=payload.contact_name,
                contact_phone=payload.contact_phone,
            )
            result = await provider.create_task(task, priority)
        else:
            assert isinstance(payload, TaskUpdatePayload)
            change = TaskChange(
                order_ref=payload.order_ref,
                status=payload.status,
                start_time=payload.start_time,
                stop_time=payload.stop_time,
                description=payload.description,
                vehicle_id=(self._vehicle_id(poller, payload.vehicle) if payload.vehicle else None),
            )
            result = await provider.update_task(change, priority)
        return result

    def _vehicle_id(self, poller: AccountPoller, wanted: str) -> str:
        state = self._find_vehicle(poller, wanted)
        return state.vehicle_id if state else wanted

    # --- follow-up and what the user sees ----------------------------------------
    async def _follow(
        self, key: str, command: Command, poller: AccountPoller, handle: str, since: float
    ) -> None:
        provider: Any = poller.provider
        timeout = (
            self._config.lights_timeout
            if command.name == "lights"
            else self._config.snapshot_timeout
        )
        deadline = since + timeout
        result = CommandResult(CommandStatus.PENDING, handle=handle)
        while self._now().timestamp() < deadline:
            await self._sleep(FOLLOW_UP_INTERVAL.get(command.name, 5.0))
            try:
                if command.name == "lights":
                    vid = self._vehicle_id(poller, command.payload.vehicle or "")
                    result = await provider.lights_status(vid, handle, Priority.COMMAND)
                else:
                    result = await provider.snapshot_status(handle, Priority.COMMAND)
            except (ProviderError, QuotaExhaustedError) as err:
                _LOGGER.debug("Following up %s: %s", key, err)
                continue
            except LeaseLostError:
                return  # the instance holding the account now follows it up
            if result.status is not CommandStatus.PENDING:
                break
        else:
            result = CommandResult(
                CommandStatus.FAILED,
                handle=handle,
                error=f"the provider did not confirm within {timeout:.0f} s",
            )
        await self._store.journal_update(key, result.status.value)
        await self._effects(command, poller, result)

    async def _effects(
        self, command: Command, poller: AccountPoller, result: CommandResult
    ) -> None:
        payload = command.payload
        account = poller.account
        now = format_time(self._now())
        if isinstance(payload, LightsPayload):
            vid = self._vehicle_id(poller, payload.vehicle)
            await self._publish_retained(
                poller,
                self._topics.vehicle_lights(account, vid),
                {
                    "status": result.status.value,
                    "requested": payload.state,
                    "at": now,
                    "error": result.error,
                },
            )
            if result.status is CommandStatus.CONFIRMED:
                await poller.apply(vid, lights_on=payload.state == "ON")
        elif isinstance(payload, SnapshotPayload):
            vid = self._vehicle_id(poller, payload.vehicle)
            await self._publish_retained(
                poller,
                self._topics.vehicle_snapshot(account, vid),
                {
                    "status": result.status.value,
                    "camera": payload.camera.value,
                    "url": result.data.get("url"),
                    "at": now,
                    "error": result.error,
                },
            )
            if result.data.get("url"):
                # The image entity's own topic: only ever a URL (never pending/failed).
                url_topic = snapshot_url_topic(self._topics, account, vid)
                await self._publish_retained(poller, url_topic, {"url": result.data["url"]})
        elif result.status is not CommandStatus.FAILED:
            # The active-tasks sensor follows at the next poll.
            poller.request_poll()

    async def _publish_retained(
        self, poller: AccountPoller, topic: str, data: dict[str, Any]
    ) -> None:
        # Kept to send again after a broker restart that lost its retained messages.
        self.retained[topic] = data
        await poller.publisher.publish_json(topic, data, retain=True)

    def _follow_up(self, account: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        follows = self._follows.setdefault(account, set())
        follows.add(task)
        task.add_done_callback(follows.discard)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
