"""The demo's embedded MQTT 3.1.1 broker: only what `fleet-bridge demo` needs.

amqtt 0.12.1, the broker the demo used before, misbehaved under it: retained
messages of unrelated topics delivered to exact filters, retained messages
delivered twice, `RuntimeError: dictionary changed size during iteration` in its
broker loop, and a QoS 0 command from the printed `mosquitto_pub` line never
delivered. This broker is small on purpose, for one local user:

- MQTT 3.1.1 (and 3.1) over TCP, anonymous, clean sessions only (a client asking
  for a persistent session gets a clean one, and `session present` 0);
- PUBLISH at QoS 0, 1 and 2 in, delivered at QoS 0 or 1 (subscriptions are
  granted at most QoS 1, which the specification allows);
- retained messages (an empty payload clears one), delivered once per topic on
  subscribing, with the retain flag set, and only to matching filters;
- `+` and `#` wildcards, never matching `$` topics from the first level;
- one delivery per client however many of its filters match;
- last will on a lost connection, keepalive (1.5 x the client's), PING, and a
  client id connecting again replacing the older connection.

Not for production: no authentication, no TLS, no persistence, no QoS 1
retransmission (TCP is reliable on loopback; a client that goes away loses what
was in flight, as with a clean session anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from dataclasses import dataclass, field

_LOGGER = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8,
    9,
    10,
    11,
    12,
    13,
    14,
)
MAX_PACKET = 16 * 1024 * 1024  # more than any demo message; a bound on garbage


class ProtocolError(Exception):
    """The peer broke MQTT 3.1.1: the connection is closed."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7: `+` one level, `#` this level and all below."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filters, levels = topic_filter.split("/"), topic.split("/")
    for index, part in enumerate(filters):
        if part == "#":
            return True
        if index >= len(levels):
            return False
        if part != "+" and part != levels[index]:
            return False
    return len(filters) == len(levels)


