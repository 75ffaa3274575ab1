"""Three `fleet-bridge run` instances on one PostgreSQL through a simulated day,
one of them SIGKILLed every simulated hour; and the same accounts on one instance
with the embedded SQLite store, for the CPU comparison.

    .venv/bin/python bench/instances.py            # --accounts 30 --vehicles 30000 --hour 20

What runs: a Mosquitto and a PostgreSQL of the benchmark's own (initdb on a free
port in a temporary directory), the simulator in this process, and the bridges as
separate processes. The accounts: six FLEETIZE accounts behind one address (one
egress), three Metrotec accounts, and Samsara for the rest, one token each; every
account of a provider sees that provider's simulated fleet, so `--vehicles` is
split evenly over the accounts and counted as (account, vehicle) pairs, as the
bridge publishes them.

The day is compressed: a simulated hour lasts `--hour` real seconds (the
simulator's clock runs at 3600 / hour). The bridges poll on the wall clock
(Samsara and Metrotec every 30 s), so what a simulated hour holds is the kills,
the commands and the polls of `--hour` seconds, not an hour's worth of polls.
FLEETIZE's 60 s spacing is shortened to 3 s real on both sides (the simulator's
spacing is on its own clock, so it is set to 3 s x its speed), so that the six
accounts behind one address take many turns in a run; FLEETIZE's 100 calls a day
per account stay as they are, on the simulated day. The lease is the default
(`store.lease_time`, 10 s).

Phases:
1. SQLite: one instance holds every account for `--baseline` real seconds once
   every account has published: its CPU seconds (utime + stime) per 1,000
   vehicle updates. An update is a vehicle state message whose payload differs
   from the one before it on that topic (a state republished unchanged after a
   takeover is not an update).
2. PostgreSQL: three instances share the accounts. Every simulated hour three
   commands (Metrotec tasks and lights, each a provider write) go to
   `fleet/bridge/request/...`, then one instance, chosen at random, is SIGKILLed
   and a new one started, after a steady window of `--baseline` seconds with no
   kill. CPU is every instance's (the killed ones' up to their
   kill) plus the PostgreSQL server's (postmaster and backends, ended ones
   included through the postmaster's cutime), per 1,000 updates.

Figures:
- `violations`: what the providers counted against the limits, over both
  phases: FLEETIZE's quota violations (each a #1055 or #1056 it answered), its
  #1002 (token blocked), and every 429 Samsara or Metrotec served. Printed per
  phase and by kind above the last line.
- `duplicates`: Metrotec tasks created more than once for one order_ref, and
  transactions answered with two different answers.
- `lost`: commands sent and never answered (after a grace of two minutes).
- `takeover_p99_s`: from the kill to the first provider request of a taken-over
  account by its new holder (the request as the simulator receives it; requests
  within 1 s of the kill are taken to be the killed process's last ones, in
  flight when it died). The six FLEETIZE accounts behind one address are one
  unit that takes turns on the spacing whoever holds it, so they count once:
  the kill to the first FLEETIZE request of that unit.
- `cpu_ratio`: CPU per 1,000 updates of the three instances and the PostgreSQL
  server over the SQLite instance's (target under 1.3), measured before the
  first kill over a window as long as the SQLite one (`--baseline`), so that it
  is what the store costs; `cpu_ratio_bridges` leaves the PostgreSQL server out,
  and `cpu_ratio_day` covers the whole day, the killed instances' restarts
  (each loads its share of the states again) included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from aiohttp import web
from fleet import ROOT, broker, cpu_seconds, machine, write_config

from bridge.simulator.server import SimulatorServer
from tests.support.mqtt import Mosquitto
from tests.support.postgres import Postgres

FLEETIZE_ACCOUNTS = 6
METROTEC_ACCOUNTS = 3
SPACING_S = 3.0
POLL_S = 30


def tokens(accounts: int) -> dict[str, list[str]]:
    samsara = accounts - FLEETIZE_ACCOUNTS - METROTEC_ACCOUNTS
    if samsara < 1:
        sys.exit(f"--accounts must be at least {FLEETIZE_ACCOUNTS + METROTEC_ACCOUNTS + 1}")
    return {
        "samsara": [f"bench-samsara-token-{i:02d}" for i in range(samsara)],
        "fleetize": [f"bench-fleetize-token-{i:02d}" for i in range(FLEETIZE_ACCOUNTS)],
        "metrotec": [f"bench-depot-{i}" for i in range(METROTEC_ACCOUNTS)],
    }


class WatchedSimulator(SimulatorServer):
    """The simulator, noting when each account's credential reached it."""

    def __init__(self, credentials: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.credentials = credentials  # credential -> account id
        self.requests: dict[str, list[float]] = defaultdict(list)

    def _account_of(self, request: web.Request, form: Any) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if request.path.startswith("/metrotec") and token:
            user = self.metrotec._tokens.get(token)
            return self.credentials.get(user[0]) if user else None
        if request.path.startswith("/fleetize") and form is not None:
            return self.credentials.get(str(form.get("apitoken", "")))
        return self.credentials.get(token) if scheme.lower() == "bearer" else None

    def make_app(self) -> web.Application:
        app = super().make_app()

        @web.middleware
        async def watched(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            # aiohttp keeps the parsed form: the handler reads it again for free.
            form = await request.post() if request.path.startswith("/fleetize") else None
            account = self._account_of(request, form)
            if account is not None:
                self.requests[account].append(time.monotonic())
            return await handler(request)

        app.middlewares.insert(0, watched)
        return app

    def violations(self) -> dict[str, int]:
        fleetize = self.fleetize.stats()
        errors = fleetize["errors"]
        return {
            "fleetize_1055": int(errors.get("1055", 0)),
            "fleetize_1056": int(errors.get("1056", 0)),
            "fleetize_1002": int(errors.get("1002", 0)),
            "fleetize_violations": int(fleetize["violations"]),
            "samsara_429": self.samsara.counters.rate_limited,
            "metrotec_429": self.metrotec.counters.rate_limited,
        }


def config_text(
    sim: SimulatorServer,
    mosquitto: Mosquitto,
    creds: dict[str, list[str]],
    store: str,
    passwords: dict[str, str],
) -> str:
    lines = [
        f"mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, client_id: bench, discovery: false}}",
        f"store: {store}",
        "log_level: info",
        "accounts:",
    ]
    for i, token in enumerate(creds["samsara"]):
        lines.append(
            f"  - {{id: sam{i:02d}, provider: samsara, token: {token},"
            f" base_url: '{sim.samsara_url}', safety_events: false,"
            f" poll_interval: {POLL_S}, offline_after: 864000}}"
        )
    for i, token in enumerate(creds["fleetize"]):
        lines += [
            f"  - id: fz{i}",
            "    provider: fleetize",
            f"    token: {token}",
            f"    base_url: '{sim.fleetize_url}'",
            "    offline_after: 864000",
            f"    quota: {{budgets: {{spacing: {{period: {SPACING_S}}}}}}}",
        ]
    for i, user in enumerate(creds["metrotec"]):
        lines.append(
            f"  - {{id: mt{i}, provider: metrotec, username: {user}, password: {passwords[user]},"
            f" base_url: '{sim.metrotec_url}', poll_interval: {POLL_S}, offline_after: 864000}}"
        )
    lines += [
        "commands:",
        "  allow:",
        "    - {accounts: ['*'], vehicles: ['*'], commands: [lights, task/create]}",
    ]
    return "\n".join(lines) + "\n"


class Watcher:
    """paho in its own thread: vehicle updates, answers and the cluster view."""

    def __init__(self, port: int, accounts: set[str]) -> None:
        self.port = port
        self.accounts = accounts
        self.lock = threading.Lock()
        self.last: dict[str, bytes] = {}
        self.updates = 0
        self.answers: dict[str, list[str]] = defaultdict(list)
        self.info: dict[str, Any] = {}
        self.polled: set[str] = set()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-watcher")
        self.client.max_queued_messages_set(0)
        self.ready = threading.Event()

    def start(self) -> None:
        def on_connect(c: paho.Client, *_: Any) -> None:
            c.subscribe([("fleet/+/+", 1), ("fleet/bridge/response/#", 1)])

        def on_subscribe(*_: Any) -> None:
            self.ready.set()

        def on_message(_c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
            topic, payload = message.topic, bytes(message.payload)
            parts = topic.split("/")
            with self.lock:
                if topic == "fleet/bridge/info" and payload:
                    self.info = json.loads(payload)
                elif parts[1] == "bridge" and parts[2] == "response" and payload:
                    answer = json.loads(payload)
                    self.answers[str(answer.get("transaction"))].append(
                        json.dumps(answer, sort_keys=True)
                    )
                elif len(parts) == 3 and parts[1] in self.accounts and parts[2] != "quota":
                    if payload and self.last.get(topic) != payload:
                        self.updates += 1
                        self.polled.add(parts[1])
                    self.last[topic] = payload

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the watcher did not subscribe")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def holders(self) -> dict[str, str | None]:
        with self.lock:
            accounts = self.info.get("accounts", {})
            return {a: row.get("instance") for a, row in accounts.items()}

    def vehicles(self, account: str) -> list[str]:
        prefix = f"fleet/{account}/"
        with self.lock:
            return [t[len(prefix) :] for t in self.last if t.startswith(prefix)]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def first_states(watcher: Watcher, since: float) -> None:
    try:
        await wait_until(lambda: watcher.polled >= watcher.accounts, 600, "first states")
    except TimeoutError:
        missing = sorted(watcher.accounts - watcher.polled)
        raise TimeoutError(
            f"no states after {time.monotonic() - since:.0f} s from {missing}"
        ) from None


def start_instance(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def pid_of(instance: str | None) -> int | None:
    # Lease ids are `<host>-<pid>-<nonce>`.
    try:
        return int((instance or "").rsplit("-", 2)[1])
    except (IndexError, ValueError):
        return None


def postgres_cpu(pg: Postgres) -> float:
    """The server's CPU so far: the postmaster, its live backends, and the ended
    ones (reaped by the postmaster, so in its cutime and cstime)."""
    master = int((pg.data / "postmaster.pid").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == master:
            total += sum(int(f) for f in fields[11:15]) / ticks
        elif ppid == master:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


async def main(args: argparse.Namespace) -> None:
    creds = tokens(args.accounts)
    per_account = args.vehicles // args.accounts
    passwords = {user: f"bench-metrotec-pw-{i}" for i, user in enumerate(creds["metrotec"])}
    accounts: dict[str, str] = {}
    for i, token in enumerate(creds["samsara"]):
        accounts[token] = f"sam{i:02d}"
    for i, token in enumerate(creds["fleetize"]):
        accounts[token] = f"fz{i}"
    for i, user in enumerate(creds["metrotec"]):
        accounts[user] = f"mt{i}"
    speed = 3600 / args.hour
    rng = random.Random(7)
    print(machine())
    print(
        f"{len(accounts)} accounts ({len(creds['samsara'])} Samsara,"
        f" {FLEETIZE_ACCOUNTS} FLEETIZE on one egress, {METROTEC_ACCOUNTS} Metrotec),"
        f" {per_account} vehicles each;"
        f" a simulated hour is {args.hour:g} s"
    )
    with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp:
        work = Path(args.keep or tmp)
        os.makedirs(work, exist_ok=True)
        os.chmod(work, 0o755)  # PostgreSQL runs as its own user when this runs as root
        mosquitto = broker(work)
        pg = Postgres(work / "pg")
        pg.init()
        pg.start()
        pg.create_database()
        sim = WatchedSimulator(
            accounts,
            vehicles=per_account,
            samsara_tokens=creds["samsara"],
            fleetize_tokens=creds["fleetize"],
            fleetize_vehicles=per_account,
            metrotec_users=passwords,
            metrotec_vehicles=per_account,
            telemax_vehicles=0,
            tracksafe365_vehicles=0,
            speed=speed,
            seed=7,
        )
        await sim.start()
        sim.fleetize.quota.min_interval_ms = round(SPACING_S * speed * 1000)
        watcher = Watcher(mosquitto.port, set(accounts.values()))
        watcher.start()
        try:
            sqlite = await baseline(args, work, sim, mosquitto, creds, passwords, watcher)
            print(f"sqlite: violations by kind {sim.violations()}")
            watcher.polled.clear()
            cluster = await instances(
                args, work, sim, mosquitto, pg, creds, passwords, watcher, rng
            )
        finally:
            watcher.stop()
            await sim.stop()
            pg.stop("immediate")
            mosquitto.stop()
    report(args, sim, watcher, sqlite, cluster)


async def baseline(
    args: argparse.Namespace,
    work: Path,
    sim: WatchedSimulator,
    mosquitto: Mosquitto,
    creds: dict[str, list[str]],
    passwords: dict[str, str],
    watcher: Watcher,
) -> dict[str, float]:
    config = write_config(
        work / "sqlite.yaml",
        config_text(sim, mosquitto, creds, f"{{path: {work / 'store.db'}}}", passwords),
    )
    bridge = start_instance(config, work / "sqlite.log")
    try:
        await first_states(watcher, t_start := time.monotonic())
        print(f"sqlite: every account published {time.monotonic() - t_start:.0f} s after start")
        cpu0, updates0, t0 = cpu_seconds(bridge.pid), watcher.updates, time.monotonic()
        await asyncio.sleep(args.baseline)  # a fixed window of work, measured
        cpu, updates = cpu_seconds(bridge.pid) - cpu0, watcher.updates - updates0
        span = time.monotonic() - t0
    finally:
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(60)
    print(f"sqlite: 1 instance, {span:.0f} s: {updates} updates, {cpu:.1f} CPU s")
    return {"cpu": cpu, "updates": float(updates)}


async def instances(
    args: argparse.Namespace,
    work: Path,
    sim: WatchedSimulator,
    mosquitto: Mosquitto,
    pg: Postgres,
    creds: dict[str, list[str]],
    passwords: dict[str, str],
    watcher: Watcher,
    rng: random.Random,
) -> dict[str, Any]:
    config = write_config(
        work / "pg.yaml", config_text(sim, mosquitto, creds, f"{{url: '{pg.url}'}}", passwords)
    )
    alive: list[subprocess.Popen[bytes]] = []
    started = 0

    def spawn() -> None:
        nonlocal started
        started += 1
        alive.append(start_instance(config, work / f"instance-{started}.log"))

    def all_held() -> bool:
        pids = {p.pid for p in alive}
        found = watcher.holders()
        return set(found) == watcher.accounts and all(pid_of(h) in pids for h in found.values())

    for _ in range(3):
        spawn()
    kills: list[tuple[float, list[str]]] = []
    sent: dict[str, str] = {}
    orders: set[str] = set()
    cpu_done = 0.0
    try:
        await wait_until(all_held, 180, "three instances holding every account")
        await first_states(watcher, time.monotonic())
        # The steady state first, as long as the SQLite window and with no kill:
        # what the store costs, apart from what restarting instances costs.
        s0, u0, g0 = time.monotonic(), watcher.updates, postgres_cpu(pg)
        c0 = {p.pid: cpu_seconds(p.pid) for p in alive}
        await asyncio.sleep(args.baseline)  # a fixed window of work, measured
        steady = {
            "cpu_bridges": sum(cpu_seconds(p.pid) - c0[p.pid] for p in alive),
            "cpu_pg": postgres_cpu(pg) - g0,
            "updates": float(watcher.updates - u0),
        }
        print(
            f"postgresql: 3 instances, steady, {time.monotonic() - s0:.0f} s:"
            f" {steady['updates']:.0f} updates, {steady['cpu_bridges']:.1f} CPU s in the"
            f" bridges + {steady['cpu_pg']:.1f} in PostgreSQL"
        )
        t0, updates0, pg0 = time.monotonic(), watcher.updates, postgres_cpu(pg)
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in alive}
        for hour in range(1, args.hours + 1):
            for n in range(3):
                account = f"mt{rng.randrange(METROTEC_ACCOUNTS)}"
                vehicle = rng.choice(watcher.vehicles(account))
                transaction = f"h{hour}-{n}"
                body: dict[str, Any] = {"account": account, "vehicle": vehicle}
                if n % 2 == 0:
                    name = "task/create"
                    body |= {
                        "order_ref": f"bench-{transaction}",
                        "latitude": 59.43,
                        "longitude": 24.75,
                        "start_time": "2030-01-01T08:00:00Z",
                        "stop_time": "2030-01-01T09:00:00Z",
                    }
                    orders.add(f"bench-{transaction}")
                else:
                    name = "lights"
                    body["state"] = "ON" if hour % 2 else "OFF"
                sent[transaction] = name
                watcher.publish(
                    f"fleet/bridge/request/{name}", json.dumps({"transaction": transaction, **body})
                )
            await asyncio.sleep(args.hour)  # the simulated hour passes
            if hour == args.hours:
                break
            victim = rng.choice(alive)
            held = [a for a, h in watcher.holders().items() if pid_of(h) == victim.pid]
            cpu_done += cpu_seconds(victim.pid) - cpu0.pop(victim.pid, 0.0)
            kills.append((time.monotonic(), held))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            alive.remove(victim)
            spawn()
            cpu0[alive[-1].pid] = 0.0
        span = time.monotonic() - t0
        cpu_bridges = cpu_done + sum(cpu_seconds(p.pid) - cpu0.get(p.pid, 0.0) for p in alive)
        cpu_pg = postgres_cpu(pg) - pg0
        updates = watcher.updates - updates0
        with contextlib.suppress(TimeoutError):  # what is missing counts as lost
            await wait_until(lambda: set(watcher.answers) >= set(sent), 120, "every answer")
    finally:
        for process in alive:
            process.send_signal(signal.SIGTERM)
        for process in alive:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    takeovers: list[float] = []
    slow: list[tuple[float, str, float]] = []
    for killed_at, held in kills:
        units = {("fleetize" if a.startswith("fz") else a) for a in held}
        for unit in units:
            members = [a for a in held if (a.startswith("fz") if unit == "fleetize" else a == unit)]
            after = [t for a in members for t in sim.requests[a] if t > killed_at + 1.0]
            took = min(after) - killed_at if after else float("inf")
            takeovers.append(took)
            slow.append((took, unit, killed_at - t0))
    tasks = Counter(task.order_ref for task in sim.metrotec.tasks.listing(every=True))
    with watcher.lock:
        answers = {tx: watcher.answers.get(tx, []) for tx in sent}
    print(
        f"postgresql: 3 instances, the day, {span:.0f} s, {len(kills)} kills: {updates} updates,"
        f" {cpu_bridges:.1f} CPU s in the bridges + {cpu_pg:.1f} in PostgreSQL"
    )
    for took, unit, at in sorted(slow, reverse=True)[:5]:
        print(f"slow takeover: {unit} {took:.1f} s (killed {at:.0f} s into the day)")
    return {
        "steady": steady,
        "cpu_bridges": cpu_bridges,
        "cpu_pg": cpu_pg,
        "updates": float(updates),
        "takeovers": takeovers,
        "kills": len(kills),
        "lost": sum(not a for a in answers.values()),
        "failed": sum(bool(a) and '"status": "ok"' not in a[0] for a in answers.values()),
        "duplicates": sum(tasks[ref] > 1 for ref in orders)
        + sum(len(set(a)) > 1 for a in answers.values()),
        "created": sum(tasks[ref] == 1 for ref in orders),
        "orders": len(orders),
        "commands": len(sent),
    }


def report(
    args: argparse.Namespace,
    sim: WatchedSimulator,
    watcher: Watcher,
    sqlite: dict[str, float],
    cluster: dict[str, Any],
) -> None:
    violations = sim.violations()

    def per_1000(cpu: float, updates: float) -> float:
        return cpu / max(updates, 1) * 1000

    steady = cluster["steady"]
    per_sqlite = per_1000(sqlite["cpu"], sqlite["updates"])
    per_bridges = per_1000(steady["cpu_bridges"], steady["updates"])
    per_pg = per_1000(steady["cpu_bridges"] + steady["cpu_pg"], steady["updates"])
    per_day = per_1000(cluster["cpu_bridges"] + cluster["cpu_pg"], cluster["updates"])
    takeovers = cluster["takeovers"]
    print(f"violations by kind: {violations}")
    print(
        f"commands: {cluster['commands']} sent, {cluster['commands'] - cluster['lost']} answered"
        f" ({cluster['failed']} not ok); tasks: {cluster['orders']} ordered,"
        f" {cluster['created']} created once"
    )
    print(
        f"takeovers: {len(takeovers)} (accounts and the FLEETIZE unit, over {cluster['kills']}"
        f" kills): median {sorted(takeovers)[len(takeovers) // 2] if takeovers else 0:.1f} s,"
        f" max {max(takeovers, default=0):.1f} s"
    )
    print(
        f"CPU per 1,000 updates: SQLite {per_sqlite:.3f} s; PostgreSQL, steady, {per_pg:.3f} s"
        f" ({per_bridges:.3f} in the bridges); PostgreSQL through the day's kills and"
        f" restarts {per_day:.3f} s"
    )
    counted = sum(
        violations[kind]
        for kind in ("fleetize_violations", "fleetize_1002", "samsara_429", "metrotec_429")
    )
    print(
        f"instances=3 accounts={args.accounts} vehicles={len(watcher.last)}"
        f" violations={counted}"
        f" duplicates={cluster['duplicates']}"
        f" lost={cluster['lost']} takeover_p99_s={p99(takeovers):.1f}"
        f" cpu_ratio={per_pg / per_sqlite:.2f} cpu_ratio_bridges={per_bridges / per_sqlite:.2f}"
        f" cpu_ratio_day={per_day / per_sqlite:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=30)
    parser.add_argument("--vehicles", type=int, default=30_000)
    parser.add_argument("--hour", type=float, default=20.0, help="real seconds per simulated hour")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--keep", help="work in this directory and keep it (the bridges' logs)")
    parser.add_argument("--baseline", type=float, default=120.0, help="real seconds on SQLite")
    asyncio.run(main(parser.parse_args()))
