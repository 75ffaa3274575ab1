"""Several `fleet-bridge run` instances on one shared store: who holds which accounts.

Accounts are grouped into units: accounts that spend from one shared budget
scope (a FLEETIZE egress, a Samsara token or organisation) form one unit, so one
instance plans their turns on the shared spacing instead of two instances
racing for it. Each unit is held by exactly one instance through a lease in the
store (`bridge.store.LeaseStore`); the store fences every call and every saved
poll with the lease, so an instance that lost a lease (paused past it, cut off
from the database) cannot make a call or overwrite the new owner's cursors.

Every instance runs the same loop, a beat every third of the lease time:

1. say it is alive and read who else is (`beat`, by the store's clock);
2. renew its leases; a lease it could not renew is gone: its pollers stop;
3. compute the even assignment of units to the instances alive, keeping each
   unit where it is as far as evenness allows (a joiner takes its share, a
   dead instance's units are spread over the living);
4. give up what is assigned to another instance, take what is assigned to it.

Taking over a dead instance's units waits for its lease to expire: the takeover
time is at most the lease time plus one beat, plus the new owner's first poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from bridge.quota import Scope
from bridge.store import InstanceRecord, LeaseStore, StoreError, StoreUnavailableError

_LOGGER = logging.getLogger(__name__)

Gained = Callable[[str, int], Awaitable[None]]
Lost = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AccountScopes:
    """What `units` needs of an account: its id and the ledger keys of the
    budgets it spends from (bridge.config.Account.budgets and scopes)."""

    account: str
    shared_keys: frozenset[str]


def account_scopes(account: object) -> AccountScopes:
    """The shared scope keys of a configured account (bridge.config.Account)."""
    scopes = account.scopes()  # type: ignore[attr-defined]
    keys = {
        scopes.key(budget.scope)
        for budget in account.budgets()  # type: ignore[attr-defined]
        if budget.scope is not Scope.ACCOUNT
    }
    return AccountScopes(account.id, frozenset(keys))  # type: ignore[attr-defined]


def units(accounts: Iterable[AccountScopes]) -> dict[str, tuple[str, ...]]:
    """Accounts grouped by the scopes they share (transitively), each group named
    after its first account: `{unit: accounts}`, both sorted."""
    parent: dict[str, str] = {}

    def find(item: str) -> str:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    owner_of_key: dict[str, str] = {}
    listed = sorted(accounts, key=lambda a: a.account)
    for entry in listed:
        parent.setdefault(entry.account, entry.account)
        for key in sorted(entry.shared_keys):
            other = owner_of_key.setdefault(key, entry.account)
            a, b = find(entry.account), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for entry in listed:
        groups.setdefault(find(entry.account), []).append(entry.account)
    return {members[0]: tuple(members) for members in groups.values()}


def assign(
    unit_names: Sequence[str], alive: Sequence[str], owners: Mapping[str, str]
) -> dict[str, str]:
    """Units spread evenly over the instances alive (each gets the floor or the
    ceiling of the mean), a unit staying with its live owner where evenness
    allows. Every instance computes the same answer from the same inputs."""
    if not alive:
        return {}
    instances = sorted(alive)
    floor = len(unit_names) // len(instances)
    ceiling = math.ceil(len(unit_names) / len(instances))
    big_left = len(unit_names) - floor * len(instances)  # instances that may hold `ceiling`
    count = dict.fromkeys(instances, 0)
    result: dict[str, str] = {}
    for unit in sorted(unit_names):
        owner = owners.get(unit)
        if owner not in count:
            continue
        if count[owner] < floor or (count[owner] == floor < ceiling and big_left > 0):
            if count[owner] == floor:
                big_left -= 1
            result[unit] = owner
            count[owner] += 1
    for unit in sorted(unit_names):
        if unit in result:
            continue
        open_ = [i for i in instances if count[i] < floor] or [
            i for i in instances if count[i] == floor and big_left > 0
        ]
        choice = min(open_ or instances, key=lambda i: (count[i], i))
        if count[choice] == floor and floor < ceiling:
            big_left -= 1
        result[unit] = choice
        count[choice] += 1
    return result


def new_instance_id() -> str:
    """Unique per process start: readable (host, pid) and never reused."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


