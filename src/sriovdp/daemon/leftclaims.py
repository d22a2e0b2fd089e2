"""DRA claims prepared by an sriovdp driver this instance does not serve: the node moved
back to the device plugin (no ``--dra``), or the driver name or plugins dir changed. Their
devices are withheld from every pool until the claims are unprepared (by running that
driver again) or the checkpoint is removed: offering them would give a VF in use to a
second pod."""

from __future__ import annotations

import logging
from pathlib import Path

from sriovdp.errors import HostError
from sriovdp.host.draclaims import ClaimCheckpoint, claim_checkpoints, claims_in_cdi_specs
from sriovdp.model.dra.prepare import PreparedClaim
from sriovdp.model.retention import Holds

log = logging.getLogger("sriovdp.daemon")


class LeftClaims:
    """The holds of the claim checkpoints under ``plugins_dir`` other than ``serving``.

    Args:
        plugins_dir: the kubelet's plugins dir as this process sees it.
        serving: the checkpoint this instance's DRA plugin keeps (None without ``--dra``).
        cdi_dir: where the claims' CDI specs are: a damaged checkpoint's claims are read
            from the records in them (None: not at all).
    """

    def __init__(self, plugins_dir: Path, serving: Path | None, *,
                 cdi_dir: Path | None = None) -> None:
        self._dir = plugins_dir
        self._cdi_dir = cdi_dir
        self._serving = serving
        self._holds: Holds = {}
        self._seen: dict[Path, int] = {}

    def holds(self) -> Holds:
        """``{"dra-left:<driver dir>:<resource>": device ids}``: keys no pool serves."""
        return self._holds

    def refresh(self) -> None:
        """Read the checkpoint files again (a full pass does, in a worker thread)."""
        out: dict[str, set[str]] = {}
        seen: dict[Path, int] = {}
        for path in claim_checkpoints(self._dir):
            if path == self._serving:
                continue
            try:
                claims = ClaimCheckpoint(path).claims()
            except HostError as exc:  # another vendor's file, or a damaged one of ours
                log.debug("not a usable sriovdp claim checkpoint: %s", exc)
                claims = self._from_cdi_specs(path.parent.name)  # (the warning below names them)
            for claim in claims:
                for dev in claim.devices:
                    if dev.resource_name and dev.device_id:
                        key = f"dra-left:{path.parent.name}:{dev.resource_name}"
                        out.setdefault(key, set()).add(dev.device_id)
            if claims:
                seen[path] = len(claims)
        for path, count in seen.items():
            if self._seen.get(path) != count:
                log.warning("%s lists %d prepared DRA claims of a driver this instance does "
                            "not serve: their devices are offered by no pool until the "
                            "claims are unprepared (run with --dra --dra-driver %s) or the "
                            "file is removed", path, count, path.parent.name)
        self._seen = seen
        self._holds = {key: frozenset(ids) for key, ids in out.items()}

    def _from_cdi_specs(self, driver: str) -> list[PreparedClaim]:
        if self._cdi_dir is None:
            return []
        try:
            return claims_in_cdi_specs(self._cdi_dir, driver)[0]
        except HostError as exc:
            log.warning("dra: %s", exc)
            return []
