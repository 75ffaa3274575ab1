"""A simulated week of one FLEETIZE account: calls, violations, position age.

    .venv/bin/python bench/quota_week.py [--seed 1] [--days 7] [--work-start 7]

(`--busy-factor`, `--idle-factor` and `--max-interval` replace the daemon's
cadence defaults, to explore; the header then says so.)

Not a timed test: it prints figures. One FLEETIZE simulator (30 vehicles that
start trips from 07:00 to 16:59 UTC every day) runs on a frozen clock that this
script moves from event to event, so a week takes well under a minute.
Three clients poll it over loopback HTTP, each with its own token and its own
source address (FLEETIZE's 60 s spacing is per client IP, so they cannot refuse
each other's calls), and all three see the same vehicles:

- the bridge: the daemon's own objects (`Store` in a SQLite file, `Quota` with the
  daemon's budgets and 10 % reserve, the FLEETIZE provider, `Publisher`,
  `AccountPoller` with `FleetizeAccount.cadence_plan()`), polling when the
  planner says. It is killed three times at random instants, the second within a
  minute after one of its calls: its objects are dropped without any shutdown (no
  final write, as after SIGKILL) and new ones are built from the same store file;
  they poll at once, as the daemon does at start, and the quota says when;
- the fixed-interval poller of the issue: the same provider and poller classes,
  polling every 960 s whatever happens, i.e. the bridge's polling share of the
  daily quota (100 calls less the 10 % reserve = 90) spread evenly;
- for reference, the same every 864 s (86400/100: the whole quota, no reserve).

Every simulated minute (at hh:mm:30) every vehicle that is driving in the
simulator's truth is read from each client's published state:

- position age = now - the published position's time. For FLEETIZE that is
  `online_timestamp`: the last fix while the engine runs, but the time the engine
  was switched off while parked. So a vehicle that left before the client's next
  poll still shows where it parked, aged by its whole stop (overnight: ~14 h).
  A vehicle without a published position would be skipped and counted as
  unknown; none is, since every client polls at once at start;
- staleness = now - the last instant the published position was the vehicle's
  true position (checked after every poll and at every read): how far behind the
  truth the published position is, without the stop before a trip.

Violations are the simulator's own count of refused calls (#1055 spacing, #1002
blocked token, #1056 daily limit), of all three clients; they must stay 0.

The last line is machine-readable (ages: the bridge's mean over the fixed-interval
poller's, every 960 s):
`violations=<n> quota_used=<fraction> moving_age_ratio=<bridge mean / fixed-interval mean>`
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import logging
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.app import poller_settings  # noqa: E402
from bridge.config import FleetizeAccount  # noqa: E402
from bridge.model import VehicleState  # noqa: E402
from bridge.mqtt.publisher import Publisher  # noqa: E402
from bridge.mqtt.topics import Topics  # noqa: E402
from bridge.planner import Cadence  # noqa: E402
from bridge.poller import AccountPoller, AccountStatus, PollerSettings  # noqa: E402
from bridge.providers import create_provider, default_budgets  # noqa: E402
from bridge.providers.fleetize import FleetizeProvider  # noqa: E402
from bridge.quota import Budget, MemoryLedger, Quota, QuotaLedger  # noqa: E402
from bridge.simulator.clock import SimClock, from_ms  # noqa: E402
from bridge.simulator.fleetize_quota import (  # noqa: E402
    DAILY_LIMIT,
    DAILY_LIMIT_REACHED,
    THRESHOLD_EXCEEDED,
    TOKEN_BLOCKED,
)
from bridge.simulator.server import SimulatorServer  # noqa: E402
from bridge.simulator.vehicle import Phase, Stat  # noqa: E402
from bridge.store import Store  # noqa: E402

ACCOUNT = "week"
START = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday, 00:00 UTC
WORK_START = 7  # trips start from 07:00 to 16:59 UTC: 10 hours a day
WORK_HOURS_PER_DAY = 10
DAY = timedelta(days=1)
READ_EVERY = timedelta(seconds=60)
READ_OFFSET = timedelta(seconds=30)  # hh:mm:30: never the instant of a fixed poll
FIXED_INTERVAL_S = 960.0  # 90 polls a day: the daily quota less the 10 % reserve
NAIVE_INTERVAL_S = 86_400 / DAILY_LIMIT  # 100 polls a day: the whole quota
RESTARTS = 3
VIOLATIONS = (THRESHOLD_EXCEEDED, TOKEN_BLOCKED, DAILY_LIMIT_REACHED)
# Order of events due at the same instant.
RANK_DAY, RANK_KILL, RANK_POLL, RANK_READ = range(4)


class DiscardSink:
    """An MQTT link that takes every message and sends none."""

    async def publish_many(self, messages: object) -> None:
        return None


@dataclass
class Observer:
    """One polling client as the reader sees it: what it showed, day by day."""

    name: str
    token: str
    address: str  # source IP: FLEETIZE spaces calls per client IP
    interval: float | None = None  # fixed interval; None: the planner decides
    ages: dict[int, list[float]] = field(default_factory=dict)
    staleness: dict[int, list[float]] = field(default_factory=dict)
    unknown: int = 0
    # Per vehicle: the last instant the published position was the true one.
    last_true: dict[str, datetime] = field(default_factory=dict)


@dataclass
class Client:
    """One polling process: its HTTP session, store and poller."""

    session: aiohttp.ClientSession
    store: Store
    poller: AccountPoller

    def states(self) -> dict[str, VehicleState]:
        return self.poller.publisher.states(ACCOUNT)

    async def close(self) -> None:
        await self.session.close()
        await self.store.close()


@dataclass
class Restart:
    planned: datetime
    # Kill this long after the bridge's first call at or after `planned`; None: at it.
    after_call_s: float | None
    armed: bool = False
    at: datetime | None = None
    since_call_s: float | None = None
    first_call_after_s: float | None = None


@dataclass(order=True)
class Event:
    at_ms: int
    rank: int
    seq: int
    kind: str = field(compare=False)
    arg: int = field(compare=False, default=0)


@dataclass
class DayCount:
    calls: Counter[str]
    refused: Counter[int]


@dataclass
class Setup:
    server: SimulatorServer
    budgets: tuple[Budget, ...]
    cadence: Cadence
    settings: PollerSettings


def fleetize_account(token: str, base_url: str | None = None) -> FleetizeAccount:
    """The account as the daemon's config would read it (every other option default)."""
    fields = {"id": ACCOUNT, "provider": "fleetize", "token": token, "base_url": base_url}
    return FleetizeAccount.model_validate(fields)


