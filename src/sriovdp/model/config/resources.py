"""The parsed config: a :class:`Config` of :class:`ResourceConfig` values, frozen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sriovdp.errors import ConfigProblem
from sriovdp.model.devices import DeviceKind
from sriovdp.model.selectors import Selector

DEFAULT_PREFIX = "intel.com"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceConfig:
    """One ``resourceList`` entry.

    Attributes:
        name: ``resourceName``, e.g. ``"intel_sriov_netdevice"``.
        prefix: ``resourcePrefix`` override; None means the CLI ``--resource-prefix``.
        kind: ``deviceType`` (default ``netDevice``).
        selectors: the selector objects in file order (a device is taken by the first match).
        exclude_topology: ``excludeTopology``: advertise no NUMA node for this pool.
        additional_info: ``additionalInfo`` (``{"*": {...}, "<pci address>": {...}}``);
            None when absent or null (an empty object still adds ``"extra": {}`` to ``_INFO``).
        dra: ``"dra": true``: served through DRA (ResourceSlices) instead of a device plugin
            socket when the daemon runs with ``--dra``.
        selector_paths: the JSON path of each selector in the file, e.g.
            ``resourceList[0].selectors[1]``, or ``resourceList[0].selectors`` for the legacy
            single object (``()`` when not parsed from a file); not compared.
    """

    name: str
    prefix: str | None = None
    kind: DeviceKind = DeviceKind.NET
    selectors: tuple[Selector, ...] = ()
    exclude_topology: bool = False
    additional_info: Mapping[str, Mapping[str, str]] | None = None
    dra: bool = False
    selector_paths: tuple[str, ...] = field(default=(), compare=False)

    def selector_path(self, index: int) -> str:
        """Where selector ``index`` is in the file (``selectors[i]`` when not known)."""
        if index < len(self.selector_paths):
            return self.selector_paths[index]
        return f"selectors[{index}]"

    def effective_prefix(self, default_prefix: str) -> str:
        """``resourcePrefix`` if set, else ``default_prefix``."""
        return self.prefix or default_prefix

    def resource_name(self, default_prefix: str) -> str:
        """The extended resource name, e.g. ``intel.com/intel_sriov_netdevice``."""
        return f"{self.effective_prefix(default_prefix)}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A parsed, valid config: the resources in file order plus non-fatal warnings
    (unknown keys, explicit identifiers in odd forms ...); at most 20 warnings are listed,
    then one ``... and K more warnings``."""

    resources: tuple[ResourceConfig, ...] = ()
    warnings: tuple[ConfigProblem, ...] = ()
