"""Secrets never leak; MQTT with TLS, client certificates and a least-privilege ACL.

The secrets test runs every provider with random credentials, a webhook secret
and an MQTT password through faults that tempt a leak (provider errors that
echo the token, refused credentials, bad webhook signatures), records every
log line, every MQTT message (retained or not, `fleet/bridge/info` included),
every exception and the diagnostics the bridge publishes, and greps all of it
for every secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import aiohttp
import aiomqtt
import pytest

from bridge.config import BridgeConfig
from bridge.logs import RedactingFilter
from bridge.simulator.faults import Rule
from bridge.simulator.server import SimulatorServer
from tests.fault.conftest import SECRETS, Tally, accounts, poll_all, running
from tests.support.mqtt import Mosquitto, free_port, record
from tests.support.tls import Certificates, make_certificates

BRIDGE_USER = "fleet-bridge"
VIEWER, DRIVER = "dashboard", "dispatcher"
# The ACL the bridge needs (README, "MQTT access control"): write its own topics
# and discovery, read the request, set and Home Assistant status topics and its
# own discovery marker.
ACL = f"""
user {BRIDGE_USER}
topic write fleet/#
topic write homeassistant/#
topic read fleet/bridge/request/#
topic read fleet/+/+/set
topic read homeassistant/status
topic read fleet/bridge/discovery

user {VIEWER}
topic read fleet/#

