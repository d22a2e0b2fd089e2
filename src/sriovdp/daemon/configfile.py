"""Reading the config file from disk; parsing (:func:`sriovdp.model.config.parse_config`) and
the checks that need the daemon's settings (:mod:`sriovdp.model.config.deployment`) are pure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sriovdp.errors import ConfigError, ConfigProblem
from sriovdp.model.config import MAX_CONFIG_BYTES, Config, parse_config, size_problem
from sriovdp.model.config.deployment import deployment_problems
from sriovdp.model.dra.modes import DraMode

__all__ = ["config_from_configmap", "load_config", "read_config_bytes"]

CONFIGMAP_KEY = "config.json"
"""The ConfigMap key the DaemonSet mounts as the config file."""


def read_config_bytes(path: Path) -> bytes:
    """The config file's bytes. Only a regular file (or a link to one, as a ConfigMap mount
    is) is read, opened non-blocking, so a FIFO or a device cannot block the daemon.

    Raises:
        ConfigError: the file cannot be read, is not a regular file, or is over 1 MiB (what
            a ConfigMap can hold).
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(ConfigProblem("", f"{path} is not a regular file"), source)
            text = os.read(fd, MAX_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(ConfigProblem("", f"cannot read {path}: {exc.strerror}"),
                          source=source) from exc
    problem = size_problem(max(st.st_size, len(text)))
    if problem is not None:
        raise ConfigError(problem, source)
    return text


def load_config(path: Path, *, default_prefix: str, use_cdi: bool = False,
                socket_dir: Path | None = None, text: bytes | None = None,
                strict: bool = False, dra: DraMode | None = None) -> Config:
    """Read (unless ``text`` is given, read before by :func:`read_config_bytes`) and parse
    ``path``; with ``use_cdi`` / ``socket_dir`` also check what those need. A config without
    any resource is refused: applying it would stop every pool. ``strict``: warnings are
    problems too (``sriovdp validate --strict``). ``dra``: the ``--dra`` mode (None: off, and
    a pool marked ``"dra": true`` is a problem).

    Raises:
        ConfigError: the file cannot be read, or any problem in it (with JSON paths).
    """
    source = str(path)
    if text is None:
        text = read_config_bytes(path)
    try:
        config = parse_config(text, default_prefix=default_prefix, strict=strict)
    except ConfigError as exc:
        raise exc.with_source(source) from None
    problems = deployment_problems(config, default_prefix, use_cdi=use_cdi,
                                   socket_dir=socket_dir, dra=dra)
    if problems:
        raise ConfigError(problems, source=source, warnings=list(config.warnings))
    return config


def config_from_configmap(text: bytes, path: Path) -> bytes:
    """The config inside ``text`` when it is a ConfigMap manifest (YAML, as in
    ``deployments/base/configmap.yaml``): its ``data["config.json"]``, or its only key;
    otherwise ``text`` unchanged (a JSON config starts with ``{``).

    Raises:
        ConfigError: a ConfigMap without a usable key (its keys are named).
    """
    if text.lstrip()[:1] in (b"{", b""):
        return text
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not YAML either: the JSON parser names the position
    if not isinstance(doc, dict) or doc.get("kind") != "ConfigMap":
        return text
    data = doc.get("data") or {}
    if not isinstance(data, dict):
        data = {}
    key = CONFIGMAP_KEY if CONFIGMAP_KEY in data else next(iter(data)) if len(data) == 1 \
        else None
    value = data.get(key) if key is not None else None
    if not isinstance(value, str):
        keys = ", ".join(map(str, data)) or "none"
        raise ConfigError(ConfigProblem(
            "data", f"ConfigMap {path}: no {CONFIGMAP_KEY!r} key to validate (keys: {keys})"),
            str(path))
    return value.encode()
