"""The live channel: one snapshot per page, then coalesced diffs, over a WebSocket.

Built for 10,000 vehicles with a tenth of them changing on every poll:

- Nothing happens while no page is open: no rows are kept, no diff computed.
- A poll's end (the pollers' health callback, which the bridge already has)
  marks its account dirty; a second-by-second tick catches what changes
  between polls (a command's confirmed effect, staleness, removals).
- A dirty account is diffed against what the pages were last sent by object
  identity first (the publisher keeps the very same `VehicleState` while a
  vehicle does not change), then by row: a diff carries only the rows that
  differ, and the keys of vehicles gone.
- Diffs are flushed at most every `FLUSH_INTERVAL_S`: changes in between are
  coalesced (the latest row of a vehicle wins), encoded once, and the same
  bytes go to every page.
- A page that cannot keep up is not queued for without end: past
  `MAX_QUEUED` messages its queue is dropped and it gets a fresh snapshot
  instead, so it never falls behind by more than one snapshot.

Messages (JSON, server to page): `snapshot` {seq, now, accounts, vehicles,
alerts, can_command}, `diff` {seq, now, at, vehicles, removed, accounts,
alerts}, `command` {transaction, ...} (to pages logged in with command rights
only). `now` is the bridge's clock (data ages on the page are computed from
it, not from the browser's); `at` is the bridge's wall-clock time when the
diff was taken (the benchmark's lag measurement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from bridge.logs import RedactingFilter
from bridge.model import VehicleState
from bridge.poller import AccountPoller
from bridge.web.picture import Row, account_holders, account_row, account_stale, vehicle_row

if TYPE_CHECKING:
    from bridge.app import Bridge

_LOGGER = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.25
TICK_S = 1.0
#: Messages waiting for one page before it is resynchronised with a snapshot.
MAX_QUEUED = 8
#: Alerts the page's feed keeps (newest first).
ALERTS_KEPT = 200


def encode(data: object) -> bytes:
    return orjson.dumps(data)


@dataclass(eq=False)
class Page:
    """One open page: what it may see and its queue of encoded messages."""

    ws: web.WebSocketResponse
    can_command: bool
    queue: deque[bytes] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    needs_snapshot: bool = True
    resyncs: int = 0

    def push(self, message: bytes) -> None:
        if self.needs_snapshot:
            return  # the snapshot it is about to get has this already
        if len(self.queue) >= MAX_QUEUED:
            self.queue.clear()
            self.needs_snapshot = True
            self.resyncs += 1
        else:
            self.queue.append(message)
        self.ready.set()


class LiveHub:
    """The dashboard's picture of the bridge, and every open page."""

    def __init__(self, bridge: Bridge, *, now: Callable[[], datetime]) -> None:
        self._bridge = bridge
        self._now = now
        self._redactor = RedactingFilter(bridge.config.secrets())
        self.pages: set[Page] = set()
        # What the pages were last sent, kept only while a page is open.
        self._seen: dict[str, dict[str, VehicleState]] = {}
        self._rows: dict[str, dict[str, Row]] = {}
        self._stale: dict[str, bool] = {}
        self._accounts: dict[str, Row] = {}
        # Quota reports as of each account's latest health event: the same
        # moment the bridge publishes them on `fleet/<account>/quota`.
        self._quota: dict[str, dict[str, object]] = {}
        self._alerts: deque[Row] = deque(maxlen=ALERTS_KEPT)
        self._alert_ids: set[tuple[str, str]] = set()
        # Waiting for the next flush.
        self._dirty_accounts: set[str] = set()
        self._rescan = False
        self._new_alerts: list[Row] = []
        self._changed_accounts: set[str] = set()
        self._seq = 0
        self._wake = asyncio.Event()
        #: Diffs sent, vehicle rows in them, snapshots built (metrics, benchmark).
        self.diffs = 0
        self.diff_rows = 0
        self.snapshots = 0

    # --- events from the bridge (synchronous, cheap) -----------------------------
    def account_changed(self, poller: AccountPoller) -> None:
        """A poll ended or the account's health changed."""
        self._quota[poller.account] = poller.quota_report()
        if not self.pages:
            return
        self._dirty_accounts.add(poller.account)
        self._changed_accounts.add(poller.account)
        self._wake.set()

    def alerts_published(self, account: str, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Alerts as the publisher sends them (their MQTT JSON; each once: the
        store's claims)."""
        batch = list(alerts)
        if not batch:
            return
        names = {vid: s.name for vid, s in self._states(account).items()}
        for alert in batch:
            key = (account, str(alert["id"]))
            if key in self._alert_ids:
                continue
            if len(self._alert_ids) >= 50 * ALERTS_KEPT:
                self._alert_ids = {(a["a"], a["id"]) for a in self._alerts}
            self._alert_ids.add(key)
            vehicle = str(alert["vehicle"])
            row: Row = {
                "id": str(alert["id"]),
                "a": account,
                "v": vehicle,
                "vn": names.get(vehicle, vehicle),
                "type": alert["type"],
                "severity": alert["severity"],
                "time": alert["time"],
                "stale": bool(alert["stale"]),
                "driver": alert.get("driver"),
                "la": alert.get("latitude"),
                "lo": alert.get("longitude"),
            }
            self._alerts.appendleft(row)
            self._new_alerts.append(row)
        if self.pages:
            self._wake.set()
        else:
            self._new_alerts.clear()

    def command_changed(self, data: Mapping[str, Any]) -> None:
        """A command from a page moved on (pending -> confirmed or failed)."""
        message = encode({"t": "command", **data})
        for page in self.pages:
            if page.can_command:
                page.push(message)

    # --- the pages ---------------------------------------------------------------
    def add(self, page: Page) -> None:
        if not self.pages:
            self._rebuild()
        self.pages.add(page)
        page.needs_snapshot = True
        page.ready.set()

    def remove(self, page: Page) -> None:
        self.pages.discard(page)
        if not self.pages:
            # Nobody looks: keep nothing, compute nothing, until a page opens.
            self._seen.clear()
            self._rows.clear()
            self._stale.clear()
            self._dirty_accounts.clear()
            self._new_alerts.clear()

    async def serve(self, page: Page) -> None:
        """Send the page its snapshot, then whatever is queued, until it closes."""
        self.add(page)
        try:
            while not page.ws.closed:
                await page.ready.wait()
                page.ready.clear()
                if page.needs_snapshot:
                    page.needs_snapshot = False
                    page.queue.clear()
                    await page.ws.send_bytes(self.snapshot(page.can_command))
                while page.queue and not page.needs_snapshot:
                    await page.ws.send_bytes(page.queue.popleft())
        except (ConnectionError, RuntimeError) as err:
            _LOGGER.debug("Dashboard page gone: %s", type(err).__name__)
        finally:
            self.remove(page)

    def snapshot(self, can_command: bool) -> bytes:
        """The whole picture: what the pages were sent so far, or (no page open,
        a script's GET /api/state) built now."""
        self.snapshots += 1
        if self.pages:
            vehicles = [row for rows in self._rows.values() for row in rows.values()]
        else:
            vehicles = [
                vehicle_row(account, state, account_stale(poller))
                for account, poller in self._bridge.pollers.items()
                for state in self._states(account).values()
            ]
        return encode(
            {
                "t": "snapshot",
                "seq": self._seq,
                "now": self._now().timestamp(),
                "can_command": can_command,
                "accounts": [self._account(p) for p in self._bridge.pollers.values()],
                "vehicles": vehicles,
                "alerts": list(self._alerts),
            }
        )

    # --- the picture -------------------------------------------------------------
    def _states(self, account: str) -> dict[str, VehicleState]:
        return self._bridge.publisher.states(account)

    def _account(self, poller: AccountPoller) -> Row:
        quota = self._quota.get(poller.account)
        if quota is None:
            quota = self._quota[poller.account] = poller.quota_report()
        row = account_row(
            poller,
            name=self._names().get(poller.account),
            quota=quota,
            holder=account_holders(self._bridge).get(poller.account, "?"),
            redact=self._redactor.redact,
        )
        self._accounts[poller.account] = row
        return row

    def _names(self) -> dict[str, str | None]:
        return {a.id: a.name for a in self._bridge.config.accounts}

    def _rebuild(self) -> None:
        self._seen.clear()
        self._rows.clear()
        for account, poller in self._bridge.pollers.items():
            stale = self._stale[account] = account_stale(poller)
            states = self._seen[account] = self._states(account)
            self._rows[account] = {
                vid: vehicle_row(account, state, stale) for vid, state in states.items()
            }

    def _diff_account(self, account: str, changed: dict[str, Row], removed: list[str]) -> None:
        poller = self._bridge.pollers[account]
        stale = account_stale(poller)
        restyle = stale != self._stale.get(account)
        self._stale[account] = stale
        seen = self._seen.setdefault(account, {})
        rows = self._rows.setdefault(account, {})
        current = self._states(account)
        for vid, state in current.items():
            if not restyle and seen.get(vid) is state:
                continue
            seen[vid] = state
            row = vehicle_row(account, state, stale)
            if rows.get(vid) != row:
                rows[vid] = row
                changed[row["k"]] = row
        if len(seen) != len(current):
            for vid in [v for v in seen if v not in current]:
                del seen[vid]
                gone = rows.pop(vid, None)
                if gone is not None:
                    changed.pop(gone["k"], None)
                    removed.append(gone["k"])

    def flush(self) -> bytes | None:
        """The diff of everything dirty since the last flush (None: nothing)."""
        if not self.pages:
            return None
        accounts = set(self._dirty_accounts)
        if self._rescan:
            accounts = set(self._bridge.pollers)
            self._rescan = False
        self._dirty_accounts.clear()
        changed: dict[str, Row] = {}
        removed: list[str] = []
        for account in accounts:
            if account in self._bridge.pollers:
                self._diff_account(account, changed, removed)
        account_rows = []
        for account in sorted(self._changed_accounts):
            poller = self._bridge.pollers.get(account)
            if poller is None:
                continue
            before = self._accounts.get(account)
            row = self._account(poller)
            if row != before:
                account_rows.append(row)
        self._changed_accounts.clear()
        alerts, self._new_alerts = self._new_alerts, []
        if not (changed or removed or account_rows or alerts):
            return None
        self._seq += 1
        self.diffs += 1
        self.diff_rows += len(changed)
        return encode(
            {
                "t": "diff",
                "seq": self._seq,
                "now": self._now().timestamp(),
                "at": time.time(),
                "vehicles": list(changed.values()),
                "removed": removed,
                "accounts": account_rows,
                "alerts": alerts,
            }
        )

    def _tick(self) -> None:
        """Between polls: what changed without a health event."""
        if not self.pages:
            return
        self._rescan = True
        for account, poller in self._bridge.pollers.items():
            row = self._accounts.get(account)
            if (
                row is None
                or row["stale"] != account_stale(poller)
                or row["status"] != poller.health.status.value
            ):
                self._changed_accounts.add(account)
        self._wake.set()

    async def run(self) -> None:
        """Flush at most every FLUSH_INTERVAL_S; tick every TICK_S."""
        loop = asyncio.get_running_loop()
        last_flush = 0.0
        last_tick = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, last_tick + TICK_S - loop.time())):
                    await self._wake.wait()
            if loop.time() - last_tick >= TICK_S:
                last_tick = loop.time()
                self._tick()
            wait = last_flush + FLUSH_INTERVAL_S - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # coalesce what else arrives meanwhile
            self._wake.clear()
            message = self.flush()
            last_flush = loop.time()
            if message is not None:
                for page in list(self.pages):
                    page.push(message)