class Cluster:
    """This instance's membership and leases."""

    def __init__(
        self,
        store: LeaseStore,
        unit_accounts: Mapping[str, Sequence[str]],
        *,
        lease_time: float,
        gained: Gained,
        lost: Lost,
        changed: Callable[[], None] | None = None,
        instance: str | None = None,
    ) -> None:
        self.store = store
        self.units = {unit: tuple(accounts) for unit, accounts in unit_accounts.items()}
        self.lease_time = lease_time
        self.interval = lease_time / 3
        self.instance = instance or new_instance_id()
        self.started_at = time.time()
        self._gained = gained
        self._lost = lost
        self._changed = changed
        #: Units held, with the epoch of each lease (the fencing token).
        self.held: dict[str, int] = {}
        #: The instances alive at the last beat, and who held what.
        self.instances: list[InstanceRecord] = []
        self.owners: dict[str, str] = {}
        #: Why the store could not be reached, while it cannot.
        self.store_error: str | None = None
        self.beats = 0
        self._beat = asyncio.Condition()
        self._wake = asyncio.Event()
        # When the leases were last renewed (monotonic, taken before the call):
        # past that plus the lease time, they are gone whatever the store says.
        self._renewed_at: float | None = None

    # --- what others ask -------------------------------------------------------
    def holds(self, account: str) -> bool:
        return any(account in self.units[unit] for unit in self.held)

    def accounts_of(self, instance: str) -> list[str]:
        """The accounts an instance held at the last beat."""
        return sorted(
            account
            for unit, owner in self.owners.items()
            if owner == instance
            for account in self.units.get(unit, ())
        )

    def leads(self) -> bool:
        """The instance that answers what no account holder answers: the first
        alive by id (alone, or while the store cannot say: this one)."""
        alive = [i.instance for i in self.instances]
        return not alive or self.store_error is not None or min(alive) == self.instance

    def unit_of(self, account: str) -> str | None:
        return next((unit for unit, members in self.units.items() if account in members), None)

    async def wait_beats(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` beats have completed in total (tests)."""
        async with asyncio.timeout(timeout), self._beat:
            await self._beat.wait_for(lambda: self.beats >= count)

    def wake(self) -> None:
        """Beat now (a unit was lost to fencing: hand it on quickly)."""
        self._wake.set()

    # --- the loop --------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                await self.step()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            for unit in list(self.held):
                await self._drop(unit, "stopping")

    async def leave(self) -> None:
        """A clean stop: the leases go at once, so others take over without
        waiting for them to expire (pollers must be stopped first)."""
        self.held.clear()
        with contextlib.suppress(StoreError):
            await self.store.leave(self.instance)

    async def step(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._step(loop)
        except StoreUnavailableError as err:
            if self.store_error is None:
                _LOGGER.warning(
                    "Store unreachable (%s): no calls until it is back; leases are kept for %.0fs",
                    err,
                    self.lease_time,
                )
            self.store_error = str(err)
            if self._renewed_at is not None and loop.time() - self._renewed_at > self.lease_time:
                for unit in list(self.held):
                    await self._drop(unit, "its lease ran out while the store was unreachable")
        finally:
            self.beats += 1
            if self._changed is not None:
                self._changed()
            async with self._beat:
                self._beat.notify_all()

    async def _step(self, loop: asyncio.AbstractEventLoop) -> None:
        instances = await self.store.beat(
            self.instance, socket.gethostname()[:64], os.getpid(), self.started_at, self.lease_time
        )
        if self.store_error is not None:
            _LOGGER.info("Store reachable again")
            self.store_error = None
        self.instances = instances
        if self.held:
            before = loop.time()
            kept = await self.store.renew(self.instance, dict(self.held), self.lease_time)
            self._renewed_at = before
            for unit in [u for u in self.held if u not in kept]:
                await self._drop(unit, "its lease was taken by another instance")
        now = next((i.seen_at for i in instances if i.instance == self.instance), None)
        leases = await self.store.leases()
        self.owners = {
            lease.unit: lease.owner
            for lease in leases
            if now is None or lease.expires_at > now
            if lease.unit in self.units
        }
        plan = assign(list(self.units), [i.instance for i in instances], self.owners)
        for unit, owner in sorted(plan.items()):
            if owner != self.instance and unit in self.held:
                epoch = self.held[unit]
                # Stopped first, then freed: no call of ours after the lease is gone.
                await self._drop(unit, f"handed to {owner}")
                await self.store.give_up(self.instance, unit, epoch)
                self.owners.pop(unit, None)
        for unit, owner in sorted(plan.items()):
            if owner == self.instance and unit not in self.held:
                before = loop.time()
                taken = await self.store.take(unit, self.instance, self.lease_time)
                if taken is None:
                    continue  # still held by an instance that died: wait for it to expire
                if not self.held:
                    self._renewed_at = before
                self.held[unit] = taken
                self.owners[unit] = self.instance
                _LOGGER.info(
                    "Holding %s (%s), lease epoch %d", unit, ", ".join(self.units[unit]), taken
                )
                try:
                    await self._gained(unit, taken)
                except StoreUnavailableError:
                    # Taken but not started: the next beat starts it again.
                    await self._drop(unit, "the store went away while starting it")
                    raise

    async def lose(self, unit: str, why: str) -> None:
        """The store refused a call of this unit (fencing): stop it now."""
        if unit in self.held:
            await self._drop(unit, why)
            self.wake()

    async def _drop(self, unit: str, why: str) -> None:
        if self.held.pop(unit, None) is None:
            return
        _LOGGER.info("Not holding %s any more: %s", unit, why)
        await self._lost(unit)
