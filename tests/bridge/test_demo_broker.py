"""The demo's embedded broker against a real MQTT client (aiomqtt/paho)."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from bridge.demo_broker import DemoBroker, topic_matches, valid_filter


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("foo/bar", "foo/bar", True),
        ("foo/bar", "fleet/bridge/state", False),
        ("foo/+", "foo/bar", True),
        ("foo/+", "foo/bar/baz", False),
        ("foo/#", "foo", True),
        ("foo/#", "foo/bar/baz", True),
        ("#", "$SYS/broker", False),
        ("+/broker", "$SYS/broker", False),
        ("fleet/+/+", "fleet/bridge/state", True),
        ("fleet/+/+", "fleet/a/b/alert", False),
    ],
)
def test_topic_filters(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_invalid_filters() -> None:
    assert not valid_filter("foo/#/bar")
    assert not valid_filter("foo+")
    assert valid_filter("foo/+/#")


async def test_qos_2_in_retained_once_and_a_last_will() -> None:
    async with DemoBroker("127.0.0.1", 0) as broker:
        async with aiomqtt.Client("127.0.0.1", broker.port) as pub:
            await pub.publish("a/b", b"kept", qos=2, retain=True)
            await pub.publish("a/c", b"other", qos=1, retain=True)
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe([("a/b", 1), ("a/+", 0), ("a/#", 1)])
            got = []
            async with asyncio.timeout(5):
                async for message in client.messages:
                    got.append((str(message.topic), message.payload, message.retain))
                    if len(got) == 2:
                        break
            assert sorted(got) == [("a/b", b"kept", True), ("a/c", b"other", True)]
            will = aiomqtt.Will("a/will", b"gone", qos=1)
            doomed = aiomqtt.Client("127.0.0.1", broker.port, will=will, identifier="doomed")
            await doomed.__aenter__()
            # The same client id again: the broker drops the older connection,
            # which did not say DISCONNECT, so its will goes out.
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="doomed"):
                async with asyncio.timeout(5):
                    async for message in client.messages:
                        assert (str(message.topic), message.payload) == ("a/will", b"gone")
                        break
            await doomed.__aexit__(None, None, None)
