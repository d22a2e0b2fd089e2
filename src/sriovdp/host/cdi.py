"""CDI spec files: one ``sriov-dp-<prefix>-<class>-<name>.yaml`` per pool in the CDI directory.

The directory is ``/var/run/cdi`` in production (the dynamic CDI directory, which takes
priority over ``/etc/cdi``). Specs are written atomically (a ``<name>.<random>.tmp`` file in
the same directory, then a rename; runtimes load only ``*.yaml``/``*.json``, so they never
see the temp file), mode 0644; a missing directory is created 0755. Only files whose name
starts with ``sriov-dp-`` are ever touched, so other vendors' specs in the same directory
are safe. The documents come from :func:`sriovdp.model.cdi.cdi_spec`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from sriovdp.errors import HostError
from sriovdp.host.files import remove_file, write_atomically
from sriovdp.model.cdi import SPEC_FILE_PREFIX

FILE_MODE = 0o644
_EXTENSIONS = (".yaml", ".json")


def _check_name(name: str, prefix: str = SPEC_FILE_PREFIX) -> str:
    if "/" in name or not name.startswith(prefix) or not name.endswith(_EXTENSIONS):
        raise ValueError(f"not a sriovdp CDI spec file name: {name!r} "
                         f"(want {prefix}*.yaml or *.json)")
    return name


class CdiStore:
    """This plugin's CDI spec files in one directory.

    Example::

        store = CdiStore(Path("/var/run/cdi"))
        store.write(cdi_spec(pool, facts), pool_spec_file_name(pool))
    """

    def __init__(self, directory: Path, *, prefix: str = SPEC_FILE_PREFIX) -> None:
        """``prefix``: the file names this store owns (DRA mode's per-claim specs use
        ``sriov-dra-``, so the device plugin's cleanup never takes them)."""
        self.directory = directory
        self.prefix = prefix

    def write(self, doc: Mapping[str, Any], file_name: str, *, comment: str = "") -> Path:
        """Write (or replace) a spec: YAML for ``*.yaml``, JSON for ``*.json``; returns its path.

        ``comment``: one line (``# ...``) put first in a YAML spec (DRA's claim record).

        Raises:
            ValueError: ``file_name`` does not start with ``sriov-dp-`` or has another extension.
            HostError: the directory or file cannot be written.
        """
        path = self.directory / _check_name(file_name, self.prefix)
        if file_name.endswith(".json"):
            text = json.dumps(doc, indent=2) + "\n"
        else:
            text = yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False)
            if comment:
                if not comment.startswith("#") or "\n" in comment:
                    raise ValueError(f"not a one-line YAML comment: {comment!r}")
                text = f"{comment}\n{text}"
        try:
            write_atomically(path, text.encode(), mode=FILE_MODE)
        except OSError as exc:
            raise HostError(f"cannot write CDI spec {path}: {exc.strerror or exc}") from exc
        return path

    def remove(self, file_name: str) -> bool:
        """Delete one spec; False when it did not exist.

        Raises:
            ValueError: not a ``sriov-dp-*`` spec file name.
            HostError: it exists but cannot be deleted.
        """
        return self._unlink(_check_name(file_name, self.prefix))

    def files(self) -> set[str]:
        """Names of this plugin's spec files (``sriov-dp-*.yaml``/``.json``) in the directory."""
        return {n for n in self._ours() if n.endswith(_EXTENSIONS)}

    def cleanup(self, keep: Collection[str] = ()) -> list[str]:
        """Delete every ``sriov-dp-*`` file (specs and left-over temp files) except ``keep``.

        Returns:
            the deleted names, sorted.
        Raises:
            HostError: the directory cannot be listed or a file cannot be deleted.
        """
        removed = [n for n in sorted(self._ours()) if n not in keep and self._unlink(n)]
        return removed

    def _ours(self) -> list[str]:
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise HostError(f"cannot list {self.directory}: {exc.strerror or exc}") from exc
        return [e for e in entries if e.startswith(self.prefix)]

    def _unlink(self, name: str) -> bool:
        return remove_file(self.directory / name, "CDI spec")
