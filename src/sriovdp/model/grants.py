"""Which of the grants in the kubelet's device checkpoint still hold a device, and when to ask
the kubelet to rewrite that file: pure decisions over what the daemon read.

The file keeps an ended pod's entries until the kubelet next writes it. A grant an answer of
the running kubelet's pod resources ``List`` showed, and a later answer lacks, belongs to a
pod that ended; a grant no answer showed (a plain init container's, or a pod's a restarted
kubelet has not got back yet) holds until the file drops it. The kubelet is asked to rewrite
the file through a live endpoint's list sent again or, with none (every pool served through
DRA), through a stand-in endpoint with no devices (:func:`standin_resource` names it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from sriovdp.model.retention import Holds

Recorded = Mapping[str, Mapping[str, str]]
"""The file's grants: extended resource name → device id → pod UID."""

Grant = tuple[str, str, str]
"""(extended resource name, device id, pod UID)."""


def grants_listed(recorded: Recorded, answer: Holds) -> set[Grant]:
    """The file's grants that a pod resources ``answer`` lists."""
    empty: frozenset[str] = frozenset()
    return {(name, i, pod) for name, ids in recorded.items()
            for i, pod in ids.items() if i in answer.get(name, empty)}


def all_grants(recorded: Recorded) -> set[Grant]:
    return {(name, i, pod) for name, ids in recorded.items() for i, pod in ids.items()}


def holding(recorded: Recorded, known: Holds, listed: set[Grant], *,
            settling: bool) -> dict[str, frozenset[str]]:
    """The file's grants that hold: all while the kubelet settles (its answers may lack pods
    it has not got back); else those the last answer (``known``) lists or that no answer of
    this kubelet listed before (``listed``)."""
    empty: frozenset[str] = frozenset()
    return {name: frozenset(i for i, pod in ids.items()
                            if settling or i in known.get(name, empty)
                            or (name, i, pod) not in listed)
            for name, ids in recorded.items()}


@dataclass(slots=True)
class RewriteSchedule:
    """When to ask the kubelet to rewrite its checkpoint for a set of pending grants: at once
    for each new set, then again after ``first`` seconds doubling to ``longest`` while the
    set stays the same (a live init container's grant stays in every rewrite)."""

    first: float = 2.0
    longest: float = 30.0
    _last: tuple[frozenset[tuple[str, str]], float, float] | None = None

    def due(self, pending: frozenset[tuple[str, str]], now: float) -> bool:
        if not pending:
            self._last = None
            return False
        if self._last is None or self._last[0] != pending:
            return True
        _, at, wait = self._last
        return now >= at + wait

    def asked(self, pending: frozenset[tuple[str, str]], now: float) -> None:
        if self._last is None or self._last[0] != pending:
            self._last = (pending, now, self.first)
        else:
            self._last = (pending, now, min(self._last[2] * 2, self.longest))


STANDIN_BACKOFF = (2.0, 300.0)
"""The first and the longest wait between two stand-in endpoints for the same pending grants
(:class:`RewriteSchedule`): a stand-in is a registration the kubelet logs, so while a live
init container's grant stays in every rewrite it is opened again at most every 5 min (a
resend of a live endpoint's list costs nothing and keeps the 30 s cap)."""


def standin_resource(awaiting: Iterable[tuple[str, str]], ours: Collection[str],
                     candidates: Iterable[str], served: Collection[str]) -> str | None:
    """The extended resource a stand-in device plugin endpoint registers as, to make the
    kubelet rewrite its checkpoint when no endpoint of ours streams a list to resend.

    Args:
        awaiting: (resource, device id) grants a rewrite would settle.
        ours: the device ids of this host's functions: grants of other devices (another
            vendor's plugin) never call for a stand-in.
        candidates: resource names of our pools served through DRA: the stand-in takes the
            name of an awaiting grant's resource when it is one of them (the kubelet knew it
            as a device plugin resource before the move), else the first in sorted order.
            Never another name: a registration of another plugin's resource would take it
            over at the kubelet.
        served: resource names a device plugin pool or endpoint of ours serves: never a
            stand-in's (its registration would replace the pool's at the kubelet; a resend
            of the pool's list covers it).

    None when no awaiting grant is of our devices, or no candidate is left.
    """
    mine = {name for name, dev in awaiting if dev in ours}
    if not mine:
        return None
    allowed = sorted(set(candidates) - set(served))
    return next((name for name in allowed if name in mine), allowed[0] if allowed else None)


def standin_reason(grants: Collection[tuple[str, str]], *, shown: int = 3) -> str:
    """Why a stand-in is opened, for its log line: the first ``shown`` grants named."""
    listed = ", ".join(f"{name} {dev}" for name, dev in sorted(grants)[:shown])
    more = f" and {len(grants) - shown} more" if len(grants) > shown else ""
    return (f"its file still grants {listed}{more}, which pod resources does not list, and "
            "no device plugin endpoint streams to send a list again")
