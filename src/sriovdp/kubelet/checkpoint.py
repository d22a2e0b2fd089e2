"""What the kubelet's device manager recorded as granted: its checkpoint file
``device-plugins/kubelet_internal_checkpoint``, read as extended resource → device ids.

The kubelet writes every grant there (the whole file, replaced by a rename) and drops a pod's
entries only after the pod is no longer active and a later allocation or device update
rewrote the file. So it lists what the pod resources API leaves out: devices of plain init
containers (``List`` reports app and sidecar containers only) and, after a kubelet restart,
devices of pods the kubelet has not got back from the API server yet. Entries of a pod that
just ended may linger until the next allocation on the node: holding them longer is the safe
side (the device stays in the pool that granted it).

Format (kubelet ≥ 1.20): ``{"Data": {"PodDeviceEntries": [{"PodUID", "ContainerName",
"ResourceName", "DeviceIDs": {"<NUMA node>": [ids]}, "AllocResp"}], "RegisteredDevices":
{...}}, "Checksum": n}``; before 1.20 ``DeviceIDs`` was a plain list. The checksum is not
checked: a file that does not parse is reported and adds no holds.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("sriovdp.kubelet")

CHECKPOINT_NAME = "kubelet_internal_checkpoint"

Granted = dict[str, frozenset[str]]
"""Extended resource name → device ids the kubelet recorded as granted."""


class CheckpointError(ValueError):
    """The file is there but is not a device manager checkpoint."""


def parse_checkpoint(text: str | bytes) -> Granted:
    """The grants in a checkpoint's text. Raises :class:`CheckpointError`."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"not JSON: {exc}") from None
    entries = _field(doc, "Data", dict).get("PodDeviceEntries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise CheckpointError("Data.PodDeviceEntries is not a list")
    granted: dict[str, set[str]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CheckpointError(f"Data.PodDeviceEntries[{i}] is not an object")
        resource = entry.get("ResourceName")
        if not isinstance(resource, str) or not resource:
            raise CheckpointError(f"Data.PodDeviceEntries[{i}].ResourceName: {resource!r}")
        granted.setdefault(resource, set()).update(_ids(entry.get("DeviceIDs"), i))
    return {name: frozenset(ids) for name, ids in granted.items() if ids}


def _field(doc: Any, key: str, kind: type) -> Any:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, kind):
        raise CheckpointError(f"{key} is missing or not {kind.__name__}")
    return value


def _ids(value: Any, i: int) -> list[str]:
    if value is None:
        return []
    groups = value.values() if isinstance(value, dict) else [value]  # per NUMA node / old list
    out: list[str] = []
    for group in groups:
        if group is None:
            continue
        if not isinstance(group, list) or not all(isinstance(d, str) for d in group):
            raise CheckpointError(f"Data.PodDeviceEntries[{i}].DeviceIDs: {value!r}")
        out.extend(group)
    return out


class KubeletCheckpoint:
    """Reads the checkpoint at ``path`` again only when the file changed.

    :meth:`granted` never raises: a missing file grants nothing (a kubelet that never
    granted a device, or an API without one), a damaged one is logged once and grants
    nothing until it changes (pod resources remain the other source).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._granted: Granted = {}
        self.error = ""
        """Why the file present could not be read ("" when it could, or is absent)."""

    def changed(self) -> bool:
        """Has the file changed since it was last read (a stat; cheap enough for the loop)?"""
        return self._stat() != self._stamp

    def granted(self) -> Granted:
        """The grants recorded in the file now (blocking: call it off the event loop)."""
        stamp = self._stat()
        if stamp == self._stamp:
            return self._granted
        try:
            text = self.path.read_bytes() if stamp is not None else b""
        except OSError as exc:
            self._remember(stamp, {}, f"cannot read {self.path}: {exc}")
            return self._granted
        if not text:
            self._remember(stamp, {}, "")
            return self._granted
        try:
            granted = parse_checkpoint(text)
        except CheckpointError as exc:
            self._remember(stamp, {}, f"{self.path}: {exc}")
            return self._granted
        self._remember(stamp, granted, "")
        return granted

    def _remember(self, stamp: tuple[int, int, int] | None, granted: Granted,
                  error: str) -> None:
        if error and error != self.error:
            log.warning("kubelet device checkpoint unreadable (%s): devices granted to "
                        "plain init containers are not known as held", error)
        self._stamp, self._granted, self.error = stamp, granted, error

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns
