"""``sriovdp discover``: what the host has, and why each device is or is not in each pool."""

from __future__ import annotations

from typing import Any

from sriovdp.daemon.settings import Settings
from sriovdp.host.ddp import fill_ddp_profiles_if_asked
from sriovdp.host.sysfs import scan
from sriovdp.model.config import Config
from sriovdp.model.devices import AuxFunction, PciFunction
from sriovdp.model.pools import build_pools, explain, unmatched_identifiers


def _device(fn: PciFunction) -> dict[str, Any]:
    return {
        "address": fn.address,
        "vendor": fn.vendor,
        "device": fn.device,
        "class": f"0x{fn.class_code:06x}",
        "driver": fn.driver,
        "numa_node": fn.numa_node,
        "iommu_group": fn.iommu_group,
        "netdevs": list(fn.netdevs),
        "link_type": fn.link_type,
        "pf": fn.physfn,
        "pf_netdev": fn.pf_netdev,
        "vf_index": fn.vf_index,
        "sriov_totalvfs": fn.total_vfs,
        "sriov_numvfs": fn.num_vfs if fn.total_vfs is not None else None,
        "acpi_index": fn.acpi_index or None,
        "uio": fn.uio,
        "default_route": fn.default_route,
        "rdma": list(fn.rdma.devices) if fn.rdma is not None else [],
        "vdpa": ({"name": fn.vdpa.name, "type": fn.vdpa.type, "path": fn.vdpa.vhost_path}
                 if fn.vdpa is not None else None),
        "pkey": fn.pkey,
        "ddp_profile": fn.ddp_profile,
    }


def _aux_device(aux: AuxFunction) -> dict[str, Any]:
    return {
        "name": aux.name,
        "type": aux.aux_type,
        "parent": aux.parent.address,
        "pf": aux.pf_address,
        "pf_netdev": aux.pf_netdev,
        "sf_num": aux.sf_num,
        "netdevs": list(aux.netdevs),
        "link_type": aux.link_type,
        "rdma": list(aux.rdma.devices) if aux.rdma is not None else [],
    }


def discover_report(settings: Settings, config: Config | None) -> dict[str, Any]:
    """Scan ``settings.host`` and explain pool membership for ``config`` (may be None).

    Returns:
        ``{"host_root", "devices": [...], "aux_devices": [...], "skipped": [...],
        "pools": [{"resource",
        "devices": [ids], "rejected": [{"address", "reason"}]}], "unmatched": [...]}``.
    """
    inventory = scan(settings.host)
    if config is not None:
        inventory = fill_ddp_profiles_if_asked(inventory, config.resources)
    report: dict[str, Any] = {
        "host_root": str(settings.host.root),
        "devices": [_device(fn) for fn in inventory.functions.values()],
        "aux_devices": [_aux_device(aux) for aux in inventory.aux.values()],
        "skipped": [{"address": s.address, "reason": s.reason} for s in inventory.skipped],
        "pools": [],
        "unmatched": [],
    }
    if config is None:
        return report
    pools = build_pools(inventory, config.resources, default_prefix=settings.resource_prefix)
    verdicts = explain(inventory, config.resources, pools,
                       default_prefix=settings.resource_prefix)
    for name, pool in pools.items():
        report["pools"].append({
            "resource": name,
            "devices": list(pool.devices),
            "rejected": [{"address": v.address, "reason": v.reason}
                         for v in verdicts[name] if not v.member],
        })
    report["unmatched"] = [
        {"path": path, "value": value}
        for path, value in unmatched_identifiers(inventory, config.resources)
    ]
    return report


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _facets(d: dict[str, Any]) -> str:
    """``rdma mlx5_2  vdpa vdpa0 (vhost, /dev/vhost-vdpa-0)  pkey 0x7fff  ddp 'ICE ...'``."""
    parts = []
    if d.get("rdma"):
        parts.append(f'rdma {",".join(d["rdma"])}')
    vdpa = d.get("vdpa")
    if vdpa:
        where = f', {vdpa["path"]}' if vdpa["path"] else ""
        parts.append(f'vdpa {vdpa["name"]} ({vdpa["type"]}{where})')
    if d.get("pkey"):
        parts.append(f'pkey {d["pkey"]}')
    if d.get("ddp_profile"):
        parts.append(f'ddp {d["ddp_profile"]!r}')
    return "  ".join(parts)


def render_table(report: dict[str, Any]) -> str:
    """The report as plain-text tables for a terminal."""
    def s(v: object) -> str:
        return "-" if v is None or v == "" or v == [] else str(v)

    rows = [[d["address"], f'{d["vendor"]}:{d["device"]}', d["class"], s(d["driver"]),
             s(d["numa_node"]), s(d["iommu_group"]), s(",".join(d["netdevs"])),
             s(d["link_type"]), s(d["pf"]), s(d["vf_index"]),
             s(f'{d["sriov_numvfs"]}/{d["sriov_totalvfs"]}' if d["sriov_totalvfs"] is not None
               else None), "yes" if d["default_route"] else "-"]
            for d in report["devices"]]
    out = [f"Devices under {report['host_root']} (PCI class 0x02 network, 0x12 accelerator):",
           _table(["PCI", "ID", "CLASS", "DRIVER", "NUMA", "IOMMU", "NETDEV", "LINK", "PF",
                   "VF", "VFS", "DEFROUTE"], rows)]
    extras = [(d["address"], _facets(d)) for d in report["devices"]]
    if any(facets for _, facets in extras):
        out.append("")
        out.append("RDMA, vDPA, pkey, DDP:")
        out += [f"  {address}: {facets}" for address, facets in extras if facets]
    aux_devices = report.get("aux_devices") or []
    if aux_devices:
        aux_rows = [[a["name"], a["type"], a["parent"], a["pf"], s(a["pf_netdev"]),
                     str(a["sf_num"]), s(",".join(a["netdevs"])), s(a["link_type"]),
                     s(",".join(a["rdma"]))] for a in aux_devices]
        out.append("")
        out.append("Auxiliary devices (sub-functions):")
        out.append(_table(["AUX", "TYPE", "PARENT", "PF", "PFNETDEV", "SFNUM", "NETDEV",
                           "LINK", "RDMA"], aux_rows))
    for sk in report["skipped"]:
        out.append(f"skipped {sk['address']}: {sk['reason']}")
    for pool in report["pools"]:
        out.append("")
        out.append(f"Pool {pool['resource']}: {len(pool['devices'])} devices")
        for dev in pool["devices"]:
            out.append(f"  + {dev}")
        for rej in pool["rejected"]:
            out.append(f"  - {rej['address']}: {rej['reason']}")
    for um in report["unmatched"]:
        out.append(f"warning: {um['path']}: {um['value']!r} matches no device on this host")
    return "\n".join(out)
