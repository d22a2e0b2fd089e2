"""Resource names: the Go plugin's rule, what the kubelet's registration accepts, and the
env var names an Allocate sets (which must not collide between two pools)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sriovdp.model.config.report import Report, join, show
from sriovdp.model.config.resources import ResourceConfig
from sriovdp.model.ids import posix_env_var_name, valid_resource_name

_DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MAX_PREFIX = 253 - len("requests.")  # the kubelet checks "requests.<prefix>" as a subdomain
_MAX_NAME = 63


def prefix_problem(prefix: str) -> str | None:
    """Why the kubelet would reject ``<prefix>/<name>`` because of ``prefix``, if it would."""
    if len(prefix) > _MAX_PREFIX or not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
        return 'is not a lower-case DNS subdomain like "example.com"'
    if prefix.startswith("requests."):
        return 'is reserved: the kubelet rejects names starting with "requests."'
    if prefix.endswith("kubernetes.io"):
        return 'is reserved: the kubelet rejects names containing "kubernetes.io/"'
    return None


@dataclass
class Names:
    """Checks resource names one resource at a time, remembering those seen before."""

    default_prefix: str
    report: Report
    seen: dict[str, str] = field(default_factory=dict)  # extended name → path
    env_vars: dict[str, tuple[str, str]] = field(default_factory=dict)  # POSIX → (name, path)
    default_reported: bool = False

    def check(self, cfg: ResourceConfig, path: str, name_key: str = "resourceName") -> None:
        """``name_key``: ``resourceName`` as the file spells it, for the problem's path."""
        name_path = join(path, name_key)
        if not cfg.name:
            self.report.error(name_path, 'missing: every resource needs a name, e.g. "sriov_net"')
            return
        if not valid_resource_name(cfg.name):
            self.report.error(
                name_path,
                f'resource name {show(cfg.name)} contains invalid characters: '
                'use only letters, digits, "_" and "-"',
            )
            return
        full = cfg.resource_name(self.default_prefix)
        self._kubelet_rules(cfg, path, name_path, full)
        if full in self.seen:
            self.report.error(name_path, f"{show(full)} already exists (at {self.seen[full]})")
            return
        self.seen[full] = path
        self._env_vars(cfg, name_path, full)

    def _env_vars(self, cfg: ResourceConfig, name_path: str, full: str) -> None:
        """Allocate sets ``PCIDEVICE_<PREFIX>_<NAME>`` as the Go plugin does and, when that
        holds ``-`` or ``/``, its POSIX form too: two pools sharing a POSIX form would
        overwrite each other's variables in a container given both."""
        prefix = cfg.effective_prefix(self.default_prefix)
        posix = posix_env_var_name(prefix, cfg.name)
        if posix in self.env_vars:
            other, other_path = self.env_vars[posix]
            self.report.error(
                name_path,
                f"{show(full)} and {show(other)} (at {other_path}) would both set {posix} in a "
                "container given both: rename one of them",
            )
            return
        self.env_vars[posix] = (full, name_path)

    def _kubelet_rules(self, cfg: ResourceConfig, path: str, name_path: str, full: str) -> None:
        if len(cfg.name) > _MAX_NAME:
            self.report.error(
                name_path,
                f"resource name {show(cfg.name)} is {len(cfg.name)} characters long; "
                f"the kubelet accepts at most {_MAX_NAME}",
            )
        if not (cfg.name[0].isalnum() and cfg.name[-1].isalnum()):
            self.report.error(
                name_path,
                f"resource name {show(cfg.name)} must start and end with a letter or digit "
                f"(the kubelet rejects {show(full)})",
            )
        prefix = cfg.effective_prefix(self.default_prefix)
        problem = prefix_problem(prefix)
        if problem is None:
            return
        if cfg.prefix:
            self.report.error(join(path, "resourcePrefix"),
                              f"resource prefix {show(prefix)} {problem}")
        elif not self.default_reported:
            self.default_reported = True
            self.report.error("", f"default resource prefix {show(prefix)} {problem}")
