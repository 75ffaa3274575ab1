"""`/healthz`: is this bridge doing its job, for systemd, Docker, Kubernetes.

Healthy (200) when the MQTT broker is connected and every account is either
polling fine or held back by quota only: a first poll still waiting for a
budget (a FLEETIZE account restarted after spending its day), or polls refused
with a 429 while the provider's Retry-After hold runs. Waiting for a budget is
the bridge keeping a contract, not a fault, and a restart would not help.
Polls failing for any other reason, credentials refused, or no first poll yet
without a quota reason: 503, each reason on its own line. Reasons name the
state only, never a provider's error text: /healthz needs no login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.model import Priority
from bridge.poller import AccountPoller, AccountStatus

if TYPE_CHECKING:
    from bridge.app import Bridge


def waiting_for_quota(poller: AccountPoller) -> bool:
    """The account's next poll is held back by a budget or a provider's hold."""
    return poller.quota.check(poller.provider.poll_endpoint, Priority.POLL) is not None


def provider_hold(poller: AccountPoller) -> bool:
    """The provider asked for a pause (a 429's Retry-After, FLEETIZE #1055)."""
    return "hold" in poller.quota.usage()


def account_problem(poller: AccountPoller) -> str | None:
    """Why the account is not healthy, or None."""
    status = poller.health.status
    if status is AccountStatus.OK:
        return None
    if status is AccountStatus.STOPPED:
        return f"account {poller.account}: stopped (credentials refused; fix and restart)"
    if status is AccountStatus.STARTING:
        if waiting_for_quota(poller):
            return None  # its first poll waits for a budget
        return f"account {poller.account}: starting, no poll has succeeded yet"
    if provider_hold(poller):
        return None  # refused for the provider's own quota: waiting as told
    return f"account {poller.account}: degraded, {poller.health.failures} polls failed in a row"


def problems(bridge: Bridge) -> list[str]:
    found = []
    if not bridge.link.connected.is_set():
        found.append("mqtt: not connected to the broker")
    for poller in bridge.pollers.values():
        problem = account_problem(poller)
        if problem is not None:
            found.append(problem)
    return found