def sim_sleep(clock: SimClock) -> Callable[[float], Awaitable[None]]:
    async def sleep(seconds: float) -> None:
        clock.advance(max(0.0, seconds))

    return sleep


async def build_client(
    setup: Setup, observer: Observer, store: Store, ledger: QuotaLedger, budgets: tuple[Budget, ...]
) -> Client:
    """What `BridgeApp.run` builds for one account, on the simulated clock."""
    server = setup.server
    clock = server.clock
    connector = aiohttp.TCPConnector(local_addr=(observer.address, 0))
    session = aiohttp.ClientSession(connector=connector)
    account = fleetize_account(observer.token, server.fleetize_url)
    quota = Quota(ACCOUNT, budgets, ledger, now=clock.now)
    provider = create_provider("fleetize", session, account.provider_settings(), quota)
    if isinstance(provider, FleetizeProvider):
        # The HTTP client waits out a spacing about to end (<= 10 s) rather than
        # fail the poll; on a frozen clock that wait has to move simulated time.
        provider._http.sleep = sim_sleep(clock)
    publisher = Publisher(DiscardSink(), Topics())
    publisher.register_account(ACCOUNT, provider.name, provider.capabilities, has_daily_budget=True)
    poller = AccountPoller(
        setup.settings, provider, publisher, store, quota, setup.cadence, now=clock.now
    )
    await poller.restore()
    return Client(session, store, poller)


async def start_bridge(setup: Setup, observer: Observer, path: Path) -> Client:
    """A new bridge process: the store file opened again, everything else new."""
    store = Store(path)
    return await build_client(setup, observer, store, store, setup.budgets)


def track_truth(observer: Observer, client: Client, server: SimulatorServer) -> None:
    """Note each vehicle whose published position is (still) its true position."""
    now = server.clock.now()
    world = server.fleetize_world
    world.update()
    states = client.states()
    for vehicle in world.vehicles():
        state = states.get(vehicle.vehicle_id)
        sample = vehicle.last(Stat.GPS)
        if state is None or state.position is None or sample is None:
            continue
        # As FLEETIZE serves it: "lat,lon" with 5 decimals.
        true = (float(f"{sample.value.latitude:.5f}"), float(f"{sample.value.longitude:.5f}"))
        if (state.position.latitude, state.position.longitude) == true:
            # Driving, the fix was true when it was taken; standing, it still is.
            driving = vehicle.phase is Phase.DRIVING
            observer.last_true[vehicle.vehicle_id] = from_ms(sample.time_ms) if driving else now


