"""MQTT with TLS, client certificates and a password, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.config import BridgeConfig
from bridge.simulator.server import SimulatorServer
from tests.bridge.test_bridge_mqtt import running
from tests.support.mqtt import Mosquitto, free_port, record
from tests.support.tls import Certificates, make_certificates

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
async def simulator() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(vehicles=3, speed=0, seed=11) as server:
        yield server


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def secure_broker(tmp_path: Path, certificates: Certificates) -> tuple[Mosquitto, int]:
    """A plain listener for the test's recorder, and a TLS listener that wants a client
    certificate and a password for the bridge."""
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), "fleet", PASSWORD], check=True)
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path,
        extra_config=(
            f"listener {tls_port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"cafile {certificates.ca}\n"
            f"certfile {certificates.server_cert}\n"
            f"keyfile {certificates.server_key}\n"
            "require_certificate true\n"
        ),
    )
    broker.start()
    yield broker, tls_port
    broker.stop()


def tls_config(
    tmp_path: Path, port: int, simulator: SimulatorServer, certs: Certificates, password: str
) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "username": "fleet",
                "password": password,
                "tls": {
                    "ca_file": str(certs.ca),
                    "cert_file": str(certs.client_cert),
                    "key_file": str(certs.client_key),
                },
            },
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": [
                {
                    "id": "secure",
                    "provider": "samsara",
                    "token": "demo-samsara-token",
                    "base_url": simulator.samsara_url,
                    "poll_interval": 3600,
                }
            ],
        }
    )


async def test_bridge_publishes_over_tls_with_client_certificate_and_password(
    tmp_path: Path,
    secure_broker: tuple[Mosquitto, int],
    certificates: Certificates,
    simulator: SimulatorServer,
) -> None:
    broker, tls_port = secure_broker
    ids = simulator.world.ids()
    config = tls_config(tmp_path, tls_port, simulator, certificates, PASSWORD)
    async with record(broker.host, broker.port) as recorder, running(config):
        await recorder.wait_for(
            lambda: (
                all(f"fleet/secure/{v}" in recorder.retained for v in ids)
                and recorder.retained.get("fleet/bridge/state") == b"online"
            )
        )


async def test_a_wrong_password_is_retried_and_never_logged(
    tmp_path: Path,
    secure_broker: tuple[Mosquitto, int],
    certificates: Certificates,
    simulator: SimulatorServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, tls_port = secure_broker
    wrong = "wrong-password-do-not-log"
    config = tls_config(tmp_path, tls_port, simulator, certificates, wrong)
    caplog.set_level(logging.DEBUG)
    async with (
        record(broker.host, broker.port) as recorder,
        running(config, subscribed=False) as bridge,
    ):
        async with asyncio.timeout(15):
            await bridge.link.attempt_failed.wait()
        assert not bridge.link.connected.is_set()
        assert "fleet/bridge/state" not in recorder.retained
        # The bridge keeps polling while MQTT is refused.
        await bridge.pollers["secure"].wait_polls(1)
    assert wrong not in caplog.text
    assert "unavailable" in caplog.text
