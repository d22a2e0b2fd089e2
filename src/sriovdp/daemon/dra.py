"""DraSide: keeps the node's DRA side true — the kubelet DRA plugin and the ResourceSlices.

The reconciler hands it the DRA pools after every publication (:meth:`DraSide.update`, the
same snapshot the device plugin endpoints get, link health included). From them:

* the **kubelet DRA plugin** (:class:`~sriovdp.kubelet.dra.server.DraPluginServer`, a
  supervised task): registration in the plugin watcher's dir, ``DRAPlugin`` v1/v1beta1 and
  ``DRAResourceHealth`` on ``<plugins dir>/<driver>/dra.sock``; claims are prepared by a
  :class:`~sriovdp.kubelet.dra.preparer.ClaimPreparer` against the latest devices, with the
  checkpoint beside ``dra.sock``, per-claim CDI specs (``sriov-dra-*``) and device-info files;
* the **ResourceSlices** (:class:`~sriovdp.daemon.draslices.SliceSync`, a supervised task:
  coalesced, retried, forced after each kubelet registration);
* a **socket watch**: a deleted ``dra.sock`` or registration socket makes the plugin task
  fail (logged, in ``/readyz``) and the supervisor serves both again.

Only one sriovdp instance serves DRA on a node: the plugin (and the slices) wait for the
instance's node-wide lock, then read the checkpoint again.

Prepared claims are holds (:func:`~sriovdp.model.dra.modes.claim_holds`) the reconciler feeds
to retention; a change of them (prepare, unprepare) wakes the reconciler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from sriovdp.daemon.draslices import SliceSync
from sriovdp.daemon.settings import Settings
from sriovdp.daemon.supervisor import Ready
from sriovdp.errors import HostError, SriovdpError
from sriovdp.host.cdi import CdiStore
from sriovdp.host.devinfo import DeviceInfoStore
from sriovdp.host.draclaims import CheckpointDamaged, ClaimCheckpoint, claims_in_cdi_specs
from sriovdp.kubelet.dra.apiserver import DraApis
from sriovdp.kubelet.dra.preparer import ClaimPreparer
from sriovdp.kubelet.dra.publisher import SlicePublisher
from sriovdp.kubelet.dra.server import DraPluginServer, plugin_socket, registration_socket
from sriovdp.kubelet.feed import LatestValue
from sriovdp.kubelet.socketlock import InstanceLock, SocketLock
from sriovdp.kubelet.watch import watch_socket_dirs
from sriovdp.model.devices import HostFacts
from sriovdp.model.dra.modes import claim_holds
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX, PreparedClaim
from sriovdp.model.dra.slices import DraDevice, DraDeviceSet
from sriovdp.model.pools import ResourcePool
from sriovdp.model.retention import Holds

log = logging.getLogger("sriovdp.daemon")


class _NotifyingCheckpoint:
    """The checkpoint, calling ``changed`` after every recorded change."""

    def __init__(self, inner: ClaimCheckpoint, changed: Callable[[], None]) -> None:
        self._inner = inner
        self._changed = changed

    def get(self, uid: str) -> PreparedClaim | None:
        return self._inner.get(uid)

    def claims(self) -> list[PreparedClaim]:
        return self._inner.claims()

    def add(self, claim: PreparedClaim) -> None:
        self._inner.add(claim)
        self._changed()

    def remove(self, uid: str) -> bool:
        removed = self._inner.remove(uid)
        if removed:
            self._changed()
        return removed


class DraSide:
    """The node's DRA plugin and slices (see the module docstring).

    Args:
        settings: ``dra_driver``, ``node_name``, ``dra_health``, the dirs, ``resync_interval``.
        apis: the apiserver ports.
        on_claims: called after a claim was prepared or unprepared.
        instance: the daemon instance's node-wide lock (the device plugin endpoints take
            it too), held while the plugin serves.

    The checkpoint is read here (a problem is logged and shown in ``/readyz``, never
    raised: the device plugin pools are served regardless); see :meth:`load_checkpoint`.
    """

    def __init__(self, settings: Settings, apis: DraApis, *,
                 on_claims: Callable[[], None], instance: InstanceLock | None = None) -> None:
        self.settings = settings
        self._on_claims = on_claims
        self.socket = plugin_socket(settings.plugins_dir, settings.dra_driver)
        self.registration = registration_socket(settings.plugins_registry_dir,
                                                settings.dra_driver)
        self.checkpoint = ClaimCheckpoint(self.socket.parent / "checkpoint.json", load=False)
        self.checkpoint_error: str | None = None
        """Why the checkpoint cannot be used yet (the plugin is not served meanwhile)."""
        self._damaged: tuple[Path, str] | None = None  # (where it was kept aside, the notice)
        self._lock = SocketLock(self.socket, instance=instance)
        self.waiting: str | None = None
        """Why the plugin is not served yet: another instance holds the node's lock."""
        self.feed: LatestValue[Mapping[str, DraDevice]] = LatestValue({}, ready=False)
        self._facts = HostFacts()
        self._devices = DraDeviceSet()
        self.claim_changes = 0
        """Prepares and unprepares recorded so far (a caller deciding off the loop compares)."""
        self.preparer = ClaimPreparer(
            driver=settings.dra_driver, pool_name=settings.node_name, reader=apis.claims,
            devices=lambda: self.feed.value, facts=lambda: self._facts,
            cdi=CdiStore(settings.cdi_dir, prefix=SPEC_FILE_PREFIX),
            checkpoint=_NotifyingCheckpoint(self.checkpoint, self._claims_changed),
            device_info=DeviceInfoStore(settings.device_info_dir))
        self.slices = SliceSync(
            SlicePublisher(apis.slices, driver=settings.dra_driver,
                           node_name=settings.node_name, policy=settings.dra_health),
            apis.nodes, settings.host, devices=lambda: self.feed.value,
            may_publish=lambda: self.feed.ready and self._lock.held,
            resync_interval=settings.resync_interval)
        self.registered = False
        self.refusal = ""
        self._serving = False
        self._lost = asyncio.Event()
        try:  # only read: whoever holds the node's lock may still write it
            self.load_checkpoint(repair=False)
        except HostError:
            pass  # logged and shown; the plugin task tries again, repairing it

    def load_checkpoint(self, *, repair: bool = True) -> None:
        """Read the checkpoint file. When it cannot be used, the claims found in the
        records of their CDI specs are held meanwhile. With ``repair`` (the node's lock
        held), a damaged one (empty after a power loss, cut short, edited) is kept as
        ``checkpoint.json.damaged-<time>`` and replaced by one listing those claims, so
        their devices stay held and a later unprepare still cleans up.

        Raises:
            HostError: the file cannot be read, is damaged and ``repair`` is False, or
                cannot be repaired.
        """
        cdi_dir, driver = self.settings.cdi_dir, self.settings.dra_driver
        try:
            self.checkpoint.reload()
        except HostError as exc:
            with contextlib.suppress(HostError):
                self.checkpoint.assume(claims_in_cdi_specs(cdi_dir, driver)[0])
            if not (repair and isinstance(exc, CheckpointDamaged)):
                self._checkpoint_failed(exc)
                raise
            try:
                self._repair(exc)
            except HostError as again:
                self._checkpoint_failed(again)
                raise
        self.checkpoint_error = None

    def _repair(self, damaged: CheckpointDamaged) -> None:
        cdi_dir = self.settings.cdi_dir
        claims, unread = claims_in_cdi_specs(cdi_dir, self.settings.dra_driver)
        for problem in unread:
            log.error("dra: a claim's CDI spec without a usable record (its claim is not "
                      "recovered; an unprepare still removes it): %s", problem)
        aside = self.checkpoint.rebuild(claims)
        notice = (f"dra: {damaged}: kept aside as {aside}, {len(claims)} prepared claims "
                  f"recovered from their CDI specs in {cdi_dir}"
                  + (f", {len(unread)} specs unreadable" if unread else "")
                  + f"; remove {aside.name} once checked")
        log.error("%s", notice)
        self._damaged = (aside, notice)

    def read_checkpoint(self) -> None:
        """Read the checkpoint again, without repairing it (whoever holds ``dra.sock``'s
        lock does that): once this instance owns the node, before its first pass, so the
        claims a previous instance prepared until it exited are holds (a problem is logged,
        shown, and the claims in the CDI specs are held meanwhile)."""
        with contextlib.suppress(HostError):
            self.load_checkpoint(repair=False)

    def _checkpoint_failed(self, exc: HostError) -> None:
        error = f"dra: {exc}"
        if error != self.checkpoint_error:
            log.error("%s; the DRA plugin waits for it (the claims in the CDI specs are held "
                      "meanwhile)", error)
        self.checkpoint_error = error

    # --- what the reconciler reads and hands over ---------------------------------------

    def holds(self) -> Holds:
        """Retention holds of the prepared claims (``{"dra:<resource>": ids}``)."""
        return claim_holds((d.resource_name, d.device_id) for c in self.checkpoint.claims()
                           for d in c.devices if d.resource_name and d.device_id)

    def device_info_files(self) -> frozenset[tuple[str, str]]:
        """(resource name, device id) of every device-info file a prepared claim owns."""
        return frozenset(pair for c in self.checkpoint.claims() for pair in c.device_info)

    @property
    def pools(self) -> dict[str, ResourcePool]:
        """The DRA pools of the latest publication, by resource name."""
        return {pool.resource_name: pool for pool in self._devices.pools.values()}

    @property
    def prepared_claims(self) -> int:
        return len(self.checkpoint.uids())

    def update(self, pools: Mapping[str, ResourcePool], facts: HostFacts) -> None:
        """The DRA pools (by resource name) of the latest publication; cheap, never waits."""
        self._facts = facts
        if not pools and (self._devices.pools or not self.feed.ready):
            log.warning('dra: no pool is served through DRA (the config marks none "dra": '
                        "true; --dra=all serves every pool): the ResourceSlices list no "
                        "device")
        devices = self._devices.updated(pools)
        if self.feed.ready and devices is self._devices:
            return  # the same pool objects: nothing changed
        self._devices = devices
        self.feed.publish(devices.devices)
        self.slices.changed()

    def problems(self) -> list[str]:
        """Why DRA mode is not ready (``/readyz``)."""
        out = [self.waiting] if self.waiting is not None else []
        if self.checkpoint_error is not None:
            out.append(self.checkpoint_error)
        if self._damaged is not None and self._damaged[0].exists():
            out.append(self._damaged[1])
        if self.slices.error is not None:
            out.append(self.slices.error)
        if self.refusal:
            out.append(f"dra: the kubelet refused the DRA plugin: {self.refusal}")
        elif not self.registered:
            out.append(f"dra: plugin {self.settings.dra_driver} not registered with the "
                       f"kubelet (registration socket {self.registration})")
        return out

    def _claims_changed(self) -> None:
        self.claim_changes += 1
        self._on_claims()

    def _on_status(self, registered: bool, error: str) -> None:
        self.registered, self.refusal = registered, "" if registered else error
        if registered:  # a (re)starting kubelet deletes our slices: publish them again
            self.slices.registered()

    # --- supervised tasks ----------------------------------------------------------------

    def _endpoint(self) -> str:
        """``dra.sock`` as the kubelet sees it (GetInfo's endpoint)."""
        root = self.settings.kubelet_root_dir
        if root is None or self.settings.kubelet_plugins_dir is not None:
            return str(self.socket)
        return str(Path(root) / "plugins" / self.settings.dra_driver / "dra.sock")

    async def run_plugin(self, ready: Ready) -> None:
        """Serve the DRA plugin until cancelled (then its sockets are removed).

        Raises:
            SriovdpError: one of its sockets was deleted (the supervisor serves it again).
        """
        self.registered = False
        self._lost = asyncio.Event()
        await self._own_socket()
        try:
            await self._serve(ready)
        finally:
            self._lock.release()

    async def _own_socket(self, poll: float = 0.5) -> None:
        """Hold the instance's and ``dra.sock``'s locks (waiting while another sriovdp
        instance holds them: two would each keep a checkpoint of their own), then read the
        checkpoint again (the other instance may have prepared claims meanwhile)."""
        while not self._lock.try_acquire():
            if self.waiting is None:
                self.waiting = (f"dra: waiting for another sriovdp instance (pid "
                                f"{self._lock.holder()}) to let go of {self.socket}")
                log.warning("%s", self.waiting)
            await asyncio.sleep(poll)
        if self.waiting is not None:
            log.info("dra: the other instance let go of %s; taking over", self.socket)
            self.waiting = None
            self._reload_checkpoint()
        elif self.checkpoint_error is not None:
            self._reload_checkpoint()
        self.slices.force()

    def _reload_checkpoint(self) -> None:
        try:
            self.load_checkpoint()
        finally:
            self._claims_changed()  # the holds may differ either way

    async def _serve(self, ready: Ready) -> None:
        server = DraPluginServer(self.preparer, socket=self.socket,
                                 registration=self.registration, endpoint=self._endpoint(),
                                 health=self.feed, on_status=self._on_status)
        await server.start()
        self._serving = True
        ready()
        try:
            await self._lost.wait()
            raise SriovdpError(f"a DRA plugin socket ({self.socket} or {self.registration}) "
                               "was deleted")
        finally:
            self._serving = False
            self.registered = False
            await server.stop()

    async def watch_sockets(self, ready: Ready) -> None:
        """Notice a deleted ``dra.sock`` or registration socket (the kubelet can reach the
        plugin only through both)."""
        ready()
        await watch_socket_dirs([self.registration.parent, self.socket.parent],
                                self._socket_event)

    def _socket_event(self, directory: Path, name: str, created: bool) -> None:
        if self._serving and not (self.socket.exists() and self.registration.exists()):
            log.warning("dra: a plugin socket is gone (%s); serving it again",
                        directory / name if name else directory)
            self._lost.set()
