"""DRA mode's claim checkpoint: which claims this node prepared, kept across restarts.

One JSON file (``<plugin dir>/checkpoint.json`` in production, next to ``dra.sock`` under
``/var/lib/kubelet/plugins/<driver>/``), rewritten atomically on every change::

    {"version": 1, "claims": {"<uid>": {"namespace": "default", "name": "c1",
      "specFile": "sriov-dra-<uid>.yaml", "devices": [{"requestNames": ["nic"],
      "poolName": "worker-1", "deviceName": "0000-3b-02-1", "cdiDeviceIds": ["..."],
      "resourceName": "intel.com/sriov_net", "deviceId": "0000:3b:02.1"}],
      "deviceInfo": [["intel.com/sriov_net", "0000:3b:02.1"]]}}}

With it, NodeUnprepareResources after a restart still knows the claim's CDI spec file
although the claim may be gone from the apiserver, and a repeated NodePrepareResources
answers what it answered before. A file that cannot be parsed is an error naming it, never
silently replaced: the claims it lists would otherwise leak their specs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sriovdp.errors import HostError
from sriovdp.host.files import write_atomically
from sriovdp.model.dra.prepare import ClaimRef, PreparedClaim, PreparedDevice

VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o750


def _device_doc(d: PreparedDevice) -> dict[str, Any]:
    return {"requestNames": list(d.request_names), "poolName": d.pool_name,
            "deviceName": d.device_name, "cdiDeviceIds": list(d.cdi_device_ids),
            "resourceName": d.resource_name, "deviceId": d.device_id}


def _claim(uid: str, doc: dict[str, Any]) -> PreparedClaim:
    devices = tuple(
        PreparedDevice(tuple(d["requestNames"]), d["poolName"], d["deviceName"],
                       tuple(d["cdiDeviceIds"]), str(d.get("resourceName", "")),
                       str(d.get("deviceId", "")))
        for d in doc["devices"]
    )
    info = tuple((r, i) for r, i in doc.get("deviceInfo", []))
    return PreparedClaim(ClaimRef(doc["namespace"], doc["name"], uid), doc.get("specFile"),
                         None, devices, info)


class ClaimCheckpoint:
    """The prepared claims of this node, by claim UID, backed by one file.

    Example::

        checkpoint = ClaimCheckpoint(Path("/var/lib/kubelet/plugins/sriov.network.k8s.io/"
                                          "checkpoint.json"))
        checkpoint.add(prepared)           # before answering NodePrepareResources
        checkpoint.get(uid)                # the recorded claim (spec left out), or None
        checkpoint.remove(uid)             # after its CDI spec is deleted

    Raises (constructor):
        HostError: the file exists but cannot be read or is not a checkpoint.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._claims: dict[str, PreparedClaim] = self._load()

    def _load(self) -> dict[str, PreparedClaim]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise HostError(f"cannot read DRA checkpoint {self.path}: "
                            f"{exc.strerror or exc}") from exc
        try:
            doc = json.loads(text)
            if doc.get("version") != VERSION:
                raise ValueError(f"version {doc.get('version')!r}, want {VERSION}")
            return {uid: _claim(uid, c) for uid, c in doc["claims"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HostError(f"DRA checkpoint {self.path} is not a valid checkpoint "
                            f"({exc}); move it away to start without it") from exc

    def get(self, uid: str) -> PreparedClaim | None:
        return self._claims.get(uid)

    def reload(self) -> None:
        """Read the file again (another process may have written it meanwhile).

        Raises:
            HostError: it cannot be read or is not a checkpoint (the entries are kept).
        """
        self._claims = self._load()

    def uids(self) -> set[str]:
        return set(self._claims)

    def claims(self) -> list[PreparedClaim]:
        """Every recorded claim, by UID."""
        return [self._claims[uid] for uid in sorted(self._claims)]

    def add(self, claim: PreparedClaim) -> None:
        """Record ``claim`` (replacing an entry of the same UID) and write the file.

        Raises:
            HostError: the file cannot be written (the entry is not kept either).
        """
        previous = self._claims.get(claim.ref.uid)
        self._claims[claim.ref.uid] = claim
        try:
            self._save()
        except HostError:
            if previous is None:
                del self._claims[claim.ref.uid]
            else:
                self._claims[claim.ref.uid] = previous
            raise

    def remove(self, uid: str) -> bool:
        """Forget ``uid`` and write the file; False when it was not recorded.

        Raises:
            HostError: the file cannot be written (the entry is kept).
        """
        claim = self._claims.pop(uid, None)
        if claim is None:
            return False
        try:
            self._save()
        except HostError:
            self._claims[uid] = claim
            raise
        return True

    def _save(self) -> None:
        doc = {"version": VERSION, "claims": {
            uid: {"namespace": c.ref.namespace, "name": c.ref.name, "specFile": c.spec_file,
                  "devices": [_device_doc(d) for d in c.devices],
                  "deviceInfo": [list(pair) for pair in c.device_info]}
            for uid, c in sorted(self._claims.items())
        }}
        try:
            write_atomically(self.path, (json.dumps(doc, indent=1) + "\n").encode(),
                             mode=FILE_MODE, dir_mode=DIR_MODE)
        except OSError as exc:
            raise HostError(f"cannot write DRA checkpoint {self.path}: "
                            f"{exc.strerror or exc}") from exc


def claim_checkpoints(plugins_dir: Path) -> list[Path]:
    """The claim checkpoint files under the kubelet's plugins dir, one per DRA driver dir
    (``<plugins dir>/<driver>/checkpoint.json``; other vendors' files are told apart by
    loading them: :class:`ClaimCheckpoint` refuses what is not ours)."""
    try:
        return sorted(p for p in plugins_dir.glob("*/checkpoint.json") if p.is_file())
    except OSError:
        return []
