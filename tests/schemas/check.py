"""Validate what the provider simulators answer against the JSON Schemas here,
written from the providers' documentation (shared/providers).

Samsara is checked by its official SDK instead (tests/bridge/test_samsara_sdk.py).
`provider_schemas` (a pytest fixture, autouse where a conftest imports it) hooks
every `SimulatorServer` a test starts: each answer of the FLEETIZE, Telemax,
Metrotec and TrackSafe365 simulators is checked as it is sent, before any fault
a test injects on top, and the test fails at teardown on any violation, or on
an answer for which no schema exists (so a new endpoint needs one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.providers.fleetize import loads_lenient
from bridge.simulator.server import SimulatorServer

HERE = Path(__file__).parent
PROVIDERS = ("fleetize", "telemax", "metrotec", "tracksafe365")


@dataclass
class Provider:
    prefix: str
    routes: list[tuple[str, re.Pattern[str], jsonschema.protocols.Validator]]
    error: jsonschema.protocols.Validator | None
    text: re.Pattern[str] | None
    lenient: bool = False


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema)


def load() -> list[Provider]:
    providers = []
    for name in PROVIDERS:
        spec = json.loads((HERE / f"{name}.json").read_text())
        routes = [
            (r["method"], re.compile(r["path"]), _validator(r["schema"])) for r in spec["routes"]
        ]
        error = _validator(spec["error"]) if "error" in spec else None
        text = re.compile(spec["text"]) if "text" in spec else None
        providers.append(
            Provider(spec["prefix"], routes, error, text, spec.get("lenient_json", False))
        )
    return providers


@dataclass
class Checker:
    providers: list[Provider] = field(default_factory=load)
    problems: list[str] = field(default_factory=list)
    checked: int = 0

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        provider = next((p for p in self.providers if path.startswith(p.prefix + "/")), None)
        if provider is None or content_type.startswith("image/"):
            return  # Samsara (its SDK checks it), the control API, served images
        local = path[len(provider.prefix) :]
        where = f"{method} {path} -> {status}"
        try:
            data = loads_lenient(body.decode()) if provider.lenient else json.loads(body)
        except ValueError:
            text = body.decode("utf-8", "replace").strip()
            if provider.text is not None and provider.text.match(text):
                self.checked += 1
            elif status < 500:  # 5xx bodies are plain text at some providers
                self.problems.append(f"{where}: not JSON: {text[:80]!r}")
            return
        if status >= 400:
            validator = provider.error
        else:
            validator = next(
                (v for m, p, v in provider.routes if m == method and p.match(local)), None
            )
            if validator is None:
                self.problems.append(f"{where}: no schema in tests/schemas for this answer")
                return
        if validator is None:
            return
        self.checked += 1
        for error in validator.iter_errors(data):
            at = "/".join(str(p) for p in error.absolute_path)
            self.problems.append(f"{where}: at /{at}: {error.message[:200]}")


@pytest.fixture(autouse=True)
def provider_schemas(monkeypatch: pytest.MonkeyPatch) -> Iterator[Checker]:
    checker = Checker()
    original = SimulatorServer.make_app

    def make_app(self: SimulatorServer) -> web.Application:
        app = original(self)

        @web.middleware
        async def validate(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            if isinstance(response, web.Response) and response.body is not None:
                body = response.body
                if isinstance(body, bytes | bytearray):
                    checker.check(
                        request.method,
                        request.path,
                        response.status,
                        response.content_type,
                        bytes(body),
                    )
            return response

        # Inside the fault middleware: what the simulator answers, not the faults
        # a test injects on purpose.
        app.middlewares.append(validate)
        return app

    monkeypatch.setattr(SimulatorServer, "make_app", make_app)
    yield checker
    assert checker.problems == [], "simulator answers outside tests/schemas:\n" + "\n".join(
        dict.fromkeys(checker.problems)
    )
