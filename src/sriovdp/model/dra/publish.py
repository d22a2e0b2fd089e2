"""From the slices the apiserver has to the slices a node wants: what to create, replace, delete.

The publisher (an adapter on the official client, not yet written) lists the node's slices
of our driver (field selector ``spec.nodeName=<node>,spec.driver=<driver>``) and then:

1. :func:`published_state` — after a restart, the pool state to continue from: the highest
   generation found and, when that generation's slices are complete, their devices; so
   :func:`~sriovdp.model.dra.slices.advance` keeps the generation when nothing changed and
   bumps it past anything published before otherwise.
2. :func:`plan_sync` — creates and replacements first (the new generation), deletions of
   stale slices last: a consumer that sees a mix ignores the lower generation, and
   ``resourceSliceCount`` tells it when the new one is complete.

Slices are compared by ``spec`` and owner references only, ignoring what the apiserver adds
(``metadata.resourceVersion`` ..., a taint's ``timeAdded``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sriovdp.model.dra.slices import PoolState

_INDEX_RE = re.compile(r"-(\d+)$")

Slice = Mapping[str, Any]


def _index(s: Slice) -> int:
    m = _INDEX_RE.search(s["metadata"]["name"])
    return int(m.group(1)) if m else 0


def published_state(existing: Sequence[Slice], *, node_name: str) -> PoolState | None:
    """The state of the node's pool as published, or None when nothing is.

    ``existing``: the node's slices of our driver, as listed (plain dicts). When the slices
    of the highest generation are fewer than their ``resourceSliceCount`` (a publication cut
    short), the devices are unknown and an empty list is returned with that generation, so
    the next publication bumps it.
    """
    mine = [s for s in existing if s["spec"]["pool"]["name"] == node_name]
    if not mine:
        return None
    generation = max(int(s["spec"]["pool"]["generation"]) for s in mine)
    current = sorted((s for s in mine if s["spec"]["pool"]["generation"] == generation),
                     key=_index)
    if len(current) != current[0]["spec"]["pool"]["resourceSliceCount"]:
        return PoolState(generation, [])
    return PoolState(generation, [comparable_device(d) for s in current
                                  for d in s["spec"].get("devices") or []],
                     tuple(len(s["spec"].get("devices") or []) for s in current))


def comparable_device(device: Mapping[str, Any]) -> dict[str, Any]:
    """A listed device as it compares with a desired one (a taint's ``timeAdded`` left out)."""
    out = dict(device)
    if "taints" in out:
        out["taints"] = [{k: v for k, v in t.items() if k != "timeAdded"}
                         for t in out["taints"]]
    return out


def _comparable(s: Slice) -> tuple[Any, Any]:
    spec = dict(s["spec"])
    spec["devices"] = [comparable_device(d) for d in spec.get("devices") or []]
    return spec, s["metadata"].get("ownerReferences")


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """What to send, in this order.

    Attributes:
        create: slices to create.
        replace: desired slices whose name exists with other content (the adapter sends
            them with the existing ``resourceVersion``).
        delete: names of slices that are no longer wanted.
    """

    create: tuple[Slice, ...] = ()
    replace: tuple[Slice, ...] = ()
    delete: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.replace or self.delete)


def plan_sync(existing: Sequence[Slice], desired: Sequence[Slice]) -> SyncPlan:
    """Compare the node's listed slices with the desired ones (both of our driver)."""
    have = {s["metadata"]["name"]: s for s in existing}
    want = {s["metadata"]["name"] for s in desired}
    create = tuple(s for s in desired if s["metadata"]["name"] not in have)
    replace = tuple(s for s in desired if s["metadata"]["name"] in have
                    and _comparable(have[s["metadata"]["name"]]) != _comparable(s))
    delete = tuple(sorted(name for name in have if name not in want))
    return SyncPlan(create, replace, delete)