def read_moving(readers: list[tuple[Observer, Client]], server: SimulatorServer) -> None:
    """One read of every driving vehicle from every client's published state."""
    now = server.clock.now()
    day = (now - START) // DAY
    world = server.fleetize_world
    world.update()
    moving = [v.vehicle_id for v in world.vehicles() if v.phase is Phase.DRIVING]
    for observer, client in readers:
        track_truth(observer, client, server)
        states = client.states()
        ages = observer.ages.setdefault(day, [])
        staleness = observer.staleness.setdefault(day, [])
        for vid in moving:
            state = states.get(vid)
            if state is None or state.position is None or state.position.time is None:
                observer.unknown += 1
                continue
            ages.append((now - state.position.time).total_seconds())
            if vid in observer.last_true:
                staleness.append((now - observer.last_true[vid]).total_seconds())


class Week:
    """The discrete-event loop: polls, kills and reads in simulated-time order."""

    def __init__(self, args: argparse.Namespace, setup: Setup, work: Path) -> None:
        self.days: int = args.days
        self.setup = setup
        self.server = setup.server
        self.clock = setup.server.clock
        self.store_path = work / "bridge.sqlite"
        self.bridge = Observer("bridge", "bench-bridge-token", "127.0.0.1")
        self.fixed = Observer("fixed-960", "bench-fixed-token", "127.0.0.2", FIXED_INTERVAL_S)
        self.naive = Observer("fixed-864", "bench-naive-token", "127.0.0.3", NAIVE_INTERVAL_S)
        rng = random.Random(args.seed)
        instants = sorted(rng.uniform(0.05, 0.95) * self.days for _ in range(RESTARTS))
        self.restarts = [
            Restart(START + DAY * instant, rng.uniform(1, 59) if index == 1 else None)
            for index, instant in enumerate(instants)
        ]
        self.days_counted: list[DayCount] = []
        self.reasons: Counter[str] = Counter()
        self.stopped: str | None = None
        self._queue: list[Event] = []
        self._seq = 0
        self._generation = 0  # of the bridge process: a killed one's polls are void
        self._last_call: datetime | None = None
        self._awaiting_first_call: Restart | None = None

    @property
    def observers(self) -> tuple[Observer, Observer, Observer]:
        return self.bridge, self.fixed, self.naive

    def push(self, at: datetime, rank: int, kind: str, arg: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._queue, Event(_ms(at), rank, self._seq, kind, arg))

    async def run(self) -> None:
        setup = self.setup
        bridge = await start_bridge(setup, self.bridge, self.store_path)
        plain = tuple(replace(b, reserve=0.0) for b in setup.budgets)
        comparators = {
            o.name: await build_client(setup, o, Store(":memory:"), MemoryLedger(), plain)
            for o in (self.fixed, self.naive)
        }
        killed: list[Client] = []
        for day in range(self.days + 1):
            self.push(START + DAY * day, RANK_DAY, "day")
        self.push(START, RANK_POLL, "bridge", self._generation)
        for name in comparators:
            self.push(START, RANK_POLL, name, 0)
        self.push(START + READ_OFFSET, RANK_READ, "read")
        for index, restart in enumerate(self.restarts):
            if restart.after_call_s is None:
                self.push(restart.planned, RANK_KILL, "kill", index)

        sim = self.server.fleetize
        calls_before: Counter[str] = Counter()
        refused_before: Counter[int] = Counter()
        try:
            while self._queue:
                event = heapq.heappop(self._queue)
                # Never back: a poll may have moved the clock (a short quota wait).
                if event.at_ms > self.clock.now_ms():
                    self.clock.advance((event.at_ms - self.clock.now_ms()) / 1000)
                now = self.clock.now()
                if event.kind == "day":
                    calls = Counter(sim.counters.by_token)
                    refused = Counter({code: sim.error_counts[code] for code in VIOLATIONS})
                    if now > START:
                        self.days_counted.append(
                            DayCount(calls - calls_before, refused - refused_before)
                        )
                    calls_before, refused_before = calls, refused
                    if now >= START + DAY * self.days:
                        break
                elif event.kind == "read":
                    others = [(o, comparators[o.name]) for o in (self.fixed, self.naive)]
                    read_moving([(self.bridge, bridge), *others], self.server)
                    self.push(now + READ_EVERY, RANK_READ, "read")
                elif event.kind == "bridge":
                    if event.arg == self._generation and self.stopped is None:
                        await self.poll_bridge(bridge)
                elif event.kind == "kill":
                    killed.append(bridge)
                    bridge = await self.kill_and_restart(bridge, self.restarts[event.arg])
                else:
                    observer = self.fixed if event.kind == self.fixed.name else self.naive
                    client = comparators[event.kind]
                    await client.poller.poll_once()
                    track_truth(observer, client, self.server)
                    assert observer.interval is not None
                    count = event.arg + 1
                    at = START + timedelta(seconds=count * observer.interval)
                    self.push(at, RANK_POLL, event.kind, count)
        finally:
            for client in (bridge, *killed, *comparators.values()):
                await client.close()

    async def poll_bridge(self, bridge: Client) -> None:
        sim = self.server.fleetize
        before = sim.counters.by_token[self.bridge.token]
        delay = await bridge.poller.poll_once()
        # After the poll: the HTTP client may have waited out a spacing first.
        now = self.clock.now()
        health = bridge.poller.health
        self.reasons[health.plan_reason or "?"] += 1
        if sim.counters.by_token[self.bridge.token] > before:
            self._last_call = now
            restart = self._awaiting_first_call
            if restart is not None and restart.at is not None:
                restart.first_call_after_s = (now - restart.at).total_seconds()
                self._awaiting_first_call = None
            for index, restart in enumerate(self.restarts):
                due = restart.after_call_s is not None and restart.planned <= now
                if due and not restart.armed:
                    kill_at = now + timedelta(seconds=restart.after_call_s or 0.0)
                    self.push(kill_at, RANK_KILL, "kill", index)
                    restart.armed = True
        track_truth(self.bridge, bridge, self.server)
        if health.status is AccountStatus.STOPPED:
            self.stopped = f"{now:%a %H:%M:%S}: {health.last_error}"
            return
        next_ms = self.clock.now_ms() + math.ceil(delay * 1000)
        self.push(from_ms(next_ms), RANK_POLL, "bridge", self._generation)

    async def kill_and_restart(self, bridge: Client, restart: Restart) -> Client:
        now = self.clock.now()
        restart.at = now
        if self._last_call is not None:
            restart.since_call_s = (now - self._last_call).total_seconds()
        # SIGKILL: no shutdown and no final write; the sockets die with the process
        # (the old store connection is only closed at the end, and never written).
        await bridge.session.close()
        self._generation += 1
        new = await start_bridge(self.setup, self.bridge, self.store_path)
        self._awaiting_first_call = restart
        self.push(now, RANK_POLL, "bridge", self._generation)
        return new


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def minutes(values: list[float]) -> str:
    return f"{mean(values) / 60:6.1f} {p95(values) / 60:6.1f}"


def ratio(a: list[float], b: list[float]) -> float:
    return mean(a) / mean(b) if a and b and mean(b) else math.nan


def report(week: Week, wall_s: float) -> None:
    bridge, fixed, naive = week.observers
    days = len(week.days_counted)
    print(
        "\nper day (UTC): FLEETIZE calls answered or refused, share of the 100-call quota, "
        "refusals\n(#1055 + #1002 + #1056), moving-vehicle reads; ages in minutes (mean p95)"
    )
    header = (
        f"{'day':<10} {'calls':>5} {'quota':>5} {'viol':>4} {'reads':>5} | "
        f"{'bridge age':>13} {'fixed-960':>13} {'fixed-864':>13} {'ratio':>5} | "
        f"{'bridge stale':>13} {'fixed-960':>13} {'ratio':>5}"
    )
    print(header)
    print("-" * len(header))
    total_calls = total_refused = 0
    for index, count in enumerate(week.days_counted):
        calls = count.calls[bridge.token]
        refused = sum(count.refused.values())
        total_calls += calls
        total_refused += refused
        date = START + DAY * index
        age = [o.ages.get(index, []) for o in week.observers]
        stale = [o.staleness.get(index, []) for o in week.observers]
        print(
            f"{date:%a %m-%d} {calls:>5} {calls / DAILY_LIMIT:>5.2f} {refused:>4} "
            f"{len(age[0]):>5} | {minutes(age[0])} {minutes(age[1])} {minutes(age[2])} "
            f"{ratio(age[0], age[1]):>5.2f} | {minutes(stale[0])} {minutes(stale[1])} "
            f"{ratio(stale[0], stale[1]):>5.2f}"
        )
    ages = [list(chain.from_iterable(o.ages.values())) for o in week.observers]
    stale = [list(chain.from_iterable(o.staleness.values())) for o in week.observers]
    quota_used = total_calls / (DAILY_LIMIT * days) if days else math.nan
    print("-" * len(header))
    print(
        f"{'week':<10} {total_calls:>5} {quota_used:>5.2f} {total_refused:>4} "
        f"{len(ages[0]):>5} | {minutes(ages[0])} {minutes(ages[1])} {minutes(ages[2])} "
        f"{ratio(ages[0], ages[1]):>5.2f} | {minutes(stale[0])} {minutes(stale[1])} "
        f"{ratio(stale[0], stale[1]):>5.2f}"
    )
    sim = week.server.fleetize
    per_token = {o.name: sum(c.calls[o.token] for c in week.days_counted) for o in (fixed, naive)}
    print(
        f"\ncomparators' calls: {per_token}; #1055 by client: "
        f"{ {o.name: sim.quota.violations[o.token] for o in week.observers} }; "
        f"unknown positions read: { {o.name: o.unknown for o in week.observers} }"
    )
    print(
        f"vs fixed-864: position age ratio {ratio(ages[0], ages[2]):.3f}, "
        f"staleness ratio {ratio(stale[0], stale[2]):.3f}"
    )
    for number, restart in enumerate(week.restarts, 1):
        when = f"{restart.at:%a %H:%M:%S}" if restart.at else "never"
        since = f"{restart.since_call_s:.1f} s" if restart.since_call_s is not None else "-"
        first = (
            f"{restart.first_call_after_s:.1f} s" if restart.first_call_after_s is not None else "-"
        )
        print(
            f"restart {number}: killed {when}, {since} after its last call; "
            f"the new process called {first} later"
        )
    if week.stopped:
        print(f"the bridge STOPPED at {week.stopped}")
    top = ", ".join(f"{reason} x{n}" for reason, n in week.reasons.most_common(6))
    print(f"bridge polls by planner reason: {top}")
    print(f"wall time: {wall_s:.1f} s")
    print(
        f"violations={total_refused} quota_used={quota_used:.3f} "
        f"moving_age_ratio={ratio(ages[0], ages[1]):.3f}"
    )


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    work_hours = (args.work_start, (args.work_start + WORK_HOURS_PER_DAY - 1) % 24 + 1)
    with tempfile.TemporaryDirectory(prefix="fleet-quota-week-") as work:
        async with SimulatorServer(
            vehicles=0,
            telemax_vehicles=0,
            fleetize_vehicles=args.vehicles,
            seed=args.seed,
            speed=0,
            start=START,
            work_hours={"fleetize": work_hours},
            fleetize_tokens=("bench-bridge-token", "bench-fixed-token", "bench-naive-token"),
        ) as server:
            # The daemon's defaults, from its config model.
            account = fleetize_account("bench-bridge-token")
            cadence = account.cadence_plan()
            explore = {
                name: value
                for name in ("busy_factor", "idle_factor", "max_interval")
                if (value := getattr(args, name)) is not None
            }
            cadence = replace(cadence, **explore)
            setup = Setup(
                server,
                account.quota.budgets_for(default_budgets("fleetize")),
                cadence,
                poller_settings(account),
            )
            print(
                f"FLEETIZE week: {args.vehicles} vehicles, trips from "
                f"{work_hours[0]:02d}:00 to {work_hours[1]:02d}:00 UTC, {args.days} days from "
                f"{START:%a %Y-%m-%d}, seed {args.seed}\nbridge: {cadence}"
                + (" (NOT the daemon's defaults)" if explore else " (the daemon's defaults)")
                + f"\nbudgets: {', '.join(b.describe() for b in setup.budgets)}, "
                f"reserve {setup.budgets[0].reserve:.0%}",
                flush=True,
            )
            week = Week(args, setup, Path(work))
            await week.run()
    report(week, time.perf_counter() - started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--vehicles", type=int, default=30)
    parser.add_argument(
        "--work-start",
        type=int,
        default=WORK_START,
        choices=range(24),
        metavar="HOUR",
        help=f"UTC hour the {WORK_HOURS_PER_DAY} h of trips start (default {WORK_START})",
    )
    group = parser.add_argument_group("exploration only (not the daemon's defaults)")
    group.add_argument("--busy-factor", type=float)
    group.add_argument("--idle-factor", type=float)
    group.add_argument("--max-interval", type=float)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parser.parse_args()))
