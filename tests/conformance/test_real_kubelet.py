"""sriovdp (the installed daemon, as a subprocess) against the kubelet's own device manager,
plugin watcher and pod resources server, built from k8s.io/kubernetes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from nodekit import POOLS, Node, info

from sriovdp.kubelet.podresources import assigned_devices
from sriovdp.testing.links import NetnsLab

NET = "intel.com/intel_sriov_netdevice"
DPDK = "intel.com/intel_sriov_dpdk"
RDMA = "intel.com/mlnx_sriov_rdma"
ALL_NET = {f"0000:3b:02.{i}" for i in range(4)}
ALL_DPDK = {f"0000:3b:02.{i}" for i in range(4, 8)}


async def test_every_pool_registers_with_the_real_device_manager_when_in_socket_mode(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        proc = await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        capacity, allocatable, _ = await kubelet.capacity()
        assert capacity == POOLS and allocatable == POOLS
        devices = await kubelet.allocatable_devices()
        assert {d["id"] for d in devices[NET]} == ALL_NET
        assert {tuple(d["numa"] or ()) for d in devices[NET]} == {(0,)}
        assert {tuple(d["numa"] or ()) for d in devices[RDMA]} == {(1,)}
        assert await node.stop_daemon(proc) == 0
    assert "Registered device plugin for resource" in kubelet.log() or \
        "Device plugin connected" in kubelet.log()


async def test_every_pool_registers_through_the_real_plugin_watcher_when_in_watcher_mode(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary, watcher=True) as kubelet:
        proc = await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        sockets = sorted(p.name for p in node.plugins_registry.iterdir() if p.is_socket())
        assert len(sockets) == len(POOLS)
        assert await node.stop_daemon(proc) == 0
    log = kubelet.log()
    assert "Registering plugin at endpoint" in log
    assert "RegisterPlugin error" not in log


async def test_admission_hands_the_runtime_env_info_and_device_specs_when_1_and_4_vfs(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        one = await kubelet.admit("pod-1", {"c0": {DPDK: 1}})
        (dev,) = one["c0"]["devices"][DPDK]
        opts = await kubelet.run_options("pod-1", "c0")
        assert opts.envs["PCIDEVICE_INTEL_COM_INTEL_SRIOV_DPDK"] == dev
        assert set(info(opts.envs, DPDK)) == {dev}
        assert info(opts.envs, DPDK)[dev]["generic"]["deviceID"] == dev
        host_paths = {d["host_path"] for d in opts.devices}
        assert "/dev/vfio/vfio" in host_paths
        group = os.path.basename(os.readlink(
            node.host.root / "sys/bus/pci/devices" / dev / "iommu_group"))
        assert f"/dev/vfio/{group}" in host_paths
        assert all(d["permissions"] == "rw" for d in opts.devices)

        four = await kubelet.admit("pod-4", {"c0": {NET: 4}})
        ids = four["c0"]["devices"][NET]
        assert set(ids) == ALL_NET
        opts = await kubelet.run_options("pod-4", "c0")
        assert set(opts.envs["PCIDEVICE_INTEL_COM_INTEL_SRIOV_NETDEVICE"].split(",")) == ALL_NET
        assert set(info(opts.envs, NET)) == ALL_NET
        _, allocatable, _ = await kubelet.capacity()
        assert allocatable[NET] == 4  # allocatable is the healthy count, not the free count


async def test_rdma_admission_mounts_and_device_specs_reach_the_runtime_when_admitted(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("rdma", {"c0": {RDMA: 1}})
        (dev,) = pod["c0"]["devices"][RDMA]
        opts = await kubelet.run_options("rdma", "c0")
        assert any(d["host_path"].startswith("/dev/infiniband/") for d in opts.devices)
        assert info(opts.envs, RDMA)[dev]["rdma"]


async def test_device_info_files_are_written_when_the_real_manager_admits_a_pod(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("p", {"c0": {NET: 2}})
        for dev in pod["c0"]["devices"][NET]:
            path = node.device_info_dir / f"intel.com-intel_sriov_netdevice-{dev}-device.json"
            assert json.loads(path.read_text())["pci"]["pci-address"] == dev


async def test_pod_resources_server_lists_the_admitted_devices_when_asked(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("p", {"c0": {NET: 2, DPDK: 1}})
        assigned = await assigned_devices(node.pod_resources)
        assert assigned == {NET: set(pod["c0"]["devices"][NET]),
                            DPDK: set(pod["c0"]["devices"][DPDK])}
        await kubelet.remove("p")
        assert await assigned_devices(node.pod_resources) == {}


async def test_kubelet_restart_brings_every_pool_back_and_keeps_assignments_when_socket_mode(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("p", {"c0": {NET: 1}})
        for _ in range(2):
            await kubelet.restart()
            await kubelet.wait_allocatable(POOLS, timeout=20)
            assert await kubelet.devices("p", "c0") == pod["c0"]["devices"]
        assert kubelet.checkpoint_path.is_file()
        # the pod's device is still taken: a 4-VF pod cannot be admitted, a 3-VF one can
        with pytest.raises(Exception, match="requested number of devices unavailable"):
            await kubelet.admit("big", {"c0": {NET: 4}})
        await kubelet.admit("fits", {"c0": {NET: 3}})


async def test_kubelet_restart_brings_every_pool_back_when_in_watcher_mode(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary, watcher=True) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("p", {"c0": {NET: 1}})
        await kubelet.restart()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        assert await kubelet.devices("p", "c0") == pod["c0"]["devices"]


async def test_registry_sockets_are_kept_across_a_kubelet_restart_when_in_watcher_mode(
    node: Node, peer_binary: Path
) -> None:
    """In watcher mode the kubelet re-registers an existing socket by itself; deleting and
    re-creating it makes the new watcher's GetInfo fail and costs a watcher pass (~1 s)."""
    async with node.kubelet(peer_binary, watcher=True) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        def identity() -> dict[str, tuple[int, int]]:  # an inode number alone may be reused
            return {p.name: (p.stat().st_ino, p.stat().st_ctime_ns)
                    for p in node.plugins_registry.iterdir()}

        before = identity()
        await kubelet.restart()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        await asyncio.sleep(0.5)  # let a delete-and-recreate, if any, happen
        after = identity()
        assert after == before
        assert "connect: no such file or directory" not in kubelet.log()


