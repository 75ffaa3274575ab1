"""Property-based: any command payload or topic gets an answer naming what is wrong.

Together with test_property_config.py, 10,000 examples a run (derandomized, so
CI runs the same ones every time and no example database is written).
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mqtt.commands import COMMANDS, parse_command, parse_set
from bridge.mqtt.requests import RequestError, parse_request
from bridge.mqtt.topics import Topics, topic_level

PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELDS = [
    "transaction", "account", "vehicle", "state", "camera", "order_ref", "latitude",
    "longitude", "start_time", "stop_time", "status", "description", "address",
    "contact_name", "contact_phone", "lights", "snapshot", "extra",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(
        ["ON", "OFF", "road", "driver", "cancelled", "2026-03-02T12:00:00Z", "Truck 7"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), values, max_size=9)


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


payloads = st.one_of(
    bodies.map(_encode),
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    values.map(_encode),
)


def check(name: str, payload: bytes) -> None:
    try:
        request = parse_request(name, payload)
        parse_command(name, dict(request.body), request.transaction)
    except RequestError as err:
        assert err.field, "every refusal names its field"  # noqa: PT017
        assert str(err).startswith(err.field) or err.field in str(err)  # noqa: PT017


@settings(PROPERTY, max_examples=3000)
@given(name=st.sampled_from(COMMANDS), payload=payloads)
def test_any_command_payload_is_accepted_or_refused_by_name(name: str, payload: bytes) -> None:
    check(name, payload)


@settings(PROPERTY, max_examples=1500)
@given(account=st.text(max_size=20), vehicle=st.text(max_size=20), body=bodies)
def test_any_set_payload_is_accepted_or_refused_by_name(
    account: str, vehicle: str, body: dict[str, Any]
) -> None:
    try:
        name, request = parse_set(account, vehicle, body)
        parse_command(name, request, None)
    except RequestError as err:
        assert err.field  # noqa: PT017


_SAFE = re.compile(r"[A-Za-z0-9_-]+")


@settings(PROPERTY, max_examples=1500)
@given(account=st.text(max_size=30), vehicle=st.text(max_size=30))
def test_any_provider_id_makes_one_safe_topic_level(account: str, vehicle: str) -> None:
    level = topic_level(vehicle)
    assert _SAFE.fullmatch(level)
    topics = Topics("fleet", "homeassistant")
    state = topics.vehicle_state("acct", vehicle)
    assert state.count("/") == 2
    assert "+" not in state
    assert "#" not in state
    assert state != topics.account_quota("acct")
    assert topics.vehicle_set("acct", vehicle).endswith("/set")


@settings(PROPERTY, max_examples=3000)
@given(first=st.text(max_size=30), second=st.text(max_size=30))
def test_two_provider_ids_never_share_a_topic_or_a_unique_id(first: str, second: str) -> None:
    from bridge.mqtt.discovery import device_identifier

    if first == second:
        return
    topics = Topics("fleet", "homeassistant")
    assert topic_level(first) != topic_level(second)
    assert topics.vehicle_state("acct", first) != topics.vehicle_state("acct", second)
    assert device_identifier("acct", first) != device_identifier("acct", second)


def test_ids_that_sanitise_alike_stay_apart_and_safe_ids_are_kept() -> None:
    from bridge.mqtt.discovery import device_identifier

    topics = Topics("fleet", "homeassistant")
    # The attack: `a+b` and `a#b` were both `fleet/sam/a_b`, one unique id.
    assert topics.vehicle_state("sam", "a+b") != topics.vehicle_state("sam", "a#b")
    assert device_identifier("sam", "a+b") != device_identifier("sam", "a#b")
    # So were `quota` (kept off the account's own topic) and `quota_`.
    assert topics.vehicle_state("sam", "quota") != topics.vehicle_state("sam", "quota_")
    assert topics.vehicle_state("sam", "quota") != topics.account_quota("sam")
    # Ids that are already safe keep their topics and unique ids.
    assert topics.vehicle_state("sam", "281474976710001") == "fleet/sam/281474976710001"
    assert topics.vehicle_state("sam", "veh_01-A") == "fleet/sam/veh_01-A"
    assert device_identifier("sam", "001HAQ") == "fleet_sam_001HAQ"
