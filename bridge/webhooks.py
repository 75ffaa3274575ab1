"""The optional webhook receiver: providers push alerts, the poller publishes them.

One small aiohttp server (`webhooks:` in config) with one path per account. A
request is checked in this order, and the first failure answers it:

- an unknown path is 404, a method other than POST 405;
- a body over `max_body` is 413 (by its Content-Length before reading, and
  counted while reading when it has none); one slower than `read_timeout` is 408;
- the signature, an HMAC-SHA256 of the raw body with the account's secret in the
  provider's header (`SCHEMES`), compared in constant time: 401 when missing or
  wrong, logged as one line naming the account, the peer and the reason, never
  the body or the signature;
- a delivery id seen before (the provider's delivery header, last 10,000 per
  account) is a replay: 200 `{"status": "duplicate"}`, nothing delivered;
- a body the provider's parser cannot read is 400 naming the problem.

What passes is handed to the account's poller (`AccountPoller.deliver_alerts`),
the same path polled alerts take: an event both pushed and polled, or pushed
twice under new delivery ids, is published once. Polling goes on either way; the
receiver only makes alerts arrive sooner.

Only the body is signed, not the delivery id: the id catches a plain replay, the
alert ids in the store catch one with a forged id. Slow request *headers* are
not timed out here; exposed beyond the local network it belongs behind a reverse
proxy that does so (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.config import BridgeConfig, WebhooksConfig
from bridge.errors import ProviderDataError
from bridge.model import Alert
from bridge.poller import AccountPoller
from bridge.providers import telemax, tracksafe365

_LOGGER = logging.getLogger(__name__)


class _WithoutRequest(logging.Filter):
    """aiohttp's errors about a request it cannot parse quote the bytes it got;
    the line stays, the quote (in the traceback) goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}"
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# The HTTP server's own log (malformed requests), through the filter above.
_HTTP_LOGGER = logging.getLogger(__name__ + ".http")
_HTTP_LOGGER.addFilter(_WithoutRequest())

#: Delivery ids remembered per account to recognise replays.
MAX_DELIVERY_IDS = 10_000
# Longer delivery ids are remembered by their first characters.
DELIVERY_ID_LENGTH = 200
# Refusals logged per account and minute; the rest are counted into the next line.
LOG_BURST = 10
LOG_WINDOW_S = 60.0
READ_CHUNK = 64 * 1024

Parser = Callable[[bytes], list[Alert]]


@dataclass(frozen=True, slots=True)
class SignatureScheme:
    """How a provider signs: the header, and what may precede the hex digest."""

    header: str
    prefixes: tuple[str, ...]
    #: The header carrying a delivery id, unless the account's config names one.
    delivery_header: str | None = None


#: provider name -> how it signs its webhooks (NOTES.md, tracksafe365.txt).
SCHEMES: dict[str, SignatureScheme] = {
    # "HMAC-SHA256 signature in X-TS365-Signature" (changelog, 2026-05-22): the
    # format is not documented, so both usual spellings are accepted; no
    # delivery header is documented either.
    tracksafe365.TracksafeProvider.name: SignatureScheme("X-TS365-Signature", ("sha256=", "")),
    telemax.TelemaxProvider.name: SignatureScheme(
        "X-Telemax-Signature", ("sha256=",), "X-Telemax-Delivery"
    ),
}
#: provider name -> the parser of its webhook body.
PARSERS: dict[str, Parser] = {
    tracksafe365.TracksafeProvider.name: tracksafe365.webhook_alerts,
    telemax.TelemaxProvider.name: telemax.webhook_alerts,
}


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where one account's webhook deliveries go."""

    account: str
    provider: str
    secret: str = field(repr=False)
    parse: Parser
    #: `AccountPoller.deliver_alerts`: publishes what was not seen before.
    deliver: Callable[[list[Alert]], Awaitable[int]]
    delivery_header: str | None = None


