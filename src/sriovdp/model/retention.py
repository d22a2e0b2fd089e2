"""Retention: which devices the kubelet keeps seeing after the host or the config changed.

Pure. Every publication goes build → :func:`retain` → diff, so what follows is decided here
and only here (the full pass and the link-health fast path alike).

The rules:

1. **A held device is offered only by the pool that granted it.** "Held" is what the
   kubelet's pod resources API says pods hold (resource name → device ids). When a rescan
   or a new config would move a held device to another pool or out of every pool (a VF
   rebound to vfio-pci while in use, a changed selector, a renamed/split/merged pool, a
   change made while the daemon was down), the device stays in its granting pool and no
   other pool lists it, until the pod releases it. It keeps the health its link gives it:
   a working pod's device is not a fault (the kubelet copies device health into the pod's
   status, KEP-4680), and the kubelet never hands a device that a running pod holds to a
   second pod of the same resource.
2. **A granting pool outlives its config.** If the granting pool was renamed or removed,
   it is kept (*draining*: same config, only its held devices) so its endpoint stays up
   until the last held device is released; then it goes like any removed pool. A held
   device whose granting resource is not one of ours any more (the pool was renamed while
   the daemon was down) is withheld from every pool until released.
3. **Unhealthy is for faults.** A device that vanished from the host goes Unhealthy in its
   pool; it leaves at the first periodic resync after the pass that saw it go, unless a
   pod holds it (then it stays, Unhealthy, until released). A held device not on the host
   at start (it vanished while the daemon was down) is listed Unhealthy the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from sriovdp.model.devices import PciFunction
from sriovdp.model.health import Health
from sriovdp.model.pools import PoolDevice, PoolSet, ResourcePool

Holds = Mapping[str, frozenset[str]]
"""Extended resource name → ids of the devices pods hold through it."""


class PassKind(StrEnum):
    """Why a publication happens."""

    FIRST = "first"
    """The first pass after start: previous pools are empty."""
    EVENT = "event"
    """A rescan after an event (uevent, config reload, explicit trigger)."""
    PERIODIC = "periodic"
    """The periodic resync: vanished, unheld devices may leave."""
    HEALTH = "health"
    """The link-health fast path: same inventory, new link health."""


@dataclass(frozen=True, slots=True)
class HostView:
    """What is on the host, as the pass saw it.

    Attributes:
        ids: ids of every PCI function and auxiliary device scanned.
        health: device id → health from link state (missing ids are Healthy).
    """

    ids: frozenset[str]
    health: Mapping[str, Health] = field(default_factory=dict)

    def health_of(self, dev_id: str) -> Health:
        if dev_id not in self.ids:
            return Health.UNHEALTHY
        return self.health.get(dev_id, Health.HEALTHY)


@dataclass(frozen=True, slots=True)
class RetentionState:
    """What retention remembers between passes.

    Attributes:
        passes: publications that were not health-only.
        vanished: (pool, device id) → the pass that first saw the device gone.
        kept: (pool, device id) of held devices kept in their granting pool although the
            pools as built put them elsewhere (or nowhere).
        withheld: device ids held through a resource that is not ours any more.
        draining: pools no longer configured, kept for their held devices.
    """

    passes: int = 0
    vanished: Mapping[tuple[str, str], int] = field(default_factory=dict)
    kept: frozenset[tuple[str, str]] = frozenset()
    withheld: frozenset[str] = frozenset()
    draining: frozenset[str] = frozenset()

    @property
    def holding(self) -> bool:
        """Something is retained that a release (pod resources) or a resync may end."""
        return bool(self.vanished or self.kept or self.withheld or self.draining)

    @property
    def awaiting_release(self) -> bool:
        """A held device is kept in its granting pool, withheld or draining one: what is
        published changes when a pod releases it."""
        return bool(self.kept or self.withheld or self.draining)


@dataclass(frozen=True, slots=True)
class Retained:
    """The outcome of :func:`retain`.

    Attributes:
        pools: what to publish.
        state: to pass to the next :func:`retain`.
        notes: what changed in retention, for logs, e.g.
            ``("kept", "intel.com/net", "0000:3b:02.0", "intel.com/dpdk")``.
    """

    pools: dict[str, ResourcePool]
    state: RetentionState
    notes: tuple[tuple[str, ...], ...] = ()


def holds_matter(previous: PoolSet, built: PoolSet, host: HostView,
                 state: RetentionState) -> bool:
    """Must the caller know what pods hold before :func:`retain`? True when a device
    would leave the pool that offered it (moved, gone from every pool, vanished, its pool
    removed), or when something is retained that a release would end."""
    if state.holding:
        return True
    owner = _owners(built)
    return any(owner.get(dev_id) != name
               for name, pool in previous.items() for dev_id in pool.devices)


def retain(previous: PoolSet, built: PoolSet, host: HostView, held: Holds, kind: PassKind,
           state: RetentionState) -> Retained:
    """The pools to publish, from the pools built from this pass's scan and config.

    Args:
        previous: the pools published last (empty on the first pass).
        built: the pools :func:`~sriovdp.model.pools.build_pools` made for this pass.
        host: what is on the host and its link health.
        held: what pods hold, by resource (the caller's best knowledge: a failed pod
            resources call keeps the last answer, never an empty one).
        kind: why this pass runs.
        state: the previous :attr:`Retained.state` (``RetentionState()`` at start).
    """
    work = _Pass(previous, built, host, state, passes=state.passes + (kind is not PassKind.HEALTH))
    # who offers each device; built only when needed (the link fast path at 2,048 VFs with
    # nothing held or vanished skips it)
    if held or any(dev_id not in host.ids for pool in previous.values() for dev_id in pool.devices):
        work.owner = _owners(built)
    work.drain_unconfigured(held)
    work.place_held(held)
    work.keep_vanished(kind)
    return work.result()


@dataclass(slots=True)
class _Pass:
    """One :func:`retain` call's working state: the pools as they are being adjusted."""

    previous: PoolSet
    built: PoolSet
    host: HostView
    state: RetentionState
    passes: int
    pools: dict[str, ResourcePool] = field(init=False)
    members: dict[str, dict[str, PoolDevice]] = field(default_factory=dict)
    """The device maps of the pools this pass changes (copied on first change)."""
    owner: dict[str, str] = field(default_factory=dict)
    notes: list[tuple[str, ...]] = field(default_factory=list)
    kept: set[tuple[str, str]] = field(default_factory=set)
    withheld: set[str] = field(default_factory=set)
    draining: set[str] = field(default_factory=set)
    placed: set[str] = field(default_factory=set)
    vanished: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pools = dict(self.built)

    def devices(self, name: str) -> dict[str, PoolDevice]:
        if name not in self.members:
            self.members[name] = dict(self.pools[name].devices)
        return self.members[name]

    def drain_unconfigured(self, held: Holds) -> None:
        """Rule 2: granting pools that are no longer configured but still hold devices."""
        for name, old in self.previous.items():
            if name not in self.built and held.get(name, frozenset()) & old.devices.keys():
                self.pools[name] = replace(old, devices={})
                self.draining.add(name)
                if name not in self.state.draining:
                    self.notes.append(("draining", name))

    def place_held(self, held: Holds) -> None:
        """Rule 1: every held device in its granting pool, in no other."""
        ours = set(self.pools)
        for name, ids in held.items():
            for dev_id in ids:
                now = self.owner.get(dev_id)
                if now == name:
                    self.placed.add(dev_id)
                elif name not in ours:  # not one of our resources (any more)
                    self._withhold(name, dev_id, now)
                else:
                    self._keep(name, dev_id, now)

    def _withhold(self, name: str, dev_id: str, now: str | None) -> None:
        """No pool offers a device held through a resource that is not ours."""
        if now is None:
            return
        del self.devices(now)[dev_id]
        del self.owner[dev_id]
        self.withheld.add(dev_id)
        self.placed.add(dev_id)
        if dev_id not in self.state.withheld:
            self.notes.append(("withheld", name, dev_id, now))

    def _keep(self, name: str, dev_id: str, now: str | None) -> None:
        """The held device moves (back) to its granting pool ``name``."""
        device = _device_for(dev_id, name, self.pools[name], self.previous, self.built,
                             self.host)
        if now is not None:
            del self.devices(now)[dev_id]
        self.devices(name)[dev_id] = device
        self.owner[dev_id] = name
        self.placed.add(dev_id)
        self.kept.add((name, dev_id))
        if (name, dev_id) not in self.state.kept:
            self.notes.append(("kept", name, dev_id, now or ""))

    def keep_vanished(self, kind: PassKind) -> None:
        """Rule 3: vanished devices stay, Unhealthy, until a later periodic resync."""
        for name, old in self.previous.items():
            if name not in self.pools:
                continue
            for dev_id, dev in old.devices.items():
                if dev_id in self.host.ids or dev_id in self.placed or dev_id in self.owner:
                    continue
                key = (name, dev_id)
                seen = self.state.vanished.get(key, self.passes)
                if kind is PassKind.PERIODIC and seen < self.passes:
                    self.notes.append(("dropped", name, dev_id))
                    continue
                if key not in self.state.vanished:
                    self.notes.append(("vanished", name, dev_id))
                self.vanished[key] = seen
                self.devices(name)[dev_id] = replace(dev, health=Health.UNHEALTHY)
                self.owner[dev_id] = name

    def result(self) -> Retained:
        """The changed pools in id order, emptied draining pools gone, releases noted."""
        pools = self.pools
        for name, found in self.members.items():
            pools[name] = replace(pools[name], devices={k: found[k] for k in sorted(found)})
        for name in list(self.draining):
            if not pools[name].devices:
                del pools[name]
                self.draining.discard(name)
        for name, dev_id in sorted(self.state.kept - self.kept):
            self.notes.append(("released", name, dev_id))
        state = RetentionState(passes=self.passes, vanished=self.vanished,
                               kept=frozenset(self.kept), withheld=frozenset(self.withheld),
                               draining=frozenset(self.draining))
        return Retained(pools, state, tuple(self.notes))


def _owners(pools: PoolSet) -> dict[str, str]:
    return {dev_id: name for name, pool in pools.items() for dev_id in pool.devices}


def _device_for(dev_id: str, name: str, pool: ResourcePool, previous: PoolSet,
                built: PoolSet, host: HostView) -> PoolDevice:
    """The held device as its granting pool lists it, with this pass's health."""
    health = host.health_of(dev_id)
    old = previous.get(name)
    if old is not None and dev_id in old.devices:
        return replace(old.devices[dev_id], health=health)
    for other in built.values():
        if dev_id in other.devices:
            dev = other.devices[dev_id]
            numa = None if pool.config.exclude_topology else dev.function.numa_node
            return PoolDevice(id=dev_id, function=dev.function, health=health, numa_node=numa)
    # gone from the host, or in no pool: a stand-in that carries only the id
    gone = PciFunction(address=dev_id, vendor="", device="", class_code=0)
    return PoolDevice(id=dev_id, function=gone, health=health)
