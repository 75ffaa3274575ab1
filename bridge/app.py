"""The daemon: config in, one poller per account, one MQTT link, until stopped."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from bridge import __version__
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
from bridge.mqtt.topics import ONLINE, Topics
from bridge.poller import AccountPoller, PollerSettings
from bridge.providers import create_provider
from bridge.quota import QuotaBook
from bridge.store import BridgeStore, StoreError, open_store
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
        self.pollers: dict[str, AccountPoller] = {}
        self.link = MqttLink(
            config.mqtt,
            state_topic=self.topics.bridge_state,
            subscriptions=[
                self.topics.ha_status,
                # Our own retained marker: which discovery form the broker holds.
                self.topics.bridge_discovery,
                self.topics.bridge_request("#"),
                self.topics.set_wildcard,
                # Our own retained command results from an earlier run (issue 13).
                *(f"{self.topics.base}/+/+/{kind}" for kind in _RETAINED_RESULTS),
            ],
            on_connect=self._on_connect,
            on_message=self._on_message,
        )
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

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down cleanly.

        Raises `StoreError` after a clean shutdown when the store could not be
        written (full disk, read-only file system): without its ledger and
        journal the bridge could break a quota or a command's exactly-once."""
        self._stop = stop
        store = self.store = await open_store(self.config.store)
        book = self.quotas = QuotaBook(store)
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
                    self.publisher.register_account(
                        account.id,
                        provider.name,
                        provider.capabilities,
                        name=account.name,
                        has_daily_budget=quota.daily_budget() is not None,
                        alert_types=provider.alert_types,
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
                    restored = await poller.restore()
                    _LOGGER.info(
                        "%s (%s): %d vehicles restored from the store",
                        account.id,
                        account.provider,
                        restored,
                    )
                    self.pollers[account.id] = poller
                self.commander = Commander(
                    self.config.commands,
                    self.pollers,
                    store,
                    self.topics,
                    self._send_response,
                    redact=lambda text: self._redact(text) or "",
                    now=self._now,
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

    def _failed(self, err: StoreError) -> None:
        """Stop safely: the store refuses writes. Nothing is half-written (every
        write is one SQLite transaction), so a restart resumes once it is fixed."""
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
        def ended(task: asyncio.Task[None]) -> None:
            # A poller ends on its own only when its account is stopped; an
            # exception escaping a task is a bug: say so and stop cleanly.
            if task.cancelled() or task.exception() is None:
                return
            error = task.exception()
            if isinstance(error, StoreError):
                self._failed(error)
                return
            _LOGGER.critical("%s failed; stopping", task.get_name(), exc_info=error)
            stop.set()

        tasks = [asyncio.create_task(self.link.run(), name="mqtt")]
        tasks += [
            asyncio.create_task(p.run(), name=f"poll-{name}") for name, p in self.pollers.items()
        ]
        for task in tasks:
            task.add_done_callback(ended)
        self.started.set()
        try:
            await stop.wait()
        finally:
            # Pollers first: a poll is abandoned between its awaits, and every
            # write to the store is one transaction, so nothing is left half-written.
            await asyncio.gather(*(cancel_and_wait(task) for task in tasks[1:]))
            await self.link.close()
            await cancel_and_wait(tasks[0])
            _LOGGER.info("Stopped")

    # --- MQTT events ---------------------------------------------------------
    async def _on_connect(self) -> None:
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
        try:
            request = parse_request(command, payload)
            if command == "refresh":
                response = await self._refresh(request)
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

    async def _refresh(self, request: Request) -> dict[str, Any]:
        body = dict(request.body)
        account = take_str(body, "account", required=len(self.pollers) != 1)
        no_extra(body)
        name = account or next(iter(self.pollers))
        poller = self.pollers.get(name)
        if poller is None:
            raise RequestError("account", f"unknown account '{name[:64]}'")
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
        return {
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

    def _health_changed(self, poller: AccountPoller) -> None:
        # Fire and forget: health changes come from inside polls, which must not
        # wait on MQTT for a status line.
        if self.web is not None:
            self.web.account_changed(poller)
        if self.info() != self._info_sent:
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
        if info == self._info_sent:
            return
        self._info_sent = info
        await self.publisher.publish_json(self.topics.bridge_info, info, retain=True)
