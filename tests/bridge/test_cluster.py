"""Who holds which accounts when several instances share a store (bridge.cluster):
the grouping by shared scopes and the even, stable assignment."""

from __future__ import annotations

import itertools

from bridge.cluster import AccountScopes, account_scopes, assign, units
from bridge.config import parse_config


def test_accounts_sharing_an_egress_or_a_token_are_one_unit() -> None:
    found = units(
        [
            AccountScopes("fz1", frozenset({"fleetize:egress:default"})),
            AccountScopes("fz2", frozenset({"fleetize:egress:default"})),
            AccountScopes("sam-a", frozenset({"samsara:token:x", "samsara:org:acme"})),
            AccountScopes("sam-b", frozenset({"samsara:token:y", "samsara:org:acme"})),
            AccountScopes("sam-c", frozenset({"samsara:token:y", "samsara:org:~y"})),
            AccountScopes("mt", frozenset({"metrotec:token:z"})),
        ]
    )
    # sam-c shares b's token, b shares a's organisation: one unit, transitively.
    assert found == {"fz1": ("fz1", "fz2"), "mt": ("mt",), "sam-a": ("sam-a", "sam-b", "sam-c")}


def test_a_configured_fleetize_pair_behind_one_address_is_one_unit() -> None:
    config = parse_config(
        """
accounts:
  - {id: north, provider: fleetize, token: fleetize-token-north-000001}
  - {id: south, provider: fleetize, token: fleetize-token-south-000002}
  - {id: far, provider: fleetize, token: fleetize-token-far-00000003, egress: far-office}
  - {id: mt, provider: metrotec, username: u, password: metrotec-password-01}
"""
    )
    found = units(account_scopes(a) for a in config.accounts)
    assert found == {"far": ("far",), "mt": ("mt",), "north": ("north", "south")}


def counts(plan: dict[str, str]) -> list[int]:
    return sorted(list(plan.values()).count(i) for i in set(plan.values()))


def test_units_are_spread_evenly_and_a_joiner_moves_only_its_share() -> None:
    names = [f"u{n:02d}" for n in range(30)]
    alone = assign(names, ["a"], {})
    assert set(alone.values()) == {"a"}
    two = assign(names, ["a", "b"], alone)
    assert counts(two) == [15, 15]
    # Half stays where it was: the joiner takes its share, nothing more moves.
    assert sum(two[u] == alone[u] for u in names) == 15
    three = assign(names, ["a", "b", "c"], two)
    assert counts(three) == [10, 10, 10]
    assert sum(three[u] == two[u] for u in names) == 20


def test_a_dead_instances_units_are_spread_over_the_living() -> None:
    names = [f"u{n}" for n in range(7)]
    three = assign(names, ["a", "b", "c"], {})
    assert counts(three) == [2, 2, 3]
    owners = {u: o for u, o in three.items() if o != "b"}  # b died
    two = assign(names, ["a", "c"], owners)
    assert counts(two) == [3, 4]
    assert all(two[u] == o for u, o in owners.items())


def test_every_instance_computes_the_same_plan() -> None:
    names = [f"u{n}" for n in range(11)]
    owners = {"u1": "b", "u2": "b", "u3": "b", "u4": "b", "u5": "zombie"}
    plans = [
        assign(names, list(order), owners) for order in itertools.permutations(["a", "b", "c"])
    ]
    assert all(plan == plans[0] for plan in plans)
    assert counts(plans[0]) == [3, 4, 4]
    assert assign(names, [], owners) == {}
