"""The daemon's best knowledge of what pods hold: the last pod resources answer, what the
kubelet's device checkpoint records, and what this process allocated since. A failed call
never releases a hold: it keeps the last answer and is retried with back-off."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sriovdp.daemon.checkpointgrants import CheckpointGrants
from sriovdp.kubelet.checkpoint import KubeletCheckpoint
from sriovdp.kubelet.podresources import PodResources, PodResourcesError
from sriovdp.kubelet.probe import listening
from sriovdp.model.grants import RewriteSchedule
from sriovdp.model.retention import Holds

log = logging.getLogger("sriovdp.daemon")

WRITE_MARGIN = 0.5
"""Seconds after one of our Allocates from which a kubelet checkpoint lacking its grant
shows that the kubelet no longer has it (the kubelet records a grant as soon as our reply
reaches it; a file it was already writing then can end a little later)."""


class HoldTracker:
    """Asks :class:`PodResources` when the reconciler needs to know, never on Allocate.

    Args:
        source: the pod resources port.
        first_backoff: seconds before the first retry after a failure; doubles.
        max_backoff: the longest wait between retries.
        clock: monotonic seconds.
        grace: the most seconds an allocation of this process counts as held on its own:
            until an answer of the API lists it, or the kubelet's checkpoint is written
            :data:`WRITE_MARGIN` after it (the file then holds it, or lacks it because the
            admission failed). The kubelet records a grant only once every resource of the
            container is allocated (another plugin's Allocate may be slow), and an answer
            in between lacks it (another pool could then offer the device to a second pod).
        kubelet_socket: the kubelet's ``kubelet.sock``; its change time tells when the
            kubelet started.
        pod_resources_socket: the kubelet's pod resources socket: created at a kubelet's
            start too, before its device manager re-creates ``kubelet.sock`` (the later of
            the two tells when the kubelet started).
        kubelet_settle: for this many seconds after the kubelet started its answers may
            lack pods it has not got from the API server yet (it adds them one by one): an
            answer then adds holds but releases none, and the first publication waits
            until the kubelet is this old (0: every answer is believed at once).
        wall: wall-clock seconds (compared with the socket's change time).
        checkpoint: the kubelet's device checkpoint, read (when it changed) each time the
            API is asked: its grants are held too. It lists what the API leaves out:
            devices of plain init containers, and after a kubelet restart those of pods
            the kubelet has not got back yet. It also keeps an ended pod's entries until
            the kubelet next rewrites the file: see :meth:`rewrite_due`.
        read_deadline: seconds a read of the checkpoint may take before its last grants
            are used instead (the read goes on in its thread).
        rewrite_backoff: the first and the longest wait between two requests for the same
            unconfirmed grants (see :meth:`rewrite_due`).
    """

    def __init__(self, source: PodResources, *, first_backoff: float = 0.5,
                 max_backoff: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 grace: float = 60.0, kubelet_socket: Path | None = None,
                 pod_resources_socket: Path | None = None,
                 kubelet_settle: float = 0.0, wall: Callable[[], float] = time.time,
                 checkpoint: KubeletCheckpoint | None = None,
                 rewrite_backoff: tuple[float, float] = (2.0, 30.0),
                 read_deadline: float = 2.0) -> None:
        self._source = source
        self._started_by = tuple(p for p in (kubelet_socket, pod_resources_socket)
                                 if p is not None)
        self._grants = (CheckpointGrants(checkpoint, kubelet_sockets=self._started_by,
                                         read_deadline=read_deadline, clock=clock, wall=wall)
                        if checkpoint is not None else None)
        self._rewrite = RewriteSchedule(*rewrite_backoff)
        self._kubelet_socket = kubelet_socket
        self._settle = kubelet_settle
        self._wall = wall
        self._first = first_backoff
        self._max = max_backoff
        self._clock = clock
        self._backoff = first_backoff
        self._grace = grace
        self._known: dict[str, frozenset[str]] = {}
        self._answered = False
        self._since: dict[str, dict[str, float]] = {}  # allocated since: resource → id → when
        self.retry_at: float | None = None
        """When a failed call may be retried (monotonic seconds); None when the last call
        answered."""
        self.failures = 0
        """Calls that failed or answered incompletely (a missing socket is not counted)."""
        self.last_error = ""
        self.allocations = 0
        """Allocate calls recorded so far: a caller that decided from :meth:`current` off the
        event loop compares it to know whether an Allocate came in meanwhile."""
        self.absent = False
        """The last call found no socket to ask (the API is not mounted, or the kubelet is
        not up)."""
        self.waiting = ""
        """Why :meth:`first_answer` is still waiting ("" when it is not)."""

    @property
    def answered(self) -> bool:
        """The API answered at least once."""
        return self._answered

    def current(self) -> Holds:
        """The last answer, plus what the kubelet's checkpoint records, plus the devices
        this process allocated since the API was asked."""
        recorded = self._grants.holds if self._grants is not None else {}
        if not self._since and not recorded:
            return self._known
        out = {name: set(ids) for name, ids in self._known.items()}
        for extra in (recorded, self._since):
            for name, ids in extra.items():
                out.setdefault(name, set()).update(ids)
        return {name: frozenset(ids) for name, ids in out.items()}

    @property
    def checkpoint_error(self) -> str:
        """Why the kubelet's device checkpoint could not be read ("" when it could)."""
        return self._grants.error if self._grants is not None else ""

    def allocated(self, resource: str, ids: list[str]) -> None:
        """Hook of every successful Allocate: held from now on (no call is made)."""
        now = self._clock()
        self.allocations += 1
        self._since.setdefault(resource, {}).update(dict.fromkeys(ids, now))

    def adopt(self, allocations: Mapping[str, Mapping[str, float]]) -> None:
        """Hold devices a previous process allocated (resource → device id → seconds since
        the Allocate, from its allocation log) as if this one had, for what is left of the
        grace: an admission may still wait on another plugin, and until it ends neither
        the API nor the kubelet's checkpoint shows the grant (break-it 5: a restart that
        moved the VF to another pool offered it there)."""
        now = self._clock()
        count = 0
        for name, ids in allocations.items():
            for dev_id, age in ids.items():
                t = now - max(0.0, age)
                if now - t < self._grace and self._since.get(name, {}).get(dev_id, t) <= t:
                    self._since.setdefault(name, {})[dev_id] = t
                    count += 1
        if count:
            log.info("%d device(s) allocated in the last %.0f s (allocation log) are held "
                     "until the kubelet lists or records them", count, self._grace)

    @property
    def grace(self) -> float:
        """The most seconds an allocation counts as held on its own."""
        return self._grace

    def unconfirmed(self) -> frozenset[tuple[str, str]]:
        """(resource, device id) the kubelet's checkpoint grants but the last answer does
        not list: a plain init container's, a pod's the kubelet has not got back yet, or
        one of a pod that ended (the kubelet has forgotten it but not rewritten the file)."""
        recorded = self._grants.holds if self._grants is not None else {}
        return frozenset((name, i) for name, ids in recorded.items()
                         for i in ids - self._known.get(name, frozenset())
                         if i not in self._since.get(name, {}))

    def awaiting_rewrite(self) -> frozenset[tuple[str, str]]:
        """(resource, device id) a fresh write of the kubelet's checkpoint would settle: the
        :meth:`unconfirmed` grants, and our own allocations that neither source lists
        :data:`WRITE_MARGIN` after them (the kubelet may never have recorded them: an
        admission that failed after our Allocate)."""
        now = self._clock()
        own = {(name, i) for name, ids in self._since.items()
               for i, t in ids.items() if now - t >= WRITE_MARGIN}
        return self.unconfirmed() | own

    def rewrite_due(self) -> bool:
        """Should the kubelet be asked now to rewrite its checkpoint (by resending a device
        list, after which its device manager writes the file)?

        Each answer of the API made the kubelet forget ended pods (``List`` does so first),
        but only its next write drops their entries from the file, and only a write after
        one of our Allocates tells whether the kubelet recorded it (asked for those also
        while the API fails: the kubelet records our grant as soon as our Allocate returns,
        so its rewrite holds it even while another plugin of the container is slow, past
        the grace). Asked once for each new
        set of :meth:`awaiting_rewrite` grants, then again after a wait doubling from 2 s to
        30 s while that set stays the same (a live init container's grant stays in every
        rewrite)."""
        awaiting = self.awaiting_rewrite()
        if (not self._answered or self.retry_at is not None) and not any(
                i in self._since.get(name, {}) for name, i in awaiting):
            return False  # the kubelet was not asked just now (nor is an Allocate of ours due)
        return self._rewrite.due(awaiting, self._clock())

    def own_too_young(self) -> bool:
        """Is an allocation of ours younger than :data:`WRITE_MARGIN` (too young for a
        rewrite of the kubelet's checkpoint to tell about it)?"""
        now = self._clock()
        return any(now - t < WRITE_MARGIN for ids in self._since.values() for t in ids.values())

    def rewrite_asked(self) -> None:
        """The kubelet was asked to rewrite its checkpoint (see :meth:`rewrite_due`)."""
        self._rewrite.asked(self.awaiting_rewrite(), self._clock())

    def due(self) -> bool:
        """May :meth:`refresh` call the API now (not inside a back-off)?"""
        return self.retry_at is None or self._clock() >= self.retry_at

    async def refresh(self) -> bool:
        """Read the kubelet's checkpoint if it changed, and ask the API unless a back-off is
        running. True when the API answered."""
        if self._grants is not None:
            await self._grants.read()
        answered = await self._ask()
        settling = self.kubelet_settling() > 0
        if self._grants is not None:
            self._grants.count(self._known, settling=settling)
        if not settling:  # nor does an allocation of ours, which no answer listed yet, end
            self._end_own_allocations(self._known if answered else {})
        return answered

    async def _ask(self) -> bool:
        if not self.due():
            return False
        try:
            held = await self._source.held()
        except PodResourcesError as exc:
            self._failed(exc)
            return False
        if self.retry_at is not None:
            log.info("pod resources API answers again")
        if self._grants is not None:
            self._grants.answered(held)
        settling = self.kubelet_settling() > 0
        if self._answered and settling:
            held = _union(held, self._known)  # releases wait until the kubelet has its pods
        self._known, self._answered = held, True
        self.retry_at, self._backoff, self.last_error = None, self._first, ""
        self.absent = False
        return True

    def _end_own_allocations(self, listed: Holds) -> None:
        """Our allocations that ``listed`` (the answer just received, or nothing when the
        API did not answer) lists, or that the kubelet's file was written after, are held by
        them from now on (the file then has it, or the pod is gone); one neither shows yet
        may still be under way at the kubelet, for the grace at most. A file written before
        the allocation says nothing of it, even if it names the VF: its entry may be an
        ended pod's, which the last answer no longer lists."""
        now = self._clock()
        written = self._grants.written_at if self._grants is not None else None
        for name in list(self._since):
            shown = listed.get(name, frozenset())
            later = {i: t for i, t in self._since[name].items()
                     if i not in shown and t >= now - self._grace
                     and (written is None or written < t + WRITE_MARGIN)}
            if later:
                self._since[name] = later
            else:
                del self._since[name]

    def _failed(self, exc: PodResourcesError) -> None:
        if not exc.absent:  # no socket (the kubelet restarting, a node booting) is no error
            self.failures += 1
        self.last_error = str(exc)
        was_absent, self.absent = self.absent, exc.absent
        if exc.absent:  # no socket: looking again costs a stat, so no growing back-off
            self.retry_at = self._clock() + self._first
            if not was_absent:
                log.warning("pod resources API not there (%s): holds kept as last known", exc)
            return
        self.retry_at = self._clock() + self._backoff
        log.warning("pod resources API failed (%s): holds kept as last known; retrying "
                    "in %.1f s", exc, self._backoff)
        self._backoff = min(self._backoff * 2, self._max)

    async def first_answer(self, *, grace: float = 1.0) -> None:
        """Wait, before the first publication, until the pod resources API has answered,
        from a kubelet that has had ``kubelet_settle`` seconds to get its pods.

        Publishing without its answer could offer a device a pod holds from a second pool
        (a config changed, or a VF was rebound, while the daemon was down). While the API
        is there but fails (the kubelet's rate limit, a restart) it is asked again after
        the back-off. A missing socket is waited out while the kubelet itself is down (it
        restarts with us, and nothing can register meanwhile): while nothing accepts on
        ``kubelet_socket``, whose file a killed kubelet leaves behind. Once the kubelet
        has been up ``grace`` seconds without the socket, the API is taken as not mounted
        and only this process's own allocations are known.
        """
        while await self._ask_until_answered(grace):
            settling = self.kubelet_settling()
            if settling <= 0:
                break
            self.waiting = (f"waiting {settling:.1f} s for the kubelet, started "
                            f"{self._settle - settling:.1f} s ago, to list every pod before "
                            "the first publication")
            log.info("%s", self.waiting)
            await asyncio.sleep(settling)
        self.waiting = ""

    async def _ask_until_answered(self, grace: float) -> bool:
        """Ask until the API answers (True) or is taken as not mounted (False)."""
        up_since: float | None = None
        while not await self.refresh():
            if self.absent:
                if self._kubelet_socket is None:
                    return False
                if not await listening(self._kubelet_socket):
                    up_since = None
                    self.waiting = (f"waiting for the kubelet ({self._kubelet_socket} does "
                                    "not accept connections) before the first publication")
                else:
                    up_since = self._clock() if up_since is None else up_since
                    if self._clock() - up_since >= grace:
                        log.warning("pod resources API not available (%s) although the "
                                    "kubelet is up: only this process's own allocations "
                                    "are known", self.last_error)
                        return False
                    self.waiting = ("waiting for the pod resources API before the first "
                                    f"publication: {self.last_error}")
            else:
                self.waiting = ("waiting for the pod resources API before the first "
                                f"publication: {self.last_error}")
            retry_at = self.retry_at if self.retry_at is not None else self._clock()
            await asyncio.sleep(min(max(0.0, retry_at - self._clock()), 0.5))
        return True

    def kubelet_settling(self) -> float:
        """Seconds until the kubelet has been up ``kubelet_settle`` seconds (0: it has, or
        its age is unknown)."""
        if self._settle <= 0:
            return 0.0
        created = []
        for path in self._started_by:
            try:
                created.append(os.stat(path).st_ctime)
            except OSError:
                continue
        if not created:
            return 0.0
        return max(0.0, min(self._settle, max(created) + self._settle - self._wall()))


def _union(a: Holds, b: Holds) -> dict[str, frozenset[str]]:
    empty: frozenset[str] = frozenset()
    return {name: a.get(name, empty) | b.get(name, empty) for name in a.keys() | b.keys()}
