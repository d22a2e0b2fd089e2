"""DRA mode's claim checkpoint: which claims this node prepared, kept across restarts.

One JSON file (``<plugin dir>/checkpoint.json`` in production, next to ``dra.sock`` under
``/var/lib/kubelet/plugins/<driver>/``), rewritten atomically and durably (fsync'd) on
every change; entries as :mod:`sriovdp.model.dra.records` writes them::

    {"version": 1, "claims": {"<uid>": {"namespace": "default", "name": "c1",
      "specFile": "sriov-dra-<uid>.yaml", "devices": [{"requestNames": ["nic"],
      "poolName": "worker-1", "deviceName": "0000-3b-02-1", "cdiDeviceIds": ["..."],
      "resourceName": "intel.com/sriov_net", "deviceId": "0000:3b:02.1"}],
      "deviceInfo": [["intel.com/sriov_net", "0000:3b:02.1"]]}}}

With it, NodeUnprepareResources after a restart still knows the claim's CDI spec file
although the claim may be gone from the apiserver, and a repeated NodePrepareResources
answers what it answered before. A file that cannot be parsed is an error naming it
(:class:`CheckpointDamaged`), never silently replaced: :meth:`ClaimCheckpoint.rebuild` keeps
it aside and writes the claims :func:`claims_in_cdi_specs` finds in the records of their
CDI specs (the preparer writes each spec before the checkpoint entry).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sriovdp.errors import HostError
from sriovdp.host.files import write_atomically
from sriovdp.model.dra.prepare import SPEC_FILE_PREFIX, PreparedClaim
from sriovdp.model.dra.records import claim_entry, claim_from_entry, claim_from_record

VERSION = 1
FILE_MODE = 0o600
DIR_MODE = 0o750
_RECORD_LIMIT = 1 << 20  # a record line is far shorter; more is not one of ours


class CheckpointDamaged(HostError):
    """The checkpoint file can be read but is not a checkpoint (empty, cut short, edited)."""


class ClaimCheckpoint:
    """The prepared claims of this node, by claim UID, backed by one file.

    Example::

        checkpoint = ClaimCheckpoint(Path("/var/lib/kubelet/plugins/sriov.network.k8s.io/"
                                          "checkpoint.json"))
        checkpoint.add(prepared)           # before answering NodePrepareResources
        checkpoint.get(uid)                # the recorded claim (spec left out), or None
        checkpoint.remove(uid)             # after its CDI spec is deleted

    Raises (constructor, unless ``load`` is False):
        CheckpointDamaged: the file is not a checkpoint.
        HostError: the file exists but cannot be read.
    """

    def __init__(self, path: Path, *, load: bool = True) -> None:
        self.path = path
        self._claims: dict[str, PreparedClaim] = self._load() if load else {}

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
            return {uid: claim_from_entry(uid, c) for uid, c in doc["claims"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointDamaged(f"DRA checkpoint {self.path} is not a valid checkpoint "
                                    f"({exc})") from exc

    def get(self, uid: str) -> PreparedClaim | None:
        return self._claims.get(uid)

    def reload(self) -> None:
        """Read the file again (another process may have written it meanwhile).

        Raises:
            CheckpointDamaged: it is not a checkpoint (the entries are kept).
            HostError: it cannot be read (the entries are kept).
        """
        self._claims = self._load()

    def assume(self, claims: list[PreparedClaim]) -> None:
        """Hold ``claims`` instead of the entries, without writing the file (which could
        not be read: what it lists must not be overwritten)."""
        self._claims = {c.ref.uid: c for c in claims}

    def rebuild(self, claims: list[PreparedClaim], now: float | None = None) -> Path:
        """Keep a copy of the (damaged) file as ``checkpoint.json.damaged-<UTC time>``, then
        replace it with one listing ``claims``; returns the copy's path.

        Raises:
            HostError: the copy or the new file cannot be written (the entries are
                ``claims`` then; the damaged file stays in place, to be found again).
        """
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        self.assume(claims)
        try:
            write_atomically(aside, self.path.read_bytes(), mode=FILE_MODE, durable=True)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise HostError(f"cannot keep the damaged DRA checkpoint {self.path} as "
                            f"{aside}: {exc.strerror or exc}") from exc
        self._save()
        return aside

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
            uid: claim_entry(c) for uid, c in sorted(self._claims.items())}}
        try:
            write_atomically(self.path, (json.dumps(doc, indent=1) + "\n").encode(),
                             mode=FILE_MODE, dir_mode=DIR_MODE, durable=True)
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


def claims_in_cdi_specs(cdi_dir: Path, driver: str) -> tuple[list[PreparedClaim], list[str]]:
    """The claims ``driver`` prepared, from the records in their CDI specs
    (``sriov-dra-*.yaml`` in ``cdi_dir``, see :mod:`sriovdp.model.dra.records`), and what
    could not be read (one message per spec file).

    Raises:
        HostError: the directory exists but cannot be listed.
    """
    try:
        names = sorted(n for n in os.listdir(cdi_dir)
                       if n.startswith(SPEC_FILE_PREFIX) and n.endswith(".yaml"))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise HostError(f"cannot list {cdi_dir}: {exc.strerror or exc}") from exc
    claims: list[PreparedClaim] = []
    problems: list[str] = []
    for name in names:
        try:
            with open(cdi_dir / name, "rb") as f:
                line = f.readline(_RECORD_LIMIT).decode().rstrip("\n")
            claim = claim_from_record(line, driver)
            if claim is not None and claim.spec_file != name:
                raise ValueError(f"its record names {claim.spec_file!r}")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{cdi_dir / name}: {exc}")
            continue
        if claim is not None:
            claims.append(claim)
    return claims, problems
