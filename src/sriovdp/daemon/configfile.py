"""Reading the config file from disk (parsing is :func:`sriovdp.model.config.parse_config`)."""

from __future__ import annotations

from pathlib import Path

from sriovdp.errors import ConfigError, ConfigProblem
from sriovdp.model.config import Config, parse_config


def load_config(path: Path, *, default_prefix: str) -> Config:
    """Read and parse ``path``.

    Raises:
        ConfigError: the file cannot be read, or any problem in it (with JSON paths).
    """
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(ConfigProblem("", f"cannot read {path}: {exc.strerror}"),
                          source=str(path)) from exc
    try:
        return parse_config(text, default_prefix=default_prefix)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=str(path), warnings=exc.warnings) from None
