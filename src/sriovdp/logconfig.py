"""Logging set-up: text or JSON lines on stderr (and a file under ``-log_dir``).

Records may carry ``extra={"resource": ..., "pci": ...}``; both formats print them (JSON
also prints ``problems``, the config errors and warnings a record is about: path, message,
severity). Timestamps are RFC 3339 in UTC (``2026-11-30T07:05:38.237Z``). Only sriovdp's
own loggers follow ``-v``: the libraries (grpc, pyroute2, asyncio, asyncinotify) log
warnings and errors only, so ``-v 10`` (what the Go DaemonSets pass) shows sriovdp's debug
messages and not their internals.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

_CONTEXT_KEYS = ("resource", "pci")
_JSON_ONLY_KEYS = ("problems",)
# Libraries whose debug and info lines are their internals, not the plugin's story.
QUIET_LIBRARIES = ("grpc", "pyroute2", "asyncio", "asyncinotify", "prometheus_client")


def rfc3339(created: float) -> str:
    """``2026-11-30T07:05:38.237Z``: RFC 3339, UTC, milliseconds."""
    whole = int(created)
    millis = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-11-30T07:05:38.237Z INFO sriovdp.daemon: message resource=... pci=...``"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{rfc3339(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
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
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k in (*_CONTEXT_KEYS, *_JSON_ONLY_KEYS):
            if hasattr(record, k):
                doc[k] = getattr(record, k)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(*, verbosity: int = 0, fmt: str = "text", log_dir: str = "") -> None:
    """Configure the root logger.

    Args:
        verbosity: glog ``-v``; 5 or more logs sriovdp's DEBUG messages, otherwise INFO.
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
    root.setLevel(logging.INFO)
    logging.getLogger("sriovdp").setLevel(logging.DEBUG if verbosity >= 5 else logging.INFO)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
