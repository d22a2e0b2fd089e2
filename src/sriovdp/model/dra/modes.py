"""Which config pools DRA serves, and how they share one pool set with the device plugin's.

With ``--dra`` a pool marked ``"dra": true`` (``--dra=all``: every pool) is served through
DRA instead of a device plugin socket. Both kinds stay in **one** pool set, so the same
retention (:mod:`sriovdp.model.retention`) decides for both: a DRA pool's key is its
resource name behind :data:`DRA_KEY_PREFIX` (``"dra:intel.com/net"``, which no extended
resource name can be), and a prepared DRA claim is a hold through that key. So:

* a VF a pod holds through a device plugin pool stays in that pool, and out of every DRA
  pool, when a config change moves it to DRA, until the pod releases it;
* a VF prepared for a DRA claim stays in its DRA pool, and out of every device plugin pool,
  when the config moves it back, until the claim is unprepared;
* a VF held through a resource that is no pool of ours any more (a change made while the
  daemon was down) is withheld from both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from sriovdp.errors import ConfigProblem
from sriovdp.model.config.report import join
from sriovdp.model.config.resources import Config, ResourceConfig
from sriovdp.model.pools import PoolSet, ResourcePool

DRA_KEY_PREFIX = "dra:"


class DraMode(StrEnum):
    """``--dra`` (``marked``: pools with ``"dra": true``) or ``--dra=all``."""

    MARKED = "marked"
    ALL = "all"


def served_by_dra(resource: ResourceConfig, mode: DraMode | None) -> bool:
    """Is ``resource`` a DRA pool under ``mode`` (None: no ``--dra``)?"""
    return mode is DraMode.ALL or (mode is DraMode.MARKED and resource.dra)


def dra_key(resource_name: str) -> str:
    """The pool-set key of a DRA pool: ``"dra:intel.com/net"``."""
    return DRA_KEY_PREFIX + resource_name


def is_dra_key(key: str) -> bool:
    return key.startswith(DRA_KEY_PREFIX)


def keyed_by_mode(pools: Mapping[str, ResourcePool], mode: DraMode | None
                  ) -> dict[str, ResourcePool]:
    """``pools`` (as :func:`~sriovdp.model.pools.build_pools` keys them) with each DRA pool
    under its :func:`dra_key`; without a mode, ``pools`` as they are."""
    if mode is None:
        return dict(pools)
    return {dra_key(name) if served_by_dra(pool.config, mode) else name: pool
            for name, pool in pools.items()}


def device_plugin_pools(pools: PoolSet) -> dict[str, ResourcePool]:
    """The pools served by device plugin sockets."""
    return {name: pool for name, pool in pools.items() if not is_dra_key(name)}


def dra_pools(pools: PoolSet) -> dict[str, ResourcePool]:
    """The pools served through DRA, by resource name."""
    return {name[len(DRA_KEY_PREFIX):]: pool for name, pool in pools.items()
            if is_dra_key(name)}


def claim_holds(prepared: Iterable[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """Retention holds of prepared DRA claims: ``(resource name, device id)`` of each
    prepared device → ``{dra_key(resource name): ids}``."""
    out: dict[str, set[str]] = {}
    for resource_name, dev_id in prepared:
        out.setdefault(dra_key(resource_name), set()).add(dev_id)
    return {key: frozenset(ids) for key, ids in out.items()}


def mode_problems(config: Config, mode: DraMode | None) -> list[ConfigProblem]:
    """A pool marked ``"dra": true`` while the daemon runs without ``--dra``: it would be
    served as a device plugin pool against the operator's intent (exit before any socket).

    DRA has no per-pool size limit to check: a pool of any size is split over slices of at
    most 128 devices (64 with taints), and a device has at most 22 of the 32 attributes
    the API allows (:mod:`sriovdp.model.dra.attributes`)."""
    if mode is not None:
        return []
    return [ConfigProblem(join(join("resourceList", i), "dra"),
                          "got true, but --dra is not given: add --dra (or --dra=all) to "
                          "serve this pool through DRA, or remove the key")
            for i, resource in enumerate(config.resources) if resource.dra]
