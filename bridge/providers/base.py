"""The contract between the poller and a provider client.

A provider turns its API into `bridge.model` objects and knows nothing of MQTT,
Home Assistant, SQLite or pydantic. What it must remember across restarts (feed
cursors) it exposes as an opaque checkpoint; the daemon persists it in SQLite,
the Home Assistant integration in its own storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar, Protocol, runtime_checkable

from bridge.model import Capability, PollPlan, Update, VehicleState
from bridge.quota import Budget


@runtime_checkable
class Provider(Protocol):
    """One account at one provider."""

    #: Registry key, also the `provider:` value in config.
    name: ClassVar[str]
    #: What this provider can fill; entities are created only for these.
    capabilities: ClassVar[frozenset[Capability]]
    #: The provider's published limits (NOTES.md), before the user's overrides.
    default_budgets: ClassVar[tuple[Budget, ...]]
    #: The endpoint a poll starts with: the planner asks the quota about it.
    poll_endpoint: ClassVar[str]

    async def poll(self, plan: PollPlan) -> Update:
        """Fetch what changed since the last poll."""

    def checkpoint(self) -> dict[str, str]:
        """Opaque resume state (cursors) to persist after a successful poll."""

    def restore(self, checkpoint: Mapping[str, str], vehicles: Iterable[VehicleState]) -> None:
        """Resume from a persisted checkpoint and the vehicle states that went with it."""

    async def close(self) -> None:
        """Release what the client owns (never the injected session)."""