async def test_registry_socket_is_created_anew_when_the_running_kubelet_drops_its_stream(
    node: Node, peer_binary: Path
) -> None:
    """The real handler disconnects the plugin while the kubelet runs on; its plugin watcher
    still counts the unchanged socket as registered and never comes back to it: only a new
    socket (which the watcher sees as a new plugin) brings the pool back."""
    async with node.kubelet(peer_binary, watcher=True) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        sock = node.plugins_registry / "intel.com_intel_sriov_netdevice.sock"
        before = sock.stat().st_ino, sock.stat().st_ctime_ns
        await kubelet.deregister(NET, sock)
        await kubelet.wait_allocatable({**POOLS, NET: 0}, timeout=10)
        await kubelet.wait_allocatable(POOLS, timeout=20)
        assert (sock.stat().st_ino, sock.stat().st_ctime_ns) != before
        assert {d["id"] for d in (await kubelet.allocatable_devices())[NET]} == ALL_NET


async def test_real_manager_follows_the_plugin_when_it_gets_sigterm_and_starts_again(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        proc = await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        assert await node.stop_daemon(proc, signal.SIGTERM) == 0
        # the endpoints are gone: every device unhealthy, capacity kept (5-minute grace)
        gone = {name: 0 for name in POOLS}
        await kubelet.wait_allocatable(gone, timeout=10)
        capacity, _, _ = await kubelet.capacity()
        assert capacity == POOLS
        assert sorted(p.name for p in node.device_plugin_dir.glob("*.sock")) == ["kubelet.sock"]
        proc = await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        assert await node.stop_daemon(proc) == 0


async def test_cdi_mode_passes_the_cdi_device_names_to_the_runtime_when_admitted(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon("--use-cdi")
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("p", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        opts = await kubelet.run_options("p", "c0")
        assert len(opts.cdi_devices) == 1
        kind, _, name = opts.cdi_devices[0].partition("=")
        assert kind.count("/") == 1 and name == dev
        specs = list(node.cdi_dir.iterdir())
        assert specs and any(dev in s.read_text() for s in specs)


async def test_two_cdi_resources_reach_the_runtime_without_conflict_when_in_one_container(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon("--use-cdi")
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("p", {"c0": {NET: 1, RDMA: 1}})
        opts = await kubelet.run_options("p", "c0")
        assert len(opts.cdi_devices) == 2
        assert {n.partition("=")[2] for n in opts.cdi_devices} == {
            *pod["c0"]["devices"][NET], *pod["c0"]["devices"][RDMA]}
        assert "Annotation has conflicting setting" not in kubelet.log()


async def test_numa_hints_of_the_real_hint_provider_follow_our_topology_when_a_pod_asks(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        hints = await kubelet.hints("h", {"c0": {NET: 2, RDMA: 1}})
        net = hints["c0"][NET]
        rdma = hints["c0"][RDMA]
        assert net is not None and rdma is not None
        assert [h["numa"] for h in net if h["preferred"]] == [[0]]
        assert [h["numa"] for h in rdma if h["preferred"]] == [[1]]


async def test_an_assigned_device_is_never_offered_twice_when_the_config_moves_it(
    node: Node, peer_binary: Path
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon("--resync-interval", "1")
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("busy", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        moved = json.loads(node.config.read_text())
        others = sorted(ALL_NET - {dev})
        idx = ",".join(str(int(a[-1])) for a in others)
        moved["resourceList"][0]["selectors"][0]["pfNames"] = [f"ens785f0#{idx}"]
        moved["resourceList"].append({"resourceName": "other",
                                      "selectors": [{"drivers": ["iavf"]}]})
        tmp = node.config.with_suffix(".tmp")
        tmp.write_text(json.dumps(moved))
        os.replace(tmp, node.config)
        other = "intel.com/other"
        # the pod still holds dev: net keeps it, Healthy (unhealthy is for faults: the real
        # kubelet would copy it into the pod's allocatedResourcesStatus), other does not offer it
        await kubelet.wait_allocatable({NET: 4, other: 0}, timeout=10)
        await asyncio.sleep(2.5)  # two periodic resyncs change nothing while the pod holds it
        capacity, allocatable, _ = await kubelet.capacity()
        assert (capacity[NET], allocatable[NET], capacity[other], allocatable[other]) \
            == (4, 4, 0, 0)
        await kubelet.remove("busy")
        await kubelet.wait_allocatable({NET: 3, other: 1}, timeout=10)
        devices = await kubelet.allocatable_devices()
        assert [d["id"] for d in devices[other]] == [dev]
        capacity, _, _ = await kubelet.capacity()
        assert capacity[NET] == 3


def _move_one_net_vf_to_a_new_pool(node: Node, dev: str) -> str:
    """Rewrite the config: the net pool keeps its other VFs, a new pool ``other`` takes
    every iavf VF (``dev`` included); returns the new pool's resource name."""
    moved = json.loads(node.config.read_text())
    idx = ",".join(str(int(a[-1])) for a in sorted(ALL_NET - {dev}))
    moved["resourceList"][0]["selectors"][0]["pfNames"] = [f"ens785f0#{idx}"]
    moved["resourceList"].append({"resourceName": "other",
                                  "selectors": [{"drivers": ["iavf"]}]})
    tmp = node.config.with_suffix(".tmp")
    tmp.write_text(json.dumps(moved))
    os.replace(tmp, node.config)
    return "intel.com/other"


async def test_a_held_device_is_never_offered_by_a_new_pool_when_kubelet_and_daemon_restart(
    node: Node, peer_binary: Path
) -> None:
    """A node upgrade: the daemon stops, its config moves the pod's VF to a new pool, and
    the daemon starts while the kubelet is down, its pod resources socket file gone (a
    clean shutdown) and its ``kubelet.sock`` file left behind. The first publication must
    wait for the kubelet's answer, not take the missing socket for an API not mounted."""
    from sriovdp.kubelet.probe import listening

    async with node.kubelet(peer_binary) as kubelet:
        proc = await node.start_daemon()
        await kubelet.wait_allocatable(POOLS, timeout=20)
        pod = await kubelet.admit("busy", {"c0": {NET: 1}})
        (dev,) = pod["c0"]["devices"][NET]
        await node.stop_daemon(proc)
        other = _move_one_net_vf_to_a_new_pool(node, dev)
        restart = asyncio.create_task(kubelet.restart(downtime=2.0))
        for _ in range(200):
            if not await listening(node.pod_resources, timeout=0.1):
                break
            await asyncio.sleep(0.02)
        node.pod_resources.unlink(missing_ok=True)
        await node.start_daemon()
        await restart
        await kubelet.wait_allocatable({NET: 4, other: 0}, timeout=20)
        devices = await kubelet.allocatable_devices()
        assert dev in [d["id"] for d in devices[NET]]
        assert dev not in [d["id"] for d in devices.get(other, [])]
        await kubelet.remove("busy")
        await kubelet.wait_allocatable({NET: 3, other: 1}, timeout=10)


@pytest.fixture
async def lab() -> object:
    why = NetnsLab.available()
    if why is not None:
        pytest.skip(why)
    async with NetnsLab() as lab:
        await lab.add_veth("ens785f0", "pf0peer")  # the X710 PF's netdev
        yield lab


async def test_pf_carrier_loss_reaches_the_real_managers_allocatable_when_the_link_drops(
    node: Node, peer_binary: Path, lab: NetnsLab
) -> None:
    async with node.kubelet(peer_binary) as kubelet:
        await node.start_daemon(netns=lab.name)
        await kubelet.wait_allocatable(POOLS, timeout=20)
        await lab.set_carrier("ens785f0", False)
        await kubelet.wait_allocatable({NET: 0, DPDK: 0}, timeout=10)
        capacity, _, _ = await kubelet.capacity()
        assert capacity[NET] == 4
        await lab.set_carrier("ens785f0", True)
        await kubelet.wait_allocatable(POOLS, timeout=10)
