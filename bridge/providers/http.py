"""One place for the HTTP rules every provider client follows.

Timeouts on every call, `Retry-After` honoured on 429, exponential backoff with
jitter on 5xx and connection errors, and every failure mapped to the exception
hierarchy in `bridge.errors`. Provider clients build URLs and parse bodies; this
module only moves bytes.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from bridge import __version__
from bridge.errors import (
    ProviderAuthError,
    ProviderConnectionError,
    ProviderDataError,
    ProviderError,
    ProviderRateLimitedError,
    QuotaExhaustedError,
)
from bridge.model import Priority
from bridge.providers.parse import clip
from bridge.quota import Call, Quota

_LOGGER = logging.getLogger(__name__)

USER_AGENT = f"fleet-telematics-bridge/{__version__}"

Sleep = Callable[[float], Awaitable[None]]

# Query parameters whose values never reach a log line (FLEETIZE's apitoken, the
# deprecated TrackSafe365 ?api_key=, signed media URLs ...).
_SECRET_PARAMS = ("token", "key", "secret", "password", "signature", "auth", "credential")


def redact_url(url: URL, params: Mapping[str, str] | None = None) -> str:
    """The URL (with `params` merged) as it may be logged: no user info, and the
    value of every query parameter that looks like a credential replaced."""
    if params:
        url = url.update_query(params)
    if url.user or url.password:
        url = url.with_user(None)
    query = [
        (name, "***" if any(word in name.lower() for word in _SECRET_PARAMS) else value)
        for name, value in url.query.items()
    ]
    return str(url.with_query(query) if query else url)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds (fractional, as
    Samsara sends them) or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ProviderDataError(f"response is not JSON: {err}") from None
        except RecursionError:
            raise ProviderDataError("response is not JSON: nested too deeply") from None

    def text(self, limit: int = 200) -> str:
        text = self.body[: limit + 1].decode("utf-8", "replace").strip()
        return clip(text, limit)


@dataclass(slots=True)
class RetryPolicy:
    """How hard to try before giving up on one logical request."""

    attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    # A 429 asking for longer than this is handed to the caller (the poller waits
    # it out between polls instead of holding the request open).
    max_retry_after: float = 30.0
    # A budget that frees up within this many seconds is waited for in place
    # (a sliding window about to slide); a longer wait goes back to the poller.
    max_quota_wait: float = 10.0

    def backoff(self, attempt: int) -> float:
        delay: float = min(self.backoff_max, self.backoff_base * 2**attempt)
        # Full jitter keeps many bridges from retrying in lockstep.
        return delay / 2 + random.uniform(0, delay / 2)


@dataclass(slots=True)
class HttpClient:
    """A thin wrapper around an injected `aiohttp.ClientSession`."""

    session: aiohttp.ClientSession
    provider: str
    timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Sleep = asyncio.sleep
    #: Every attempt (retries too) is a call against these budgets.
    quota: Quota | None = None

    async def request(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        ok_statuses: frozenset[int] = frozenset({200, 201, 202, 204}),
        passthrough_statuses: frozenset[int] = frozenset(),
        endpoint: str = "default",
        priority: Priority = Priority.POLL,
    ) -> Response:
        """Send one request, retrying what is worth retrying.

        Statuses in `passthrough_statuses` are returned to the caller untouched,
        for the cases it understands better than a generic rule (a refused cursor).
        """
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        all_headers.update(headers or {})
        attempt = 0
        # Why the previous attempt failed: a retry the budget forbids ends the
        # request with that error, not as a mere wait for quota (the poller must
        # see the provider failing).
        failed: ProviderError | None = None
        while True:
            try:
                call = await self._acquire(endpoint, priority)
            except QuotaExhaustedError:
                if failed is not None:
                    raise failed from None
                raise
            if call is not None and self.quota is not None:
                self.quota.sending(call)
            try:
                try:
                    response = await self._send(method, url, all_headers, params, json_body, form)
                finally:
                    if call is not None and self.quota is not None:
                        # The provider had the request by the time it answered
                        # (or we gave up): a spacing counts from here.
                        await self.quota.completed(call)
            except ProviderConnectionError as err:
                failed = err
                if attempt + 1 >= self.retry.attempts:
                    raise
                delay = self.retry.backoff(attempt)
                _LOGGER.debug("%s: %s, retrying in %.1fs", self.provider, err, delay)
                await self.sleep(delay)
                attempt += 1
                continue
            status = response.status
            if status in ok_statuses or status in passthrough_statuses:
                return response
            if status == 429:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                wait = retry_after if retry_after is not None else self.retry.backoff(attempt)
                if self.quota is not None:
                    await self.quota.hold(wait, f"{self.provider} answered 429")
                failed = ProviderRateLimitedError(
                    f"{self.provider} rate limit reached (429), retry after {wait:.2f}s",
                    retry_after=wait,
                )
                if attempt + 1 >= self.retry.attempts or wait > self.retry.max_retry_after:
                    raise failed
                _LOGGER.info("%s answered 429, waiting %.2fs as asked", self.provider, wait)
                await self.sleep(wait)
                attempt += 1
                continue
            if status in (401, 403):
                raise ProviderAuthError(
                    f"{self.provider} refused the credentials (HTTP {status}): {response.text()}"
                )
            if status >= 500:
                failed = ProviderConnectionError(
                    f"{self.provider} kept failing (HTTP {status}: {response.text()})"
                )
                if attempt + 1 >= self.retry.attempts:
                    raise failed
                delay = self.retry.backoff(attempt)
                _LOGGER.info("%s answered HTTP %s, retrying in %.1fs", self.provider, status, delay)
                await self.sleep(delay)
                attempt += 1
                continue
            raise ProviderError(f"{self.provider} answered HTTP {status}: {response.text()}")

    async def _acquire(self, endpoint: str, priority: Priority) -> Call | None:
        if self.quota is None:
            return None
        try:
            return await self.quota.acquire(endpoint, priority)
        except QuotaExhaustedError as err:
            if err.retry_after > self.retry.max_quota_wait:
                raise
            # Wait once for a window about to slide; if it still says no (the
            # clock is a simulation's, or others spent it), the poller decides.
            await self.sleep(max(err.retry_after, 0.01))
            return await self.quota.acquire(endpoint, priority)

    async def _send(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        json_body: Any,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        started = time.monotonic()
        try:
            response = await self._exchange(method, url, headers, params, json_body, form)
        except ProviderConnectionError as err:
            if _LOGGER.isEnabledFor(logging.DEBUG):
                _LOGGER.debug(
                    "%s: %s %s failed after %.0f ms: %s",
                    self.provider,
                    method,
                    redact_url(url, params),
                    (time.monotonic() - started) * 1000,
                    err,
                )
            raise
        if _LOGGER.isEnabledFor(logging.DEBUG):
            # Bodies are never logged: a form carries FLEETIZE's token and
            # Telemax's API key, headers carry bearer tokens.
            _LOGGER.debug(
                "%s: %s %s -> %d in %.0f ms",
                self.provider,
                method,
                redact_url(url, params),
                response.status,
                (time.monotonic() - started) * 1000,
            )
        return response

    async def _exchange(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        json_body: Any,
        form: Mapping[str, str] | None,
    ) -> Response:
        try:
            async with (
                asyncio.timeout(self.timeout),
                self.session.request(
                    method,
                    url,
                    headers=headers,
                    params=params,
                    json=json_body,
                    data=dict(form) if form is not None else None,
                ) as resp,
            ):
                body = await resp.read()
                return Response(resp.status, dict(resp.headers), body)
        except TimeoutError:
            raise ProviderConnectionError(
                f"{self.provider} did not answer within {self.timeout:.0f}s"
            ) from None
        except aiohttp.ClientError as err:
            # The aiohttp message names host and port, never headers or tokens.
            raise ProviderConnectionError(f"{self.provider} unreachable: {err}") from None
