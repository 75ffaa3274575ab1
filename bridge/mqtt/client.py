"""The MQTT connection: aiomqtt behind a small interface, reconnecting forever.

Only this module knows aiomqtt/paho. It keeps one connection up (an outer loop
around `async with client`), announces the bridge on its state topic with the
last will as the fallback, tells the publisher when a (re)connection needs a full
republish, and hands incoming messages to one callback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt
import paho.mqtt.client as mqtt

from bridge.config import MqttConfig
from bridge.mqtt.topics import OFFLINE, ONLINE

_LOGGER = logging.getLogger(__name__)

OnConnect = Callable[[], Awaitable[None]]
OnMessage = Callable[[str, bytes], Awaitable[None]]


#: Messages handed to the client at once by `publish_many` before waiting for the
#: broker's acknowledgements: enough to keep the pipe full, few enough to bound memory.
WINDOW = 1000

Message = tuple[str, bytes | str, bool]  # topic, payload, retain


class MqttUnavailableError(Exception):
    """Raised by `publish` while there is no connection to the broker."""


class _Acks:
    """Counts down the broker's acknowledgements of one window of messages.

    aiomqtt calls `set()` on whatever waits under a message id in its pending
    publishes; one of these stands in for a whole window."""

    __slots__ = ("done", "left")

    def __init__(self, count: int) -> None:
        self.left = count
        self.done = asyncio.Event()
        if count <= 0:
            self.done.set()

    def set(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()


@dataclass(slots=True)
class Backoff:
    """Reconnect delays: 1 s doubling to 60 s, with jitter, reset after a good link."""

    initial: float = 1.0
    maximum: float = 60.0
    current: float = 1.0

    def next(self) -> float:
        delay = self.current
        self.current = min(self.maximum, self.current * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.current = self.initial


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """An SSL context from the `mqtt.tls` options (None when TLS is off)."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    if tls.insecure:
        context.check_hostname = False
    return context


