"""The `http:` section, and `fleet-bridge demo` printing (and serving) its dashboard."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.config import OSM_TILES, parse_config
from bridge.errors import ConfigError
from tests.e2e.test_cli import FLEET_BRIDGE, Process

ACCOUNT = "accounts:\n  - {id: a, provider: samsara, token: t0ken-for-tests}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(ACCOUNT + text)
    return err.value.problems


def test_http_defaults_serve_nothing_and_an_empty_section_is_the_defaults() -> None:
    for text in ("", "http:\n"):
        http = parse_config(ACCOUNT + text).http
        assert not http.enabled
        assert (http.host, http.port, http.tile_url) == ("127.0.0.1", 8743, OSM_TILES)
        assert not http.dashboard_public


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "http: {dashboard: true}",
            "http (line 3): the dashboard needs http.token or http.password "
            "(or dashboard_public: true to show it without logging in)",
        ),
        ("http: {dashboard: true, token: short}", "http.token (line 3): must be at least 16"),
        ("http: {dashboard: true, password: abc}", "http.password (line 3): must be at least 8"),
        (
            "http: {dashboard: true, dashboard_public: true, tile_url: 'ftp://x/{z}/{x}/{y}'}",
            "http.tile_url (line 3): must be an http:// or https:// URL template",
        ),
        (
            "http: {dashboard: true, dashboard_public: true, tile_url: 'https://t.example/{z}.png'}",
            "http.tile_url (line 3): must contain {x}, {y}",
        ),
        (
            "http: {metrics: true, metrics_public: false}",
            "http (line 3): metrics_public: false needs http.token",
        ),
        ("http: {dashbord: true}", "http.dashbord (line 3): unknown option"),
    ],
)
def test_a_bad_http_section_is_named(section: str, expected: str) -> None:
    found = problems(section + "\n")
    assert len(found) == 1
    assert found[0].startswith(expected), found


def test_the_credentials_come_from_the_environment_and_are_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASH_TOKEN", "environment-token-0123456789")
    monkeypatch.setenv("DASH_PASSWORD", "environment-password")
    config = parse_config(
        ACCOUNT + "http: {dashboard: true, token: '${DASH_TOKEN}', password: '${DASH_PASSWORD}'}\n"
    )
    assert config.http.token is not None
    assert config.http.token.get_secret_value() == "environment-token-0123456789"
    assert "environment-token-0123456789" in config.secrets()
    assert "environment-password" in config.secrets()
    assert "environment-token" not in repr(config.http)
    # A value too short is refused without being quoted back.
    monkeypatch.setenv("DASH_TOKEN", "tiny-secret")
    found = problems("http: {dashboard: true, token: '${DASH_TOKEN}'}\n")
    assert not any("tiny-secret" in line for line in found)


def test_the_demo_prints_its_dashboard_link_and_never_logs_the_token(tmp_path: Path) -> None:
    demo = Process(
        [
            *FLEET_BRIDGE,
            "--log-level",
            "info",
            "demo",
            "--vehicles",
            "3",
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
            "--quiet",
        ]
    )
    try:
        match = demo.wait_line(r"dashboard\s+(http://127\.0\.0\.1:\d+/)#token=(\S+)")
        url, token = match.groups()
        # The bridge's own log names where it listens, not the token.
        demo.wait_line(r"Web server on http://127\.0\.0\.1:\d+/", timeout=30)
        request = urllib.request.Request(
            url + "api/state", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            state = json.load(response)
        assert {a["id"] for a in state["accounts"]} >= {"demo-samsara", "demo-metrotec"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "api/state", timeout=10)
        assert refused.value.code == 401
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, "\n".join(demo.lines)
    # Once, in the banner on stdout; in no log line.
    assert [line for line in demo.lines if token in line] == [match.string.rstrip()]
