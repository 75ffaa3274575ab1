"""Property-based: any YAML config is loaded, or refused with every problem named."""

from __future__ import annotations

import re
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import BridgeConfig, parse_config
from bridge.errors import ConfigError
from tests.bridge.test_property_commands import PROPERTY

OPTIONS = [
    "mqtt", "host", "port", "username", "password", "tls", "base_topic", "qos", "store",
    "path", "accounts", "id", "provider", "token", "api_key", "poll_interval", "staleness",
    "commands", "allow", "webhooks", "enabled", "secret", "quota", "budgets", "limit",
    "reserve", "day_zone", "offline_after", "request_timeout", "region", "base_url",
]  # fmt: skip
SECRET = "s3cr3t-value-never-echoed"
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        ["samsara", "fleetize", "telemax", "metrotec", "tracksafe365", "${NOPE}", SECRET]
    ),
)
trees = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(OPTIONS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=12,
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "mqtt": trees,
        "accounts": st.lists(
            st.fixed_dictionaries(
                {"id": st.sampled_from(["a", "b", "bridge", "", "x y"]) | st.text(max_size=5)},
                optional={
                    "provider": st.sampled_from(["samsara", "fleetize", "nope"]),
                    "token": st.just(SECRET) | scalars,
                    "poll_interval": scalars,
                    "staleness": scalars,
                },
            ),
            max_size=3,
        )
        | trees,
        "store": trees,
        "commands": trees,
    },
)
PROBLEM = re.compile(r".+: .+")


def check(text: str) -> None:
    try:
        config = parse_config(text)
    except ConfigError as err:
        assert err.problems  # noqa: PT017
        for problem in err.problems:
            assert PROBLEM.fullmatch(problem), problem
            assert SECRET not in problem
    else:
        assert isinstance(config, BridgeConfig)


@settings(PROPERTY, max_examples=3000)
@given(data=configs)
def test_any_config_tree_loads_or_names_each_problem(data: dict[str, Any]) -> None:
    check(yaml.safe_dump(data))


@settings(PROPERTY, max_examples=1000)
@given(text=st.text(max_size=200))
def test_any_text_is_a_config_or_a_named_problem(text: str) -> None:
    check(text)
