"""Health derivation from link state (model only, no I/O): F36, F37, F05."""

from __future__ import annotations

import pytest

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import Inventory, PciFunction
from sriovdp.model.health import Health, LinkState, derive_health, unhealthy_reasons
from sriovdp.model.pools import build_pools
from sriovdp.model.selectors import NetSelector

PF = "0000:3b:00.0"
VF_NET = "0000:3b:02.0"      # VF with its netdev in the host namespace
VF_POD = "0000:3b:02.1"      # VF whose netdev was moved into a pod (F05)
VF_VFIO = "0000:3b:02.2"     # VF bound to vfio-pci (F37)
PLAIN = "0000:5e:00.0"       # a NIC without SR-IOV, in a pool on its own
ACCEL = "0000:af:00.0"       # an accelerator: no netdev at all


def _pf() -> PciFunction:
    return PciFunction(address=PF, vendor="8086", device="159b", class_code=0x020000,
                       driver="ice", total_vfs=64, num_vfs=3, netdevs=("ens1f0",))


def _vf(addr: str, idx: int, *, driver: str, netdevs: tuple[str, ...] = ()) -> PciFunction:
    return PciFunction(address=addr, vendor="8086", device="1889", class_code=0x020000,
                       driver=driver, physfn=PF, vf_index=idx, netdevs=netdevs,
                       pf_netdev="ens1f0")


HOST = Inventory(functions={
    PF: _pf(),
    VF_NET: _vf(VF_NET, 0, driver="iavf", netdevs=("ens1f0v0",)),
    VF_POD: _vf(VF_POD, 1, driver="iavf"),
    VF_VFIO: _vf(VF_VFIO, 2, driver="vfio-pci"),
    PLAIN: PciFunction(address=PLAIN, vendor="8086", device="1572", class_code=0x020000,
                       driver="i40e", total_vfs=0, netdevs=("eno1",)),
    ACCEL: PciFunction(address=ACCEL, vendor="8086", device="37c8", class_code=0x120000,
                       driver="qat_c62x"),
})


def up(name: str) -> LinkState:
    return LinkState(name, carrier=True, operstate="UP")


def no_carrier(name: str, operstate: str = "DOWN") -> LinkState:
    return LinkState(name, carrier=False, operstate=operstate)


def admin_down(name: str) -> LinkState:
    return LinkState(name, carrier=False, operstate="DOWN", admin_up=False)


def links(*states: LinkState) -> dict[str, LinkState]:
    return {s.ifname: s for s in states}


ALL_UP = links(up("ens1f0"), up("ens1f0v0"), up("eno1"))

CASES = [
    pytest.param(ALL_UP, set(), id="all-links-carrier"),
    pytest.param(links(no_carrier("ens1f0"), up("ens1f0v0"), up("eno1")),
                 {PF, VF_NET, VF_POD, VF_VFIO}, id="pf-no-carrier"),
    pytest.param(links(admin_down("ens1f0"), up("ens1f0v0"), up("eno1")),
                 {VF_NET, VF_POD, VF_VFIO}, id="pf-admin-down"),
    pytest.param(links(up("ens1f0"), no_carrier("ens1f0v0"), up("eno1")),
                 {VF_NET}, id="vf-own-no-carrier"),
    pytest.param(links(up("ens1f0"), admin_down("ens1f0v0"), up("eno1")),
                 set(), id="vf-own-admin-down"),
    pytest.param(links(up("ens1f0"), up("ens1f0v0"), no_carrier("eno1")),
                 {PLAIN}, id="plain-nic-no-carrier"),
    pytest.param(links(up("ens1f0v0"), up("eno1")), set(), id="pf-link-unknown"),
    pytest.param(links(up("ens1f0"), up("eno1")), set(), id="vf-link-unknown"),
    pytest.param({}, set(), id="no-links-at-all"),
    pytest.param(links(no_carrier("ens1f0"), no_carrier("ens1f0v0"), no_carrier("eno1")),
                 {PF, VF_NET, VF_POD, VF_VFIO, PLAIN}, id="everything-down"),
]


@pytest.mark.parametrize(("states", "unhealthy"), CASES)
def test_unhealthy_set_follows_the_rules_when_links_vary(
    states: dict[str, LinkState], unhealthy: set[str]
) -> None:
    assert derive_health(HOST, states) == dict.fromkeys(unhealthy, Health.UNHEALTHY)


