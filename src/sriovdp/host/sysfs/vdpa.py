"""vDPA devices of PCI functions: owners from ``sys/bus/vdpa/devices``, then the driver and
vhost-vdpa node of the first one."""

from __future__ import annotations

import os
import stat

from sriovdp.host.files import HostRoot
from sriovdp.host.sysfs.aux import parse_aux_name
from sriovdp.host.sysfs.fd import PCI_NAME_RE, SAFE_NAME_RE, log, read_link_parts, readlink_name
from sriovdp.model.devices import VdpaInfo


def vdpa_owner(parts: list[str]) -> str | None:
    """The PCI function a vDPA device link target (split on ``/``) belongs to, or None."""
    if len(parts) >= 2 and PCI_NAME_RE.match(parts[-2]):
        return parts[-2]
    if len(parts) >= 3 and PCI_NAME_RE.match(parts[-3]):
        aux = parse_aux_name(parts[-2])
        if aux is not None and aux[1] != "sf":
            return parts[-3]
    return None


class VdpaReader:
    """One scan's vDPA map (PCI address → vDPA device names) and per-device reads."""

    def __init__(self, root: HostRoot) -> None:
        self._root = root
        self.owners = self._read_owners()

    def _read_owners(self) -> dict[str, list[str]]:
        """PCI address → vDPA device names (sorted), from the ``sys/bus/vdpa/devices`` links.

        A vDPA device whose parent is the PCI function (``<bdf>/vdpa0``) or an auxiliary
        device of it (``<bdf>/mlx5_core.vnet.2/vdpa0``, as mlx5_vdpa creates them) belongs to
        that function; one below a sub-function (``<bdf>/mlx5_core.sf.2/...``) does not (the
        Go plugin only looks at vDPA devices of PCI management devices).
        """
        try:
            fd = self._root.open_dir("sys/bus/vdpa/devices")
        except OSError:
            return {}
        found: dict[str, list[str]] = {}
        try:
            for name in os.listdir(fd):
                owner = vdpa_owner(read_link_parts(fd, name) or [])
                if owner is not None:
                    found.setdefault(owner, []).append(name)
        except OSError as exc:
            log.warning("cannot list vDPA devices: %s", exc.strerror)
        finally:
            os.close(fd)
        for names in found.values():
            names.sort()
        return found

    def info(self, address: str, names: list[str]) -> VdpaInfo | None:
        """Driver and vhost path of the first vDPA device in ``names``; None if it vanished."""
        name = names[0]
        if len(names) > 1:
            log.info("%s has %d vDPA devices (%s); using %s", address, len(names),
                     ", ".join(names), name, extra={"pci": address})
        try:
            fd = self._root.open_dir(f"sys/bus/vdpa/devices/{name}")
        except OSError as exc:
            log.warning("%s: cannot open vDPA device %s: %s", address, name, exc.strerror,
                        extra={"pci": address})
            return None
        try:
            driver = readlink_name(fd, "driver")
            vhost_path = self._vhost_path(fd, address, name) if driver == "vhost_vdpa" else None
        except OSError as exc:
            log.warning("%s: cannot read vDPA device %s: %s", address, name, exc.strerror,
                        extra={"pci": address})
            return None
        finally:
            os.close(fd)
        return VdpaInfo(name=name, driver=driver, vhost_path=vhost_path)

    def _vhost_path(self, fd: int, address: str, name: str) -> str | None:
        """``/dev/<vhost-vdpa-N>`` of the first ``vhost-vdpa*`` child dir, if ``dev/`` has it.

        Raises:
            OSError: the device dir cannot be listed.
        """
        for entry in sorted(os.listdir(fd)):
            if "vhost-vdpa" in entry and SAFE_NAME_RE.match(entry) and stat.S_ISDIR(
                    os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                if self._root.exists(f"dev/{entry}"):
                    return f"/dev/{entry}"
                log.warning("%s: vDPA device %s has %s but %s is missing", address, name, entry,
                            self._root.path / "dev" / entry, extra={"pci": address})
                return None
        return None
