"""Files the daemon keeps in step with its pools: NPWG device-info files and CDI specs.

Every Allocate is recorded in the :class:`AllocationLog` beside the device-info files (a
restarted daemon reads what its predecessor granted in the last minute). Device-info files
(netDevice pools only) are written on Allocate and removed when their
device leaves its pool; unlike the Go plugin they are *not* wiped at start or on a kubelet
restart, because running pods' CNI may still read them. At the first pass, files of our
pools naming devices those pools no longer hold are removed. A file a prepared DRA claim
owns (the same name: the same resource and device) is never removed here; the DRA
preparer removes it on unprepare (and writes no ``sriov-dp-*`` spec). CDI specs (``--use-cdi``) are
rewritten whenever a pool changes; an empty pool has no spec file; at start every
``sriov-dp-*`` spec that is not one of our pools' is removed. A spec that cannot be written
is retried on the next pass and named by :meth:`Outputs.problems` (``/readyz``); the pools in
:attr:`Outputs.cdi_missing` are published Unhealthy meanwhile, so the kubelet never hands
out a CDI name whose spec is not on disk. A stale entry that cannot be deleted is logged and
retried, but does not hold readiness back (it is not a spec of ours any more).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Mapping

from sriovdp.daemon.settings import Settings
from sriovdp.errors import HostError
from sriovdp.host.allocationlog import AllocationLog
from sriovdp.host.cdi import CdiStore
from sriovdp.host.devinfo import DeviceInfoStore
from sriovdp.model.cdi import cdi_spec, pool_spec_file_name
from sriovdp.model.devices import DeviceKind, HostFacts
from sriovdp.model.pools import ResourcePool

log = logging.getLogger("sriovdp.daemon")


class Outputs:
    """Device-info and CDI files for a set of pools (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.devinfo = DeviceInfoStore(settings.device_info_dir)
        self.allocations = AllocationLog(settings.device_info_dir)
        self.cdi = CdiStore(settings.cdi_dir) if settings.use_cdi else None
        self._cdi_pending: set[str] = set()
        self._cdi_errors: dict[str, str] = {}
        self._cleanup_pending = False

    def allocated(self, pool: ResourcePool, ids: list[str]) -> None:
        """Record the grant in the allocation log, and write the device-info file of each
        allocated device of a netDevice pool.

        A failure is logged (naming the device and path) and does not fail the Allocate:
        SR-IOV CNI can work from the pod's PCI address without the file, and without the
        record only a restart in the middle of this admission loses track of the grant.
        """
        try:
            self.allocations.record(pool.resource_name, ids)
        except HostError as exc:
            log.error("%s", exc, extra={"resource": pool.resource_name})
        if pool.config.kind is not DeviceKind.NET:
            return
        for dev_id in ids:
            try:
                self.devinfo.write(pool.resource_name, pool.devices[dev_id])
            except (HostError, ValueError) as exc:
                log.error("device-info file for %s not written: %s", dev_id, exc,
                          extra={"pci": dev_id, "resource": pool.resource_name})

    def recent_allocations(self, max_age: float, *,
                           skip: Collection[tuple[str, str]] = ()) -> dict[str, dict[str, float]]:
        """What this or a previous process allocated in the last ``max_age`` seconds, as its
        allocation log records: resource name → device id → seconds since. ``skip``:
        (resource name, device id) pairs not to report (devices prepared DRA claims own)."""
        out: dict[str, dict[str, float]] = {}
        for name, ids in self.allocations.recent(max_age).items():
            kept = {i: t for i, t in ids.items() if (name, i) not in skip}
            if kept:
                out[name] = kept
        return out

    def close(self) -> None:
        self.allocations.close()

    def pools_changed(self, old: Mapping[str, ResourcePool], new: Mapping[str, ResourcePool],
                      facts: HostFacts, *, first: bool,
                      dra_owned: Collection[tuple[str, str]] = ()) -> None:
        """Remove files of devices that left their pool (except ``dra_owned``: (resource
        name, device id) of the files prepared DRA claims own); rewrite CDI specs of
        changed pools."""
        try:
            self._device_info(old, new, first=first, keep=frozenset(dra_owned))
        except HostError as exc:
            log.error("device-info files not cleaned: %s", exc)
        if self.cdi is not None:
            self._cdi(self.cdi, old, new, facts, first=first)

    def _device_info(self, old: Mapping[str, ResourcePool], new: Mapping[str, ResourcePool],
                     *, first: bool, keep: frozenset[tuple[str, str]]) -> None:
        for name, pool in old.items():
            if pool.config.kind is not DeviceKind.NET:
                continue
            kept = new[name].devices if name in new else {}
            for dev_id in pool.devices.keys() - kept.keys():
                if (name, dev_id) not in keep and self.devinfo.remove(name, dev_id):
                    log.info("device-info file of %s removed: it left %s", dev_id, name,
                             extra={"pci": dev_id, "resource": name})
        if not first:
            return
        files = self.devinfo.files()
        for name, pool in new.items():
            if pool.config.kind is not DeviceKind.NET:
                continue
            for file in files:
                held = self.devinfo.device_id(name, file)
                if held is not None and held not in pool.devices and (name, held) not in keep:
                    self.devinfo.remove_file(file)
                    log.info("stale device-info file %s removed", file,
                             extra={"resource": name})

    def _cdi(self, store: CdiStore, old: Mapping[str, ResourcePool],
             new: Mapping[str, ResourcePool], facts: HostFacts, *, first: bool) -> None:
        for name, pool in new.items():
            if first or old.get(name) != pool:
                self._cdi_pending.add(name)
        for name in old.keys() - new.keys():
            self._cdi_pending.discard(name)
            self._try(functools.partial(store.remove, pool_spec_file_name(old[name])), name)
        if first:
            self._cleanup_pending = True
        self.retry(new, facts)

    def retry(self, pools: Mapping[str, ResourcePool], facts: HostFacts) -> None:
        """Write the CDI specs still pending (a failed write is retried on every pass)."""
        store = self.cdi
        if store is None:
            return
        for name in sorted(self._cdi_pending):
            pool = pools.get(name)
            if pool is None:
                self._cdi_pending.discard(name)
                self._cdi_errors.pop(name, None)
                continue
            error = self._try(functools.partial(self._write_spec, store, pool, facts), name)
            if error is None:
                self._cdi_pending.discard(name)
                self._cdi_errors.pop(name, None)
            else:
                self._cdi_errors[name] = error
        if self._cleanup_pending:
            keep = {pool_spec_file_name(p) for p in pools.values()}
            if self._try(lambda: self._log_cleanup(store.cleanup(keep=keep)),
                         "stale specs") is None:
                self._cleanup_pending = False

    @staticmethod
    def _write_spec(store: CdiStore, pool: ResourcePool, facts: HostFacts) -> None:
        doc = cdi_spec(pool, facts)
        if doc is None:
            store.remove(pool_spec_file_name(pool))
        else:
            store.write(doc, pool_spec_file_name(pool))

    @staticmethod
    def _log_cleanup(removed: list[str]) -> None:
        for name in removed:
            log.info("stale CDI spec %s removed", name)

    @staticmethod
    def _try(action: Callable[[], object], what: str) -> str | None:
        """Run ``action``; the error text when it failed (logged), else None."""
        try:
            action()
        except (HostError, ValueError) as exc:  # CdiError is a ValueError
            log.error("CDI spec for %s not written (retried on the next pass): %s", what, exc,
                      extra={"resource": what})
            return str(exc)
        return None

    @property
    def cdi_pending(self) -> bool:
        """Some pool's CDI spec is not written yet."""
        return bool(self._cdi_pending)

    @property
    def cdi_missing(self) -> frozenset[str]:
        """Pools whose CDI spec could not be written: published Unhealthy until it is."""
        return frozenset(self._cdi_pending)

    def problems(self) -> list[str]:
        """Why CDI is not ready, one line per pool, e.g. ``"CDI spec of intel.com/net not
        written: cannot write CDI spec /var/run/cdi/...: Read-only file system"``; and the
        allocation log while its last record failed (a restart could not hold what this
        process granted just before)."""
        out = [f"CDI spec of {name} not written: "
               f"{self._cdi_errors.get(name, 'not attempted yet')}"
               for name in sorted(self._cdi_pending)]
        if self.allocations.error:
            out.append(self.allocations.error)
        return out
