"""The daemon: config in, one poller per account, one MQTT link, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from bridge import __version__
from bridge.cluster import Cluster, account_scopes, units
from bridge.commander import Commander
from bridge.config import Account, AlertsConfig, BridgeConfig
from bridge.errors import ConfigError, ProviderError, QuotaExhaustedError
from bridge.logs import RedactingFilter
from bridge.model import format_time, utc_now
from bridge.mqtt import requests
from bridge.mqtt.client import MqttLink, MqttUnavailableError
from bridge.mqtt.commands import COMMANDS
from bridge.mqtt.publisher import Publisher, encode
from bridge.mqtt.requests import (
    Request,
    RequestError,
    no_extra,
    parse_request,
    take_str,
    transaction_of,
)
from bridge.mqtt.topics import OFFLINE, ONLINE, Topics
from bridge.poller import AccountPoller, PollerSettings
from bridge.providers import create_provider
from bridge.quota import QuotaBook
from bridge.store import (
    BridgeStore,
    LeaseLostError,
    LeaseStore,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from bridge.webhooks import WebhookReceiver, build_targets

if TYPE_CHECKING:
    from bridge.web.server import WebServer

# The command results of a vehicle kept retained (`<base>/<account>/<vehicle>/<kind>`).
_RETAINED_RESULTS = ("lights", "snapshot", "snapshot/url")

_LOGGER = logging.getLogger(__name__)


def poller_settings(account: Account, alerts: AlertsConfig | None = None) -> PollerSettings:
    alerts = alerts or AlertsConfig()
    return PollerSettings(
        alert_max_age=alerts.max_age,
        alert_retention_days=alerts.retention_days,
        account=account.id,
        vehicle_list_interval=account.vehicle_list_interval,
        offline_after=account.offline_after,
        unavailable_after=account.unavailable_after,
        staleness=account.staleness,
    )


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait for it to end, cancelling again if need be.

    On Python 3.11, `asyncio.wait_for` (used inside aiomqtt) can swallow a
    cancellation that races with its inner future completing; one `cancel()`
    is then lost and the task would run on."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1)


class Bridge:
    """Everything one `fleet-bridge run` process does."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.topics = Topics(config.mqtt.base_topic, config.mqtt.discovery_prefix)
        self._now = now
        self.started = asyncio.Event()
        #: The pollers of the accounts this instance holds (all of them, alone).
        self.pollers: dict[str, AccountPoller] = {}
        # Every configured account's poller, held here or not (several instances).
        self._every: dict[str, AccountPoller] = {}
        self._poll_tasks: dict[str, asyncio.Task[None]] = {}
        self._serving = False
        #: Set when the store is shared (PostgreSQL): leases decide who polls what.
        self.cluster: Cluster | None = None
        self._leases: LeaseStore | None = None
        # Several instances on one store share the broker too: each has its own
        # client id and availability topic (a will of its own). Each reads every
        # command (not a `$share/...` subscription: Mosquitto drops what a killed
        # member had taken and not journalled); the journal makes it one.
        self.instance: str | None = None
        self.link = self._make_link(shared=config.store.url is not None)
        # The dashboard, /metrics and /healthz (bridge/web), when `http:` asks for them.
        self.web: WebServer | None = None
        if config.http.enabled:
            from bridge.web.server import WebServer

            self.web = WebServer(self, now=now, fatal=self._failed)
        self.publisher = Publisher(
            self.link if self.web is None else self.web.sink(self.link),
            self.topics,
            discovery=config.mqtt.discovery,
            discovery_mode=config.mqtt.discovery_mode,
            discovery_rate=config.mqtt.discovery_rate,
            unavailable=MqttUnavailableError,
        )
        if self.web is not None:
            self.publisher.on_alerts = self.web.hub.alerts_published
        self.webhooks: WebhookReceiver | None = None
        self._info_sent: dict[str, Any] | None = None
        self._quota_sent: dict[str, dict[str, object]] = {}
        self._background: set[asyncio.Task[None]] = set()
        # Error texts from providers go to MQTT: never with a secret in them.
        self._redactor = RedactingFilter(config.secrets())
        self._started_at = now()
        # Command answers the broker has not taken yet (topic, payload, journal key):
        # sent on the next connection, so a broker outage loses none.
        self._outbox: deque[tuple[str, bytes, str | None]] = deque()
        self._stop: asyncio.Event | None = None
        #: Why the bridge stopped on its own (the store cannot be written), if it did.
        self.fatal: StoreError | None = None
        self.store: BridgeStore | None = None
        #: The process's view of the quota ledger, shared by every account.
        self.quotas: QuotaBook | None = None

    def _make_link(self, *, shared: bool) -> MqttLink:
        mqtt = self.config.mqtt
        state_topic = self.topics.bridge_state
        commands = [self.topics.bridge_request("#"), self.topics.set_wildcard]
        if shared:
            from bridge.cluster import new_instance_id

            self.instance = new_instance_id()
            state_topic = self.topics.instance_state(self.instance)
            mqtt = mqtt.model_copy(update={"client_id": f"{mqtt.client_id}-{self.instance}"})
        return MqttLink(
            mqtt,
            state_topic=state_topic,
            subscriptions=[
                self.topics.ha_status,
                # Our own retained marker: which discovery form the broker holds.
                self.topics.bridge_discovery,
                *commands,
                # Our own retained command results from an earlier run (issue 13).
                *(f"{self.topics.base}/+/+/{kind}" for kind in _RETAINED_RESULTS),
            ],
            on_connect=self._on_connect,
            on_message=self._on_message,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down cleanly.

        Raises `StoreError` after a clean shutdown when the store could not be
        written (full disk, read-only file system): without its ledger and
        journal the bridge could break a quota or a command's exactly-once."""
        self._stop = stop
        store = self.store = await open_store(self.config.store)
        book = self.quotas = QuotaBook(store)
        leases = self._leases = cast(LeaseStore, store) if isinstance(store, LeaseStore) else None
        try:
            async with aiohttp.ClientSession() as session:
                for account in self.config.accounts:
                    # Accounts whose scopes are equal (one egress, one token, one
                    # organisation) spend from one ledger entry through the book.
                    quota = book.quota(
                        account.id,
                        account.budgets(),
                        account.scopes(),
                        now=self._now,
                    )
                    provider = create_provider(
                        account.provider, session, account.provider_settings(), quota
                    )
                    poller = AccountPoller(
                        poller_settings(account, self.config.alerts),
                        provider,
                        self.publisher,
                        store,
                        quota,
                        account.cadence_plan(),
                        now=self._now,
                        on_health=self._health_changed,
                    )
                    self._every[account.id] = poller
                    if leases is None:
                        await self._hold(account.id)
                    else:
                        # Refused by the store until this instance holds its lease.
                        leases.fence(account.id, self.instance or "", None)
                self.commander = Commander(
                    self.config.commands,
                    self.pollers,
                    store,
                    self.topics,
                    self._send_response,
                    redact=lambda text: self._redact(text) or "",
                    now=self._now,
                    configured=frozenset(self._every),
                    leader=self._leads,
                )
                if leases is not None:
                    self.cluster = Cluster(
                        leases,
                        units(account_scopes(a) for a in self.config.accounts),
                        lease_time=self.config.store.lease_time,
                        gained=self._gained,
                        lost=self._released,
                        changed=self._cluster_changed,
                        instance=self.instance,
                    )
                self._spawn(self._resume_commands())
                receiver = self.webhooks = await self._start_webhooks()
                try:
                    if self.web is not None:
                        await self.web.start()
                    await self._serve(stop)
                finally:
                    if self.web is not None:
                        await self.web.stop()
                    if receiver is not None:
                        await receiver.stop()
                await self.commander.close()
                for poller in self.pollers.values():
                    await poller.provider.close()
        finally:
            await store.close()
        if self.fatal is not None:
            raise self.fatal

    # --- accounts held (several instances: leases) ---------------------------
    async def _hold(self, account: str) -> None:
        """Start showing and polling an account: its picture from the store."""
        poller = self._every[account]
        provider = poller.provider
        self.publisher.register_account(
            account,
            provider.name,
            provider.capabilities,
            name=next(a.name for a in self.config.accounts if a.id == account),
            has_daily_budget=poller.quota.daily_budget() is not None,
            alert_types=provider.alert_types,
        )
        restored = await poller.restore()
        _LOGGER.info(
            "%s (%s): %d vehicles restored from the store", account, provider.name, restored
        )
        self.pollers[account] = poller
        if self._serving:
            self._start_poller(account)

    async def _gained(self, unit: str, epoch: int) -> None:
        assert self.cluster is not None
        assert self._leases is not None
        accounts = self.cluster.units[unit]
        for account in accounts:
            self._leases.fence(account, self.cluster.instance, (unit, epoch))
            await self._hold(account)
            if self.link.connected.is_set():
                await self.publisher.account_connected(account)
                self._health_changed(self.pollers[account])
        self._spawn(self._resume_unit(accounts))

    async def _resume_unit(self, accounts: tuple[str, ...]) -> None:
        await self.link.connected.wait()
        await self.commander.resume(accounts)

    async def _released(self, unit: str) -> None:
        """Another instance holds the unit now (or will): stop its pollers first,
        so that no call of ours follows the lease."""
        assert self.cluster is not None
        assert self._leases is not None
        await self.commander.release(
            self.cluster.units[unit], timeout=self.config.store.lease_time / 2
        )
        for account in self.cluster.units[unit]:
            self._leases.fence(account, self.cluster.instance, None)
            task = self._poll_tasks.pop(account, None)
            if task is not None:
                await cancel_and_wait(task)
            if self.pollers.pop(account, None) is not None:
                self.publisher.unregister_account(account)
        self._cluster_changed()

    def _leads(self) -> bool:
        return self.cluster is None or self.cluster.leads()

    def _held_elsewhere(self, account: str) -> bool:
        """Another instance alive holds the account (at the last beat)."""
        cluster = self.cluster
        unit = cluster.unit_of(account) if cluster is not None else None
        if cluster is None or unit is None:
            return False
        alive = {i.instance for i in cluster.instances}
        owner = cluster.owners.get(unit)
        return owner is not None and owner != cluster.instance and owner in alive

    def _cluster_changed(self) -> None:
        self._spawn(self._publish_info())

    def _start_poller(self, account: str) -> None:
        task = asyncio.create_task(self.pollers[account].run(), name=f"poll-{account}")
        task.add_done_callback(self._poller_ended)
        self._poll_tasks[account] = task

    def _poller_ended(self, task: asyncio.Task[None]) -> None:
        # A poller ends on its own only when its account is stopped; an
        # exception escaping a task is a bug: say so and stop cleanly.
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        account = task.get_name().removeprefix("poll-")
        if isinstance(error, LeaseLostError) and self.cluster is not None:
            # Taken over while we were away (paused, cut off): the store refused
            # the call, none was made. Hand the unit on.
            unit = self.cluster.unit_of(account)
            if unit is not None:
                self._spawn(self.cluster.lose(unit, f"the store refused a call of {account}"))
            return
        if isinstance(error, StoreError):
            self._failed(error)
            return
        _LOGGER.critical("%s failed; stopping", task.get_name(), exc_info=error)
        if self._stop is not None:
            self._stop.set()

    def _failed(self, err: StoreError) -> None:
        """Stop safely: the store refuses writes. Nothing is half-written (every
        write is one SQLite transaction), so a restart resumes once it is fixed."""
        if isinstance(err, StoreUnavailableError):
            # A database server away for a while: nothing was recorded, so nothing
            # was done; the pollers and the cluster retry by themselves.
            _LOGGER.warning("%s: not done, retried once the store is back", err)
            return
        if self.fatal is None:
            self.fatal = err
            _LOGGER.critical("%s; stopping safely. Free space or fix the file, then restart.", err)
        if self._stop is not None:
            self._stop.set()

    async def _start_webhooks(self) -> WebhookReceiver | None:
        if not self.config.webhooks.enabled:
            return None
        try:
            targets = build_targets(self.config, self.pollers)
        except ValueError as err:
            raise ConfigError([str(err)]) from None
        receiver = WebhookReceiver(self.config.webhooks, targets)
        await receiver.start()
        _LOGGER.info(
            "Webhooks listening on %s:%s for %s",
            self.config.webhooks.host,
            receiver.port,
            ", ".join(sorted(t.account for t in targets.values())),
        )
        return receiver

    async def _serve(self, stop: asyncio.Event) -> None:
        link = asyncio.create_task(self.link.run(), name="mqtt")
        link.add_done_callback(self._poller_ended)
        self._serving = True
        for account in self.pollers:
            self._start_poller(account)
        cluster = watch = None
        if self.cluster is not None:
            cluster = asyncio.create_task(self.cluster.run(), name="cluster")
            cluster.add_done_callback(self._poller_ended)
            watch = asyncio.create_task(self._watch_journal(), name="journal")
        self.started.set()
        try:
            await stop.wait()
        finally:
            # Pollers first: a poll is abandoned between its awaits, and every
            # write to the store is one transaction, so nothing is left half-written.
            self._serving = False
            if watch is not None:
                await cancel_and_wait(watch)
            if cluster is not None:
                await cancel_and_wait(cluster)  # stops the pollers of the units it held
            await asyncio.gather(*(cancel_and_wait(t) for t in self._poll_tasks.values()))
            self._poll_tasks.clear()
            if self.cluster is not None:
                last = [i.instance for i in self.cluster.instances] in ([], [self.instance])
                await self.cluster.leave()
                if last:
                    # No instance left: what Home Assistant sees goes unavailable.
                    with contextlib.suppress(MqttUnavailableError):
                        await self.link.publish(self.topics.bridge_state, OFFLINE, retain=True)
            await self.link.close()
            await cancel_and_wait(link)
            _LOGGER.info("Stopped")

    async def _watch_journal(self) -> None:
        """Commands another instance journalled for an account held here."""
        assert self._leases is not None
        changed = self._leases.journal_changed()
        await self.link.connected.wait()
        while True:
            changed.clear()
            try:
                await self.commander.pick_up()
            except StoreUnavailableError as err:
                _LOGGER.debug("Journal not read: %s", err)
            # The beat is the fallback for a notification lost in an outage.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.store.lease_time / 3):
                    await changed.wait()

    # --- MQTT events ---------------------------------------------------------
    async def _on_connect(self) -> None:
        if self.instance is not None:
            # The instance's own topic carries its will; the bridge's topic, which
            # every entity's availability follows, stays online through a takeover.
            await self.link.publish(self.topics.bridge_state, ONLINE, retain=True)
        await self.publisher.connected()
        self._info_sent = None
        self._quota_sent.clear()
        await self._publish_info()
        for poller in self.pollers.values():
            self._health_changed(poller)
        commander: Commander | None = getattr(self, "commander", None)
        if commander is not None:
            for topic, data in list(commander.retained.items()):
                await self.publisher.publish_json(topic, data, retain=True)
        await self._flush_outbox()
        for poller in self.pollers.values():
            await poller.flush_alerts()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.ha_status:
            if payload.strip().lower() == ONLINE.encode():
                _LOGGER.info("Home Assistant is online: republishing discovery")
                await self.publisher.republish_discovery()
            return
        if topic == self.topics.bridge_discovery:
            await self.publisher.discovery_marker(payload)
            return
        # Answered in the background: a refresh waits for a whole poll, a command
        # for its provider, and the message loop must keep serving meanwhile.
        prefix = self.topics.bridge_request("")
        if topic.startswith(prefix):
            name = topic[len(prefix) :]
            if name in COMMANDS:
                self._spawn(self.commander.request(name, payload))
            else:
                self._spawn(self._answer(name, payload))
            return
        if self._learn_retained(topic, payload):
            return
        target = self.topics.set_target(topic)
        if target is not None:
            self._spawn(self.commander.set(*target, payload))

    async def _resume_commands(self) -> None:
        if self.cluster is not None:
            return  # each unit's commands are resumed by whoever takes it (_gained)
        # Answers go out on MQTT: wait for the broker before finishing anything.
        await self.link.connected.wait()
        await self.commander.resume()

    async def _send_response(
        self, command: str, response: dict[str, Any], key: str | None = None
    ) -> None:
        topic = self.topics.bridge_response(command)
        if self.topics.consumes(topic):
            # Never reached (answers live under the reserved `bridge` level):
            # the guard against the bridge answering its own answers forever.
            _LOGGER.error("Not answering on %s: the bridge reads that topic", topic)
            return
        if self.web is not None:
            self.web.command_answered(command, response)
        item = (topic, encode(response), key)
        if not await self._deliver(item):
            self._outbox.append(item)

    async def _deliver(self, item: tuple[str, bytes, str | None]) -> bool:
        topic, payload, key = item
        try:
            await self.link.publish(topic, payload, retain=False)
        except MqttUnavailableError:
            return False
        if key is not None and self.store is not None:
            # After the broker took it: a crash before this line sends it again
            # (the same transaction), a crash after it never does.
            await self.store.journal_answered(key)
        return True

    async def _flush_outbox(self) -> None:
        if self._outbox:
            _LOGGER.info("Sending %d command answers held during the outage", len(self._outbox))
        while self._outbox:
            item = self._outbox.popleft()
            if not await self._deliver(item):
                self._outbox.appendleft(item)
                return

    async def _answer(self, command: str, payload: bytes) -> None:
        # Every instance reads every request: one answers (the account's holder
        # for a refresh, the leader for the rest; every one republishes its own).
        answer = self._leads()
        try:
            request = parse_request(command, payload)
            if command == "refresh":
                held, answered = await self._refresh(request)
                if answered is None:
                    return  # another instance holds the account and answers
                response, answer = answered, held or answer
            elif command == "republish":
                response = await self._republish(request)
            else:
                raise RequestError("command", f"unknown command '{command[:50]}'")
        except RequestError as err:
            response = requests.error(transaction_of(payload), str(err), field=err.field)
        except StoreError:
            raise
        except Exception as err:  # every request is answered, whatever went wrong
            _LOGGER.error("%s", self._redact(f"request {command[:50]!r} failed: {err!r}"))
            response = requests.error(
                transaction_of(payload), f"command: failed: internal error ({type(err).__name__})"
            )
        if answer:
            await self._send_response(command[:50] or "unknown", response, None)

    def _learn_retained(self, topic: str, payload: bytes) -> bool:
        """A lights or snapshot result the broker kept from an earlier run: the
        commander sends it again after a broker restart that loses it (before,
        only this run's results were, and a bridge restart forgot them)."""
        depth = len(self.topics.base.split("/"))
        levels = topic.split("/")
        if levels[depth : depth + 1] == ["bridge"]:  # `bridge/response/lights` is no vehicle
            return False
        suffix = "/".join(levels[depth + 2 :])
        if suffix not in _RETAINED_RESULTS or not topic.startswith(f"{self.topics.base}/"):
            return False
        commander: Commander | None = getattr(self, "commander", None)
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            data = None
        if commander is not None and isinstance(data, dict):
            commander.retained.setdefault(topic, data)  # this run's own are newer
        return True

    async def _republish(self, request: Request) -> dict[str, Any]:
        """`republish`: discovery and every retained state again, for a broker that
        lost them (what a reconnection sends; discovery follows at its pace)."""
        no_extra(dict(request.body))
        await self.link.publish(self.topics.bridge_state, ONLINE, retain=True)
        await self._on_connect()
        vehicles = sum(len(self.publisher.states(name)) for name in self.pollers)
        return requests.ok(
            request.transaction, {"accounts": len(self.pollers), "vehicles": vehicles}
        )

    async def _refresh(self, request: Request) -> tuple[bool, dict[str, Any] | None]:
        """Whether the account is held here, and the answer (None: another
        instance holds it and answers)."""
        body = dict(request.body)
        account = take_str(body, "account", required=len(self._every) != 1)
        no_extra(body)
        name = account or next(iter(self._every))
        poller = self.pollers.get(name)
        if poller is None:
            if name in self._every:
                # Held by another instance, which answers; while nobody holds it
                # (a takeover), the leader says so.
                if self._held_elsewhere(name):
                    return False, None
                return False, requests.error(
                    request.transaction,
                    f"{name}: not refreshed, the account is being taken over by another "
                    "instance; try again in a few seconds",
                )
            raise RequestError("account", f"unknown account '{name[:64]}'")
        return True, await self._refresh_held(request, name, poller)

    async def _refresh_held(
        self, request: Request, name: str, poller: AccountPoller
    ) -> dict[str, Any]:
        try:
            result = await poller.refresh()
        except QuotaExhaustedError as err:
            return requests.error(
                request.transaction,
                f"{name}: not refreshed, {err}",
                budget=err.budget,
                available_at=format_time(err.available_at),
            )
        except (ProviderError, TimeoutError) as err:
            message = self._redact(str(err) or type(err).__name__)
            return requests.error(request.transaction, f"{name}: refresh failed: {message}")
        return requests.ok(
            request.transaction,
            {"account": name, "changed": result.changed, "vehicles": result.vehicles},
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, StoreError):
            self._failed(error)
        elif error is not None:
            _LOGGER.error("%s", self._redact(f"background task failed: {error!r}"))

    # --- bridge info ---------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """`fleet/bridge/info`, and with several instances each one's own
        `fleet/bridge/instance/<id>/info`: the accounts it holds, their health."""
        info: dict[str, Any] = {
            "version": __version__,
            "started_at": format_time(self._started_at),
            "accounts": {
                name: {
                    "provider": poller.provider.name,
                    "status": poller.health.status.value,
                    "vehicles": poller.health.vehicles,
                    "error": self._redact(poller.health.last_error),
                }
                for name, poller in self.pollers.items()
            },
        }
        if self.cluster is not None:
            info["instance"] = self.cluster.instance
            info["store"] = "unreachable" if self.cluster.store_error else "ok"
        return info

    def cluster_info(self) -> dict[str, Any]:
        """`fleet/bridge/info` with several instances: the same from each of them
        (the instances alive and who holds each account), whoever wrote it last."""
        cluster = self.cluster
        assert cluster is not None
        holders = {
            account: owner
            for unit, owner in cluster.owners.items()
            for account in cluster.units.get(unit, ())
        }
        return {
            "version": __version__,
            "instances": {
                record.instance: {
                    "host": record.host,
                    "pid": record.pid,
                    "started_at": format_time(datetime.fromtimestamp(record.started_at, UTC)),
                    "accounts": cluster.accounts_of(record.instance),
                }
                for record in cluster.instances
            },
            "accounts": {
                account.id: {"provider": account.provider, "instance": holders.get(account.id)}
                for account in self.config.accounts
            },
        }

    def _health_changed(self, poller: AccountPoller) -> None:
        # Fire and forget: health changes come from inside polls, which must not
        # wait on MQTT for a status line.
        if self.web is not None:
            self.web.account_changed(poller)
        if self.cluster is not None or self.info() != self._info_sent:
            self._spawn(self._publish_info())
        report = poller.quota_report()
        if report != self._quota_sent.get(poller.account):
            self._quota_sent[poller.account] = report
            self._spawn(
                self.publisher.publish_json(
                    self.topics.account_quota(poller.account), report, retain=True
                )
            )

    def _redact(self, text: str | None) -> str | None:
        if text is None:
            return None
        return self._redactor.redact(text)

    async def _publish_info(self) -> None:
        info = self.info()
        if self.cluster is not None:
            info = {"own": info, "cluster": self.cluster_info()}
        if info == self._info_sent:
            return
        self._info_sent = info
        if self.cluster is None:
            await self.publisher.publish_json(self.topics.bridge_info, info, retain=True)
            return
        assert self.instance is not None
        await self.publisher.publish_json(
            self.topics.instance_info(self.instance), info["own"], retain=True
        )
        await self.publisher.publish_json(self.topics.bridge_info, info["cluster"], retain=True)
