"""Logging set-up: text or JSON lines on stderr (and a file under ``-log_dir``).

Records may carry ``extra={"resource": ..., "pci": ...}``; both formats print them.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

_CONTEXT_KEYS = ("resource", "pci")


class TextFormatter(logging.Formatter):
    """``2026-11-30T07:05:38.237Z INFO sriovdp.daemon: message resource=... pci=...``"""

    def format(self, record: logging.LogRecord) -> str:
        ts = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
        line = f"{ts}.{int(record.msecs):03d} {record.levelname} {record.name}: {record.getMessage()}"
        ctx = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_KEYS if hasattr(record, k))
        if ctx:
            line += " " + ctx
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg and the context keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k in _CONTEXT_KEYS:
            if hasattr(record, k):
                doc[k] = getattr(record, k)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(*, verbosity: int = 0, fmt: str = "text", log_dir: str = "") -> None:
    """Configure the root logger.

    Args:
        verbosity: glog ``-v``; 5 or more logs DEBUG, otherwise INFO.
        fmt: ``text`` or ``json``.
        log_dir: glog ``-log_dir``; when set, also write ``<log_dir>/sriovdp.log``.
    """
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(log_dir) / "sriovdp.log",
                                            errors="backslashreplace"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbosity >= 5 else logging.INFO)
    logging.getLogger("asyncio").setLevel(logging.INFO)  # its debug lines are noise here
