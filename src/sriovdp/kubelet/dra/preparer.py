"""NodePrepareResources / NodeUnprepareResources for one claim: the steps, in order.

Prepare: a claim already in the checkpoint whose CDI spec is still there gets the recorded
answer (the kubelet repeats calls after its own restart). Otherwise the claim is read from
the apiserver (:class:`~sriovdp.kubelet.dra.claims.ClaimReader`: UID checked), planned
(:func:`sriovdp.model.dra.prepare.prepare_claim`: only our driver's results; refused while
another prepared claim still holds one of its devices), its CDI spec
(first line: the claim's record, from which a damaged checkpoint is rebuilt, see
:mod:`sriovdp.model.dra.records`) and device-info files written, the checkpoint recorded,
and only then answered.
Unprepare: the checkpoint names the files, so it needs no apiserver and works for a claim
already deleted; an unknown UID is already unprepared. Calls for one claim UID run one at
a time, in the order they came.

The CDI directory, device-info directory and checkpoint are ports (:class:`CdiSpecs`,
:class:`DeviceInfoFiles`, :class:`Checkpoint`) that :class:`sriovdp.host.cdi.CdiStore`
(with prefix ``sriov-dra-``), :class:`sriovdp.host.devinfo.DeviceInfoStore` and
:class:`sriovdp.host.draclaims.ClaimCheckpoint` implement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from sriovdp.errors import SriovdpError
from sriovdp.kubelet.dra.claims import ClaimReader
from sriovdp.model.devices import HostFacts
from sriovdp.model.dra.prepare import (
    ClaimRef,
    PreparedClaim,
    PreparedDevice,
    check_not_prepared_elsewhere,
    prepare_claim,
    spec_file_name,
)
from sriovdp.model.dra.records import claim_record
from sriovdp.model.dra.slices import DraDevice
from sriovdp.model.pools import PoolDevice

log = logging.getLogger("sriovdp.kubelet.dra")


class CdiSpecs(Protocol):
    """The per-claim CDI spec files."""

    def write(self, doc: Mapping[str, Any], file_name: str, *, comment: str = "") -> Path: ...
    def remove(self, file_name: str) -> bool: ...
    def files(self) -> set[str]: ...


class DeviceInfoFiles(Protocol):
    """The NPWG device-info files (``/var/run/k8s.cni.cncf.io/devinfo/dp``)."""

    def write(self, resource_name: str, dev: PoolDevice) -> Path: ...
    def remove(self, resource_name: str, device_id: str) -> bool: ...


class Checkpoint(Protocol):
    """The prepared claims, kept across restarts."""

    def get(self, uid: str) -> PreparedClaim | None: ...
    def claims(self) -> list[PreparedClaim]: ...
    def add(self, claim: PreparedClaim) -> None: ...
    def remove(self, uid: str) -> bool: ...


class _ClaimLock:
    """The lock of one claim UID and how many calls hold or wait for it."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ClaimPreparer:
    """Prepares and unprepares claims on this node.

    Args:
        driver: our driver name, e.g. ``"sriov.network.k8s.io"``.
        pool_name: this node's DRA pool (the node name).
        reader: reads claims from the apiserver.
        devices: returns the node's current DRA devices (Unhealthy ones included).
        facts: returns the host facts of the latest scan.
        cdi: the per-claim CDI spec files.
        checkpoint: the prepared claims.
        device_info: the device-info files; None writes none.
    """

    def __init__(
        self,
        *,
        driver: str,
        pool_name: str,
        reader: ClaimReader,
        devices: Callable[[], Mapping[str, DraDevice]],
        facts: Callable[[], HostFacts],
        cdi: CdiSpecs,
        checkpoint: Checkpoint,
        device_info: DeviceInfoFiles | None = None,
    ) -> None:
        self.driver = driver
        self.pool_name = pool_name
        self._reader = reader
        self._devices = devices
        self._facts = facts
        self._cdi = cdi
        self._checkpoint = checkpoint
        self._device_info = device_info
        self._locks: dict[str, _ClaimLock] = {}

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, uid: str) -> AsyncIterator[None]:
        """Run the block alone among the calls for ``uid``, in their arrival order (an
        asyncio.Lock wakes its waiters first in, first out). The lock is kept while a call
        holds or waits for it, and forgotten after the last one: one lock per claim in
        flight, not per claim ever seen."""
        entry = self._locks.get(uid)
        if entry is None:
            entry = self._locks[uid] = _ClaimLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[uid]

    async def prepare(self, ref: ClaimRef) -> tuple[PreparedDevice, ...]:
        """Prepare one claim; returns the answer's devices.

        Raises:
            SriovdpError: the claim cannot be prepared (ClaimReadError, PrepareError,
                CdiError, HostError); nothing is recorded then.
        """
        async with self._one_at_a_time(ref.uid):
            done = self._checkpoint.get(ref.uid)
            if done is not None and (done.spec_file is None
                                     or done.spec_file in self._cdi.files()):
                return done.devices
            claim = await self._reader.read(ref)
            devices = self._devices()
            plan = prepare_claim(claim, driver=self.driver, pool_name=self.pool_name,
                                 devices=devices, facts=self._facts())
            # no await from here to the record: two claims naming one device cannot both pass
            check_not_prepared_elsewhere(plan, self._checkpoint.claims())
            try:
                if plan.spec is not None and plan.spec_file is not None:
                    self._cdi.write(plan.spec, plan.spec_file,
                                    comment=claim_record(plan, self.driver))
                if self._device_info is not None and plan.device_info:
                    by_id = {d.device.id: d.device for d in devices.values()}
                    for resource_name, dev_id in plan.device_info:
                        self._device_info.write(resource_name, by_id[dev_id])
                self._checkpoint.add(plan)
            except Exception:
                if done is None:  # nothing recorded: nothing may stay behind either
                    self._forget_files(plan)
                raise
            log.info("prepared claim %s: %s", ref,
                     ", ".join(d.device_name for d in plan.devices) or "no devices of ours")
            return plan.devices

    def _forget_files(self, plan: PreparedClaim) -> None:
        """Remove what a prepare that could not be recorded wrote (best effort)."""
        if plan.spec_file is not None:
            with contextlib.suppress(Exception):
                self._cdi.remove(plan.spec_file)
        if self._device_info is not None:
            for resource_name, dev_id in plan.device_info:
                with contextlib.suppress(Exception):
                    self._device_info.remove(resource_name, dev_id)

    async def unprepare(self, ref: ClaimRef) -> None:
        """Unprepare one claim: delete its CDI spec, then forget it. Unknown UIDs are fine.

        Raises:
            SriovdpError: the spec or the checkpoint cannot be written (HostError).
        """
        async with self._one_at_a_time(ref.uid):
            done = self._checkpoint.get(ref.uid)
            if done is None:
                try:  # a spec written before a crash that came before the checkpoint
                    self._cdi.remove(spec_file_name(ref.uid))
                except SriovdpError as exc:
                    log.warning("unprepare %s: %s", ref, exc)
                return
            if done.spec_file is not None:
                self._cdi.remove(done.spec_file)
            if self._device_info is not None:
                for resource_name, dev_id in done.device_info:
                    self._device_info.remove(resource_name, dev_id)
            self._checkpoint.remove(ref.uid)
            log.info("unprepared claim %s", ref)
