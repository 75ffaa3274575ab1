"""What reaches MQTT, and with which retain flag and payload: the publisher's
behaviours mutation testing of bridge/mqtt/publisher.py found untested
(docs/mutants-quota-publisher.md). A sink of the test's own stands for the
broker; the pacer runs on a clock of the test's own."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.model import AlertType, Capability, Position, VehicleState
from bridge.mqtt.discovery import (
    account_device_discovery,
    account_device_identifier,
    account_discovery,
    account_discovery_topics,
    vehicle_device_discovery,
    vehicle_discovery,
    vehicle_discovery_topic,
    vehicle_discovery_topics,
)
from bridge.mqtt.publisher import Message, Pacer, Publisher, encode
from bridge.mqtt.topics import Topics

TOPICS = Topics("fleet")
AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
CAPS = frozenset({Capability.POSITION})


class Down(Exception):
    """The broker is away."""


class Sink:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.down = False

    async def publish_many(self, messages: Sequence[Message]) -> None:
        if self.down:
            raise Down("no broker")
        self.sent.extend(messages)

    def take(self) -> list[Message]:
        sent, self.sent = self.sent, []
        return sent


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def state(vid: str, latitude: float = 59.43, name: str | None = None) -> VehicleState:
    return VehicleState(
        vehicle_id=vid,
        name=name or f"Truck {vid}",
        position=Position(latitude=latitude, longitude=24.75, time=AT),
        speed_kmh=0.0,
        last_seen=AT,
    )


def publisher(sink: Sink, **options: Any) -> Publisher:
    made = Publisher(sink, TOPICS, unavailable=Down, **options)
    made.register_account("a", "telemax", CAPS)
    return made


def by_topic(sent: list[Message]) -> dict[str, tuple[bytes | str, bool]]:
    return {topic: (payload, retain) for topic, payload, retain in sent}


def configs(sent: list[Message]) -> list[str]:
    return [topic for topic, _payload, _retain in sent if topic.startswith("homeassistant/")]


def entity_configs(vid: str) -> set[str]:
    return set(vehicle_discovery_topics(TOPICS, "a", CAPS, vid))


# --- a vehicle's picture ------------------------------------------------------------


async def test_a_new_vehicle_gets_its_discovery_availability_and_state_retained() -> None:
    sink = Sink()
    pub = publisher(sink)
    assert await pub.vehicles_changed("a", [state("1")]) == 1
    await pub.discovery_settled(5)
    sent = by_topic(sink.sent)
    assert sent["fleet/a/1/availability"] == ("online", True)
    payload, retain = sent["fleet/a/1"]
    assert retain is True
    assert json.loads(payload)["latitude"] == 59.43
    assert entity_configs("1") <= set(sent)
    assert all(sent[t][1] is True for t in entity_configs("1"))
    # The configs go before the state; the marker of the form last.
    topics = [t for t, _p, _r in sink.sent]
    assert max(topics.index(t) for t in entity_configs("1")) < topics.index("fleet/a/1")
    assert sink.sent[-1] == ("fleet/bridge/discovery", b'{"mode":"entity"}', True)


async def test_discovery_is_sent_again_only_when_the_device_changes() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    sink.take()
    # It moved: its state, no discovery, no availability.
    assert await pub.vehicles_changed("a", [state("1", latitude=59.5)]) == 1
    assert [t for t, _p, _r in sink.take()] == ["fleet/a/1"]
    # It was renamed: its discovery again, then its state.
    await pub.vehicles_changed("a", [state("1", latitude=59.5, name="Renamed")])
    await pub.discovery_settled(5)
    sent = sink.take()
    assert entity_configs("1") <= set(configs(sent))
    assert "fleet/a/1" in by_topic(sent)
    assert "fleet/a/1/availability" not in by_topic(sent)


async def test_without_discovery_no_config_and_no_marker() -> None:
    sink = Sink()
    pub = publisher(sink, discovery=False)
    await pub.vehicles_changed("a", [state("1")])
    await pub.connected()
    await pub.republish_discovery()
    await pub.discovery_marker(b'{"mode":"device"}')
    await pub.discovery_settled(5)
    assert configs(sink.sent) == []
    assert "fleet/bridge/discovery" not in by_topic(sink.sent)
    assert "fleet/a/1" in by_topic(sink.sent)


async def test_the_device_form_sends_one_config_per_vehicle() -> None:
    sink = Sink()
    pub = publisher(sink, discovery_mode="device")
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    assert vehicle_discovery_topic(TOPICS, "a", "1") in configs(sink.sent)
    assert not entity_configs("1") & set(configs(sink.sent))
    assert sink.sent[-1] == ("fleet/bridge/discovery", b'{"mode":"device"}', True)
    # Removed: its one config cleared, with its state and availability.
    sink.take()
    await pub.vehicles_removed("a", ["1"])
    assert set(by_topic(sink.sent)) == {
        vehicle_discovery_topic(TOPICS, "a", "1"),
        "fleet/a/1",
        "fleet/a/1/availability",
    }


async def test_a_removed_vehicle_leaves_nothing_retained() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1"), state("2")])
    await pub.discovery_settled(5)
    sink.take()
    await pub.vehicles_removed("a", ["unknown", "1"])
    sent = by_topic(sink.sent)
    assert set(sent) == {*entity_configs("1"), "fleet/a/1", "fleet/a/1/availability"}
    assert all(value == (b"", True) for value in sent.values())
    assert set(pub.states("a")) == {"2"}
    # Listed again later: a new vehicle, everything sent again.
    sink.take()
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    assert "fleet/a/1/availability" in by_topic(sink.sent)
    assert entity_configs("1") <= set(configs(sink.sent))


async def test_an_account_going_offline_marks_every_vehicle_once() -> None:
    sink = Sink()
    pub = publisher(sink, discovery=False)
    await pub.vehicles_changed("a", [state("1"), state("2")])
    sink.take()
    await pub.set_account_available("a", False)
    assert sink.take() == [
        ("fleet/a/1/availability", "offline", True),
        ("fleet/a/2/availability", "offline", True),
    ]
    await pub.set_account_available("a", False)
    assert sink.take() == []
    # A vehicle first seen while the account is offline is offline too.
    await pub.vehicles_changed("a", [state("3")])
    assert by_topic(sink.take())["fleet/a/3/availability"] == ("offline", True)
    await pub.set_account_available("a", True)
    assert {t: p for t, p, _r in sink.take()} == {
        f"fleet/a/{v}/availability": "online" for v in "123"
    }


# --- alerts and JSON ----------------------------------------------------------------


async def test_alerts_are_never_retained_and_reach_the_feed_only_when_sent() -> None:
    sink = Sink()
    pub = publisher(sink)
    fed: list[tuple[str, list[dict[str, Any]]]] = []
    pub.on_alerts = lambda account, alerts: fed.append((account, alerts))
    assert await pub.publish_alerts("a", []) is True
    assert sink.sent == []
    assert fed == []
    alert = {"type": "harsh_braking"}
    topic = pub.alert_topic("a", "1")
    assert topic == "fleet/a/1/alert"
    assert await pub.publish_alerts("a", [(topic, alert)]) is True
    assert sink.take() == [(topic, b'{"type":"harsh_braking"}', False)]
    assert fed == [("a", [alert])]
    sink.down = True
    assert await pub.publish_alerts("a", [(topic, alert)]) is False
    assert fed == [("a", [alert])]


async def test_publish_json_keeps_the_callers_retain_flag() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.publish_json("fleet/a/quota", {"left": 3}, retain=True)
    await pub.publish_json("fleet/bridge/response/x", {"ok": True}, retain=False)
    assert sink.take() == [
        ("fleet/a/quota", b'{"left":3}', True),
        ("fleet/bridge/response/x", b'{"ok":true}', False),
    ]


# --- the whole picture ------------------------------------------------------------


async def test_a_reconnection_sends_everything_kept_while_the_broker_was_away() -> None:
    sink = Sink()
    pub = publisher(sink)
    sink.down = True
    await pub.vehicles_changed("a", [state("1")])
    await pub.set_account_available("a", False)
    await pub.discovery_settled(5)
    assert sink.sent == []
    sink.down = False
    await pub.connected()
    await pub.discovery_settled(5)
    sent = by_topic(sink.sent)
    assert sent["fleet/a/1/availability"] == ("offline", True)
    assert json.loads(sent["fleet/a/1"][0])["latitude"] == 59.43
    assert sent["fleet/a/1"][1] is True
    assert entity_configs("1") <= set(sent)
    account_node = account_device_identifier("a")
    assert any(account_node in t for t in configs(sink.sent))
    assert sink.sent[-1] == ("fleet/bridge/discovery", b'{"mode":"entity"}', True)


async def test_seeded_states_are_shown_on_connect_and_not_sent_twice() -> None:
    sink = Sink()
    pub = publisher(sink, discovery=False)
    pub.seed("a", [state("1")])
    assert sink.sent == []
    assert set(pub.states("a")) == {"1"}
    await pub.connected()
    sent = by_topic(sink.take())
    assert set(sent) == {"fleet/a/1", "fleet/a/1/availability"}
    assert json.loads(sent["fleet/a/1"][0])["latitude"] == 59.43
    assert await pub.vehicles_changed("a", [state("1")]) == 0
    assert sink.sent == []


async def test_an_account_taken_over_is_sent_alone_and_one_handed_over_not_at_all() -> None:
    sink = Sink()
    pub = publisher(sink)
    pub.register_account("b", "telemax", CAPS)
    pub.seed("a", [state("1")])
    pub.seed("b", [state("2")])
    await pub.account_connected("b")
    await pub.discovery_settled(5)
    sent = by_topic(sink.take())
    assert "fleet/b/2" in sent
    assert "fleet/b/2/availability" in sent
    assert set(vehicle_discovery_topics(TOPICS, "b", CAPS, "2")) <= set(sent)
    assert not any(t.startswith("fleet/a/") for t in sent)
    pub.unregister_account("b")
    assert sink.sent == []
    await pub.connected()
    await pub.discovery_settled(5)
    assert not any("/b/" in t or "fleet_b" in t for t, _p, _r in sink.sent)
    assert "fleet/a/1" in by_topic(sink.sent)


async def test_home_assistant_restarting_gets_every_config_again() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1"), state("2")])
    await pub.discovery_settled(5)
    sink.take()
    await pub.republish_discovery()
    await pub.discovery_settled(5)
    sent = set(configs(sink.sent))
    assert entity_configs("1") | entity_configs("2") <= sent
    assert any(account_device_identifier("a") in t for t in sent)
    assert not any(t.startswith("fleet/a/") for t, _p, _r in sink.sent)


# --- the marker of the form on the broker ---------------------------------------------


async def test_a_marker_of_the_other_form_clears_it_then_sends_ours() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    sink.take()
    await pub.discovery_marker(b'{"mode":"device"}')
    await pub.discovery_settled(5)
    sent = sink.take()
    device_topic = vehicle_discovery_topic(TOPICS, "a", "1")
    account_device = TOPICS.device_discovery(account_device_identifier("a"))
    topics = [t for t, _p, _r in sent]
    assert (device_topic, b"", True) in sent
    assert (account_device, b"", True) in sent
    # Ours again after the clearing, and the marker last.
    assert min(topics.index(t) for t in entity_configs("1")) > topics.index(device_topic)
    assert sent[-1] == ("fleet/bridge/discovery", b'{"mode":"entity"}', True)


async def test_a_marker_of_our_form_clears_nothing() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    sink.take()
    await pub.discovery_marker(b'{"mode":"entity"}')
    await pub.discovery_settled(5)
    assert sink.sent == []


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1]", b'{"mode":3}'])
async def test_an_unreadable_marker_is_replaced_by_ours(payload: bytes) -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    sink.take()
    await pub.discovery_marker(payload)
    await pub.discovery_settled(5)
    assert not any(p == b"" for _t, p, _r in sink.sent)
    await pub.connected()
    await pub.discovery_settled(5)
    assert sink.sent[-1] == ("fleet/bridge/discovery", b'{"mode":"entity"}', True)


async def test_discovery_waits_for_a_reconnection_when_the_broker_goes_away() -> None:
    sink = Sink()
    time = FakeTime()
    pub = publisher(sink, pacer=Pacer(2.0, clock=time, sleep=time.sleep))
    sink.down = True
    await pub.vehicles_changed("a", [state(str(n)) for n in range(3)])
    # What is due stays due (discovery_settled would wait for it).
    with pytest.raises(TimeoutError):
        await pub.discovery_settled(0.2)
    assert sink.sent == []
    sink.down = False
    await pub.connected()
    await pub.discovery_settled(5)
    for n in range(3):
        assert entity_configs(str(n)) <= set(configs(sink.sent))


# --- the pace -----------------------------------------------------------------------


async def test_the_pacer_allows_a_burst_then_the_rate() -> None:
    time = FakeTime()
    pacer = Pacer(10.0, clock=time, sleep=time.sleep)
    assert pacer.try_take(10)
    assert not pacer.try_take(1)
    await pacer.wait(5)
    assert time.slept == [pytest.approx(0.5)]
    assert pacer.try_take(5)
    # Never more than a burst saved up, however long it was idle.
    time.now += 100.0
    assert pacer.try_take(10)
    assert not pacer.try_take(1)
    # A device larger than the burst goes when the bucket is full, and overdraws.
    time.now += 1.0
    assert pacer.try_take(25)
    await pacer.wait(1)
    assert time.slept[-1] == pytest.approx(1.6)


async def test_discovery_beyond_the_burst_goes_at_the_pace_states_at_once() -> None:
    sink = Sink()
    time = FakeTime()
    # Each vehicle's entity discovery is several messages: a burst of one device.
    per_device = len(entity_configs("0"))
    pub = publisher(sink, pacer=Pacer(float(per_device), clock=time, sleep=time.sleep))
    await pub.vehicles_changed("a", [state(str(n)) for n in range(4)])
    # The states went at once, before any queued discovery.
    assert {f"fleet/a/{n}" for n in range(4)} <= set(by_topic(sink.sent))
    await pub.discovery_settled(5)
    for n in range(4):
        assert entity_configs(str(n)) <= set(configs(sink.sent))
    assert sum(time.slept) == pytest.approx(4.0, abs=1.01)
    assert sink.sent[-1] == ("fleet/bridge/discovery", b'{"mode":"entity"}', True)


async def test_an_account_taken_over_while_offline_shows_its_vehicles_offline() -> None:
    sink = Sink()
    pub = publisher(sink)
    pub.seed("a", [state("1")])
    await pub.set_account_available("a", False)
    await pub.account_connected("a")
    await pub.discovery_settled(5)
    sent = by_topic(sink.take())
    assert sent["fleet/a/1/availability"] == ("offline", True)
    assert sent["fleet/a/1"][1] is True
    assert json.loads(sent["fleet/a/1"][0])["latitude"] == 59.43
    # Its discovery went out: a move sends the state alone.
    await pub.vehicles_changed("a", [state("1", latitude=59.5)])
    await pub.discovery_settled(5)
    assert [t for t, _p, _r in sink.take()] == ["fleet/a/1"]


async def test_a_device_form_bridge_clears_the_entity_form_it_finds() -> None:
    sink = Sink()
    pub = publisher(sink, discovery_mode="device")
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    sink.take()
    await pub.discovery_marker(b'{"mode":"entity"}')
    await pub.discovery_settled(5)
    sent = sink.take()
    for topic in entity_configs("1"):
        assert (topic, b"", True) in sent
    assert by_topic(sent)[vehicle_discovery_topic(TOPICS, "a", "1")][0] != b""
    assert sent[-1] == ("fleet/bridge/discovery", b'{"mode":"device"}', True)


async def test_an_account_handed_over_mid_clearing_leaves_the_others_queued() -> None:
    sink = Sink()
    pub = publisher(sink)
    pub.register_account("b", "telemax", CAPS)
    await pub.vehicles_changed("a", [state("1")])
    await pub.vehicles_changed("b", [state("2")])
    await pub.discovery_settled(5)
    sink.take()
    await pub.discovery_marker(b'{"mode":"device"}')
    pub.unregister_account("b")
    pub.unregister_account("never-registered")
    await pub.discovery_settled(5)
    sent = sink.take()
    assert (vehicle_discovery_topic(TOPICS, "a", "1"), b"", True) in sent
    assert entity_configs("1") <= set(configs(sent))
    assert not any("fleet_b" in t or "/b/" in t for t, _p, _r in sent)


# --- the second run's survivors (docs/mutants-quota-publisher.md) -------------------


def _payloads(sent: list[Message]) -> dict[str, tuple[Any, bool]]:
    """The configs by topic, decoded (other messages as sent)."""
    return {
        topic: (
            json.loads(payload) if topic.startswith("homeassistant/") and payload else payload,
            retain,
        )
        for topic, payload, retain in sent
    }


@pytest.mark.parametrize("mode", ["entity", "device"])
async def test_the_account_device_carries_its_name_provider_and_daily_budget(mode: str) -> None:
    sink = Sink()
    pub = Publisher(sink, TOPICS, unavailable=Down, discovery_mode=mode)  # type: ignore[arg-type]
    alerts = frozenset({AlertType.SPEEDING})
    pub.register_account("d", "fleetize", CAPS, name="Depot", has_daily_budget=True)
    pub.register_account("n", "telemax", CAPS, alert_types=alerts)  # no daily budget
    await pub.connected()
    await pub.discovery_settled(5)
    sent = _payloads(sink.sent)
    for account, provider, name, daily in (
        ("d", "fleetize", "Depot", True),
        ("n", "telemax", None, False),
    ):
        if mode == "device":
            built = [
                account_device_discovery(TOPICS, account, provider, name, has_daily_budget=daily)
            ]
        else:
            built = list(account_discovery(TOPICS, account, provider, name, has_daily_budget=daily))
        for message in built:
            assert sent[message.topic] == (json.loads(encode(message.payload)), True)
        # Nothing of the other form.
        other = set(account_discovery_topics(TOPICS, account)) - {m.topic for m in built}
        assert not other & set(sent)
    assert sink.sent[-1] == ("fleet/bridge/discovery", encode({"mode": mode}), True)


@pytest.mark.parametrize("mode", ["entity", "device"])
async def test_a_vehicles_configs_carry_its_alert_types(mode: str) -> None:
    sink = Sink()
    pub = Publisher(sink, TOPICS, unavailable=Down, discovery_mode=mode)  # type: ignore[arg-type]
    alerts = frozenset({AlertType.SPEEDING, AlertType.HARSH_BRAKING})
    pub.register_account("a", "telemax", CAPS, alert_types=alerts)
    vehicle = state("1")
    await pub.vehicles_changed("a", [vehicle])
    await pub.discovery_settled(5)
    sent = _payloads(sink.sent)
    caps = CAPS | {Capability.ALERTS}
    if mode == "device":
        built = [vehicle_device_discovery(TOPICS, "a", "telemax", caps, vehicle, alerts)]
    else:
        built = list(vehicle_discovery(TOPICS, "a", "telemax", caps, vehicle, alerts))
    assert any("alert" in message.topic or "alert" in str(message.payload) for message in built)
    for message in built:
        assert sent[message.topic] == (json.loads(encode(message.payload)), True)


async def test_a_reconnection_shows_an_available_account_online_and_keeps_discovery_done() -> None:
    sink = Sink()
    pub = publisher(sink)
    pub.seed("a", [state("1")])
    await pub.connected()
    await pub.discovery_settled(5)
    assert by_topic(sink.take())["fleet/a/1/availability"] == ("online", True)
    # Its discovery went with the connection: a move sends the state alone.
    await pub.vehicles_changed("a", [state("1", latitude=59.5)])
    await pub.discovery_settled(5)
    assert [t for t, _p, _r in sink.take()] == ["fleet/a/1"]
    pub.seed("a", [state("1")])
    await pub.account_connected("a")
    assert by_topic(sink.take())["fleet/a/1/availability"] == ("online", True)


async def test_a_state_equal_on_mqtt_does_not_stop_the_rest_of_the_batch() -> None:
    sink = Sink()
    pub = publisher(sink, discovery=False)
    first = state("1").merged(last_seen=AT.replace(microsecond=1))
    await pub.vehicles_changed("a", [first, state("2")])
    sink.take()
    # Vehicle 1 differs below a millisecond (the same payload), vehicle 2 moved.
    same_payload = first.merged(last_seen=AT.replace(microsecond=2))
    assert await pub.vehicles_changed("a", [same_payload, state("2", latitude=59.5)]) == 1
    assert [t for t, _p, _r in sink.take()] == ["fleet/a/2"]


async def test_home_assistant_restarting_while_discovery_is_queued_gets_every_device() -> None:
    sink = Sink()
    time = FakeTime()
    per_device = len(entity_configs("0"))
    pub = publisher(sink, pacer=Pacer(float(per_device), clock=time, sleep=time.sleep))
    await pub.vehicles_changed("a", [state(str(n)) for n in range(3)])
    # Devices 1 and 2 are queued behind device 0's burst when Home Assistant restarts.
    await pub.republish_discovery()
    await pub.discovery_settled(5)
    sink.take()
    await pub.republish_discovery()  # nothing queued now: all again, at the pace
    await pub.discovery_settled(5)
    sent = sink.take()
    for n in range(3):
        assert entity_configs(str(n)) <= set(configs(sent))


async def test_discovery_queued_after_the_marker_still_goes_out() -> None:
    sink = Sink()
    time = FakeTime()
    per_device = len(entity_configs("0"))
    pub = publisher(sink, pacer=Pacer(float(per_device), clock=time, sleep=time.sleep))
    await pub.vehicles_changed("a", [state("0")])
    await pub.discovery_settled(5)
    assert sink.sent[-1] == ("fleet/bridge/discovery", b'{"mode":"entity"}', True)
    sink.take()
    # The marker says our form: new vehicles beyond the burst are queued all the same.
    await pub.vehicles_changed("a", [state(str(n)) for n in range(1, 4)])
    await pub.discovery_settled(5)
    sent = sink.take()
    for n in range(1, 4):
        assert entity_configs(str(n)) <= set(configs(sent))


async def test_a_cleared_form_is_cleared_once() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1")])
    await pub.discovery_settled(5)
    await pub.discovery_marker(b'{"mode":"device"}')
    await pub.discovery_settled(5)
    assert (vehicle_discovery_topic(TOPICS, "a", "1"), b"", True) in sink.take()
    # Home Assistant restarts: our configs again, no second clearing.
    await pub.republish_discovery()
    await pub.discovery_settled(5)
    sent = sink.take()
    assert entity_configs("1") <= set(configs(sent))
    assert [t for t, payload, _r in sent if payload == b""] == []


async def test_alerts_go_out_with_nobody_listening_to_the_feed() -> None:
    sink = Sink()
    pub = publisher(sink)
    assert await pub.publish_alerts("a", [("fleet/a/1/alert", {"type": "speeding"})]) is True
    assert sink.sent == [("fleet/a/1/alert", b'{"type":"speeding"}', False)]


async def test_a_payload_with_number_keys_is_published() -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.publish_json("fleet/a/1/tanks", {1: 40.5, 2: 12.0}, retain=True)
    assert sink.sent == [("fleet/a/1/tanks", b'{"1":40.5,"2":12.0}', True)]


async def test_home_assistant_restarting_behind_one_queued_device_gets_all_the_others() -> None:
    sink = Sink()
    time = FakeTime()
    per_device = len(entity_configs("0"))
    pacer = Pacer(float(per_device), clock=time, sleep=time.sleep)
    pub = publisher(sink, pacer=pacer)
    await pub.vehicles_changed("a", [state(str(n)) for n in range(3)])
    await pub.discovery_settled(5)
    pacer.try_take(per_device)  # the burst is spent: a renamed device waits in the queue
    await pub.vehicles_changed("a", [state("0", name="Renamed")])
    sink.take()
    # Home Assistant restarts while device 0 is queued: the devices after it count too.
    await pub.republish_discovery()
    await pub.discovery_settled(5)
    sent = sink.take()
    for n in range(3):
        assert entity_configs(str(n)) <= set(configs(sent))


async def test_clearing_the_other_form_is_said_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink()
    pub = publisher(sink)
    await pub.vehicles_changed("a", [state("1")])
    with caplog.at_level(logging.INFO, logger="bridge.mqtt.publisher"):
        await pub.discovery_marker(b'{"mode":"device"}')
    await pub.discovery_settled(5)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.INFO,
            "Discovery on the broker is in the device form: clearing it for the entity form",
        )
    ]
