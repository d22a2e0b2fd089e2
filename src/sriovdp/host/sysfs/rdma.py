"""RDMA devices of functions and sub-functions: names from ``sys/class/infiniband``, char
devices from ``sys/class/infiniband_{cm,mad,verbs}``, the InfiniBand pkey."""

from __future__ import annotations

import os

from sriovdp.host.files import HostRoot
from sriovdp.host.sysfs.fd import SAFE_NAME_RE, list_dir, log, read_link_parts
from sriovdp.model.devices import RdmaInfo

# RDMA char devices per RDMA device, in the Go plugin's order: (class dir, name part).
_RDMA_CHAR_KINDS = (
    ("infiniband_cm", "ucm"),
    ("infiniband_mad", "issm"),
    ("infiniband_mad", "umad"),
    ("infiniband_verbs", "uverbs"),
)

# owner → [(class dir, kind, entry)] by entry name; RDMA device → {kind: entry} for entries
# whose link does not say their owner (read through the class dir's ibdev)
_CharMaps = tuple[dict[str, list[tuple[str, str, str]]], dict[str, dict[str, str]]]


def read_class_links(root: HostRoot, rel: str, kind: str) -> dict[str, list[str]] | None:
    """Owner → sorted device names from class links ending in ``<owner>/<kind>/<name>``.

    E.g. ``sys/class/infiniband/mlx5_2`` → ``../../devices/pci0000:3b/0000:3b:00.2/infiniband/
    mlx5_2`` gives ``{"0000:3b:00.2": ["mlx5_2"]}``; the owner is that path component, a PCI
    address or an auxiliary device name (``.../mlx5_core.sf.4/infiniband/mlx5_4``). None when
    ``rel`` cannot be listed (the subsystem is not loaded).
    """
    try:
        fd = root.open_dir(rel)
    except OSError:
        return None
    found: dict[str, list[str]] = {}
    try:
        for name in os.listdir(fd):
            parts = read_link_parts(fd, name)
            if parts is not None and len(parts) >= 3 and parts[-2] == kind:
                found.setdefault(parts[-3], []).append(name)
    except OSError:
        return None
    finally:
        os.close(fd)
    for names in found.values():
        names.sort()
    return found


