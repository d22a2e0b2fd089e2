"""NPWG device-info files: ``<dir>/<prefix>-<name>-<id>-device.json``, one per allocated device.

The directory is ``/var/run/k8s.cni.cncf.io/devinfo/dp`` in production, where CNI plugins
(sriov-cni, Multus) read the file of the device they configure. Files are written atomically
(a temp file in the same directory, then a rename), so a reader never sees a partial file;
they are read-only (0444), and a missing directory is created 0755 (the Go plugin creates it
with mode 0). The content comes from :mod:`sriovdp.model.deviceinfo`. Which devices get a
file (netDevice pools only) and when files go is the caller's decision.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sriovdp.errors import HostError
from sriovdp.host.files import remove_file, write_atomically
from sriovdp.model.deviceinfo import device_info_file_name, device_info_json
from sriovdp.model.ids import is_pci_address
from sriovdp.model.pools import PoolDevice

FILE_MODE = 0o444
DIR_MODE = 0o755
_SUFFIX = "-device.json"


class DeviceInfoStore:
    """The device-info files in one directory.

    Example::

        store = DeviceInfoStore(Path("/var/run/k8s.cni.cncf.io/devinfo/dp"))
        store.write("intel.com/sriov_net", pool.devices["0000:3b:02.1"])
        # → .../intel.com-sriov_net-0000:3b:02.1-device.json
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: dict[str, tuple[object, tuple[int, int, int], Path]] = {}
        """file name → (what its content came from, (inode, ctime, size) after our write,
        its path)."""

    def path(self, resource_name: str, device_id: str) -> Path:
        """Where the file of ``device_id`` in ``resource_name`` (``intel.com/sriov_net``) lives."""
        return self.directory / device_info_file_name(resource_name, device_id)

    def write(self, resource_name: str, dev: PoolDevice) -> Path:
        """Write (or replace) the device's file; returns its path.

        A file this store wrote for the same device content and that is still on disk as
        written (same inode, ctime and size: not deleted, replaced, chmod'ed or rewritten
        since) is left as it is: a device allocated again costs one ``stat``, not a write.
        So is a regular 0444 file that already holds exactly these bytes (written before a
        daemon restart): one read instead of a write.

        Raises:
            HostError: the directory or file cannot be written (the message names the path).
            ValueError: ``dev`` is an auxiliary device.
        """
        name = device_info_file_name(resource_name, dev.id)
        source = (dev.function, dev.is_rdma, dev.vdpa_type)  # what device_info_json reads
        known = self._written.get(name)
        if known is not None and known[0] == source:
            # a plain string path: this check runs per allocated device (Path costs ~10 us)
            if _identity(f"{os.fspath(self.directory)}/{name}") == known[1]:
                return known[2]
        path = self.directory / name
        data = device_info_json(dev).encode()
        try:
            identity = _identity_if_holding(path, data)
            if identity is None:
                write_atomically(path, data, mode=FILE_MODE)
                identity = _identity(path)
        except OSError as exc:
            self._written.pop(name, None)
            raise HostError(f"cannot write device-info file {path}: {exc.strerror or exc}") from exc
        if identity is not None:
            self._written[name] = (source, identity, path)
        return path

    def remove(self, resource_name: str, device_id: str) -> bool:
        """Delete the device's file; False when there was none.

        Raises:
            HostError: it exists but cannot be deleted.
        """
        return self.remove_file(device_info_file_name(resource_name, device_id))

    def remove_file(self, name: str) -> bool:
        """Delete ``<dir>/<name>`` (a name from :meth:`files`); False when it did not exist.

        Raises:
            HostError: it exists but cannot be deleted.
            ValueError: ``name`` is not a device-info file name of this store.
        """
        if "/" in name or not name.endswith(_SUFFIX):
            raise ValueError(f"not a device-info file name: {name!r}")
        self._written.pop(name, None)
        return remove_file(self.directory / name, "device-info file")

    def device_id(self, resource_name: str, file_name: str) -> str | None:
        """The PCI address a file of ``resource_name`` is named after; None when ``file_name``
        is not such a file (another pool's name may start like this one's, and only PCI
        addresses are ours)."""
        head = resource_name.replace("/", "-") + "-"
        if not (file_name.startswith(head) and file_name.endswith(_SUFFIX)):
            return None
        dev_id = file_name[len(head):-len(_SUFFIX)]
        return dev_id if is_pci_address(dev_id) else None

    def files(self) -> set[str]:
        """Names of the device-info files in the directory (empty when it does not exist)."""
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise HostError(f"cannot list {self.directory}: {exc.strerror or exc}") from exc
        return {e for e in entries if e.endswith(_SUFFIX) and not e.startswith(".")}


def _identity(path: str | Path) -> tuple[int, int, int] | None:
    """(inode, ctime in ns, size) of ``path``; None when it is gone or unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns, st.st_size


def _identity_if_holding(path: Path, data: bytes) -> tuple[int, int, int] | None:
    """:func:`_identity` of ``path`` when it is a regular file of mode 0444 holding exactly
    ``data``; None otherwise (missing, a link, another mode or content)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != FILE_MODE
                or st.st_size != len(data) or os.read(fd, len(data) + 1) != data):
            return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return st.st_ino, st.st_ctime_ns, st.st_size
