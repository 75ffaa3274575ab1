"""`/metrics`: the bridge in the Prometheus text format (prometheus-client).

Most figures are read from the bridge's own state at scrape time (quota
ledgers, the publisher's picture, the pollers' health, the webhook receiver's
counters), so the hot paths pay nothing for them. Only what happens and leaves
no state behind is counted as it happens: a poll's result (from the health
callback every poll already makes), a command's outcome (from its answer), and
the time the broker takes to acknowledge what the publisher sends (`TimedSink`).

Every metric lives in the bridge's own registry, not prometheus-client's
global one: two bridges in one process (tests) do not mix their figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from bridge.mqtt.publisher import Message, MessageSink
from bridge.poller import AccountPoller, AccountStatus
from bridge.web.picture import MapState, account_stale, classify

if TYPE_CHECKING:
    from bridge.app import Bridge

# No `*_created` series beside every counter: they double the page for nothing
# a scraper of a long-running daemon needs (prometheus-client's switch is global).
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "fleet_bridge"
#: Seconds for the broker to acknowledge one batch: 1 ms (a state on loopback)
#: to 10 s (10,000 states on a slow link).
PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
WEBHOOK_VERDICTS = (
    "accepted",
    "duplicate",
    "unauthorized",
    "too_large",
    "too_slow",
    "bad_request",
    "failed",
    "not_found",
)


def outcome(response: Mapping[str, Any]) -> str:
    """A command's answer as one word: pending, confirmed, failed or rejected."""
    data = response.get("data")
    if response.get("status") == "ok":
        state = data.get("state") if isinstance(data, Mapping) else None
        return str(state or "ok")
    # A field named: the request itself was refused (bad, unknown, not allowed),
    # nothing was sent to the provider.
    if isinstance(data, Mapping) and "field" in data:
        return "rejected"
    return "failed"


class _StateCollector(Collector):
    """The figures read from the running bridge at each scrape."""

    def __init__(self, bridge: Bridge, pages: Any) -> None:
        self._bridge = bridge
        self._pages = pages

    def collect(self) -> Iterator[Metric]:
        bridge = self._bridge
        calls = CounterMetricFamily(
            f"{PREFIX}_provider_calls",
            "Calls made to the provider (each one counted by the quota ledger first)",
            labels=["account"],
        )
        used = GaugeMetricFamily(
            f"{PREFIX}_budget_calls",
            "Calls counted against a budget in its current window or provider day",
            labels=["account", "budget"],
        )
        limit = GaugeMetricFamily(
            f"{PREFIX}_budget_limit", "A budget's limit", labels=["account", "budget"]
        )
        left = GaugeMetricFamily(
            f"{PREFIX}_budget_left",
            "Calls a budget has left now (its reserve for commands included)",
            labels=["account", "budget"],
        )
        today = GaugeMetricFamily(
            f"{PREFIX}_calls_left_today",
            "Calls left for polling today on the account's daily budget",
            labels=["account"],
        )
        status = GaugeMetricFamily(
            f"{PREFIX}_account_status",
            "1 for the account's current status",
            labels=["account", "status"],
        )
        vehicles = GaugeMetricFamily(
            f"{PREFIX}_vehicles", "Vehicles by map state", labels=["account", "state"]
        )
        for account, poller in bridge.pollers.items():
            calls.add_metric([account], poller.quota.calls_made)
            for name, entry in poller.quota.usage().items():
                if name == "hold" or not isinstance(entry, dict):
                    continue
                used.add_metric([account, name], entry["used"])
                limit.add_metric([account, name], entry["limit"])
                free = 1 - min(1, entry["used"]) if entry["kind"] == "spacing" else None
                left.add_metric(
                    [account, name],
                    free if free is not None else max(0, entry["limit"] - entry["used"]),
                )
            left_today = poller.quota.calls_left_today()
            if left_today is not None:
                today.add_metric([account], left_today)
            for each in AccountStatus:
                status.add_metric([account, each.value], 1 if poller.health.status is each else 0)
            counts = dict.fromkeys(MapState, 0)
            stale = account_stale(poller)
            for state in bridge.publisher.states(account).values():
                counts[classify(state, stale)] += 1
            for map_state, count in counts.items():
                vehicles.add_metric([account, map_state.value], count)
        yield from (calls, used, limit, left, today, status, vehicles)

        connected = GaugeMetricFamily(
            f"{PREFIX}_mqtt_connected", "1 while the bridge is connected to its MQTT broker"
        )
        connected.add_metric([], 1 if bridge.link.connected.is_set() else 0)
        yield connected

        deliveries = CounterMetricFamily(
            f"{PREFIX}_webhook_deliveries",
            "Webhook requests answered, by verdict",
            labels=["verdict"],
        )
        receiver = getattr(bridge, "webhooks", None)
        if receiver is not None:
            for verdict in WEBHOOK_VERDICTS:
                deliveries.add_metric([verdict], getattr(receiver.stats, verdict))
        yield deliveries

        pages = GaugeMetricFamily(f"{PREFIX}_dashboard_pages", "Dashboard pages open")
        pages.add_metric([], len(self._pages()))
        yield pages


class BridgeMetrics:
    """The registry behind `/metrics` and the few event counters."""

    def __init__(self, bridge: Bridge, pages: Any = lambda: ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter(
            f"{PREFIX}_polls",
            "Polls finished, by result (ok, failed, stopped, quota_wait: no call made)",
            ["account", "result"],
            registry=self.registry,
        )
        self.commands = Counter(
            f"{PREFIX}_commands",
            "Commands answered, by outcome (pending, confirmed, failed, rejected)",
            ["command", "outcome", "source"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            f"{PREFIX}_publish_seconds",
            "Seconds from handing a batch of messages to the MQTT client to the "
            "broker's acknowledgement of all of them",
            buckets=PUBLISH_BUCKETS,
            registry=self.registry,
        )
        self.published = Counter(
            f"{PREFIX}_published_messages",
            "MQTT messages the broker acknowledged",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(bridge, pages))
        # Per account: (polls, failures, calls) at the last health event.
        self._seen: dict[str, tuple[int, int, int]] = {}

    def account_changed(self, poller: AccountPoller) -> None:
        """The health callback: counts the poll that just ended, if one did."""
        health = poller.health
        now = (health.polls, health.failures, poller.quota.calls_made)
        polls, failures, calls = self._seen.get(poller.account, (0, 0, 0))
        if health.polls <= polls:
            # A health report without a poll (a reconnection, maybe in the middle
            # of a poll): the poll's calls count when it ends, not here.
            return
        self._seen[poller.account] = now
        if health.status is AccountStatus.STOPPED:
            result = "stopped"
        elif health.failures > failures:
            result = "failed"
        elif poller.quota.calls_made == calls:
            result = "quota_wait"
        else:
            result = "ok"
        self.polls.labels(poller.account, result).inc(health.polls - polls)

    def command_answered(self, command: str, response: Mapping[str, Any], source: str) -> None:
        self.commands.labels(command, outcome(response), source).inc()

    def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class TimedSink:
    """The publisher's sink, timing each batch to the broker's acknowledgement."""

    def __init__(self, sink: MessageSink, metrics: BridgeMetrics) -> None:
        self._sink = sink
        self._metrics = metrics

    async def publish_many(self, messages: Sequence[Message]) -> None:
        start = time.monotonic()
        await self._sink.publish_many(messages)
        # Only what the broker took: a batch refused for want of a broker is
        # not a latency.
        self._metrics.publish_seconds.observe(time.monotonic() - start)
        self._metrics.published.inc(len(messages))
