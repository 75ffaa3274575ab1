"""Fault switches for every provider simulator: what a sick provider or network does.

The provider simulators already fail on request (`fail_next`: 5xx with the
provider's own text bodies, 429 with `Retry-After`). This module adds, for all
of them at once, the faults that happen below or beside a provider's API: a
connection reset, an answer that never comes (a timeout), an answer cut short,
a body that is not JSON or not UTF-8, fields of the wrong type, a 429 storm
without `Retry-After`, and for crash tests, the client process killed while one
of its requests is in flight or just answered.

One middleware on the simulator's root application applies the first matching
rule to each provider request (never to the control API), and logs every
provider request with its real arrival time, so that a test can check that no
window of any budget was exceeded, whatever the simulator's own limiters say.

    server.faults.add(Rule("reset", provider="telemax", count=3))
    server.faults.add(Rule("status", provider="samsara", status=429, count=20))
    server.faults.max_in_window("telemax", 60.0)   # most requests in any 60 s

Over HTTP: `POST /_sim/faults?kind=reset&provider=telemax&count=3` (the query
takes the fields of `Rule`), `GET /_sim/faults`, `DELETE /_sim/faults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

#: What a rule does to a matching request.
KINDS = frozenset(
    {
        "status",  # answer `status` (with Retry-After only when `retry_after` is set)
        "reset",  # close the connection with a TCP reset, no answer
        "hang",  # wait `seconds` before answering (a client timeout, if longer than its own)
        "truncate",  # the real answer, cut in half
        "garbage",  # 200 with a body that is not JSON
        "non_utf8",  # the real answer with bytes that are not UTF-8
        "wrong_types",  # the real answer, JSON values swapped for values of other types
        "huge",  # the real answer, every list padded with many junk items
        "deep",  # the real answer with one value nested `depth` levels deep
        "kill",  # SIGKILL `pid` on arrival, or `delay` seconds after answering (`after`)
    }
)

PROVIDER_PREFIXES = ("samsara", "fleetize", "telemax", "metrotec", "tracksafe365")


@dataclass(slots=True)
class Rule:
    kind: str
    #: The provider simulator (URL prefix) it applies to; None: any.
    provider: str | None = None
    #: Applies to request paths containing this text; None: any.
    path: str | None = None
    #: Applies to this HTTP method only; None: any.
    method: str | None = None
    #: How many matching requests it acts on; -1: until removed.
    count: int = 1
    #: Matching requests to let through untouched before acting.
    skip: int = 0
    status: int = 500
    retry_after: float | None = None
    body: str | None = None
    seconds: float = 5.0
    #: For "wrong_types": the share of values swapped; for "huge": items added.
    rate: float = 0.3
    depth: int = 100_000
    seed: int = 0
    pid: int | None = None
    after: bool = False
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(sorted(KINDS))}")
        if self.kind == "kill" and self.pid is None:
            raise ValueError("a kill rule needs the pid to kill")


@dataclass(frozen=True, slots=True)
class Seen:
    """One provider request as it arrived (real, monotonic time)."""

    at: float
    #: The simulated clock's time (seconds since the epoch) at arrival.
    sim_at: float
    provider: str
    path: str
    fault: str | None


@dataclass
class SimFaults:
    """The fault rules of a simulator server, and its log of provider requests."""

    clock: Callable[[], float] = time.monotonic
    #: The simulated clock, in seconds (what a client's `now()` may follow).
    sim_clock: Callable[[], float] = time.time
    rules: list[Rule] = field(default_factory=list)
    log: deque[Seen] = field(default_factory=lambda: deque(maxlen=200_000))
    #: Faults injected, by kind.
    injected: Counter[str] = field(default_factory=Counter)
    #: Called with each pid a kill rule killed.
    on_kill: Callable[[int], None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    def requests(self, provider: str | None = None, path: str | None = None) -> list[Seen]:
        return [
            seen
            for seen in self.log
            if (provider is None or seen.provider == provider)
            and (path is None or path in seen.path)
        ]

    async def wait_for_request(
        self, provider: str, path: str | None = None, timeout: float = 10.0
    ) -> Seen:
        """The first logged request to `provider` (and `path`), waiting for it."""
        async with asyncio.timeout(timeout):
            while not (found := self.requests(provider, path)):
                self._arrived.clear()
                await self._arrived.wait()
        return found[0]

    def max_in_window(
        self, provider: str, period: float, path: str | None = None, *, simulated: bool = False
    ) -> int:
        """The most requests that reached `provider` within any `period` seconds
        of real time, or of simulated time (`simulated`)."""
        times = sorted(s.sim_at if simulated else s.at for s in self.requests(provider, path))
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= period:
                start += 1
            most = max(most, end - start + 1)
        return most

    def to_json(self) -> dict[str, Any]:
        return {
            "rules": [asdict(rule) for rule in self.rules],
            "injected": dict(self.injected),
            "requests": Counter(seen.provider for seen in self.log),
        }

    # --- the middleware ----------------------------------------------------------
    def middleware(self) -> Any:
        @web.middleware
        async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
            provider = _provider_of(request.path)
            if provider is None:
                return await handler(request)
            rule = self._match(provider, request.path, request.method)
            self.log.append(
                Seen(
                    self.clock(),
                    self.sim_clock(),
                    provider,
                    request.path,
                    rule.kind if rule else None,
                )
            )
            self._arrived.set()
            if rule is None:
                return await handler(request)
            self.injected[rule.kind] += 1
            return await self._apply(rule, request, handler)

        return faults

    def _match(self, provider: str, path: str, method: str) -> Rule | None:
        for rule in self.rules:
            if rule.provider not in (None, provider) or (rule.path and rule.path not in path):
                continue
            if rule.method is not None and rule.method.upper() != method:
                continue
            if rule.skip > 0:
                rule.skip -= 1
                continue
            if rule.count == 0:
                continue
            if rule.count > 0:
                rule.count -= 1
            if rule.count == 0:
                self.rules.remove(rule)
            return rule
        return None

    async def _apply(
        self, rule: Rule, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        kind = rule.kind
        if kind == "status":
            headers = {} if rule.retry_after is None else {"Retry-After": f"{rule.retry_after:g}"}
            text = rule.body if rule.body is not None else f"injected failure ({rule.status})"
            return web.Response(status=rule.status, text=text, headers=headers)
        if kind == "reset":
            _reset(request)
            raise asyncio.CancelledError  # aiohttp drops the request quietly
        if kind == "hang":
            await asyncio.sleep(rule.seconds)
            return await handler(request)
        if kind == "garbage":
            return web.Response(
                status=200,
                body=b"<html><body>502 Bad Gateway</body></html>",
                content_type="application/json",
            )
        if kind == "kill":
            assert rule.pid is not None
            if not rule.after:
                self._kill(rule.pid)
                await asyncio.sleep(3600)  # the client is gone; nobody waits for this
            response = await handler(request)
            asyncio.get_running_loop().call_later(rule.delay, self._kill, rule.pid)
            return response
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        if not isinstance(body, bytes):
            return response
        mutated = mutate_body(kind, body, random.Random(rule.seed), rule.rate, rule.depth)
        return web.Response(
            status=response.status,
            body=mutated,
            headers={k: v for k, v in response.headers.items() if k.lower() == "retry-after"},
            content_type=response.content_type,
        )

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            if self.on_kill is not None:
                self.on_kill(pid)


def _provider_of(path: str) -> str | None:
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    return first if first in PROVIDER_PREFIXES else None


def _reset(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if isinstance(sock, socket.socket):
        # Linger 0: close() sends RST instead of FIN, as a crashed proxy does.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# --- body mutations (also used by the fuzz tests directly) -----------------------------


def mutate_body(kind: str, body: bytes, rng: random.Random, rate: float, depth: int) -> bytes:
    """`body` as a fault of `kind` would serve it."""
    if kind == "truncate":
        return body[: len(body) // 2]
    if kind == "non_utf8":
        cut = rng.randrange(len(body) + 1)
        return body[:cut] + b"\xff\xfe\xc3(" + body[cut:]
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if kind == "wrong_types":
        data = wrong_types(data, rng, rate)
    elif kind == "huge":
        data = padded(data, int(rate) if rate >= 1 else 20_000)
    elif kind == "deep":
        return _deep(data, depth)
    return json.dumps(data).encode()


_JUNK: tuple[Any, ...] = ("", "n/a", "1e999", -1, 0, 1.5e308, True, None, [], {}, [1, 2], {"x": 1})


def wrong_types(data: Any, rng: random.Random, rate: float) -> Any:
    """A copy of `data` with about `rate` of its values replaced by values of
    other types, and as many keys dropped."""
    if isinstance(data, dict):
        result: dict[str, Any] = {}
        for key, value in data.items():
            roll = rng.random()
            if roll < rate / 3:
                continue  # a missing key
            if roll < rate:
                result[key] = rng.choice(_JUNK)
            else:
                result[key] = wrong_types(value, rng, rate)
        return result
    if isinstance(data, list):
        return [wrong_types(item, rng, rate) for item in data]
    if rng.random() < rate:
        return rng.choice(_JUNK)
    return data


def padded(data: Any, items: int) -> Any:
    """Every list in `data` (the first found, depth first) grown by `items` junk items."""
    if isinstance(data, list):
        return data + [{"id": None}] * items
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, list | dict):
                grown = padded(value, items)
                if grown is not value:
                    return {**data, key: grown}
    return data


def _deep(data: Any, depth: int) -> bytes:
    """JSON text with `depth` nested lists inside its first object's first value."""
    nested = "[" * depth + "1" + "]" * depth
    if isinstance(data, dict) and data:
        key = next(iter(data))
        rest = json.dumps({k: v for k, v in data.items() if k != key})
        inner = rest[1:-1]
        return (
            "{" + json.dumps(key) + ":" + nested + ("," + inner if inner else "") + "}"
        ).encode()
    return nested.encode()


def rule_from_query(query: Mapping[str, str]) -> Rule:
    """A rule from `POST /_sim/faults?kind=...&...` (ValueError naming the field)."""
    known = {f.name: f for f in fields(Rule)}
    values: dict[str, Any] = {}
    for name, raw in query.items():
        if name not in known:
            raise ValueError(f"unknown fault field {name!r}")
        if name in ("kind", "provider", "path", "method", "body"):
            values[name] = raw
        elif name == "after":
            values[name] = raw.lower() in ("1", "true", "yes")
        elif name in ("count", "skip", "status", "depth", "seed", "pid"):
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(f"{name} must be an integer") from None
        else:
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number") from None
    if "kind" not in values:
        raise ValueError("kind is required")
    return Rule(**values)