def signature_problem(
    scheme: SignatureScheme, secret: str, body: bytes, given: str | None
) -> str | None:
    """Why `given` does not sign `body` ("missing signature", "bad signature"), or None."""
    if given is None or not given.strip():
        return "missing signature"
    value = given.strip()
    digest: str | None = None
    for prefix in sorted(scheme.prefixes, key=len, reverse=True):
        if value[: len(prefix)].lower() == prefix:
            digest = value[len(prefix) :]
            break
    if digest is None:
        return "bad signature"
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(expected, digest.lower().encode("utf-8", "replace")):
        return "bad signature"
    return None


def build_targets(
    config: BridgeConfig, pollers: Mapping[str, AccountPoller]
) -> dict[str, WebhookTarget]:
    """The receiver's targets by path, one per `webhooks.accounts` entry.

    Raises ValueError naming the account when it has no poller, its provider does
    not push webhooks, or its path is another account's too."""
    targets: dict[str, WebhookTarget] = {}
    for account, hook in config.webhooks.accounts.items():
        poller = pollers.get(account)
        if poller is None:
            raise ValueError(f"webhooks.accounts.{account}: no such account is running")
        provider = poller.provider.name
        scheme, parse = SCHEMES.get(provider), PARSERS.get(provider)
        if scheme is None or parse is None:
            raise ValueError(
                f"webhooks.accounts.{account}: {provider} sends no webhooks "
                f"(only {', '.join(sorted(SCHEMES))} do)"
            )
        other = targets.get(hook.path)
        if other is not None:
            raise ValueError(
                f"webhooks.accounts.{account}: path {hook.path} is used by {other.account} too"
            )
        targets[hook.path] = WebhookTarget(
            account=account,
            provider=provider,
            secret=hook.secret.get_secret_value(),
            parse=parse,
            deliver=poller.deliver_alerts,
            delivery_header=hook.delivery_header or scheme.delivery_header,
        )
    return targets


class _TooLarge(Exception):
    pass


@dataclass(slots=True)
class _Throttle:
    """At most LOG_BURST lines per window; what was held back is counted."""

    clock: Callable[[], float]
    window_start: float = 0.0
    lines: int = 0
    held_back: int = 0

    def allow(self) -> tuple[bool, int]:
        now = self.clock()
        if now - self.window_start >= LOG_WINDOW_S:
            self.window_start, self.lines = now, 0
        if self.lines >= LOG_BURST:
            self.held_back += 1
            return False, 0
        self.lines += 1
        held_back, self.held_back = self.held_back, 0
        return True, held_back


@dataclass(slots=True)
class WebhookStats:
    """What the receiver answered, by outcome (for diagnostics and tests)."""

    accepted: int = 0
    duplicate: int = 0
    unauthorized: int = 0
    too_large: int = 0
    too_slow: int = 0
    bad_request: int = 0
    failed: int = 0
    not_found: int = 0


