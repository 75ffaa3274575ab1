"""Property-based: any command payload or topic gets an answer naming what is wrong.

Together with test_property_config.py, 10,000 examples a run (derandomized, so
CI runs the same ones every time and no example database is written).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.mqtt.commands import COMMANDS, parse_command, parse_set
from bridge.mqtt.requests import (
    MAX_DEPTH,
    MAX_PAYLOAD,
    MAX_TRANSACTION,
    RequestError,
    parse_request,
    transaction_of,
)
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


# What a refusal may name: the envelope, or a field the command takes.
_ENVELOPE = {"payload", "transaction", "command"}


def _known_fields(name: str) -> set[str]:
    from bridge.mqtt.commands import _MODELS

    return set(_MODELS[name].model_fields)


def check(name: str, payload: bytes) -> None:
    try:
        request = parse_request(name, payload)
        parse_command(name, dict(request.body), request.transaction)
    except RequestError as err:
        assert err.field, "every refusal names its field"  # noqa: PT017
        # The field named is one the sender can find: the envelope, a field of
        # the command, or (for an unknown field) one the payload really has.
        sent = _top_level_keys(payload)
        head = err.field.split(".")[0]
        assert head in _ENVELOPE | _known_fields(name) | sent, (err.field, sent)  # noqa: PT017
        if err.reason == "unknown field":
            assert err.field in sent  # noqa: PT017


def _top_level_keys(payload: bytes) -> set[str]:
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return set()
    return set(body) if isinstance(body, dict) else set()


@settings(PROPERTY, max_examples=3000)
@given(name=st.sampled_from(COMMANDS), payload=payloads)
def test_any_command_payload_is_accepted_or_refused_by_name(name: str, payload: bytes) -> None:
    check(name, payload)


def _nest(value: Any, depth: int, kinds: list[bool]) -> Any:
    for as_list in kinds[:depth]:
        value = [value] if as_list else {"n": value}
    return value


@settings(PROPERTY, max_examples=400)
@given(
    name=st.sampled_from(COMMANDS),
    depth=st.integers(min_value=0, max_value=MAX_DEPTH + 3),
    kinds=st.lists(st.booleans(), min_size=MAX_DEPTH + 3, max_size=MAX_DEPTH + 3),
    field=st.sampled_from([f for f in FIELDS if f != "transaction"]),
    transaction=st.one_of(st.none(), st.text(max_size=MAX_TRANSACTION + 5), st.integers()),
)
def test_payloads_nested_up_to_and_past_the_limit_are_refused_by_name(
    name: str, depth: int, kinds: list[bool], field: str, transaction: Any
) -> None:
    body = {"account": "a", "vehicle": "v", field: _nest("x", depth, kinds)}
    if transaction is not None:
        body["transaction"] = transaction
    payload = json.dumps(body).encode()
    check(name, payload)
    # One level is the object itself: past MAX_DEPTH in all, it is refused as
    # too deep, with the transaction it carried when that can be read.
    if depth + 1 > MAX_DEPTH:
        with pytest.raises(RequestError, match="payload: nested too deeply"):
            parse_request(name, payload)
        readable = isinstance(transaction, int) or (
            isinstance(transaction, str) and len(transaction) <= MAX_TRANSACTION
        )
        assert transaction_of(payload) == (str(transaction) if readable else None)


@settings(PROPERTY, max_examples=200)
@given(
    name=st.sampled_from(COMMANDS),
    size=st.integers(min_value=MAX_PAYLOAD - 64, max_value=MAX_PAYLOAD + 64),
)
def test_payloads_around_the_size_limit_are_answered_by_name(name: str, size: int) -> None:
    head = json.dumps({"transaction": "big", "account": "a", "description": ""}).encode()
    payload = head[:-2] + b"x" * max(0, size - len(head)) + b'"}'
    check(name, payload)
    if len(payload) > MAX_PAYLOAD:
        with pytest.raises(RequestError, match="payload: too large"):
            parse_request(name, payload)
        assert transaction_of(payload) is None
    else:
        assert transaction_of(payload) == "big"


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
