"""The resource-pool config file (same format as the Go plugin's ``config.json``).

``parse_config`` turns the file's content into frozen :class:`ResourceConfig` values or raises
:class:`~sriovdp.errors.ConfigError` listing the problems with their JSON paths::

    {"resourceList": [                              # null or missing: no resources
      {"resourceName": "sriov_net",                 # ^[a-zA-Z0-9_-]+$, unique per prefix
       "resourcePrefix": "example.com",             # optional, "" means the default prefix
       "deviceType": "netDevice",                   # or accelerator / auxNetDevice; "" → netDevice
       "excludeTopology": false,
       "selectors": [{"vendors": ["8086"], "pfNames": ["ens1f0#0-3"]}],   # or one object
       "additionalInfo": {"*": {"k": "v"}, "0000:3b:02.1": {"k": "w"}}}]}

Decoding follows Go ``encoding/json`` where users rely on it: keys match case-insensitively
at every level (``IsRdma``, ``isrdma``, ``PfNames``), the last of duplicate keys wins, and
``null`` leaves a field's default. Unlike the Go plugin, nothing is silently ignored or
silently useless: an unknown key inside a selector is an error (it would leave the pool
wider than written), other unknown keys and values that had to be normalised
(``"0x8086"``, ``"00:06.0"``) are :attr:`Config.warnings`; values that can select nothing
(``"ens1#3-"``, ``"intel"``) are errors. Input is bounded: 1 MiB (a ConfigMap's limit), 64
levels, 1,000 resources, the first 20 problems listed, each at most 400 characters.

Modules, in the order a document goes through them: :mod:`.jsondoc` (Go-compatible JSON
decoding), :mod:`.schema` (JSON types, known keys), :mod:`.values` (value normalisers),
:mod:`.names` (name rules), :mod:`.document` (the walk), :mod:`.report` (bounded problems),
:mod:`.resources` (the result); :mod:`.deployment` checks a parsed config against the
daemon's settings (file names, CDI, socket paths).
"""

from sriovdp.model.config.document import MAX_RESOURCES, parse_config
from sriovdp.model.config.jsondoc import MAX_CONFIG_BYTES, MAX_DEPTH, size_problem
from sriovdp.model.config.resources import DEFAULT_PREFIX, Config, ResourceConfig

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_RESOURCES",
    "Config",
    "ResourceConfig",
    "parse_config",
    "size_problem",
]
