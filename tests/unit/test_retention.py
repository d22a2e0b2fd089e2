"""Retention: held and vanished devices after host or config changes (model only, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import Inventory, PciFunction
from sriovdp.model.diff import diff
from sriovdp.model.health import Health
from sriovdp.model.pools import ResourcePool, build_pools, with_health
from sriovdp.model.retention import (
    HostView,
    PassKind,
    RetentionState,
    holds_matter,
    retain,
)
from sriovdp.model.selectors import NetSelector
from sriovdp.model.settle import Settling, settle

PF = "0000:3b:00.0"
A, B, C = "0000:3b:02.0", "0000:3b:02.1", "0000:3b:02.2"
NET, DPDK = "intel.com/net", "intel.com/dpdk"


def vf(addr: str, driver: str = "iavf") -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="154c", class_code=0x020000,
                       driver=driver, numa_node=0, physfn=PF, vf_index=int(addr[-1]),
                       pf_netdev="ens785f0", link_type="ether")


def inv(*fns: PciFunction) -> Inventory:
    return Inventory(functions={f.address: f for f in sorted(fns, key=lambda f: f.address)})


def res(name: str, *drivers: str) -> ResourceConfig:
    return ResourceConfig(name=name, selectors=(NetSelector(drivers=frozenset(drivers)),))


CONFIG = (res("net", "iavf"), res("dpdk", "vfio-pci"))


def build(inventory: Inventory, configs: Sequence[ResourceConfig] = CONFIG,
          health: dict[str, Health] | None = None) -> dict[str, ResourcePool]:
    return build_pools(inventory, configs, default_prefix="intel.com", health=health)


def view(inventory: Inventory, health: dict[str, Health] | None = None) -> HostView:
    return HostView(frozenset(inventory.functions), health or {})


def ids(pools: dict[str, ResourcePool]) -> dict[str, list[str]]:
    return {name: list(pool.devices) for name, pool in pools.items()}


def publish(inventory: Inventory, held: dict[str, frozenset[str]], *,
            configs: Sequence[ResourceConfig] = CONFIG, kind: PassKind = PassKind.EVENT,
            previous: dict[str, ResourcePool] | None = None,
            state: RetentionState | None = None) -> tuple[dict[str, ResourcePool],
                                                          RetentionState]:
    out = retain(previous or {}, build(inventory, configs), view(inventory), held, kind,
                 state or RetentionState())
    return out.pools, out.state


BEFORE = inv(vf(A), vf(B), vf(C, "vfio-pci"))
REBOUND = inv(vf(A, "vfio-pci"), vf(B), vf(C, "vfio-pci"))


def test_a_held_device_stays_healthy_in_its_granting_pool_when_a_rescan_moves_it() -> None:
    first, state = publish(BEFORE, {}, kind=PassKind.FIRST)
    pools, state = publish(REBOUND, {NET: frozenset({A})}, previous=first, state=state)

    assert ids(pools) == {NET: [A, B], DPDK: [C]}
    assert pools[NET].devices[A].health is Health.HEALTHY
    assert state.kept == {(NET, A)}


def test_a_held_device_is_offered_by_its_granting_pool_only_when_the_daemon_just_started(
) -> None:
    pools, _ = publish(REBOUND, {NET: frozenset({A})}, kind=PassKind.FIRST)

    assert ids(pools) == {NET: [A, B], DPDK: [C]}


def test_a_released_device_follows_the_config_when_the_pod_is_gone() -> None:
    first, state = publish(BEFORE, {})
    kept, state = publish(REBOUND, {NET: frozenset({A})}, previous=first, state=state)
    pools, state = publish(REBOUND, {}, previous=kept, state=state)

    assert ids(pools) == {NET: [B], DPDK: [A, C]}
    assert not state.holding


def test_a_removed_granting_pool_drains_until_its_held_devices_are_released() -> None:
    first, state = publish(BEFORE, {})
    renamed = (res("net2", "iavf"), res("dpdk", "vfio-pci"))
    pools, state = publish(BEFORE, {NET: frozenset({A})}, configs=renamed, previous=first,
                           state=state)

    assert ids(pools) == {"intel.com/net2": [B], DPDK: [C], NET: [A]}
    assert state.draining == {NET}
    pools, state = publish(BEFORE, {}, configs=renamed, previous=pools, state=state)
    assert ids(pools) == {"intel.com/net2": [A, B], DPDK: [C]}


def test_a_device_held_through_a_resource_we_no_longer_have_is_withheld_when_started() -> None:
    pools, state = publish(BEFORE, {"intel.com/old": frozenset({A})}, kind=PassKind.FIRST)

    assert ids(pools) == {NET: [B], DPDK: [C]}
    assert state.withheld == {A}


def test_a_vanished_device_goes_unhealthy_then_leaves_at_a_later_periodic_resync() -> None:
    first, state = publish(BEFORE, {})
    gone = inv(vf(B), vf(C, "vfio-pci"))
    pools, state = publish(gone, {}, previous=first, state=state)
    assert ids(pools)[NET] == [A, B] and pools[NET].devices[A].health is Health.UNHEALTHY
    pools, state = publish(gone, {}, previous=pools, state=state, kind=PassKind.PERIODIC)
    assert ids(pools)[NET] == [B]


def test_a_vanished_held_device_stays_unhealthy_until_released() -> None:
    first, state = publish(BEFORE, {})
    gone = inv(vf(B), vf(C, "vfio-pci"))
    held = {NET: frozenset({A})}
    pools, state = publish(gone, held, previous=first, state=state)
    for _ in range(3):
        pools, state = publish(gone, held, previous=pools, state=state, kind=PassKind.PERIODIC)
    assert pools[NET].devices[A].health is Health.UNHEALTHY
    pools, state = publish(gone, {}, previous=pools, state=state, kind=PassKind.PERIODIC)
    pools, state = publish(gone, {}, previous=pools, state=state, kind=PassKind.PERIODIC)
    assert ids(pools)[NET] == [B]


def test_a_held_device_that_vanished_while_the_daemon_was_down_is_unhealthy_at_start() -> None:
    gone = inv(vf(B), vf(C, "vfio-pci"))
    pools, _ = publish(gone, {NET: frozenset({A})}, kind=PassKind.FIRST)

    assert ids(pools)[NET] == [A, B]
    assert pools[NET].devices[A].health is Health.UNHEALTHY


def test_the_health_fast_path_and_a_full_pass_agree_when_a_held_device_was_moved() -> None:
    first, state = publish(BEFORE, {})
    held = {NET: frozenset({A})}
    kept = retain(first, build(REBOUND), view(REBOUND), held, PassKind.EVENT, state)
    health = {A: Health.UNHEALTHY, B: Health.UNHEALTHY}
    full = retain(kept.pools, build(REBOUND, health=health), view(REBOUND, health), held,
                  PassKind.EVENT, kept.state)
    fast = retain(kept.pools, with_health(build(REBOUND), health), view(REBOUND, health),
                  held, PassKind.HEALTH, kept.state)

    assert full.pools == fast.pools
    assert fast.pools[NET].devices[A].health is Health.UNHEALTHY
    assert A not in fast.pools[DPDK].devices
    assert diff(full.pools, fast.pools).empty


def test_holds_matter_only_when_a_device_would_leave_its_pool() -> None:
    first, state = publish(BEFORE, {})

    assert not holds_matter(first, build(BEFORE), view(BEFORE), state)
    assert holds_matter(first, build(REBOUND), view(REBOUND), state)


# --- the settle window (issue 11 item 8) ---------------------------------------------------


def test_a_rebound_vf_keeps_its_settled_driver_until_the_window_passes() -> None:
    first = settle(None, BEFORE, 0.0, 1.0, Settling())
    mid = settle(first.inventory, REBOUND, 10.0, 1.0, first.state)
    assert mid.inventory.functions[A].driver == "iavf" and mid.next_check == 11.0
    again = settle(first.inventory, REBOUND, 10.5, 1.0, mid.state)
    assert again.inventory.functions[A].driver == "iavf"
    done = settle(first.inventory, REBOUND, 11.0, 1.0, again.state)
    assert done.inventory.functions[A].driver == "vfio-pci" and done.next_check is None


def test_a_new_vf_joins_only_after_the_window_and_a_second_rebind_restarts_it() -> None:
    first = settle(None, inv(vf(B)), 0.0, 1.0, Settling())
    new = settle(first.inventory, inv(vf(A), vf(B)), 5.0, 1.0, first.state)
    assert A not in new.inventory.functions
    rebound = settle(first.inventory, inv(vf(A, "vfio-pci"), vf(B)), 5.8, 1.0, new.state)
    assert A not in rebound.inventory.functions and rebound.next_check == 6.8
    done = settle(first.inventory, inv(vf(A, "vfio-pci"), vf(B)), 6.8, 1.0, rebound.state)
    assert done.inventory.functions[A].driver == "vfio-pci"


def test_retention_awaits_a_release_when_a_held_device_is_kept_but_not_when_one_vanished(
) -> None:
    assert RetentionState(kept=frozenset({(NET, A)})).awaiting_release
    assert RetentionState(draining=frozenset({NET})).awaiting_release
    vanished = RetentionState(vanished={(NET, A): 1})
    assert vanished.holding and not vanished.awaiting_release
