"""Reading the config file from disk (parsing is :func:`sriovdp.model.config.parse_config`),
and the checks that need the daemon's settings (CDI mode, socket path length)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sriovdp.errors import ConfigError, ConfigProblem
from sriovdp.model.cdi import CdiError, annotation_key, cdi_spec_file_name, check_vendor
from sriovdp.model.config import Config, parse_config
from sriovdp.model.ids import socket_name
from sriovdp.model.pools import CDI_CLASSES

MAX_CONFIG_BYTES = 16 * 1024 * 1024
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


def read_config_bytes(path: Path) -> bytes:
    """The config file's bytes. Only a regular file (or a link to one, as a ConfigMap mount
    is) is read, opened non-blocking, so a FIFO or a device cannot block the daemon.

    Raises:
        ConfigError: the file cannot be read, is not a regular file, or is over 16 MiB.
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(ConfigProblem("", f"{path} is not a regular file"), source)
            text = os.read(fd, MAX_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(ConfigProblem("", f"cannot read {path}: {exc.strerror}"),
                          source=source) from exc
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(ConfigProblem("", f"{path} is larger than 16 MiB"), source)
    return text


def load_config(path: Path, *, default_prefix: str, use_cdi: bool = False,
                socket_dir: Path | None = None, text: bytes | None = None) -> Config:
    """Read (unless ``text`` is given, read before by :func:`read_config_bytes`) and parse
    ``path``; with ``use_cdi`` / ``socket_dir`` also check what those need. A config without
    any resource is refused: applying it would stop every pool.

    Raises:
        ConfigError: the file cannot be read, or any problem in it (with JSON paths).
    """
    source = str(path)
    if text is None:
        text = read_config_bytes(path)
    try:
        config = parse_config(text, default_prefix=default_prefix)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=source, warnings=exc.warnings) from None
    problems = file_name_problems(config, default_prefix, use_cdi=use_cdi)
    if not config.resources:
        problems.append(ConfigProblem("resourceList", "no resources configured"))
    if use_cdi:
        problems += cdi_problems(config, default_prefix)
    if socket_dir is not None:
        problems += socket_problems(config, default_prefix, socket_dir)
    if problems:
        raise ConfigError(problems, source=source, warnings=list(config.warnings))
    return config


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
                    f"resourceList[{i}].resourceName",
                    f"{resource.resource_name(default_prefix)!r} would share its files "
                    f"({key!r}) with resourceList[{seen[key]}]: rename one of them"))
            seen.setdefault(key, i)
    return problems


def cdi_problems(config: Config, default_prefix: str) -> list[ConfigProblem]:
    """Prefixes that cannot be CDI vendors or annotation keys (``--use-cdi``)."""
    problems = []
    for i, resource in enumerate(config.resources):
        prefix = resource.effective_prefix(default_prefix)
        try:
            check_vendor(prefix)
            annotation_key(prefix, CDI_CLASSES[resource.kind])
        except CdiError as exc:
            where = f"resourceList[{i}].resourcePrefix" if resource.prefix else "resourceList"
            problems.append(ConfigProblem(where, f"unusable with --use-cdi: {exc}"))
    return problems


def socket_problems(config: Config, default_prefix: str, socket_dir: Path
                    ) -> list[ConfigProblem]:
    """Resources whose socket path would not fit a unix socket address (107 bytes)."""
    problems = []
    for i, resource in enumerate(config.resources):
        path = socket_dir / socket_name(resource.effective_prefix(default_prefix), resource.name)
        if len(os.fsencode(path)) > UNIX_PATH_MAX or len(path.name) > 255:
            problems.append(ConfigProblem(
                f"resourceList[{i}].resourceName",
                f"socket path {str(path)!r} is {len(os.fsencode(path))} bytes; a unix socket "
                f"path holds at most {UNIX_PATH_MAX}: shorten the name or the prefix"))
    return problems
