"""DRA mode's pool split (model only): DRA pools keyed apart in the one pool set, prepared
claims as holds, and what retention then decides across the two modes."""

from __future__ import annotations

from dataclasses import replace

from sriovdp.model.config import Config, ResourceConfig
from sriovdp.model.devices import Inventory, PciFunction
from sriovdp.model.dra.modes import (
    DraMode,
    claim_holds,
    device_plugin_pools,
    dra_key,
    dra_pools,
    keyed_by_mode,
    mode_problems,
)
from sriovdp.model.pools import ResourcePool, build_pools
from sriovdp.model.retention import HostView, PassKind, RetentionState, retain
from sriovdp.model.selectors import NetSelector

PF = "0000:3b:00.0"
A, B = "0000:3b:02.0", "0000:3b:02.1"
NET, DPDK = "intel.com/net", "intel.com/dpdk"


def vf(addr: str, driver: str = "iavf") -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="154c", class_code=0x020000,
                       driver=driver, numa_node=0, physfn=PF, vf_index=int(addr[-1]),
                       pf_netdev="ens785f0", link_type="ether")


INVENTORY = Inventory(functions={A: vf(A), B: vf(B)})
HOST = HostView(frozenset(INVENTORY.functions))


def config(*, net_dra: bool) -> tuple[ResourceConfig, ...]:
    return (ResourceConfig(name="net", dra=net_dra,
                           selectors=(NetSelector(drivers=frozenset({"iavf"})),)),
            ResourceConfig(name="dpdk", selectors=(NetSelector(drivers=frozenset({"vfio"})),)))


def built(*, net_dra: bool, mode: DraMode | None = DraMode.MARKED) -> dict[str, ResourcePool]:
    return keyed_by_mode(build_pools(INVENTORY, config(net_dra=net_dra),
                                     default_prefix="intel.com"), mode)


def ids(pools: dict[str, ResourcePool]) -> dict[str, set[str]]:
    return {name: set(pool.devices) for name, pool in pools.items()}


def test_marked_pools_are_keyed_apart_when_the_mode_is_marked() -> None:
    pools = built(net_dra=True)
    assert set(pools) == {dra_key(NET), DPDK}
    assert set(dra_pools(pools)) == {NET} and set(device_plugin_pools(pools)) == {DPDK}
    assert dra_pools(pools)[NET].resource_name == NET


def test_every_pool_is_a_dra_pool_when_the_mode_is_all() -> None:
    assert set(built(net_dra=False, mode=DraMode.ALL)) == {dra_key(NET), dra_key(DPDK)}


def test_pools_are_keyed_by_resource_name_when_dra_is_off() -> None:
    assert set(built(net_dra=True, mode=None)) == {NET, DPDK}


def test_prepared_devices_are_holds_through_their_dra_pool_when_listed() -> None:
    assert claim_holds([(NET, A), (NET, B), (DPDK, A)]) == {
        dra_key(NET): frozenset({A, B}), dra_key(DPDK): frozenset({A})}


def test_a_marked_pool_is_a_problem_at_its_dra_key_when_the_mode_is_off() -> None:
    cfg = Config(resources=config(net_dra=True))
    (problem,) = mode_problems(cfg, None)
    assert problem.path == "resourceList[0].dra" and "--dra" in problem.message
    assert mode_problems(cfg, DraMode.MARKED) == []


def test_a_vf_held_through_a_device_plugin_pool_stays_out_of_dra_when_its_pool_moves() -> None:
    previous = built(net_dra=False)
    moved = retain(previous, built(net_dra=True), HOST, {NET: frozenset({A})},
                   PassKind.EVENT, RetentionState(passes=1))
    assert ids(moved.pools) == {NET: {A}, dra_key(NET): {B}, DPDK: set()}
    assert NET in moved.state.draining


def test_a_vf_held_through_a_device_plugin_pool_is_withheld_when_moved_across_a_restart(
) -> None:
    placeholders = {name: replace(pool, devices={})
                    for name, pool in built(net_dra=True).items()}
    first = retain(placeholders, built(net_dra=True), HOST, {NET: frozenset({A})},
                   PassKind.FIRST, RetentionState())
    assert ids(first.pools)[dra_key(NET)] == {B}
    assert first.state.withheld == {A}


def test_a_prepared_vf_stays_out_of_the_device_plugin_pool_when_its_pool_moves_back() -> None:
    previous = built(net_dra=True)
    back = retain(previous, built(net_dra=False), HOST, claim_holds([(NET, A)]),
                  PassKind.EVENT, RetentionState(passes=1))
    assert ids(back.pools) == {dra_key(NET): {A}, NET: {B}, DPDK: set()}
    released = retain(back.pools, built(net_dra=False), HOST, {}, PassKind.HEALTH,
                      back.state)
    assert ids(released.pools) == {NET: {A, B}, DPDK: set()}
