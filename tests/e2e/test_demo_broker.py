"""`fleet-bridge demo` as a newcomer meets it: its embedded broker watched and
driven with mosquitto_sub and mosquitto_pub, exactly as the demo prints them.

Exact topic filters get only their topic, a retained message comes once however
many filters match it, the printed `try a command` line (QoS 0) is answered, and
the demo prints plain payloads as text and messages beyond `fleet/+/+`.
"""

from __future__ import annotations

import collections
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.test_cli import FLEET_BRIDGE, Process
from tests.support.mqtt import free_port

pytestmark = pytest.mark.e2e


def _client(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (./scripts/test installs mosquitto-clients)")
    return path


@pytest.fixture(scope="module")
def demo() -> Iterator[Process]:
    process = Process([*FLEET_BRIDGE, "demo", "--vehicles", "3", "--mqtt-port", str(free_port())])
    try:
        process.wait_line(r"try a command")
        # Ready once the vehicles are out (discovery goes first, with them).
        process.wait_line(r"fleet/demo-metrotec/\S+\s+\S", timeout=60)
        yield process
    finally:
        code = process.stop(signal.SIGINT)
        assert code == 0, "\n".join(process.lines)


def port_of(demo: Process) -> str:
    return demo.wait_line(r"MQTT broker\s+127\.0\.0\.1:(\d+)").group(1)


def sub(demo: Process, *args: str, wait: float = 3) -> list[str]:
    """mosquitto_sub -v until it has been quiet for `wait` seconds' worth (-W)."""
    result = subprocess.run(
        [_client("mosquitto_sub"), "-h", "127.0.0.1", "-p", port_of(demo), "-v", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # 27: the -W timeout ended it, which is how these subscriptions end.
    assert result.returncode in (0, 27), result.stderr
    return result.stdout.splitlines()


def test_an_exact_filter_gets_its_topic_and_nothing_else(demo: Process) -> None:
    assert sub(demo, "-t", "fleet/bridge/state", "-C", "1", "-W", "10") == [
        "fleet/bridge/state online"
    ]
    # A topic nobody publishes: nothing at all (amqtt sent 39 unrelated retained).
    assert sub(demo, "-t", "foo/bar", "-W", "2") == []


def test_retained_messages_come_once_even_to_overlapping_filters(demo: Process) -> None:
    lines = sub(demo, "-t", "homeassistant/#", "-t", "homeassistant/+/+/+/config",
                "--retained-only", "-W", "3")  # fmt: skip
    topics = collections.Counter(line.split(" ", 1)[0] for line in lines)
    assert len(topics) > 50, "the demo's discovery configs"
    assert [t for t, n in topics.items() if n > 1] == []


def test_the_printed_command_is_answered(demo: Process) -> None:
    line = demo.wait_line(r"try a command\s+(mosquitto_pub .*)$").group(1)
    command = shlex.split(line)
    assert "-q" not in command, "the printed line is QoS 0, as a newcomer types it"
    # Also subscribed to the retained bridge state: its arrival says the
    # subscription is in place before the command goes.
    answers = subprocess.Popen(
        [_client("mosquitto_sub"), "-h", "127.0.0.1", "-p", port_of(demo), "-v",
         "-t", "fleet/bridge/state", "-t", "fleet/bridge/response/lights", "-C", "2", "-W", "30"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert answers.stdout is not None
        assert answers.stdout.readline().strip() == "fleet/bridge/state online"
        subprocess.run([shutil.which(command[0]) or command[0], *command[1:]], check=True)
        out = answers.stdout.readline()
    finally:
        answers.kill()
        answers.wait()
    assert out.startswith("fleet/bridge/response/lights {"), out
    assert '"status":"ok"' in out.replace(" ", "")
    assert '"transaction":"1"' in out.replace(" ", "")


def test_the_demo_prints_every_message_as_text(demo: Process) -> None:
    demo.wait_line(r"^fleet/bridge/state\s+online$")
    assert not any("b'" in line for line in demo.lines), "payloads printed as bytes"
    demo.wait_line(r"^homeassistant/\S+/config\s+\(Home Assistant discovery")
    demo.wait_line(r"^fleet/demo-\S+/quota\s")
