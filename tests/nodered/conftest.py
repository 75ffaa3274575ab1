"""A real Node-RED for the exported flows in docs/ (npm `node-red`, installed by
scripts/setup-nodered into a cache outside the clone, keyed by version).

Started headless with its own userDir on a free port; the test reads what the
flow's debug nodes show through the editor's own comms websocket, as the debug
sidebar does.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.mqtt import free_port, mosquitto

__all__ = ["mosquitto"]

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = """module.exports = {
    uiPort: %(port)d,
    uiHost: "127.0.0.1",
    flowFile: "flows.json",
    credentialSecret: false,
    debugMaxLength: 100000,
    logging: {console: {level: "info", metrics: false, audit: false}},
    editorTheme: {tours: false},
    telemetry: {enabled: false},
};
"""


def node_red_dir() -> Path:
    found = os.environ.get("NODE_RED_DIR")
    if not found:
        result = subprocess.run(
            [str(ROOT / "scripts" / "setup-nodered")],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.fail(f"could not install Node-RED: {result.stderr[-2000:]}")
        found = result.stdout.strip().splitlines()[-1]
    return Path(found)


class NodeRed:
    def __init__(self, user_dir: Path, flows: list[dict[str, Any]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        user_dir.mkdir(parents=True, exist_ok=True)
        (user_dir / "settings.js").write_text(SETTINGS % {"port": self.port})
        (user_dir / "flows.json").write_text(json.dumps(flows))
        self.log: list[str] = []
        self._started = threading.Event()
        self._logged = threading.Condition()
        binary = node_red_dir() / "node_modules" / ".bin" / "node-red"
        self.process = subprocess.Popen(
            [str(binary), "--userDir", str(user_dir), "--settings", str(user_dir / "settings.js")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._logged:
                self.log.append(line.rstrip())
                self._logged.notify_all()
            if "Started flows" in line:
                self._started.set()
        self._started.set()

    async def started(self, timeout: float = 90) -> None:
        if not await asyncio.to_thread(self._started.wait, timeout) or self.process.poll():
            raise AssertionError("Node-RED did not start:\n" + "\n".join(self.log[-40:]))

    async def wait_log(self, text: str, timeout: float = 30) -> None:
        def wait() -> bool:
            with self._logged:
                return self._logged.wait_for(
                    lambda: any(text in line for line in self.log), timeout
                )

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"Node-RED never logged {text!r}:\n" + "\n".join(self.log[-40:]))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Debug:
    """What the flow's debug nodes show (the editor's debug sidebar)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def add(self, data: dict[str, Any]) -> None:
        self.messages.append(data)
        async with self._changed:
            self._changed.notify_all()

    def of(self, name: str) -> list[Any]:
        found = []
        for data in self.messages:
            if data.get("name") == name:
                raw = data.get("msg")
                try:
                    found.append(json.loads(raw) if isinstance(raw, str) else raw)
                except ValueError:
                    found.append(raw)
        return found

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 60) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            raise AssertionError(
                f"timed out; debug messages: {[m.get('name') for m in self.messages][-10:]}"
            ) from None


def load_flow(name: str, host: str, port: int) -> list[dict[str, Any]]:
    """The exported flow, with the broker set as the docs tell the user to."""
    flows: list[dict[str, Any]] = json.loads((ROOT / "docs" / name).read_text())
    brokers = [n for n in flows if n["type"] == "mqtt-broker"]
    assert len(brokers) == 1, "one broker node to set"
    brokers[0]["broker"], brokers[0]["port"] = host, str(port)
    return flows


@pytest.fixture
async def node_red(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[NodeRed] = []
    tasks: list[asyncio.Task[None]] = []
    session = aiohttp.ClientSession()

    async def start(flows: list[dict[str, Any]]) -> tuple[NodeRed, Debug]:
        red = NodeRed(tmp_path / f"node-red-{len(started)}", flows)
        started.append(red)
        await red.started()
        debug = Debug()
        ws = await session.ws_connect(red.url + "/comms")
        await ws.send_str(json.dumps({"subscribe": "debug"}))

        async def listen() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                for item in json.loads(message.data):
                    if item.get("topic") == "debug":
                        await debug.add(item["data"])

        tasks.append(asyncio.create_task(listen()))
        return red, debug

    try:
        yield start
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        for red in started:
            red.stop()
