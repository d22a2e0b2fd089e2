"""One publication's decisions: retention, CDI-less pools Unhealthy, the diff (model only)."""

from __future__ import annotations

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import Inventory, PciFunction
from sriovdp.model.dra.modes import DraMode, keyed_by_mode
from sriovdp.model.health import Health
from sriovdp.model.pools import ResourcePool, build_pools
from sriovdp.model.publication import Publication, plan
from sriovdp.model.retention import HostView, PassKind
from sriovdp.model.selectors import NetSelector

PF = "0000:3b:00.0"
A, B = "0000:3b:02.0", "0000:3b:02.1"
NET, DPDK = "intel.com/net", "intel.com/dpdk"


def vf(addr: str, driver: str = "iavf") -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="154c", class_code=0x020000,
                       driver=driver, numa_node=0, physfn=PF, vf_index=int(addr[-1]),
                       pf_netdev="ens785f0", link_type="ether")


def inv(*fns: PciFunction) -> Inventory:
    return Inventory(functions={f.address: f for f in fns})


def res(name: str, driver: str, *, dra: bool = False) -> ResourceConfig:
    return ResourceConfig(name=name, selectors=(NetSelector(drivers=frozenset({driver})),),
                          dra=dra)


def build(inventory: Inventory, *configs: ResourceConfig,
          mode: DraMode | None = None) -> dict[str, ResourcePool]:
    return keyed_by_mode(build_pools(inventory, configs or (res("net", "iavf"),
                                                             res("dpdk", "vfio-pci")),
                                     default_prefix="intel.com"), mode)


def view(inventory: Inventory) -> HostView:
    return HostView(frozenset(inventory.functions))


HOST = inv(vf(A), vf(B, "vfio-pci"))


def test_every_pool_is_added_and_changed_when_the_first_pass_is_planned() -> None:
    placeholders = Publication.placeholders(build(Inventory()))
    planned = plan(placeholders, build(HOST), view(HOST), {}, PassKind.FIRST, ())

    assert planned.changed
    assert set(planned.changes.updated) == {NET, DPDK}
    assert list(planned.pools[NET].devices) == [A]
    assert planned.publication.pools == planned.pools


def test_nothing_changes_when_a_pass_finds_the_host_as_published() -> None:
    first = plan(Publication(), build(HOST), view(HOST), {}, PassKind.FIRST, ()).publication
    again = plan(first, build(HOST), view(HOST), {}, PassKind.EVENT, ())

    assert not again.changed
    assert again.changes.empty


def test_a_pool_is_published_unhealthy_when_its_cdi_spec_is_missing() -> None:
    first = plan(Publication(), build(HOST), view(HOST), {}, PassKind.FIRST, ()).publication
    planned = plan(first, build(HOST), view(HOST), {}, PassKind.EVENT, {NET})

    assert not planned.changed  # the retained pools are the same: no files to rewrite
    assert planned.pools[NET].devices[A].health is Health.UNHEALTHY
    assert planned.publication.retained[NET].devices[A].health is Health.HEALTHY
    assert set(planned.changes.updated) == {NET}


def test_a_pool_is_healthy_again_when_its_cdi_spec_is_written_after_planning() -> None:
    first = plan(Publication(), build(HOST), view(HOST), {}, PassKind.FIRST, ()).publication
    faulty = plan(first, build(HOST), view(HOST), {}, PassKind.EVENT, {NET})
    written = faulty.with_faulty(())

    assert written.pools[NET].devices[A].health is Health.HEALTHY
    assert written.changes.empty


def test_only_device_plugin_pools_are_told_when_a_pool_is_served_by_dra() -> None:
    pools = build(HOST, res("net", "iavf", dra=True), res("dpdk", "vfio-pci"),
                  mode=DraMode.MARKED)
    planned = plan(Publication(), pools, view(HOST), {}, PassKind.FIRST, ())

    assert set(planned.pools) == {DPDK}
    assert set(planned.publication.retained) == {"dra:" + NET, DPDK}


def test_a_held_device_stays_in_its_granting_pool_when_the_plan_would_move_it() -> None:
    first = plan(Publication(), build(HOST), view(HOST), {}, PassKind.FIRST, ()).publication
    rebound = inv(vf(A, "vfio-pci"), vf(B, "vfio-pci"))
    planned = plan(first, build(rebound), view(rebound), {NET: frozenset({A})},
                   PassKind.EVENT, ())

    assert list(planned.pools[NET].devices) == [A]
    assert list(planned.pools[DPDK].devices) == [B]
    assert planned.publication.retention.kept == {(NET, A)}
