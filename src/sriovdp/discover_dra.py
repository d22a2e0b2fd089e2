"""``sriovdp discover --dra``: the ResourceSlices this node would publish, as YAML.

For writing DeviceClass CEL selectors before deploying DRA mode: the pools DRA serves in
``mode`` (``--dra``: those marked ``"dra": true``; ``--dra=all``: every pool) are shown as
the daemon publishes them (one DRA pool named after the node, devices with their
attributes, split at 128 per slice). Health is not read here (no netlink): every device is
shown, and the generation is 1. The node UID is unknown, so there is no owner reference.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import yaml

from sriovdp.daemon.settings import Settings
from sriovdp.host.ddp import fill_ddp_profiles_if_asked
from sriovdp.host.pcie import pcie_roots
from sriovdp.host.sysfs import scan
from sriovdp.model.config import Config
from sriovdp.model.dra.modes import DraMode, served_by_dra
from sriovdp.model.dra.slices import advance, dra_devices, resource_slices, slice_devices
from sriovdp.model.pools import build_pools


def default_node_name() -> str:
    """``$NODE_NAME`` (the downward API in the DaemonSet), else the host name, lower-cased."""
    return (os.environ.get("NODE_NAME") or socket.gethostname()).lower()


def dra_slices(settings: Settings, config: Config | None, *, driver: str,
               node_name: str, mode: DraMode = DraMode.ALL) -> list[dict[str, Any]]:
    """Scan ``settings.host`` and build the node's ResourceSlices for ``config``'s pools
    that DRA serves in ``mode`` (the others keep their devices: a device joins one pool).

    Raises:
        DraNameError: the driver or node name is not valid for the API.
    """
    inventory = scan(settings.host)
    resources = config.resources if config is not None else ()
    inventory = fill_ddp_profiles_if_asked(inventory, resources)
    pools = build_pools(inventory, resources, default_prefix=settings.resource_prefix)
    devices = dra_devices({name: pool for name, pool in pools.items()
                           if served_by_dra(pool.config, mode)})
    addresses = {getattr(d.device.function, "parent", d.device.function).address
                 for d in devices.values()}
    roots = pcie_roots(settings.host, sorted(addresses))
    published = slice_devices(devices, driver=driver, pcie_roots=roots)
    return resource_slices(advance(None, published), driver=driver, node_name=node_name)


def render_yaml(slices: list[dict[str, Any]]) -> str:
    """The slices as a multi-document YAML stream (``kubectl apply -f`` reads it)."""
    text: str = yaml.safe_dump_all(slices, sort_keys=False, default_flow_style=False,
                                   explicit_start=True)
    return text
