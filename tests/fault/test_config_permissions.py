"""A config file with secrets in it that every user can read is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import inline_secrets, readable_config_problem

INLINE = (
    "mqtt: {password: hunter2-hunter2}\n"
    "accounts:\n  - {id: a, provider: samsara, token: tok-123456}\n"
)
REFERENCES = (
    "mqtt: {password: '${MQTT_PASSWORD}'}\n"
    "accounts:\n  - {id: a, provider: samsara, token: '${file:/run/secrets/samsara}'}\n"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "", "MQTT_PASSWORD": "x"},
    )


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_world_readable_with_inline_secrets_is_refused_with_the_fix(
    tmp_path: Path, command: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(INLINE)
    config.chmod(0o644)
    args = ("run", "--config", str(config)) if command == "run" else ("check-config", str(config))
    result = run(*args)
    assert result.returncode == 1
    assert f"chmod 600 {config}" in result.stderr
    assert "mqtt.password, accounts[0].token" in result.stderr
    assert "--allow-readable-config" in result.stderr
    # The message names the options, never their values.
    assert "hunter2" not in result.stderr
    assert "tok-123456" not in result.stderr


def test_the_opt_out_and_the_fixes_are_accepted(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(INLINE)
    config.chmod(0o644)
    assert run("check-config", "--allow-readable-config", str(config)).returncode == 0
    config.chmod(0o600)
    assert readable_config_problem(str(config)) is None
    assert run("check-config", str(config)).returncode == 0
    config.write_text(REFERENCES)
    config.chmod(0o644)
    assert readable_config_problem(str(config)) is None


def test_inline_secrets_are_found_wherever_they_are() -> None:
    text = (
        "mqtt: {password: p4ssword}\n"
        "webhooks: {accounts: {ts: {secret: 'pre-${X}-post'}}}\n"
        "accounts:\n"
        "  - {id: a, provider: metrotec, username: u, password: '${file:p}', api_key: k3y-1}\n"
        "  - {id: b, provider: fleetize, token: '$${literal}'}\n"
    )
    assert inline_secrets(text) == [
        "mqtt.password",
        "webhooks.accounts.ts.secret",
        "accounts[0].api_key",
        "accounts[1].token",
    ]


def test_an_inline_default_of_a_reference_is_an_inline_secret(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "mqtt: {password: '${MQTT_PASSWORD:-hunter2-hunter2}'}\n"
        "accounts:\n  - {id: a, provider: samsara, token: '${MQTT_PASSWORD}'}\n"
    )
    config.chmod(0o644)
    result = run("check-config", str(config))
    assert result.returncode == 1
    assert "holds secrets in mqtt.password:" in result.stderr
    assert "hunter2" not in result.stderr
    # An empty default is no secret written out; neither is a file reference.
    assert inline_secrets("mqtt: {password: '${file:/run/pw}', token: '${T:-}'}\n") == []
