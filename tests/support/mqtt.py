"""Fixtures shared by the bridge's integration and end-to-end tests.

`mosquitto` starts a real broker of our own on a free port (never the machine's
1883), `recorder` subscribes to it and lets a test wait for what it expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest


def _mosquitto_binary() -> str:
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("mosquitto is not installed (./scripts/test installs it with apt-get)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Mosquitto:
    """A real Mosquitto broker, stoppable and restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "") -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = workdir
        self.extra_config = extra_config
        self._process: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    def start(self, timeout: float = 10.0) -> None:
        conf = self.workdir / "mosquitto.conf"
        # Each listener has its own security settings, so a test can add a TLS or
        # password-protected listener beside the plain one its recorder uses.
        conf.write_text(
            # Run as whoever runs the tests: as root Mosquitto would otherwise drop
            # to a `mosquitto` user that cannot read the test's files.
            f"user {getpass.getuser()}\n"
            "per_listener_settings true\n"
            # As recommended in docs/commands.md: small messages without delay.
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n" + self.extra_config
        )
        process = subprocess.Popen(
            [_mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._process = process
        ready = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.log.append(line.rstrip())
                # Mosquitto logs this line once its listeners are open.
                if " running" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout) or process.poll() is not None:
            self.stop()
            raise RuntimeError("mosquitto did not start:\n" + "\n".join(self.log))

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Recorder:
    """Every message seen on the subscribed topics, in order, with a way to wait."""

    messages: list[Message] = field(default_factory=list)
    retained: dict[str, bytes] = field(default_factory=dict)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, message: Message) -> None:
        self.messages.append(message)
        if message.payload:
            self.retained[message.topic] = message.payload
        else:
            self.retained.pop(message.topic, None)
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s; {len(self.messages)} messages seen, last: "
                + ", ".join(m.topic for m in self.messages[-5:])
            ) from None

    def since(self, index: int, prefix: str = "") -> list[Message]:
        return [m for m in self.messages[index:] if m.topic.startswith(prefix)]

    def mark(self) -> int:
        return len(self.messages)


@contextlib.asynccontextmanager
async def record(
    host: str, port: int, topics: tuple[str, ...] = ("fleet/#", "homeassistant/#")
) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    subscribed = asyncio.Event()

    async def consume() -> None:
        async with aiomqtt.Client(host, port) as client:
            for topic in topics:
                await client.subscribe(topic, qos=1)
            subscribed.set()
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else b""
                await recorder.add(Message(str(msg.topic), payload, bool(msg.retain)))

    task = asyncio.create_task(consume())
    done, _ = await asyncio.wait(
        [task, asyncio.create_task(subscribed.wait())],
        timeout=10,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if task in done:
        task.result()
    try:
        yield recorder
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def recorder(mosquitto: Mosquitto) -> AsyncIterator[Recorder]:
    async with record(mosquitto.host, mosquitto.port) as rec:
        yield rec