class WebhookReceiver:
    """The HTTP server; `targets` maps each path to its account's target.

    `host` and `port` override the config's (port 0: any free port, see `port`)."""

    def __init__(
        self,
        config: WebhooksConfig,
        targets: Mapping[str, WebhookTarget],
        *,
        host: str | None = None,
        port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for path, target in targets.items():
            if target.provider not in SCHEMES:
                raise ValueError(f"webhook {path}: no signature scheme for {target.provider}")
        self._config = config
        self._targets = dict(targets)
        self._host = config.host if host is None else host
        self._port = config.port if port is None else port
        self._clock = clock
        self._seen: dict[str, OrderedDict[str, None]] = {
            t.account: OrderedDict() for t in targets.values()
        }
        self._throttles: dict[str, _Throttle] = {}
        self._runner: web.AppRunner | None = None
        self.stats = WebhookStats()

    @property
    def port(self) -> int:
        """The port bound (the config's, or the one chosen for port 0)."""
        if self._runner is None:
            return self._port
        for address in self._runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                return int(address[1])
        return self._port

    async def start(self) -> None:
        app = web.Application(client_max_size=self._config.max_body)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # No lingering: an unread body (413, 408) closes the connection at once
        # instead of being drained for another 10 s.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, lingering_time=0, logger=_HTTP_LOGGER
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        _LOGGER.info(
            "Webhook receiver listening on %s:%d for %s",
            self._host,
            self.port,
            ", ".join(f"{t.account} ({path})" for path, t in sorted(self._targets.items())),
        )

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- one request --------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        target = self._targets.get(request.path)
        if target is None:
            self.stats.not_found += 1
            return _answer(404, error="not found")
        if request.method != "POST":
            response = _answer(405, error="only POST")
            response.headers["Allow"] = "POST"
            return response
        length = request.content_length
        if length is not None and length > self._config.max_body:
            return self._too_large(target, request)
        try:
            async with asyncio.timeout(self._config.read_timeout):
                body = await _read(request, self._config.max_body)
        except _TooLarge:
            return self._too_large(target, request)
        except ConnectionError:
            # The sender hung up mid-body: nobody to answer, nothing to deliver.
            self.stats.bad_request += 1
            _LOGGER.debug("Webhook %s: the sender left before its body ended", target.account)
            return _closing(_answer(400, error="body incomplete"))
        except TimeoutError:
            self.stats.too_slow += 1
            self._refused(
                target, request, f"body not received within {self._config.read_timeout:g}s"
            )
            return _closing(_answer(408, error="request body too slow"))
        scheme = SCHEMES[target.provider]
        problem = signature_problem(scheme, target.secret, body, request.headers.get(scheme.header))
        if problem is not None:
            self.stats.unauthorized += 1
            self._refused(target, request, problem)
            return _answer(401, error=problem)
        delivery = self._delivery_id(target, request)
        seen = self._seen[target.account]
        if delivery is not None and delivery in seen:
            seen.move_to_end(delivery)
            self.stats.duplicate += 1
            _LOGGER.debug("Webhook %s: delivery seen before, ignored", target.account)
            return _answer(200, status="duplicate")
        try:
            alerts = target.parse(body)
        except ProviderDataError as err:
            self.stats.bad_request += 1
            self._refused(target, request, str(err))
            return _answer(400, error=str(err))
        try:
            published = await target.deliver(alerts)
        except Exception as err:
            # The provider retries a failed delivery; say nothing of the body.
            self.stats.failed += 1
            _LOGGER.error(
                "Webhook %s: delivering %d alerts failed: %s",
                target.account,
                len(alerts),
                type(err).__name__,
            )
            return _answer(503, error="not delivered, try again")
        if delivery is not None:
            seen[delivery] = None
            while len(seen) > MAX_DELIVERY_IDS:
                seen.popitem(last=False)
        self.stats.accepted += 1
        _LOGGER.debug(
            "Webhook %s: %d alerts received, %d new", target.account, len(alerts), published
        )
        return _answer(200, status="ok", alerts=published)

    def _delivery_id(self, target: WebhookTarget, request: web.Request) -> str | None:
        if target.delivery_header is None:
            return None
        value = request.headers.get(target.delivery_header, "").strip()
        return value[:DELIVERY_ID_LENGTH] or None

    def _too_large(self, target: WebhookTarget, request: web.Request) -> web.StreamResponse:
        self.stats.too_large += 1
        self._refused(target, request, f"body over {self._config.max_body} bytes")
        return _closing(_answer(413, error=f"body over {self._config.max_body} bytes"))

    def _refused(self, target: WebhookTarget, request: web.Request, reason: str) -> None:
        """One warning line per refusal (a burst is summarised), never the body."""
        throttle = self._throttles.setdefault(target.account, _Throttle(self._clock))
        allowed, held_back = throttle.allow()
        if not allowed:
            return
        more = f" ({held_back} more refused since the last line)" if held_back else ""
        _LOGGER.warning(
            "Webhook %s: refused a request from %s: %s%s",
            target.account,
            request.remote or "an unknown peer",
            reason,
            more,
        )


async def _read(request: web.Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it grows past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)


def _answer(code: int, **data: Any) -> web.Response:
    if "error" in data:
        data = {"status": "error", **data}
    return web.json_response(data, status=code)


def _closing(response: web.Response) -> web.Response:
    response.force_close()
    return response