@pytest.mark.parametrize(("device", "state", "expected"), [
    pytest.param(VF_VFIO, no_carrier("ens1f0"), Health.UNHEALTHY, id="vfio-vf-pf-down-f37"),
    pytest.param(VF_POD, no_carrier("ens1f0"), Health.UNHEALTHY, id="pod-vf-pf-down-f05"),
    pytest.param(VF_VFIO, up("ens1f0"), Health.HEALTHY, id="vfio-vf-pf-up"),
    pytest.param(VF_POD, up("ens1f0"), Health.HEALTHY, id="pod-vf-pf-up"),
    pytest.param(ACCEL, no_carrier("ens1f0"), Health.HEALTHY, id="accelerator-pf-down"),
])
def test_vf_without_visible_netdev_follows_its_pf_when_pf_link_changes(
    device: str, state: LinkState, expected: str
) -> None:
    assert derive_health(HOST, links(state)).get(device, Health.HEALTHY) == expected


@pytest.mark.parametrize(("states", "reasons"), [
    pytest.param(links(no_carrier("ens1f0", "LOWERLAYERDOWN")),
                 {VF_POD: "PF ens1f0 has no carrier (LOWERLAYERDOWN)"}, id="pf"),
    pytest.param(links(up("ens1f0"), no_carrier("ens1f0v0")),
                 {VF_NET: "ens1f0v0 is up but has no carrier (DOWN)"}, id="own"),
])
def test_reason_names_the_link_when_a_device_is_unhealthy(
    states: dict[str, LinkState], reasons: dict[str, str]
) -> None:
    got = unhealthy_reasons(HOST, states)
    assert {k: got[k] for k in reasons} == reasons


def test_pf_reason_wins_when_both_pf_and_own_link_lack_carrier() -> None:
    got = unhealthy_reasons(HOST, links(no_carrier("ens1f0"), no_carrier("ens1f0v0")))
    assert got[VF_NET].startswith("PF ens1f0")


def test_result_lists_only_unhealthy_ids_when_most_devices_are_healthy() -> None:
    assert derive_health(HOST, ALL_UP) == {}
    assert set(derive_health(HOST, links(no_carrier("eno1")))) == {PLAIN}


def test_pool_devices_carry_the_derived_health_when_built_with_it() -> None:
    config = ResourceConfig(name="vfs", selectors=(NetSelector(drivers=frozenset({"iavf",
                                                                          "vfio-pci"})),))
    health = derive_health(HOST, links(no_carrier("ens1f0")))
    pools = build_pools(HOST, [config], default_prefix="intel.com", health=health)
    assert {d.id: d.health for d in pools["intel.com/vfs"].devices.values()} == {
        VF_NET: Health.UNHEALTHY, VF_POD: Health.UNHEALTHY, VF_VFIO: Health.UNHEALTHY,
    }


def _big_host(pfs: int, vfs: int) -> tuple[Inventory, dict[str, LinkState]]:
    fns: dict[str, PciFunction] = {}
    states: dict[str, LinkState] = {}
    for p in range(pfs):
        pf_addr, pf_name = f"0000:{0x10 + p:02x}:00.0", f"ens{p}f0"
        fns[pf_addr] = PciFunction(address=pf_addr, vendor="8086", device="159b",
                                   class_code=0x020000, total_vfs=vfs, num_vfs=vfs,
                                   netdevs=(pf_name,))
        states[pf_name] = no_carrier(pf_name) if p == 0 else up(pf_name)
        for v in range(vfs):
            addr = f"0000:{0x10 + p:02x}:{1 + v // 8:02x}.{v % 8}"
            name = f"{pf_name}v{v}"
            fns[addr] = PciFunction(address=addr, vendor="8086", device="1889",
                                    class_code=0x020000, physfn=pf_addr, vf_index=v,
                                    netdevs=(name,), pf_netdev=pf_name)
            states[name] = admin_down(name)
    return Inventory(functions=fns), states


def test_a_dead_pf_and_only_its_vfs_go_unhealthy_when_the_host_has_2048_vfs() -> None:
    # the cost of this derivation (linear, G5) is measured by bench/health_derive.py
    big, big_links = _big_host(8, 256)

    unhealthy = derive_health(big, big_links)

    assert len(unhealthy) == 1 + 256  # PF 0 (no carrier) and its VFs
    assert {big.functions[a].physfn or a for a in unhealthy} == {"0000:10:00.0"}
