"""The short exception hierarchy every caller branches on.

Providers map every HTTP status, timeout and parse failure to one of these, so the
poller (and later the planner and the Home Assistant coordinator) decides what to
do from the class alone. Messages never contain secrets.
"""

from __future__ import annotations

from datetime import datetime


class BridgeError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; `problems` lists each one as `path: reason`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ProviderError(BridgeError):
    """A provider call failed."""


class ProviderConnectionError(ProviderError):
    """The provider could not be reached, timed out, or kept answering 5xx."""


class ProviderAuthError(ProviderError):
    """The provider refused the credentials (401/403): a human must fix them."""


class ProviderTokenBlockedError(ProviderAuthError):
    """The provider blocked the token (FLEETIZE #1002): only its support can lift it."""


class ProviderRateLimitedError(ProviderError):
    """The provider answered 429 (or its equivalent) and asked us to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderDataError(ProviderError):
    """The provider answered with something we cannot read."""


class QuotaExhaustedError(BridgeError):
    """A budget forbids the call now: the bridge did not send it.

    Raised before a request leaves, so a provider limit is never violated;
    `available_at` says when the call may go."""

    def __init__(
        self, message: str, budget: str, available_at: datetime, retry_after: float
    ) -> None:
        super().__init__(message)
        self.budget = budget
        self.available_at = available_at
        self.retry_after = retry_after
