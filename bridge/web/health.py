"""`/healthz`: is this bridge doing its job, for systemd, Docker, Kubernetes.

Healthy (200) when the MQTT broker is connected and every account is either
polling fine or only waiting for its quota (a FLEETIZE account that spent its
day, a provider's Retry-After): waiting for a budget is the bridge keeping a
contract, not a fault, and restarting it would not help. Otherwise 503, each
reason on its own line. Reasons name the state only, never a provider's error
text: /healthz needs no login.
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


def account_problem(poller: AccountPoller) -> str | None:
    """Why the account is not healthy, or None."""
    status = poller.health.status
    if status is AccountStatus.OK:
        return None
    if status is AccountStatus.STOPPED:
        return f"account {poller.account}: stopped (credentials refused; fix and restart)"
    if waiting_for_quota(poller):
        return None  # degraded by quota only
    if status is AccountStatus.STARTING:
        return f"account {poller.account}: starting, no poll has succeeded yet"
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
