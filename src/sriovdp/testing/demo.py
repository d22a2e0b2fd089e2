"""``sriovdp demo``: the daemon end to end on a simulated host and kubelet, in one command.

Builds a FakeHost (an Intel X710 PF with 8 iavf VFs, 4 of them rebound to vfio-pci, a
ConnectX-5 PF with 4 RDMA VFs and a switchdev ConnectX-6 Dx with two sub-functions), writes
the demo config (or takes the user's ``--config-file``), starts the KubeletEmulator and the
daemon over real unix sockets in a temporary directory, and prints what the kubelet sees and
one allocation per pool. ``--resource-prefix`` and ``--use-cdi`` apply as in the daemon.
Nothing outside the temporary directory is touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
from pathlib import Path

from sriovdp.daemon.configfile import config_text, load_config, read_config_bytes
from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.errors import ConfigError, ConfigProblem
from sriovdp.model.config import DEFAULT_PREFIX, Config
from sriovdp.model.dra.modes import DraMode
from sriovdp.testing.emulate import container_lines
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator

DEMO_CONFIG = {
    "resourceList": [
        {"resourceName": "intel_sriov_netdevice",
         "selectors": [{"vendors": ["8086"], "devices": ["154c"], "drivers": ["iavf"]}]},
        {"resourceName": "intel_sriov_dpdk",
         "selectors": [{"vendors": ["8086"], "devices": ["154c"], "drivers": ["vfio-pci"],
                        "pfNames": ["ens785f0"]}]},
        {"resourceName": "mlnx_sriov_rdma",
         "selectors": [{"vendors": ["15b3"], "devices": ["1018"], "drivers": ["mlx5_core"],
                        "isRdma": True}]},
        {"resourceName": "mlnx_sf", "deviceType": "auxNetDevice",
         "selectors": [{"auxTypes": ["sf"], "pfNames": ["enp59s0f0np0"]}]},
    ]
}


def build_demo_host(root: Path) -> FakeHost:
    """X710 PF ``ens785f0`` (NUMA 0) with 8 VFs, VFs 4-7 on vfio-pci; ConnectX-5 PF
    ``ens1f0`` (NUMA 1) with 4 mlx5_core VFs, each with an RDMA device; ConnectX-6 Dx PF
    ``enp59s0f0np0`` in switchdev mode with sub-functions ``mlx5_core.sf.2`` and ``.sf.3``."""
    host = FakeHost(root)
    pf = host.add_pf("0000:3b:00.0", vendor="8086", device="1572", driver="i40e",
                     ifname="ens785f0", numa_node=0, total_vfs=64, iommu_group=40)
    vfs = host.add_vfs(pf, 8, device="154c", driver="iavf", ifname="ens785f0v{n}",
                       iommu_group_base=100)
    for vf in vfs[4:]:
        host.bind(vf, "vfio-pci")
    cx5 = host.add_pf("0000:d8:00.0", vendor="15b3", device="1017", driver="mlx5_core",
                      ifname="ens1f0", numa_node=1, total_vfs=8, vf_offset=2, iommu_group=80)
    for n, vf in enumerate(host.add_vfs(cx5, 4, device="1018", driver="mlx5_core",
                                        ifname="ens1f0v{n}", iommu_group_base=200)):
        host.add_rdma(vf, f"mlx5_{n + 2}")
    host.enable_rdma_cm()
    cx6 = host.add_pf("0000:5e:00.0", vendor="15b3", device="101d", driver="mlx5_core",
                      ifname="enp59s0f0np0", numa_node=0, total_vfs=8, vf_offset=2,
                      iommu_group=60)
    host.set_phys_port("enp59s0f0np0", "p0", switch_id="a8b0d10003ba5e0c")
    for sfnum in (2, 3):
        host.add_sf(cx6, sfnum, ifname=f"enp59s0f0s{sfnum}")
    host.enable_vhost_net()
    return host


def _demo_config(settings: Settings, raw: bytes) -> Config:
    """The user's config as the daemon reads it, with the demo's advice for a pool marked
    for DRA (the demo's kubelet has no DRA: the daemon's advice, --dra, does not apply).

    Raises:
        ConfigError: the config is invalid or marks a pool for DRA.
    """
    config = load_config(settings.config_file, default_prefix=settings.resource_prefix,
                         use_cdi=settings.use_cdi, socket_dir=settings.device_plugin_dir,
                         text=raw, dra=DraMode.MARKED)
    marked = [ConfigProblem(f"resourceList[{i}].dra", (
        "got true, but sriovdp demo serves pools through the device plugin API only (its "
        "kubelet emulator has no DRA): remove the key to run this pool in the demo; "
        f"`sriovdp discover --dra --config-file {settings.config_file}` prints the "
        "ResourceSlices DRA mode would publish, `sriovdp validate --dra` checks it for the "
        "daemon's --dra"))
        for i, r in enumerate(config.resources) if r.dra]
    if marked:
        raise ConfigError(marked, str(settings.config_file))
    return config


async def _demo(work: Path, *, config_file: Path | None, use_cdi: bool, prefix: str) -> None:
    host = build_demo_host(work / "host")
    if config_file is None:
        config_file = work / "config.json"
        config_file.write_text(json.dumps(DEMO_CONFIG, indent=2))
        # the demo's own allocations: 2 vfio VFs, then 1 RDMA VF
        wanted = {f"{prefix}/intel_sriov_dpdk": 2, f"{prefix}/mlnx_sriov_rdma": 1}
    else:
        wanted = None  # one device of every pool that has one
    dp_dir = work / "device-plugins"
    dp_dir.mkdir()
    pod_resources = work / "pod-resources" / "kubelet.sock"  # served by the emulator
    settings = Settings(host=host.paths, config_file=config_file.absolute(),
                        device_plugin_dir=dp_dir, resource_prefix=prefix, use_cdi=use_cdi,
                        plugins_registry_dir=work / "plugins_registry",
                        device_info_dir=work / "devinfo", cdi_dir=work / "cdi",
                        pod_resources_socket=pod_resources,
                        kubelet_settle=0.0)  # the emulator has just started, with no pods
    raw = read_config_bytes(settings.config_file)
    config = _demo_config(settings, raw)
    text = config_text(raw, settings.config_file)
    print(f"Simulated host in {host.root}: {len(host.addresses)} PCI functions")
    print(f"Config {config_file}:\n{text.decode(errors='replace').strip()}\n")
    for warning in config.warnings:
        print(f"warning: {warning}")

    async with KubeletEmulator(dp_dir, pod_resources_socket=pod_resources) as kubelet:
        daemon = Reconciler(settings, config)
        task = asyncio.create_task(daemon.run())
        names = [r.resource_name(prefix) for r in config.resources]
        for name in names:
            await kubelet.wait_registered(name, timeout=10)
            await kubelet.wait_for(name, lambda devs: True, timeout=10)
        print("What the kubelet sees (node capacity / allocatable):")
        for name in names:
            cap, alloc = kubelet.capacity(name)
            print(f"  {name}: {cap} / {alloc}")
            for dev in kubelet.devices(name).values():
                numa = ",".join(map(str, dev.numa_nodes)) or "-"
                print(f"      {dev.id}  {dev.health}  numa={numa}")
        if wanted is None:
            wanted = {name: 1 for name in names if kubelet.capacity(name)[1]}
        for resource, count in wanted.items():
            print(f"\nA pod asks for {count} x {resource}:")
            pod = "demo-" + resource.rsplit("/", 1)[-1].replace("_", "-")
            admitted = await kubelet.admit(resource, count, pod=pod)
            print(f"  devices chosen: {', '.join(admitted.device_ids)}")
            for line in container_lines(admitted.response):
                print(line)
        daemon.stop()
        await task
    left = sorted(p.name for p in dp_dir.glob("*.sock"))
    print(f"\nDaemon stopped; sockets left in {dp_dir}: {left or 'none'}")


def run_demo(*, config_file: Path | None = None, use_cdi: bool = False,
             resource_prefix: str = DEFAULT_PREFIX, verbosity: int = 0) -> int:
    """Run the demo in a fresh temporary directory (removed afterwards); exit code 0.

    Args:
        config_file: the user's config, run on the simulated host instead of the demo's.
        use_cdi: CDI mode, as the daemon's ``--use-cdi``.
        resource_prefix: the daemon's ``--resource-prefix``.
        verbosity: ``-v``: 0 shows only the daemon's warnings beside the demo's own output;
            more logs as the daemon's ``-v`` does (5 and up: debug messages).

    Raises:
        ConfigError: ``config_file`` cannot be read or is invalid (before anything runs).
    """
    if verbosity == 0:
        logging.getLogger("sriovdp").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="sriovdp-demo-", dir="/tmp"))
    try:
        asyncio.run(_demo(work, config_file=config_file, use_cdi=use_cdi,
                          prefix=resource_prefix))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
