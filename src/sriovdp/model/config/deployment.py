"""Checks of a parsed config against how the daemon will run it — files that two pools would
share, prefixes CDI cannot use, socket paths too long — as pure functions of the settings."""

from __future__ import annotations

import os
from pathlib import PurePath

from sriovdp.errors import ConfigProblem
from sriovdp.model.cdi import CdiError, cdi_spec_file_name, check_class, check_vendor
from sriovdp.model.config.report import join
from sriovdp.model.config.resources import Config
from sriovdp.model.dra.modes import DraMode, mode_problems, served_by_dra
from sriovdp.model.ids import socket_name
from sriovdp.model.pools import CDI_CLASSES

UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
NAME_MAX = 255  # bytes in one file name
_SHORTEST_SOCKET = len("/a.b_c.sock")


def _at(i: int, key: str) -> str:
    return join(join("resourceList", i), key)


def deployment_problems(config: Config, default_prefix: str, *, use_cdi: bool = False,
                        socket_dir: PurePath | None = None, dra: DraMode | None = None
                        ) -> list[ConfigProblem]:
    """Every problem of :func:`file_name_problems`, :func:`cdi_problems` (``use_cdi``) and
    :func:`socket_problems` (``socket_dir``) for the device plugin pools,
    :func:`~sriovdp.model.dra.modes.mode_problems` for ``dra`` (the ``--dra`` mode), plus a
    config without any resource (applying it would stop every pool)."""
    problems = file_name_problems(config, default_prefix, use_cdi=use_cdi)
    if not config.resources:
        problems.append(ConfigProblem("resourceList", "no resources configured"))
    problems += mode_problems(config, dra)
    plugin_pools = Config(resources=tuple(  # DRA pools have no socket and no pool CDI spec
        r for r in config.resources if not served_by_dra(r, dra)))
    if use_cdi:
        problems += cdi_problems(config, default_prefix, only=plugin_pools)
    if socket_dir is not None:
        problems += socket_problems(config, default_prefix, socket_dir, only=plugin_pools)
    return problems


def file_name_problems(config: Config, default_prefix: str, *, use_cdi: bool
                       ) -> list[ConfigProblem]:
    """Resources whose device-info (or CDI spec) file names would be another's: both put
    "/" → "-" into one name, so ``intel.com/x-y`` and ``intel.com-x/y`` would share files and
    one pool's clean-up would delete the other's."""
    problems = []
    seen: dict[str, int] = {}
    for i, resource in enumerate(config.resources):
        prefix = resource.effective_prefix(default_prefix)
        keys = [resource.resource_name(default_prefix).replace("/", "-")]
        if use_cdi:
            keys.append(cdi_spec_file_name(prefix, CDI_CLASSES[resource.kind], resource.name))
        for key in keys:
            if key in seen and seen[key] != i:
                problems.append(ConfigProblem(
                    _at(i, "resourceName"),
                    f"{resource.resource_name(default_prefix)!r} would share its files "
                    f"({key!r}) with resourceList[{seen[key]}]: rename one of them"))
            seen.setdefault(key, i)
    return problems


def cdi_problems(config: Config, default_prefix: str, *, only: Config | None = None
                 ) -> list[ConfigProblem]:
    """Prefixes that cannot be CDI vendors, and spec file names too long for a file
    (``--use-cdi``). The annotation key needs no check: Allocate's
    :func:`~sriovdp.model.cdi.resource_annotation_key` falls back to a hashed name."""
    problems = []
    for i, resource in enumerate(config.resources):
        if only is not None and resource not in only.resources:
            continue
        prefix = resource.effective_prefix(default_prefix)
        cls = CDI_CLASSES[resource.kind]
        where = _at(i, "resourcePrefix") if resource.prefix else "resourceList"
        try:
            check_vendor(prefix)
            check_class(cls)
        except CdiError as exc:
            problems.append(ConfigProblem(where, f"unusable with --use-cdi: {exc}"))
            continue
        file_name = cdi_spec_file_name(prefix, cls, resource.name)
        if len(os.fsencode(file_name)) > NAME_MAX:
            problems.append(ConfigProblem(where, (
                f"unusable with --use-cdi: the CDI spec file name {file_name!r} would be "
                f"{len(os.fsencode(file_name))} bytes; a file name holds at most {NAME_MAX}: "
                "shorten the prefix or the name")))
    return problems


def socket_problems(config: Config, default_prefix: str, socket_dir: PurePath, *,
                    only: Config | None = None) -> list[ConfigProblem]:
    """Resources (of ``only``, when given) whose socket path would not fit a unix socket
    address (107 bytes); when the directory leaves no room for any name, one problem naming
    the directory."""
    room = UNIX_PATH_MAX - len(os.fsencode(socket_dir))
    if room < _SHORTEST_SOCKET:
        return [ConfigProblem("", (
            f"the socket directory {str(socket_dir)!r} is {len(os.fsencode(socket_dir))} bytes "
            f"long: a unix socket path holds at most {UNIX_PATH_MAX}, so no pool's socket "
            "fits (use a shorter --device-plugin-dir or --plugins-registry-dir)"))]
    problems = []
    for i, resource in enumerate(config.resources):
        if only is not None and resource not in only.resources:
            continue
        name = socket_name(resource.effective_prefix(default_prefix), resource.name)
        path = socket_dir / name
        if len(os.fsencode(path)) > UNIX_PATH_MAX or len(name) > 255:
            problems.append(ConfigProblem(
                _at(i, "resourceName"),
                f"socket path {str(path)!r} is {len(os.fsencode(path))} bytes; a unix socket "
                f"path holds at most {UNIX_PATH_MAX} and the directory takes "
                f"{UNIX_PATH_MAX - room}: shorten the name or the prefix (or the directory)"))
    return problems