class RdmaReader:
    """One scan's RDMA maps: devices per owner (one class listing), char devices (read on the
    first RDMA device)."""

    def __init__(self, root: HostRoot) -> None:
        self._root = root
        # owner (PCI address or aux name) → RDMA device names; None: no sys/class/infiniband
        self._devices = read_class_links(root, "sys/class/infiniband", "infiniband")
        self._chars: _CharMaps | None = None
        self._rdma_cm = False

    def may_have(self, owner: str, listed_infiniband: bool) -> bool:
        """Whether ``owner`` can have RDMA devices: the class map names it, or (without the
        class dir) its own listing showed ``infiniband/``."""
        if self._devices is not None:
            return bool(self._devices.get(owner))
        return listed_infiniband

    def names(self, fd: int, owner: str, has_dir: bool) -> list[str]:
        """RDMA device names of ``owner`` (a PCI address or aux name), sorted.

        From the ``sys/class/infiniband`` map; without that class dir (a tree without class
        links), the entries of ``fd``'s ``infiniband/`` when ``has_dir`` says it exists.
        """
        if self._devices is not None:
            return [d for d in self._devices.get(owner) or [] if SAFE_NAME_RE.match(d)]
        if not has_dir:
            return []
        try:
            return sorted(d for d in list_dir(fd, "infiniband") if SAFE_NAME_RE.match(d))
        except OSError as exc:
            log.warning("%s: cannot list infiniband/: %s", owner, exc.strerror,
                        extra={"pci": owner})
            return []

    def info(self, fd: int, owner: str, devices: list[str]) -> RdmaInfo:
        """The char devices of ``devices`` (RDMA devices of ``owner``, open as ``fd``).

        Per device, in this order: ``ucm``, ``issm``, ``umad``, ``uverbs`` (the first entry by
        name whose ``ibdev`` names the device), then ``/dev/infiniband/rdma_cm`` once if it
        exists. The kernel puts a char device's sysfs dir below the RDMA device's parent
        (``<bdf>/infiniband_verbs/uverbs2``), so only ``owner``'s own entries are read, with
        short paths relative to ``fd``.
        """
        if self._chars is None:
            self._chars = self._read_chars()
            self._rdma_cm = self._root.exists("dev/infiniband/rdma_cm")
        by_owner, by_ibdev = self._chars
        found: dict[str, dict[str, str]] = {}
        for subdir, kind, entry in by_owner.get(owner, ()):
            ibdev = self._ibdev(fd, f"{subdir}/{entry}/ibdev", None)
            if ibdev is not None and SAFE_NAME_RE.match(entry):
                found.setdefault(ibdev, {}).setdefault(kind, entry)
        paths: list[str] = []
        for dev in devices:
            own, other = found.get(dev) or {}, by_ibdev.get(dev) or {}
            for _, kind in _RDMA_CHAR_KINDS:
                # the first by name, as a glob over the class dir would find it
                entries = [e for e in (own.get(kind), other.get(kind)) if e is not None]
                if entries:
                    paths.append(f"/dev/infiniband/{min(entries)}")
        if self._rdma_cm:
            paths.append("/dev/infiniband/rdma_cm")
        return RdmaInfo(devices=tuple(devices), char_devices=tuple(dict.fromkeys(paths)))

    def _ibdev(self, fd: int, rel: str, from_root: str | None) -> str | None:
        """Trimmed ``ibdev`` at ``rel`` below ``fd`` (``from_root``: resolved from the host
        root instead, for class entries that are links); None when unreadable."""
        try:
            if from_root is None:
                ib_fd = self._root.open_beneath(fd, rel)
            else:
                ib_fd = self._root.open_at(fd, rel, from_root)
            try:
                raw = os.read(ib_fd, 4096)
            finally:
                os.close(ib_fd)
        except OSError:
            return None
        return raw.decode(errors="replace").strip()

    def _read_chars(self) -> _CharMaps:
        """Index ``sys/class/infiniband_{cm,mad,verbs}`` once: see :data:`_CharMaps`.

        An entry's kind is the first of ``ucm`` / ``issm``, ``umad`` / ``uverbs`` its name
        contains (``abi_version`` has none). Its owner comes from the link target
        (``../../devices/.../<owner>/infiniband_verbs/uverbs2``); an entry whose target does
        not end that way has its ``ibdev`` read here instead.
        """
        maps: _CharMaps = ({}, {})
        for subdir in dict.fromkeys(d for d, _ in _RDMA_CHAR_KINDS):
            kinds = [k for d, k in _RDMA_CHAR_KINDS if d == subdir]
            try:
                fd = self._root.open_dir(f"sys/class/{subdir}")
            except OSError:
                continue
            try:
                for entry in sorted(os.listdir(fd)):
                    self._index_char(fd, subdir, kinds, entry, maps)
            except OSError as exc:
                log.warning("cannot list %s: %s", self._root.path / "sys/class" / subdir,
                            exc.strerror)
            finally:
                os.close(fd)
        return maps

    def _index_char(self, fd: int, subdir: str, kinds: list[str], entry: str,
                    maps: _CharMaps) -> None:
        kind = next((k for k in kinds if k in entry), None)
        if kind is None:
            return
        parts = read_link_parts(fd, entry) or []
        if len(parts) >= 3 and parts[-2] == subdir and parts[-1] == entry:
            maps[0].setdefault(parts[-3], []).append((subdir, kind, entry))
            return
        ibdev = self._ibdev(fd, f"{entry}/ibdev", f"sys/class/{subdir}/{entry}/ibdev")
        if ibdev is not None and SAFE_NAME_RE.match(entry):
            maps[1].setdefault(ibdev, {}).setdefault(kind, entry)

    def pkey(self, fd: int, address: str, rdma_dev: str) -> str | None:
        """``infiniband/<rdma_dev>/ports/1/pkeys/0``, trimmed (e.g. ``0x7fff``); None on error."""
        rel = f"infiniband/{rdma_dev}/ports/1/pkeys/0"
        try:
            pkey_fd = self._root.open_beneath(fd, rel)
            try:
                raw: bytes | None = os.read(pkey_fd, 4096)
            finally:
                os.close(pkey_fd)
        except FileNotFoundError:
            raw = None
        except OSError as exc:
            log.info("%s: cannot read %s: %s", address, rel, exc.strerror, extra={"pci": address})
            return None
        pkey = raw.decode(errors="replace").strip() if raw is not None else ""
        if not pkey:
            log.info("%s: no pkey in %s", address, rel, extra={"pci": address})
            return None
        return pkey

