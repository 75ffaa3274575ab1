"""The aiohttp application: the dashboard's page and API, /metrics and /healthz.

    GET  /                     the page (static; no data, no secret in it)
    GET  /static/...           its script, styles and the vendored Leaflet
    GET  /api/config           what the page needs to start (tiles once allowed)
    POST /api/login            {"password": ...} or {"token": ...} -> a session id
    POST /api/logout
    GET  /api/live             WebSocket: snapshot, then diffs (bridge/web/live.py)
    GET  /api/state            the same snapshot as one JSON document
    GET  /api/vehicle          ?account=&id=: every field, and the commands offered
    POST /api/command          {"command": "lights", "account", "vehicle", ...}
    GET  /metrics              Prometheus text format
    GET  /healthz              200 "ok", or 503 with the reasons

Commands take the path MQTT commands take (`Commander.execute`): the same
validation, `commands.allow`, journal (a repeated transaction gets the first
answer, never a second effect), quota and provider call. Every API call but
login needs `Authorization: Bearer <session id or token>`; viewing needs it
too unless `http.dashboard_public`. Commands always do, and are refused
whenever the request's Origin is another site's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Handler

from bridge import __version__
from bridge.errors import ConfigError
from bridge.mqtt import requests
from bridge.mqtt.commands import COMMANDS, parse_command
from bridge.mqtt.publisher import MessageSink
from bridge.mqtt.requests import MAX_TRANSACTION, RequestError
from bridge.poller import AccountPoller
from bridge.store import StoreError
from bridge.web import health
from bridge.web.auth import Auth, bearer_of
from bridge.web.live import LiveHub, Page
from bridge.web.metrics import BridgeMetrics, TimedSink, outcome
from bridge.web.picture import allowed_commands

if TYPE_CHECKING:
    from bridge.app import Bridge

_LOGGER = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
MAX_BODY = 64 * 1024
#: Commands followed up for the pages at once (older ones are dropped).
MAX_FOLLOWED = 1000
FOLLOW_S = 1.0
HELLO_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class _Followed:
    transaction: str
    command: str
    account: str
    vehicle: str | None


def _csp(tile_url: str) -> str:
    tiles = ""
    if tile_url:
        parts = urlsplit(tile_url.replace("{s}", "a"))
        host = parts.netloc
        if "{s}" in tile_url:
            host = urlsplit(tile_url.replace("{s}", "*")).netloc
        tiles = f" {parts.scheme}://{host}"
    # 'self' covers the same-origin WebSocket (ws: / wss:) in CSP level 3.
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:{tiles}; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class WebServer:
    """Serves the bridge's state; `start()` once the pollers and commander exist."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        now: Callable[[], datetime],
        fatal: Callable[[StoreError], None],
        port: int | None = None,
    ) -> None:
        self._bridge = bridge
        self._config = bridge.config.http
        self._fatal = fatal
        self._port = self._config.port if port is None else port
        self.auth = Auth(self._config)
        self.hub = LiveHub(bridge, now=now)
        self.metrics = BridgeMetrics(bridge, pages=lambda: self.hub.pages)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._followed: dict[str, _Followed] = {}
        self._follow_wake = asyncio.Event()
        self._csp = _csp(self._config.tile_url)

    # --- hooks the bridge calls ----------------------------------------------------
    def sink(self, sink: MessageSink) -> MessageSink:
        """The publisher's sink, timed for the publish latency histogram."""
        return TimedSink(sink, self.metrics)

    def account_changed(self, poller: AccountPoller) -> None:
        self.metrics.account_changed(poller)
        if self._config.dashboard:
            self.hub.account_changed(poller)

    def command_answered(self, command: str, response: dict[str, Any]) -> None:
        """An answer the bridge sent on MQTT."""
        if command in COMMANDS or command == "set":
            self.metrics.command_answered(command, response, "mqtt")

    # --- life cycle ----------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._runner is not None:
            for address in self._runner.addresses:
                if isinstance(address, tuple) and len(address) >= 2:
                    return int(address[1])
        return self._port

    @property
    def url(self) -> str:
        host = self._config.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._headers])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        if self._config.dashboard:
            app.router.add_get("/", self._index)
            app.router.add_static("/static", STATIC, append_version=False)
            app.router.add_get("/api/config", self._page_config)
            app.router.add_post("/api/login", self._login)
            app.router.add_post("/api/logout", self._logout)
            app.router.add_get("/api/live", self._live)
            app.router.add_get("/api/state", self._state)
            app.router.add_get("/api/vehicle", self._vehicle)
            app.router.add_post("/api/command", self._command)
        app.on_shutdown.append(self._close_pages)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._config.host, self._port).start()
        except OSError as err:
            await runner.cleanup()
            reason = err.strerror or type(err).__name__
            raise ConfigError(
                [f"http: cannot listen on {self._config.host}:{self._port} ({reason})"]
            ) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self._config.dashboard:
            self._tasks.append(asyncio.create_task(self.hub.run(), name="dashboard-live"))
            self._tasks.append(asyncio.create_task(self._follow(), name="dashboard-commands"))
        _LOGGER.info(
            "Web server on %s (%s)",
            self.url,
            "dashboard, /metrics, /healthz" if self._config.dashboard else "/metrics, /healthz",
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _close_pages(self, _: web.Application) -> None:
        for page in list(self.hub.pages):
            await page.ws.close(code=1001, message=b"bridge stopping")

    # --- plumbing ------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as err:
            response = err
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Content-Security-Policy", self._csp)
        if request.path.startswith("/api/") or request.path in ("/metrics", "/healthz"):
            headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    def _bearer(self, request: web.Request) -> str | None:
        return bearer_of(request.headers.get("Authorization"))

    def _authorized(self, request: web.Request) -> bool:
        return self.auth.valid(self._bearer(request))

    def _may_view(self, request: web.Request) -> bool:
        return self.auth.public or self._authorized(request)

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        """No Origin (a script, curl), or the page's own."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == request.host

    def _refused(self, request: web.Request) -> web.Response:
        if self._bearer(request) is not None:
            # A wrong credential counts towards the throttle; none at all does not.
            self.auth.failed(request.remote or "?")
        return _error(401, "log in first (a wrong or expired token or session)")

    # --- the page --------------------------------------------------------------------
    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _page_config(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = {
            "version": __version__,
            "public": self.auth.public,
            "login": {
                "password": self._config.password is not None,
                "token": self._config.token is not None,
            },
            "authorized": self._authorized(request),
        }
        if self._may_view(request):
            data["tiles"] = {
                "url": self._config.tile_url,
                "attribution": self._config.tile_attribution,
            }
        return web.json_response(data)

    async def _login(self, request: web.Request) -> web.Response:
        peer = request.remote or "?"
        wait = self.auth.throttled(peer)
        if wait is not None:
            response = _error(429, "too many failed logins: try again later")
            response.headers["Retry-After"] = str(round(wait))
            return response
        if not self._same_origin(request):
            return _error(403, "login from another site refused")
        body = await _json_body(request)
        if body is None:
            return _error(400, 'expected a JSON object such as {"password": "..."}')
        kind = "password" if "password" in body else "token"
        given = body.get(kind)
        sid = self.auth.login(kind, given) if isinstance(given, str) else None
        if sid is None:
            self.auth.failed(peer)
            # Never which one was wrong, nor what was given.
            _LOGGER.warning("Dashboard: failed login from %s", peer)
            return _error(401, "wrong token or password")
        return web.json_response(
            {"session": sid, "expires_in": self.auth.session_left(sid), "can_command": True}
        )

    async def _logout(self, request: web.Request) -> web.Response:
        bearer = self._bearer(request)
        if bearer is not None:
            self.auth.logout(bearer)
        return web.json_response({"status": "ok"})

    async def _state(self, request: web.Request) -> web.Response:
        if not self._may_view(request):
            return self._refused(request)
        body = self.hub.snapshot(self._authorized(request))
        return web.Response(body=body, content_type="application/json")

    async def _vehicle(self, request: web.Request) -> web.Response:
        if not self._may_view(request):
            return self._refused(request)
        account = request.query.get("account", "")
        vehicle = request.query.get("id", "")
        poller = self._bridge.pollers.get(account)
        state = None if poller is None else self._bridge.publisher.states(account).get(vehicle)
        if poller is None or state is None:
            return _error(404, "no such vehicle")
        commands = allowed_commands(self._bridge.config, poller, state)
        topics = self._bridge.topics
        retained = self._bridge.commander.retained
        return web.json_response(
            {
                "account": account,
                "provider": poller.provider.name,
                "state": state.to_json(),
                "commands": commands if self._authorized(request) else [],
                "lights": retained.get(topics.vehicle_lights(account, state.vehicle_id)),
                "snapshot": retained.get(topics.vehicle_snapshot(account, state.vehicle_id)),
            }
        )

    # --- live ---------------------------------------------------------------------------
    async def _live(self, request: web.Request) -> web.StreamResponse:
        if not self._same_origin(request):
            return _error(403, "another site's page may not read the dashboard")
        peer = request.remote or "?"
        if self.auth.throttled(peer) is not None:
            return _error(429, "too many failed logins: try again later")
        ws = web.WebSocketResponse(heartbeat=30, compress=False, max_msg_size=4096)
        await ws.prepare(request)
        session = await _hello(ws)
        authorized = self.auth.valid(session)
        if session and not authorized:
            self.auth.failed(peer)
        if not authorized and not self.auth.public:
            # Nothing was sent: a wrong token gets no data at all.
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        page = Page(ws, can_command=authorized)
        sender = asyncio.create_task(self.hub.serve(page))
        try:
            while not ws.closed:
                try:
                    message = await ws.receive(timeout=60)
                except TimeoutError:
                    message = None
                if message is not None and message.type in (
                    WSMsgType.CLOSE,
                    WSMsgType.CLOSING,
                    WSMsgType.CLOSED,
                    WSMsgType.ERROR,
                ):
                    break
                if authorized and not self.auth.valid(session):
                    await ws.close(code=4401, message=b"session expired")
                    break
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self.hub.remove(page)
        return ws

    # --- commands -----------------------------------------------------------------------
    async def _command(self, request: web.Request) -> web.Response:
        # CSRF: the credential is a header no other site's page can set, and a
        # request from another site's page is refused by its Origin too.
        if not self._same_origin(request):
            return _error(403, "commands from another site's page are refused")
        if not self._authorized(request):
            return self._refused(request)
        if request.content_type != "application/json":
            return _error(415, "send the command as application/json")
        body = await _json_body(request)
        if body is None:
            return _error(400, "expected a JSON object")
        name = body.pop("command", None)
        transaction = body.pop("transaction", None)
        if transaction is None:
            transaction = f"web-{uuid.uuid4()}"
        if not isinstance(transaction, str) or not 0 < len(transaction) <= MAX_TRANSACTION:
            answer = requests.error(
                None, f"transaction: must be a string of at most {MAX_TRANSACTION} characters"
            )
            return web.json_response({"answer": answer}, status=400)
        if name not in COMMANDS:
            answer = requests.error(
                transaction,
                f"command: must be one of {', '.join(COMMANDS)}",
                field="command",
            )
            self.metrics.command_answered("unknown", answer, "dashboard")
            return web.json_response({"answer": answer}, status=400)
        answer = await self._execute(str(name), body, transaction)
        self.metrics.command_answered(str(name), answer, "dashboard")
        return web.json_response({"answer": answer})

    async def _execute(self, name: str, body: dict[str, Any], transaction: str) -> dict[str, Any]:
        try:
            command = parse_command(name, body, transaction)
        except RequestError as err:
            return requests.error(transaction, str(err), field=err.field)
        store = self._bridge.store
        # The commander's journal key (bridge/commander.py `_execute`).
        key = f"{command.account}/{transaction}"
        try:
            new = store is None or await store.journal_get(key) is None
            answer = await self._bridge.commander.execute(command)
            if store is not None and new:
                # Answered here, in the page: a restart must not send it on MQTT.
                await store.journal_answered(key)
        except StoreError as err:
            self._fatal(err)
            return requests.error(transaction, f"command: not accepted: {err}")
        if outcome(answer) == "pending" and name in ("lights", "snapshot"):
            if len(self._followed) >= MAX_FOLLOWED:
                self._followed.pop(next(iter(self._followed)))
            self._followed[key] = _Followed(transaction, name, command.account, command.vehicle)
            self._follow_wake.set()
        return answer

    async def _follow(self) -> None:
        """Tell the pages when a pending command is confirmed or fails."""
        while True:
            if not self._followed:
                self._follow_wake.clear()
                await self._follow_wake.wait()
            await asyncio.sleep(FOLLOW_S)
            store = self._bridge.store
            if store is None:
                continue
            for key, followed in list(self._followed.items()):
                entry = await store.journal_get(key)
                if entry is not None and entry.status in ("accepted", "pending"):
                    continue
                del self._followed[key]
                self.hub.command_changed(self._command_update(followed, entry))

    def _command_update(self, followed: _Followed, entry: Any) -> dict[str, Any]:
        status = entry.status if entry is not None else "failed"
        detail: dict[str, Any] | None = None
        poller = self._bridge.pollers.get(followed.account)
        if poller is not None and followed.vehicle is not None:
            state = self._bridge.publisher.states(followed.account).get(followed.vehicle)
            vid = state.vehicle_id if state is not None else followed.vehicle
            topics = self._bridge.topics
            topic = (
                topics.vehicle_lights(followed.account, vid)
                if followed.command == "lights"
                else topics.vehicle_snapshot(followed.account, vid)
            )
            detail = self._bridge.commander.retained.get(topic)
        return {
            "transaction": followed.transaction,
            "command": followed.command,
            "account": followed.account,
            "vehicle": followed.vehicle,
            "status": status,
            "error": detail.get("error") if detail else None,
            "url": detail.get("url") if detail else None,
        }

    # --- operators ------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.Response:
        if not self._config.metrics_public and not self._authorized(request):
            return self._refused(request)
        body, content_type = self.metrics.render(request.headers.get("Accept", ""))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _healthz(self, _: web.Request) -> web.Response:
        problems = health.problems(self._bridge)
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ok\n")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def _hello(ws: web.WebSocketResponse) -> str | None:
    """The session id from the page's first message (None: none or no hello)."""
    with contextlib.suppress(TimeoutError):
        message = await ws.receive(timeout=HELLO_TIMEOUT_S)
        if message.type is WSMsgType.TEXT:
            try:
                hello = json.loads(message.data)
            except ValueError:
                return None
            session = hello.get("session") if isinstance(hello, dict) else None
            return session if isinstance(session, str) else None
    return None