def valid_filter(topic_filter: str) -> bool:
    if not topic_filter or "\0" in topic_filter:
        return False
    parts = topic_filter.split("/")
    for index, part in enumerate(parts):
        if "#" in part and (part != "#" or index != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True


def _string(data: bytes, at: int) -> tuple[str, int]:
    if at + 2 > len(data):
        raise ProtocolError("truncated string")
    (length,) = struct.unpack_from("!H", data, at)
    end = at + 2 + length
    if end > len(data):
        raise ProtocolError("truncated string")
    try:
        return data[at + 2 : end].decode("utf-8"), end
    except UnicodeDecodeError:
        raise ProtocolError("a string is not UTF-8") from None


def _binary(data: bytes, at: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("!H", data, at)
    return data[at + 2 : at + 2 + length], at + 2 + length


def _encode_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    length, header = len(body), bytearray([kind << 4 | flags])
    while True:
        byte, length = length % 128, length // 128
        header.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(header) + body


def publish_packet(topic: str, payload: bytes, qos: int, retain: bool, packet_id: int) -> bytes:
    body = _encode_string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet(PUBLISH, qos << 1 | int(retain), body)


@dataclass(eq=False)
class _Session:
    client_id: str
    writer: asyncio.StreamWriter
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> QoS
    will: tuple[str, bytes, int, bool] | None = None
    keepalive: int = 0  # seconds; 0: none
    next_id: int = 0
    closing: bool = False

    def packet_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id

    def send(self, data: bytes) -> None:
        if not self.closing and not self.writer.is_closing():
            self.writer.write(data)

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        granted = [q for f, q in self.subscriptions.items() if topic_matches(f, topic)]
        if granted:
            out = min(qos, max(granted))
            self.send(publish_packet(topic, payload, out, retain, self.packet_id() if out else 0))


class DemoBroker:
    """`async with DemoBroker(host, port):` serves until the block ends."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self.retained: dict[str, tuple[bytes, int]] = {}
        self._sessions: dict[str, _Session] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._anonymous = 0
        self._stopping = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            session.closing = True
            session.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> DemoBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- routing ------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if retain:
            if payload:
                self.retained[topic] = (payload, qos)
            else:
                self.retained.pop(topic, None)
        # A copy: a delivery that fails may drop a session meanwhile.
        for session in list(self._sessions.values()):
            session.deliver(topic, payload, qos, False)

    # --- one connection ---------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session: _Session | None = None
        try:
            session = await self._connect(reader, writer)
            if session is not None:
                await self._loop(session, reader)
        except (ProtocolError, asyncio.IncompleteReadError, ConnectionError, TimeoutError) as err:
            _LOGGER.debug("MQTT connection closed: %s", err)
        finally:
            self._tasks.discard(task)
            if session is not None:
                if self._sessions.get(session.client_id) is session:
                    del self._sessions[session.client_id]
                # Lost, timed out or taken over, without DISCONNECT: the will goes
                # (not when the broker itself stops).
                if session.will is not None and not self._stopping:
                    self.publish(*session.will)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
        first = (await reader.readexactly(1))[0]
        length, shift = 0, 0
        for _ in range(4):
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            raise ProtocolError("malformed remaining length")
        if length > MAX_PACKET:
            raise ProtocolError("packet too large")
        return first >> 4, first & 0x0F, await reader.readexactly(length)

    async def _connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Session | None:
        kind, _flags, body = await asyncio.wait_for(self._read(reader), 10)
        if kind != CONNECT:
            raise ProtocolError("the first packet must be CONNECT")
        name, at = _string(body, 0)
        level, flags = body[at], body[at + 1]
        (keepalive,) = struct.unpack_from("!H", body, at + 2)
        if (name, level) not in (("MQTT", 4), ("MQIsdp", 3)):
            writer.write(_packet(CONNACK, 0, b"\x00\x01"))  # unacceptable protocol version
            return None
        client_id, at = _string(body, at + 4)
        will = None
        if flags & 0x04:
            will_topic, at = _string(body, at)
            will_payload, at = _binary(body, at)
            will = (will_topic, will_payload, min((flags >> 3) & 3, 1), bool(flags & 0x20))
        if not client_id:
            self._anonymous += 1
            client_id = f"demo-anonymous-{self._anonymous}"
        session = _Session(client_id, writer, will=will, keepalive=keepalive)
        old = self._sessions.get(client_id)
        if old is not None:  # the same client again: the older connection goes
            old.writer.close()
        self._sessions[client_id] = session
        writer.write(_packet(CONNACK, 0, b"\x00\x00"))
        return session

    async def _loop(self, session: _Session, reader: asyncio.StreamReader) -> None:
        timeout = session.keepalive * 1.5 if session.keepalive else None
        inbound_qos2: set[int] = set()
        while not session.closing:
            kind, flags, body = await asyncio.wait_for(self._read(reader), timeout)
            if kind == PUBLISH:
                qos, retain = (flags >> 1) & 3, bool(flags & 1)
                if qos == 3:
                    raise ProtocolError("QoS 3")
                topic, at = _string(body, 0)
                if not topic or "+" in topic or "#" in topic:
                    raise ProtocolError(f"invalid topic {topic!r}")
                packet_id = 0
                if qos:
                    (packet_id,) = struct.unpack_from("!H", body, at)
                    at += 2
                payload = body[at:]
                if qos == 2:
                    session.send(_packet(PUBREC, 0, struct.pack("!H", packet_id)))
                    if packet_id in inbound_qos2:
                        continue  # a redelivery before PUBREL: once only
                    inbound_qos2.add(packet_id)
                elif qos == 1:
                    session.send(_packet(PUBACK, 0, struct.pack("!H", packet_id)))
                self.publish(topic, payload, min(qos, 1), retain)
            elif kind == PUBREL:
                (packet_id,) = struct.unpack_from("!H", body, 0)
                inbound_qos2.discard(packet_id)
                session.send(_packet(PUBCOMP, 0, body[:2]))
            elif kind == SUBSCRIBE:
                self._subscribe(session, body)
            elif kind == UNSUBSCRIBE:
                at = 2
                while at < len(body):
                    topic_filter, at = _string(body, at)
                    session.subscriptions.pop(topic_filter, None)
                session.send(_packet(UNSUBACK, 0, body[:2]))
            elif kind == PINGREQ:
                session.send(_packet(PINGRESP, 0, b""))
            elif kind == DISCONNECT:
                session.will = None
                return
            elif kind in (PUBACK, PUBREC, PUBCOMP):
                if kind == PUBREC:  # we never send QoS 2, answer politely anyway
                    session.send(_packet(PUBREL, 2, body[:2]))
            else:
                raise ProtocolError(f"unexpected packet type {kind}")
            await session.writer.drain()

    def _subscribe(self, session: _Session, body: bytes) -> None:
        packet_id, at = body[:2], 2
        granted: list[int] = []
        new: dict[str, int] = {}
        while at < len(body):
            topic_filter, at = _string(body, at)
            qos = body[at] & 3
            at += 1
            if not valid_filter(topic_filter):
                granted.append(0x80)
                continue
            granted.append(min(qos, 1))
            new[topic_filter] = min(qos, 1)
        if not granted:
            raise ProtocolError("SUBSCRIBE without a filter")
        session.subscriptions.update(new)
        session.send(_packet(SUBACK, 0, packet_id + bytes(granted)))
        # Retained messages of the new filters: each topic once, however many of
        # the filters match it, at the best QoS granted among them.
        for topic, (payload, qos) in list(self.retained.items()):
            best = [q for f, q in new.items() if topic_matches(f, topic)]
            if best:
                out = min(qos, max(best))
                session.send(
                    publish_packet(topic, payload, out, True, session.packet_id() if out else 0)
                )
