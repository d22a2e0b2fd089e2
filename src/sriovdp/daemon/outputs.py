"""Files the daemon keeps in step with its pools: NPWG device-info files and CDI specs.

Device-info files (netDevice pools only) are written on Allocate and removed when their
device leaves its pool; unlike the Go plugin they are *not* wiped at start or on a kubelet
restart, because running pods' CNI may still read them. At the first pass, files of our
pools naming devices those pools no longer hold are removed. CDI specs (``--use-cdi``) are
rewritten whenever a pool changes; an empty pool has no spec file; at start every
``sriov-dp-*`` spec that is not one of our pools' is removed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sriovdp.daemon.settings import Settings
from sriovdp.errors import HostError
from sriovdp.host.cdi import CdiStore
from sriovdp.host.devinfo import DeviceInfoStore
from sriovdp.model.cdi import cdi_spec, pool_spec_file_name
from sriovdp.model.devices import DeviceKind, HostFacts
from sriovdp.model.ids import is_pci_address
from sriovdp.model.pools import ResourcePool

log = logging.getLogger("sriovdp.daemon")
_SUFFIX = "-device.json"


class Outputs:
    """Device-info and CDI files for a set of pools (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.devinfo = DeviceInfoStore(settings.device_info_dir)
        self.cdi = CdiStore(settings.cdi_dir) if settings.use_cdi else None

    def allocated(self, pool: ResourcePool, ids: list[str]) -> None:
        """Write the device-info file of each allocated device of a netDevice pool.

        A failure is logged (naming the device and path) and does not fail the Allocate:
        SR-IOV CNI can work from the pod's PCI address without the file.
        """
        if pool.config.kind is not DeviceKind.NET:
            return
        for dev_id in ids:
            try:
                self.devinfo.write(pool.resource_name, pool.devices[dev_id])
            except (HostError, ValueError) as exc:
                log.error("device-info file for %s not written: %s", dev_id, exc,
                          extra={"pci": dev_id, "resource": pool.resource_name})

    def pools_changed(self, old: Mapping[str, ResourcePool], new: Mapping[str, ResourcePool],
                      facts: HostFacts, *, first: bool) -> None:
        """Remove files of devices that left their pool; rewrite CDI specs of changed pools."""
        try:
            self._device_info(old, new, first=first)
        except HostError as exc:
            log.error("device-info files not cleaned: %s", exc)
        if self.cdi is not None:
            try:
                self._cdi(self.cdi, old, new, facts, first=first)
            except (HostError, ValueError) as exc:  # CdiError is a ValueError
                log.error("CDI specs not updated: %s", exc)

    def _device_info(self, old: Mapping[str, ResourcePool], new: Mapping[str, ResourcePool],
                     *, first: bool) -> None:
        for name, pool in old.items():
            if pool.config.kind is not DeviceKind.NET:
                continue
            kept = new[name].devices if name in new else {}
            for dev_id in pool.devices.keys() - kept.keys():
                if self.devinfo.remove(name, dev_id):
                    log.info("device-info file of %s removed: it left %s", dev_id, name,
                             extra={"pci": dev_id, "resource": name})
        if not first:
            return
        files = self.devinfo.files()
        for name, pool in new.items():
            if pool.config.kind is not DeviceKind.NET:
                continue
            head = name.replace("/", "-") + "-"
            for file in files:
                dev_id = file[len(head):-len(_SUFFIX)]
                # another pool's name may start like ours: only PCI addresses are ours
                if file.startswith(head) and is_pci_address(dev_id) and \
                        dev_id not in pool.devices:
                    self.devinfo.remove_file(file)
                    log.info("stale device-info file %s removed", file,
                             extra={"resource": name})

    def _cdi(self, store: CdiStore, old: Mapping[str, ResourcePool],
             new: Mapping[str, ResourcePool], facts: HostFacts, *, first: bool) -> None:
        for name, pool in new.items():
            if not first and old.get(name) == pool:
                continue
            file_name = pool_spec_file_name(pool)
            doc = cdi_spec(pool, facts)
            if doc is None:
                store.remove(file_name)
            else:
                store.write(doc, file_name)
        for name in old.keys() - new.keys():
            store.remove(pool_spec_file_name(old[name]))
        if first:
            keep = {pool_spec_file_name(p) for p in new.values()}
            for removed in store.cleanup(keep=keep):
                log.info("stale CDI spec %s removed", removed)