user {DRIVER}
topic read fleet/#
topic write fleet/bridge/request/#
topic write fleet/+/+/set
"""


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def secure_broker(tmp_path: Path, certificates: Certificates) -> tuple[Mosquitto, int, int]:
    """A plain listener (the test's recorder), a TLS listener with client
    certificates, passwords and the ACL, and a password+ACL listener without TLS
    for the other users."""
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), BRIDGE_USER, SECRETS["mqtt"]], check=True)
    for user in (VIEWER, DRIVER):
        subprocess.run([tool, "-b", str(passwd), user, f"{user}-pw"], check=True)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    tls_port, users_port = free_port(), free_port()
    broker = Mosquitto(
        tmp_path,
        extra_config=(
            f"listener {tls_port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"acl_file {acl}\n"
            f"cafile {certificates.ca}\n"
            f"certfile {certificates.server_cert}\n"
            f"keyfile {certificates.server_key}\n"
            "require_certificate true\n"
            f"listener {users_port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"acl_file {acl}\n"
        ),
    )
    broker.start()
    yield broker, tls_port, users_port
    broker.stop()


def secure_config(
    tmp_path: Path, tls_port: int, sim: SimulatorServer, certs: Certificates, hook_port: int
) -> BridgeConfig:
    return BridgeConfig.model_validate(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": tls_port,
                "username": BRIDGE_USER,
                "password": SECRETS["mqtt"],
                "client_id": "secure-bridge",
                "tls": {
                    "ca_file": str(certs.ca),
                    "cert_file": str(certs.client_cert),
                    "key_file": str(certs.client_key),
                },
            },
            "store": {"path": str(tmp_path / "store.sqlite")},
            "accounts": accounts(sim),
            "commands": {
                "allow": [
                    {"accounts": ["mt"], "vehicles": [VEHICLE_ALLOWED], "commands": ["lights"]}
                ]
            },
            "webhooks": {
                "enabled": True,
                "host": "127.0.0.1",
                "port": hook_port,
                "accounts": {"ts": {"path": "/webhooks/ts", "secret": SECRETS["webhook"]}},
            },
        }
    )


OWN_SECRET = {
    "samsara": "samsara",
    "fleetize": "fleetize",
    "telemax": "telemax",
    "metrotec": "metrotec_password",
    "tracksafe365": "tracksafe365",
}


def echoes(secret: str) -> list[str]:
    """Error bodies that quote a secret the ways providers do."""
    return [
        f"bad token {secret}",
        json.dumps({"detail": f"bad token {secret}"}),
        f"bad request: token={quote(secret, safe='')}&x=1",
        # The error body is cut at 200 bytes, 12 characters into the secret.
        "x" * (200 - 12) + secret,
    ]


def leaks(secret: str, text: str) -> bool:
    """Whether `text` holds the secret, an escaped form of it, or 12 characters
    of it in a row (what a cut leaves)."""
    forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}
    windows = {secret[i : i + 12] for i in range(len(secret) - 11)}
    return any(form in text for form in forms | windows)


VEHICLE_ALLOWED = "Metrotec 1"  # placeholder, replaced by the first vehicle's id


async def test_secrets_never_leak_and_least_privilege_holds(
    tmp_path: Path,
    secure_broker: tuple[Mosquitto, int, int],
    certificates: Certificates,
    sim: SimulatorServer,
    tally: Tally,
    caplog: pytest.LogCaptureFixture,
) -> None:
    global VEHICLE_ALLOWED
    broker, tls_port, users_port = secure_broker
    allowed, denied = sim.metrotec_world.ids()[:2]
    VEHICLE_ALLOWED = allowed
    hook_port = free_port()
    config = secure_config(tmp_path, tls_port, sim, certificates, hook_port)
    # The log as `fleet-bridge run` writes it: every line through the redactor.
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(config.secrets()))
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    infos: list[str] = []
    async with record(broker.host, broker.port, ("#",)) as recorder, running(config, sim) as bridge:
        await poll_all(bridge)
        await recorder.wait_for(lambda: "fleet/bridge/info" in recorder.retained)

        # Faults that tempt a leak: providers echoing the credentials back, as
        # they are, JSON-escaped, URL-encoded, and cut by the 200-byte limit on
        # error bodies (each provider's own secret and the MQTT password first:
        # a poll and its retry take two of these).
        injected = 0
        for provider, own in OWN_SECRET.items():
            first = [SECRETS[own], SECRETS["mqtt"]]
            for secret in [*first, *(s for s in SECRETS.values() if s not in first)]:
                for body in echoes(secret):
                    sim.faults.add(Rule("status", provider=provider, status=500, body=body))
                    injected += 1
            sim.faults.add(
                Rule("status", provider=provider, status=401, body=f"refused: {SECRETS['mqtt']}")
            )
            injected += 1
        tally.injected("secret-echoing errors", injected)
        for _ in range(6):
            sim.clock.advance(61)
            await poll_all(bridge)
            infos.append(json.dumps(bridge.info()))
        await asyncio.sleep(0)  # let bridge/info go out
        sim.faults.clear()

        # Webhooks with bad signatures, including one made with the MQTT password.
        async with aiohttp.ClientSession() as http:
            for signature in (
                "sha256=00",
                hmac.new(SECRETS["mqtt"].encode(), b"{}", hashlib.sha256).hexdigest(),
            ):
                async with http.post(
                    f"http://127.0.0.1:{hook_port}/webhooks/ts",
                    data=b"{}",
                    headers={"X-TS365-Signature": signature},
                ) as response:
                    assert response.status in (401, 404)
        tally.injected("bad webhook signatures", 2)

        # Least privilege: a viewer cannot drive a vehicle; a dispatcher the broker
        # lets through is still held to commands.allow.
        async with aiomqtt.Client(
            "127.0.0.1", users_port, username=VIEWER, password=f"{VIEWER}-pw"
        ) as viewer:
            await viewer.publish(
                "fleet/bridge/request/lights",
                json.dumps(
                    {"transaction": "viewer", "account": "mt", "vehicle": allowed, "state": "ON"}
                ).encode(),
                qos=1,
            )
        async with aiomqtt.Client(
            "127.0.0.1", users_port, username=DRIVER, password=f"{DRIVER}-pw"
        ) as driver:
            for tx, vehicle in (("allowed", allowed), ("denied", denied)):
                await driver.publish(
                    "fleet/bridge/request/lights",
                    json.dumps(
                        {"transaction": tx, "account": "mt", "vehicle": vehicle, "state": "ON"}
                    ).encode(),
                    qos=1,
                )
        await recorder.wait_for(
            lambda: (
                {"allowed", "denied"}
                <= {
                    json.loads(m.payload).get("transaction")
                    for m in recorder.messages
                    if m.topic == "fleet/bridge/response/lights"
                }
            )
        )
        answers = {
            json.loads(m.payload)["transaction"]: json.loads(m.payload)
            for m in recorder.messages
            if m.topic == "fleet/bridge/response/lights"
        }
        assert "viewer" not in answers  # the broker dropped it: the bridge never saw it
        assert answers["allowed"]["status"] == "ok"
        assert answers["denied"]["status"] == "error"
        assert "commands.allow" in answers["denied"]["error"]
        # Only the allowed command reached the provider.
        assert len(sim.faults.requests("metrotec", "/objects/events/")) == 1
        tally.commands_accepted += 1
        tally.commands_answered += 1
        info = bridge.info()
    root.removeHandler(handler)

    everything = "\n".join(
        [
            output.getvalue(),
            *(m.topic + " " + m.payload.decode("utf-8", "replace") for m in recorder.messages),
            json.dumps(info),
            *infos,
            repr(config),
            str(config),
        ]
    )
    found = [name for name, value in SECRETS.items() if leaks(value, everything)]
    tally.secrets_found += len(found)
    assert found == []
    # The faults did happen and were reported, redacted.
    assert any("**redacted**" in i for i in infos)
    assert "**redacted**" in output.getvalue()
