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


class SriovdpError(Exception):
    """Base of every error sriovdp raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file.

    Attributes:
        path: JSON path of the offending element, e.g. ``resourceList[1].selectors[0].pfNames[0]``
            (``""`` for the whole document).
        message: what is wrong, e.g. ``bad VF range "5-2"``.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(SriovdpError):
    """A config file that cannot be used; ``problems`` lists every problem found.

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
        self.problems = [problems] if isinstance(problems, ConfigProblem) else list(problems)
        self.source = source
        self.warnings = list(warnings)
        head = f"invalid config {source}" if source else "invalid config"
        lines = [f"  {p}" for p in self.problems] + [f"  warning: {w}" for w in self.warnings]
        super().__init__(head + ":\n" + "\n".join(lines))


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
