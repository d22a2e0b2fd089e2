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

__all__ = ["config_text", "load_config", "read_config_bytes"]

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
    ``path``, a JSON config or a ConfigMap manifest holding one (:func:`config_text`); with
    ``use_cdi`` / ``socket_dir`` also check what those need. A config without any resource is
    refused: applying it would stop every pool. ``strict``: warnings are problems too (``sriovdp
    validate --strict``). ``dra``: the ``--dra`` mode (None: off, and a pool marked ``"dra":
    true`` is a problem).

    Raises:
        ConfigError: the file cannot be read, or any problem in it (with JSON paths).
    """
    source = str(path)
    if text is None:
        text = read_config_bytes(path)
    embedded = config_text(text, path)
    if embedded is not text:  # the config.json of a ConfigMap: positions are within it
        source = f'{source} (data["{CONFIGMAP_KEY}"] of its ConfigMap; lines counted from there)'
    try:
        config = parse_config(embedded, default_prefix=default_prefix, strict=strict)
    except ConfigError as exc:
        raise exc.with_source(source) from None
    problems = deployment_problems(config, default_prefix, use_cdi=use_cdi,
                                   socket_dir=socket_dir, dra=dra)
    if problems:
        raise ConfigError(problems, source=source, warnings=list(config.warnings))
    return config


CONFIGMAP_NAME = "sriovdp-config"
"""The ConfigMap of ``deployments/base/configmap.yaml``, picked among several."""
_EXPECTED = (f"expected a JSON config (an object with \"resourceList\") or a ConfigMap "
             f"manifest whose data holds the config under {CONFIGMAP_KEY!r}")


def config_text(text: bytes, path: Path) -> bytes:
    """The JSON config a ``--config-file`` holds, the same for every command: the file itself
    when it is JSON (it starts with ``{``), else the ``data["config.json"]`` of the ConfigMap
    manifest it holds (YAML, as ``deployments/base/configmap.yaml``; or several documents, as
    ``kubectl kustomize`` prints, with one ConfigMap or one named ``sriovdp-config``).

    Raises:
        ConfigError: anything else, saying what the file looks like and what is expected; a
            ConfigMap without a ``config.json`` key (its keys named).
    """
    if text.lstrip()[:1] in (b"{", b"[", b""):
        return text  # JSON: the parser names any problem with its line and column
    import json

    try:
        json.loads(text)
        return text  # other JSON (null, a string ...): the parser says what it expects
    except ValueError:
        pass  # a manifest (YAML) fails at once, on its first letter
    import yaml

    source = str(path)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(ConfigProblem("", f"{path} is neither JSON nor YAML (YAML: "
                                            f"{getattr(exc, 'problem', None) or exc}{where}); "
                                            f"{_EXPECTED}"), source) from None
    configmaps = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ConfigMap"]
    if len(configmaps) > 1:
        named = [d for d in configmaps if _name(d) == CONFIGMAP_NAME]
        if len(named) != 1:
            raise ConfigError(ConfigProblem("", (
                f"{path} holds {len(configmaps)} ConfigMaps "
                f"({', '.join(_name(d) for d in configmaps)}) and not one named "
                f"{CONFIGMAP_NAME!r}: give the file of the one that holds the config")), source)
        configmaps = named
    if not configmaps:
        raise ConfigError(ConfigProblem("", f"{path} is {_looks_like(docs)}, not JSON; "
                                            f"{_EXPECTED}"), source)
    data = configmaps[0].get("data")
    data = data if isinstance(data, dict) else {}
    value = data.get(CONFIGMAP_KEY)
    if not isinstance(value, str):
        keys = ", ".join(repr(str(k)) for k in data) or "none"
        raise ConfigError(ConfigProblem("data", (
            f"ConfigMap {_name(configmaps[0])} in {path} has no {CONFIGMAP_KEY!r} key (its "
            f"keys: {keys}): the DaemonSet mounts data[{CONFIGMAP_KEY!r}] as "
            f"/etc/pcidp/config.json")), source)
    return value.encode()


def _name(doc: dict[object, object]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, dict) else "?"


def _looks_like(docs: list[object]) -> str:
    """What parsed YAML documents are, in a few words."""
    if not docs:
        return "empty YAML"
    if len(docs) > 1:
        kinds = ", ".join(str(d.get("kind", "?")) if isinstance(d, dict) else type(d).__name__
                          for d in docs[:6])
        more = ", ..." if len(docs) > 6 else ""
        return f"{len(docs)} YAML documents ({kinds}{more}) without a ConfigMap"
    doc = docs[0]
    if isinstance(doc, dict) and "kind" in doc:
        return f"a {doc['kind']} manifest (YAML), not a ConfigMap"
    if isinstance(doc, dict):
        keys = ", ".join(map(str, list(doc)[:5]))
        return f"a YAML mapping (keys: {keys})"
    if isinstance(doc, list):
        return "a YAML list"
    return "plain text (no JSON object, no YAML mapping)"
