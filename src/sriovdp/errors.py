"""The exceptions sriovdp raises, as one small tree::

    SriovdpError
    ├── ConfigError          bad config file: every problem with its JSON path and value
    ├── HostError            the host could not be read (sysfs root missing, ...)
    └── AllocationError      a gRPC request named devices the pool does not have

Adapters translate OSError / grpc / netlink errors into these at their edge; only
``sriovdp.cli`` turns them into exit codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_LISTED_PROBLEMS = 20
"""A :class:`ConfigError` lists at most this many problems (and warnings), then a count."""
MAX_PATH_CHARS = 200
MAX_MESSAGE_CHARS = 400


class SriovdpError(Exception):
    """Base of every error sriovdp raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file.

    Attributes:
        path: JSON path of the offending element, e.g. ``resourceList[1].selectors[0].pfNames[0]``
            (``""`` for the whole document).
        message: what is wrong, e.g. ``bad VF range "5-2"``.

    Both are bounded (200 and 400 characters, cut with ``...``) and one line each, so one
    problem never floods a log, whatever the input.
    """

    path: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _one_line(self.path, MAX_PATH_CHARS))
        object.__setattr__(self, "message", _one_line(self.message, MAX_MESSAGE_CHARS))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def record(self, severity: str = "error") -> dict[str, str]:
        """The problem as an entry of a JSON log record's ``problems`` list:
        ``{"path", "message", "severity"}``, ``severity`` ``error`` or ``warning``."""
        return {"path": self.path, "message": self.message, "severity": severity}


def _one_line(text: str, limit: int) -> str:
    if "\n" in text or "\r" in text:
        text = text[: limit * 2].replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def listed(items: Sequence[ConfigProblem], what: str = "problems",
           total: int | None = None) -> list[ConfigProblem]:
    """The first :data:`MAX_LISTED_PROBLEMS` of ``items`` and, when ``total`` (default
    ``len(items)``) is larger, a last entry ``... and K more <what>``. A list that already
    ends with such an entry is returned as it is."""
    if total is None:
        if items and _is_summary(items[-1]) and len(items) <= MAX_LISTED_PROBLEMS + 1:
            return list(items)
        total = len(items)
    if total <= MAX_LISTED_PROBLEMS:
        return list(items)
    more = total - MAX_LISTED_PROBLEMS
    noun = what if more != 1 else what.removesuffix("s")
    return [*items[:MAX_LISTED_PROBLEMS], ConfigProblem(
        "", f"{_SUMMARY}{more} more {noun} (only the first {MAX_LISTED_PROBLEMS} are listed)")]


_SUMMARY = "... and "


def _is_summary(problem: ConfigProblem) -> bool:
    return not problem.path and problem.message.startswith(_SUMMARY)


class ConfigError(SriovdpError):
    """A config file that cannot be used; ``problems`` lists the problems found (the first
    20, then one ``... and K more problems`` entry: see :func:`listed`).

    ``warnings`` are the non-fatal findings of the same parse (unknown keys ...), kept
    because they often explain a problem (``"auxtype"`` → ``auxTypes: missing``).
    """

    def __init__(
        self,
        problems: list[ConfigProblem] | ConfigProblem,
        source: str = "",
        *,
        warnings: Sequence[ConfigProblem] = (),
    ) -> None:
        self.problems = listed([problems] if isinstance(problems, ConfigProblem) else problems)
        self.source = source
        self.warnings = listed(warnings, "warnings")
        head = f"invalid config {source}" if source else "invalid config"
        lines = [f"  {p}" for p in self.problems] + [f"  warning: {w}" for w in self.warnings]
        super().__init__(head + ":\n" + "\n".join(lines))

    def with_source(self, source: str) -> ConfigError:
        """The same problems and warnings, headed with ``source`` (the file's path)."""
        return ConfigError(self.problems, source, warnings=self.warnings)


class HostError(SriovdpError):
    """The host (sysfs tree) could not be read at all."""


class AllocationError(SriovdpError):
    """A request named device ids that are not in the pool.

    Attributes:
        unknown: the ids, in request order.
        resource: the extended resource name, e.g. ``intel.com/sriov_net``.
    """

    def __init__(self, resource: str, unknown: list[str]) -> None:
        self.resource = resource
        self.unknown = list(unknown)
        shown = ", ".join(repr(i if len(i) <= 64 else i[:61] + "...") for i in self.unknown[:5])
        more = f" and {len(self.unknown) - 5} more" if len(self.unknown) > 5 else ""
        super().__init__(f"unknown device id(s) for {resource}: {shown}{more}")
