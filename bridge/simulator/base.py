"""What the server and its control API expect of a provider simulator."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from aiohttp import web

from bridge.simulator.traffic import RequestCounters


class ProviderSim(Protocol):
    #: The URL prefix it is mounted under, e.g. "/samsara"; also its name in the
    #: control API (`/_sim/<name>/...`).
    name: ClassVar[str]
    counters: RequestCounters
    #: Real seconds added to every response.
    latency: float

    def app(self) -> web.Application:
        """The provider's API as an aiohttp sub-application."""

    def expire_cursors(self) -> None:
        """Make every cursor handed out so far invalid."""

    def fail_next(
        self, count: int = 1, *, status: int = 500, retry_after: float | None = None
    ) -> None:
        """Answer the next `count` requests with `status` instead."""

    def stats(self) -> dict[str, Any]:
        """Counters and switches, as JSON."""
