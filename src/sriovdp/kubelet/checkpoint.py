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
checked. A file that cannot be read or parsed (damaged, not a regular file, larger than
:data:`MAX_BYTES`) is reported and its last good grants are kept, as a failed pod resources
call keeps the last answer.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger("sriovdp.kubelet")

CHECKPOINT_NAME = "kubelet_internal_checkpoint"

MAX_BYTES = 64 << 20
"""A larger file is not read (2,048 grants take ~1.6 MB)."""

Granted = dict[str, dict[str, str]]
"""Extended resource name → device id → UID of the pod the kubelet granted it to."""


class CheckpointError(ValueError):
    """The file is there but is not a device manager checkpoint."""


def parse_checkpoint(text: str | bytes) -> Granted:
    """The grants in a checkpoint's text. Raises :class:`CheckpointError`."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"not JSON: {str(exc)[:200]}") from None
    entries = _field(doc, "Data", dict).get("PodDeviceEntries")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise CheckpointError("Data.PodDeviceEntries is not a list")
    granted: Granted = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CheckpointError(f"Data.PodDeviceEntries[{i}] is not an object")
        resource = entry.get("ResourceName")
        if not isinstance(resource, str) or not resource:
            raise CheckpointError(f"Data.PodDeviceEntries[{i}].ResourceName: {resource!r}")
        pod = entry.get("PodUID")
        ids = _ids(entry.get("DeviceIDs"), i)
        granted.setdefault(resource, {}).update(dict.fromkeys(ids, str(pod or "")))
    return {name: ids for name, ids in granted.items() if ids}


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
    granted a device, or a node without one); a file that cannot be read or parsed is
    logged once and the last good grants stay until it is rewritten (pod resources remain
    the other source). It never blocks on a FIFO or reads more than :data:`MAX_BYTES`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._granted: Granted = {}
        self.written: float | None = None
        """When the file :meth:`granted` last parsed was written (wall-clock seconds; None:
        no file)."""
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
        if stamp is None:
            self._remember(stamp, {}, "")
            return self._granted
        try:
            granted = parse_checkpoint(_read_regular(self.path))
        except (OSError, CheckpointError) as exc:
            self._failed(stamp, f"{self.path}: {exc}")
            return self._granted
        self._remember(stamp, granted, "")
        return granted

    def _failed(self, stamp: tuple[int, int, int], error: str) -> None:
        if error != self.error:
            log.warning("kubelet device checkpoint unreadable (%s): its last good grants "
                        "(%d devices) stay held until it is rewritten", error,
                        sum(len(ids) for ids in self._granted.values()))
        self._stamp, self.error = stamp, error

    def _remember(self, stamp: tuple[int, int, int] | None, granted: Granted,
                  error: str) -> None:
        self._stamp, self._granted, self.error = stamp, granted, error
        self.written = stamp[2] / 1e9 if stamp is not None else None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns


def _read_regular(path: Path) -> bytes:
    """The file's bytes; never waits for a FIFO's writer, never reads past MAX_BYTES."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError("not a regular file")
        if st.st_size > MAX_BYTES:
            raise CheckpointError(f"{st.st_size} bytes, more than {MAX_BYTES}")
        chunks = []
        left = MAX_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise CheckpointError(f"more than {MAX_BYTES} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
