"""``sriovdp discover``: what the host has, and why each device is or is not in each pool.

Besides the network (class 0x02) and accelerator (class 0x12) functions the daemon scans, it
lists every other PCI function, as a selector's ``vendors``/``devices``/``pciAddresses`` can
name any of them (a QAT card is class 0x0b), with why no pool can ever take it.
"""

from __future__ import annotations

import os
from typing import Any

from sriovdp.daemon.settings import Settings
from sriovdp.host.ddp import fill_ddp_profiles_if_asked
from sriovdp.host.paths import HostPaths
from sriovdp.host.sysfs import scan
from sriovdp.model.config import Config, ResourceConfig
from sriovdp.model.devices import AuxFunction, PciFunction
from sriovdp.model.pools import build_pools, explain, unmatched_identifiers

_CLASS_NAMES = {0x00: "unclassified", 0x01: "storage", 0x03: "display", 0x04: "multimedia",
                0x05: "memory", 0x06: "bridge", 0x07: "communication", 0x08: "system",
                0x09: "input", 0x0A: "docking", 0x0B: "processor", 0x0C: "serial bus",
                0x0D: "wireless", 0x0E: "intelligent I/O", 0x0F: "satellite",
                0x10: "encryption", 0x11: "signal processing", 0x13: "non-essential",
                0x40: "coprocessor"}


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read(256).strip()
    except OSError:
        return None


def link_state(paths: HostPaths, ifname: str | None) -> dict[str, Any] | None:
    """``{"admin": "up"|"down"|None, "carrier": bool|None}`` of a netdev in ``sys/class/net``.

    Admin state is bit 0 of ``flags`` (IFF_UP); without ``flags`` it is "up" when ``carrier``
    can be read (the kernel refuses that read while the link is down). None: no netdev.
    """
    if not ifname:
        return None
    base = os.path.join(paths.class_net, ifname)
    flags = _read(os.path.join(base, "flags"))
    carrier_text = _read(os.path.join(base, "carrier"))
    carrier = None if carrier_text not in ("0", "1") else carrier_text == "1"
    admin: str | None
    if flags is not None:
        try:
            admin = "up" if int(flags, 16) & 0x1 else "down"
        except ValueError:
            admin = None
    elif carrier is not None:
        admin = "up"
    else:
        admin = "down" if _read(os.path.join(base, "operstate")) == "down" else None
    return {"admin": admin, "carrier": carrier}


def _state_text(state: dict[str, Any] | None) -> str:
    if not state or state["admin"] is None and state["carrier"] is None:
        return "-"
    if state["admin"] == "down":
        return "down"
    carrier = {True: "carrier", False: "no-carrier", None: "?"}[state["carrier"]]
    return f'{state["admin"] or "?"},{carrier}'


def other_functions(paths: HostPaths, known: set[str]) -> list[dict[str, Any]]:
    """Every PCI function under ``sys/bus/pci/devices`` not in ``known``: vendor, device,
    class, driver and why no pool can take it."""
    out: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(paths.pci_devices))
    except OSError:
        return out
    for address in names:
        if address in known:
            continue
        base = os.path.join(paths.pci_devices, address)
        vendor = (_read(os.path.join(base, "vendor")) or "").removeprefix("0x")
        device = (_read(os.path.join(base, "device")) or "").removeprefix("0x")
        class_text = _read(os.path.join(base, "class")) or ""
        try:
            class_code = int(class_text, 16)
        except ValueError:
            class_code = -1
        driver_link = os.path.join(base, "driver")
        driver = os.path.basename(os.readlink(driver_link)) if os.path.islink(driver_link) else None
        base_class = class_code >> 16 if class_code >= 0 else None
        if base_class is None:
            reason = "class unreadable: no pool can take it"
        else:
            name = _CLASS_NAMES.get(base_class, "other")
            reason = (f"class 0x{class_code:06x} ({name}): pools take network functions "
                      f"(class 0x02, netDevice) and accelerators (class 0x12, accelerator) only")
        out.append({"address": address, "vendor": vendor, "device": device,
                    "class": f"0x{class_code:06x}" if class_code >= 0 else None,
                    "driver": driver, "reason": reason})
    return out


def _named_by(resource: ResourceConfig, fn: dict[str, Any]) -> bool:
    """A selector of ``resource`` names this (unscannable) function by its own identity."""
    for sel in resource.selectors:
        if sel.vendors and fn["vendor"] not in sel.vendors:
            continue
        if sel.devices and fn["device"] not in sel.devices:
            continue
        if sel.drivers and (fn["driver"] or "") not in sel.drivers:
            continue
        addresses = getattr(sel, "pci_addresses", ())
        if addresses and fn["address"] not in addresses:
            continue
        if sel.vendors or sel.devices or addresses:
            return True
    return False


def _device(fn: PciFunction, paths: HostPaths) -> dict[str, Any]:
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
        "link_state": link_state(paths, fn.netdevs[0] if fn.netdevs else None),
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


def _aux_device(aux: AuxFunction, paths: HostPaths) -> dict[str, Any]:
    return {
        "name": aux.name,
        "type": aux.aux_type,
        "parent": aux.parent.address,
        "pf": aux.pf_address,
        "pf_netdev": aux.pf_netdev,
        "sf_num": aux.sf_num,
        "netdevs": list(aux.netdevs),
        "link_type": aux.link_type,
        "link_state": link_state(paths, aux.netdevs[0] if aux.netdevs else None),
        "rdma": list(aux.rdma.devices) if aux.rdma is not None else [],
    }


def discover_report(settings: Settings, config: Config | None,
                    warnings: list[str] | None = None) -> dict[str, Any]:
    """Scan ``settings.host`` and explain pool membership for ``config`` (may be None).

    Returns:
        ``{"host_root", "warnings": [...], "devices": [...], "aux_devices": [...],
        "other_functions": [{"address", "vendor", "device", "class", "driver", "reason"}],
        "skipped": [...], "pools": [{"resource", "devices": [ids],
        "rejected": [{"address", "reason"}]}], "unmatched": [...]}``. ``warnings`` are the
        config's (unknown keys ...) and ``warnings`` given by the caller.
    """
    paths = settings.host
    inventory = scan(paths)
    if config is not None:
        inventory = fill_ddp_profiles_if_asked(inventory, config.resources)
    known = set(inventory.functions) | {s.address for s in inventory.skipped}
    others = other_functions(paths, known)
    report: dict[str, Any] = {
        "host_root": str(paths.root),
        "warnings": list(warnings or ()) + (
            [str(w) for w in config.warnings] if config is not None else []),
        "devices": [_device(fn, paths) for fn in inventory.functions.values()],
        "aux_devices": [_aux_device(aux, paths) for aux in inventory.aux.values()],
        "other_functions": others,
        "skipped": [{"address": s.address, "reason": s.reason} for s in inventory.skipped],
        "pools": [],
        "unmatched": [],
    }
    if config is None:
        return report
    pools = build_pools(inventory, config.resources, default_prefix=settings.resource_prefix)
    verdicts = explain(inventory, config.resources, pools,
                       default_prefix=settings.resource_prefix)
    for resource, (name, pool) in zip(config.resources, pools.items(), strict=True):
        named = [{"address": o["address"], "reason": o["reason"]} for o in others
                 if _named_by(resource, o)]
        report["pools"].append({
            "resource": name,
            "dra": resource.dra,
            "devices": list(pool.devices),
            "rejected": named + [{"address": v.address, "reason": v.reason}
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
             s(d["link_type"]), _state_text(d.get("link_state")), s(d["pf"]),
             s(d["vf_index"]),
             s(f'{d["sriov_numvfs"]}/{d["sriov_totalvfs"]}' if d["sriov_totalvfs"] is not None
               else None), "yes" if d["default_route"] else "-"]
            for d in report["devices"]]
    out = [f"Devices under {report['host_root']} (PCI class 0x02 network, 0x12 accelerator):",
           _table(["PCI", "ID", "CLASS", "DRIVER", "NUMA", "IOMMU", "NETDEV", "LINK", "STATE",
                   "PF", "VF", "VFS", "DEFROUTE"], rows)]
    extras = [(d["address"], _facets(d)) for d in report["devices"]]
    if any(facets for _, facets in extras):
        out.append("")
        out.append("RDMA, vDPA, pkey, DDP:")
        out += [f"  {address}: {facets}" for address, facets in extras if facets]
    aux_devices = report.get("aux_devices") or []
    if aux_devices:
        aux_rows = [[a["name"], a["type"], a["parent"], a["pf"], s(a["pf_netdev"]),
                     str(a["sf_num"]), s(",".join(a["netdevs"])), s(a["link_type"]),
                     _state_text(a.get("link_state")), s(",".join(a["rdma"]))]
                    for a in aux_devices]
        out.append("")
        out.append("Auxiliary devices (sub-functions):")
        out.append(_table(["AUX", "TYPE", "PARENT", "PF", "PFNETDEV", "SFNUM", "NETDEV",
                           "LINK", "STATE", "RDMA"], aux_rows))
    others = report.get("other_functions") or []
    if others:
        out.append("")
        out.append("Other PCI functions (a selector can name them, but pools take only class "
                   "0x02 network and 0x12 accelerator functions):")
        out.append(_table(["PCI", "ID", "CLASS", "DRIVER"],
                          [[o["address"], f'{o["vendor"]}:{o["device"]}', s(o["class"]),
                            s(o["driver"])] for o in others]))
    for sk in report["skipped"]:
        out.append(f"skipped {sk['address']}: {sk['reason']}")
    for pool in report["pools"]:
        out.append("")
        count = len(pool["devices"])
        dra = ' (marked "dra": true: served through DRA with --dra)' if pool.get("dra") else ""
        out.append(f"Pool {pool['resource']}: {count} device{'' if count == 1 else 's'}{dra}")
        for dev in pool["devices"]:
            out.append(f"  + {dev}")
        for rej in pool["rejected"]:
            out.append(f"  - {rej['address']}: {rej['reason']}")
    for warning in report.get("warnings") or []:
        out.append(f"warning: config: {warning}")
    for um in report["unmatched"]:
        out.append(f"warning: {um['path']}: {um['value']!r} matches no device on this host")
    return "\n".join(out)
