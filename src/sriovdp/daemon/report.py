"""What the daemon logs about its pools: the summary when pools appear (every pool, its
device count and socket, why an empty pool is empty, selector identifiers that name nothing
on this host) and one line per retention note (a held device kept, withheld, released...)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from sriovdp.model.config import Config
from sriovdp.model.devices import Inventory
from sriovdp.model.dra.modes import DRA_KEY_PREFIX, is_dra_key
from sriovdp.model.pools import ResourcePool, explain, nearest_misses, unmatched_identifiers

log = logging.getLogger("sriovdp.daemon")


def log_summary(pools: Mapping[str, ResourcePool], inventory: Inventory, config: Config, *,
                default_prefix: str, socket_dir: Path) -> None:
    """One line per pool; for an empty pool its nearest candidates; a warning per selector
    identifier that names no device on this host."""
    empty = [name for name, pool in pools.items() if not pool.devices]
    verdicts = explain(inventory, config.resources, pools, default_prefix=default_prefix,
                       only=empty)
    for name, pool in pools.items():
        count = len(pool.devices)
        log.info("pool %s: %d device%s, socket %s", name, count, "" if count == 1 else "s",
                 socket_dir / pool.socket_name, extra={"resource": name})
        if not pool.devices and name in verdicts:
            misses = nearest_misses(verdicts[name])
            hint = ", ".join(f"{v.address} ({v.reason})" for v in misses[:5]) or \
                f"no {pool.config.kind} candidate on this host"
            log.warning("pool %s is empty; nearest candidates: %s", name, hint,
                        extra={"resource": name})
    for path, value in unmatched_identifiers(inventory, config.resources):
        log.warning("%s: %r matches no device on this host", path, value)


def log_retention(notes: tuple[tuple[str, ...], ...]) -> None:
    """One log line per retention note (:attr:`~sriovdp.model.retention.Retained.notes`)."""
    for note in notes:
        what, pool, dev = (*note, "")[:3]
        if is_dra_key(pool):  # a DRA pool: its holds are prepared claims
            pool = f"DRA pool {pool[len(DRA_KEY_PREFIX):]} (a prepared claim)"
        extra = {"pci": dev, "resource": pool}
        if what == "kept":
            log.warning("%s is held by a pod through %s: offered only there (not by %s) until "
                        "it is released", dev, pool, note[3] or "any other pool", extra=extra)
        elif what == "withheld":
            log.warning("%s is held by a pod through %s, which is not configured: no pool "
                        "offers it until it is released", dev, pool, extra=extra)
        elif what == "released":
            log.info("%s was released: it follows the config again", dev, extra=extra)
        elif what == "vanished":
            log.warning("%s vanished from the host; reported Unhealthy", dev, extra=extra)
        elif what == "dropped":
            log.info("%s is gone and not held by a pod; removed from %s", dev, pool,
                     extra=extra)
        elif what == "draining":
            log.warning("%s is no longer configured but pods hold its devices: its endpoint "
                        "stays until they are released", pool, extra={"resource": pool})
