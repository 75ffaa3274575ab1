"""`egress:` and `organisation:` in the config, and what check-config says about
accounts that share a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.cli import cmd_check_config
from bridge.config import BridgeConfig, parse_config
from bridge.errors import ConfigError


def config(*accounts: dict[str, Any]) -> BridgeConfig:
    return BridgeConfig.model_validate({"accounts": list(accounts)})


def fleetize(name: str, token: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": name, "provider": "fleetize", "token": token or f"token-of-{name}", **extra}


def test_fleetize_accounts_on_one_egress_are_told_they_take_turns() -> None:
    (warning,) = config(fleetize("a"), fleetize("b")).warnings()
    assert warning.startswith("fleetize accounts a and b share egress 'default'")
    assert "they take turns, each polls at most every 120 s" in warning


def test_an_account_on_its_own_egress_is_not_in_the_line() -> None:
    accounts = config(fleetize("a"), fleetize("b"), fleetize("c"), fleetize("d", egress="proxy-2"))
    (warning,) = accounts.warnings()
    assert "accounts a, b and c share egress 'default'" in warning
    assert "every 180 s" in warning
    assert accounts.accounts[3].scopes().egress == "fleetize:egress:proxy-2"
    # A corrected spacing is the one each turn waits for.
    slow = config(fleetize("a"), fleetize("b", quota={"budgets": {"spacing": {"period": 90}}}))
    assert "every 180 s" in slow.warnings()[0]


def test_two_accounts_with_one_token_are_told_they_share_its_budgets() -> None:
    warnings = config(
        {"id": "x", "provider": "samsara", "token": "same-token-1"},
        {"id": "y", "provider": "samsara", "token": "same-token-1"},
    ).warnings()
    (warning,) = warnings
    assert warning.startswith("accounts x and y (samsara) use the same credentials")
    assert "per_token (150 calls per 1 s)" in warning
    assert "same-token-1" not in warning
    # FLEETIZE: one token twice, behind one address: both warnings.
    both = config(fleetize("a", "t-1"), fleetize("b", "t-1")).warnings()
    assert len(both) == 2
    assert "daily (100 calls per day)" in both[0]


def test_different_accounts_draw_no_warning() -> None:
    assert (
        config(
            fleetize("a"),
            {"id": "s", "provider": "samsara", "token": "tok-s", "organisation": "acme"},
            {"id": "t", "provider": "samsara", "token": "tok-t", "organisation": "acme"},
        ).warnings()
        == []
    )


def test_the_organisation_names_the_shared_scope() -> None:
    accounts = config(
        {"id": "s", "provider": "samsara", "token": "tok-s", "organisation": "acme"},
        {"id": "t", "provider": "samsara", "token": "tok-t", "organisation": "acme"},
    ).accounts
    assert accounts[0].scopes().organisation == accounts[1].scopes().organisation
    assert accounts[0].scopes().token != accounts[1].scopes().token


@pytest.mark.parametrize("option", ["egress", "organisation"])
def test_a_bad_scope_name_is_named(option: str) -> None:
    text = (
        f"accounts:\n  - id: s\n    provider: samsara\n    token: abc\n    {option}: 'two words'\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    (problem,) = caught.value.problems
    assert problem.startswith(f"accounts[0].{option} (line 5): must be 1 to 64 characters")


def test_check_config_prints_what_the_bridge_will_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "accounts:\n"
        "  - {id: north, provider: fleetize, token: tok-north}\n"
        "  - {id: south, provider: fleetize, token: tok-south}\n"
    )
    path.chmod(0o600)
    assert cmd_check_config(str(path)) == 0
    out = capsys.readouterr().out
    assert "warning: fleetize accounts north and south share egress 'default'" in out
    assert "each polls at most every 120 s" in out