class MqttLink:
    """One long-lived broker connection shared by everything that publishes."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        state_topic: str,
        subscriptions: Sequence[str] = (),
        on_connect: OnConnect | None = None,
        on_message: OnMessage | None = None,
    ) -> None:
        self._config = config
        self._state_topic = state_topic
        self._subscriptions = list(subscriptions)
        self._on_connect = on_connect
        self._on_message = on_message
        self._client: aiomqtt.Client | None = None
        self._backoff = Backoff()
        self.connected = asyncio.Event()
        self.connections = 0
        # Set after each failed connection attempt, with the reason kept.
        self.attempt_failed = asyncio.Event()
        self.last_error: str | None = None
        self._closing = False
        # Set while there is no connection: ends a `publish_many` waiting for acks.
        self._lost_event = asyncio.Event()
        # Set once the republish after the latest (re)connection has been sent.
        self.announced = asyncio.Event()
        # Set while the subscriptions of the current connection are in place
        # (a command published before that is not seen: tests wait for it).
        self.subscribed = asyncio.Event()

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            raise MqttUnavailableError("not connected to the MQTT broker")
        try:
            await client.publish(topic, payload, qos=self._config.qos, retain=retain)
        except aiomqtt.MqttError as err:
            raise MqttUnavailableError(str(err)) from err

    async def publish_many(self, messages: Sequence[Message]) -> None:
        """Send many messages, waiting for the broker once per window of them.

        aiomqtt's `publish` costs an Event, a `wait_for` and two scans of its
        pending calls per message; here paho takes a window of messages at once
        and one counter waits for all their acknowledgements (10,000 retained
        state messages: 1.44 s through `publish` in batches of 500, 0.37 s here)."""
        for start in range(0, len(messages), WINDOW):
            client = self._client
            if client is None or not self.connected.is_set():
                raise MqttUnavailableError("not connected to the MQTT broker")
            window = messages[start : start + WINDOW]
            qos = self._config.qos
            acks = _Acks(len(window) if qos else 0)
            # aiomqtt keeps paho's client and the waiters for its acknowledgements
            # here; only this module knows.
            paho = client._client
            pending = client._pending_publishes
            mids: list[int] = []
            for topic, payload, retain in window:
                info = paho.publish(topic, payload, qos, retain)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self._forget(pending, mids)
                    raise MqttUnavailableError(mqtt.error_string(info.rc))
                if qos:
                    mids.append(info.mid)
                    pending[info.mid] = acks  # type: ignore[assignment]
            try:
                async with asyncio.timeout(self._ack_timeout(len(window))):
                    await self._until_lost(acks.done.wait())
            except TimeoutError:
                raise MqttUnavailableError("the broker did not acknowledge in time") from None
            finally:
                self._forget(pending, mids)

    @staticmethod
    def _forget(pending: dict[int, asyncio.Event], mids: list[int]) -> None:
        for mid in mids:
            pending.pop(mid, None)

    @staticmethod
    def _ack_timeout(count: int) -> float:
        # aiomqtt's own per-message timeout, plus time for the window itself.
        return 10.0 + count / 1000

    async def _until_lost(self, waiting: Awaitable[object]) -> None:
        """Wait for `waiting`, or raise as soon as the connection is lost."""
        done = asyncio.ensure_future(waiting)
        lost = asyncio.ensure_future(self._lost_event.wait())
        try:
            await asyncio.wait([done, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            done.cancel()
        if not done.done() or done.cancelled():
            raise MqttUnavailableError("the connection to the MQTT broker was lost")

    async def run(self) -> None:
        """Connect, serve, and reconnect with backoff until cancelled or closed."""
        while not self._closing:
            try:
                await self._serve_once()
            except aiomqtt.MqttError as err:
                self._lost()
                self.last_error = str(err)
                self.attempt_failed.set()
                delay = self._backoff.next()
                _LOGGER.warning(
                    "MQTT broker %s:%s unavailable (%s); reconnecting in %.0fs",
                    self._config.host,
                    self._config.port,
                    err,
                    delay,
                )
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self._lost()
                raise

    def _lost(self) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self._lost_event.set()
        self._client = None

    def _make_client(self) -> aiomqtt.Client:
        cfg = self._config
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password else None,
            identifier=cfg.client_id,
            keepalive=cfg.keepalive,
            will=aiomqtt.Will(self._state_topic, OFFLINE, qos=1, retain=True),
            tls_context=tls_context(cfg),
            tls_insecure=cfg.tls.insecure if cfg.tls else None,
            timeout=10,
            # No limit in paho: its limit costs a scan of every message in flight
            # per acknowledgement (O(n) each). The callers bound what is in flight
            # (`publish_many` a window, the rest a few messages each).
            max_inflight_messages=0,
            # Without it, Nagle's algorithm and delayed ACKs hold small messages
            # (command answers) for ~40 ms each way.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # aiomqtt warns past 10 pending calls; a full fleet publish has thousands.
        client.pending_calls_threshold = 100_000
        return client

    async def _serve_once(self) -> None:
        async with self._make_client() as client:
            if self._closing:
                # aiomqtt can swallow a cancellation that lands while it connects;
                # the flag makes a shutdown during a connect end all the same.
                return
            self._client = client
            self.announced.clear()
            self._lost_event.clear()
            self.connected.set()
            self.connections += 1
            _LOGGER.info("Connected to MQTT broker %s:%s", self._config.host, self._config.port)
            await client.publish(self._state_topic, ONLINE, qos=1, retain=True)
            for topic in self._subscriptions:
                await client.subscribe(topic, qos=1)
            self.subscribed.set()
            # The republish runs beside the message loop: Home Assistant's status
            # and commands must not wait behind thousands of retained messages.
            announce = (
                asyncio.create_task(self._announce(self._on_connect))
                if self._on_connect is not None
                else None
            )
            if announce is None:
                self.announced.set()
            try:
                async for message in client.messages:
                    await self._dispatch(message)
            finally:
                if announce is not None:
                    announce.cancel()
                    await asyncio.gather(announce, return_exceptions=True)

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        self._backoff.reset()
        if self._on_message is None:
            return
        payload = message.payload
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        try:
            await self._on_message(str(message.topic), data)
        except Exception:
            # One bad message must never take the connection down.
            _LOGGER.exception("Error handling MQTT message on %s", message.topic)

    async def _announce(self, on_connect: OnConnect) -> None:
        try:
            await on_connect()
            self._backoff.reset()
            self.announced.set()
        except MqttUnavailableError:
            # The connection dropped during the republish; the next one redoes it.
            return

    async def close(self) -> None:
        """Say `offline` on purpose (the will covers crashes); `run` then ends."""
        self._closing = True
        client = self._client
        if client is None or not self.connected.is_set():
            return
        try:
            await client.publish(self._state_topic, OFFLINE, qos=1, retain=True, timeout=5)
        except aiomqtt.MqttError as err:
            _LOGGER.debug("Could not publish offline state: %s", err)
