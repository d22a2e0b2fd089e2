"""Daemon settings, resolved once from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sriovdp.host.paths import HostPaths
from sriovdp.model.config import DEFAULT_PREFIX
from sriovdp.model.dra.modes import DraMode
from sriovdp.model.dra.names import DEFAULT_DRIVER
from sriovdp.model.dra.slices import HealthPolicy

DEFAULT_CONFIG_FILE = Path("/etc/pcidp/config.json")
DEFAULT_DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
DEFAULT_PLUGINS_REGISTRY_DIR = Path("/var/lib/kubelet/plugins_registry")
DEFAULT_DEVICE_INFO_DIR = Path("/var/run/k8s.cni.cncf.io/devinfo/dp")
DEFAULT_CDI_DIR = Path("/var/run/cdi")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the daemon needs to know before it starts.

    Attributes:
        host: where ``sys/``, ``dev/`` and ``proc/`` are read.
        config_file: the resource-pool config (JSON).
        resource_prefix: default prefix, e.g. ``intel.com``.
        device_plugin_dir: kubelet's ``device-plugins`` dir (``kubelet.sock``).
        plugins_registry_dir: kubelet's plugin-watcher dir; its presence at start selects
            watcher-mode registration.
        device_info_dir: NPWG device-info files.
        cdi_dir: CDI spec files (``--use-cdi``).
        use_cdi: CDI mode.
        resync_interval: seconds between full rescans when no event arrives.
        health_address: ``[host]:port`` for ``/healthz`` and ``/readyz``; "" = off.
        metrics_address: ``[host]:port`` for Prometheus ``/metrics``; "" = off.
        watch_config: reload the config file when it changes (and on SIGHUP).
        pod_resources_socket: the kubelet's pod resources API, asked what pods hold.
        kubelet_root_dir: the kubelet's ``--root-dir`` as the *host* sees it (e.g.
            ``/data/kubelet``), when this process sees the kubelet's directories elsewhere
            (a container mounting them at ``/var/lib/kubelet``). The host paths of the
            plugin registry (``<root>/plugins_registry``: watcher-mode GetInfo reports our
            socket there, the path the kubelet dials) and of the pod resources socket
            (``<root>/pod-resources/kubelet.sock``) derive from it; ``plugins_registry_dir``
            and ``pod_resources_socket`` stay where this process sees them. The device-plugins
            dir does not move: the kubelet hard-codes ``/var/lib/kubelet/device-plugins``.
            None: the kubelet sees the paths as this process does.
        settle_window: seconds a PCI function that appeared or changed driver must stay so
            before it joins a pool (0: at once). 0.5 s: operators rebind within a few hundred
            ms, and a new VF must still reach the kubelet within 1 s (G10).
        scan_deadline: seconds after which a host scan is logged and abandoned (the
            previous view is kept; ``/readyz`` names the stuck scan until it returns).
        own_pod: ``(namespace, name)`` of the pod this daemon runs in (``POD_NAMESPACE`` and
            ``POD_NAME``). A pod resources answer without it comes from a kubelet that has
            not got its pods yet, and does not release holds. None: not run as a pod.
        kubelet_settle: seconds after the kubelet's start (``kubelet.sock`` created) during
            which its pod resources answers may lack pods it is still adding (its API server
            pods arrive in one batch, added one by one): they add holds but release none,
            and the first publication waits until the kubelet is this old.
        dra: ``--dra``: pools marked ``"dra": true`` (``ALL``: every pool) are served
            through DRA (ResourceSlices and the kubelet DRA plugin); None: off.
        dra_driver: the DRA driver name (a DNS subdomain).
        node_name: this node (and its DRA pool); "" = not known (DRA mode needs it).
        kubeconfig: the apiserver's kubeconfig for DRA mode; None: in-cluster config, else
            ``$KUBECONFIG`` / ``~/.kube/config``.
        dra_health: how an Unhealthy device looks in the slices (withdrawn or tainted).
        kubelet_plugins_dir: the kubelet's ``plugins`` dir (``dra.sock`` goes to
            ``<dir>/<driver>/``); None: ``plugins`` beside ``device_plugin_dir``.
    """

    host: HostPaths = HostPaths(Path("/"))
    config_file: Path = DEFAULT_CONFIG_FILE
    resource_prefix: str = DEFAULT_PREFIX
    device_plugin_dir: Path = DEFAULT_DEVICE_PLUGIN_DIR
    plugins_registry_dir: Path = DEFAULT_PLUGINS_REGISTRY_DIR
    device_info_dir: Path = DEFAULT_DEVICE_INFO_DIR
    cdi_dir: Path = DEFAULT_CDI_DIR
    use_cdi: bool = False
    resync_interval: float = 30.0
    health_address: str = ""
    metrics_address: str = ""
    watch_config: bool = True
    pod_resources_socket: Path = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    kubelet_root_dir: Path | None = None
    settle_window: float = 0.5
    scan_deadline: float = 60.0
    own_pod: tuple[str, str] | None = None
    kubelet_settle: float = 10.0
    dra: DraMode | None = None
    dra_driver: str = DEFAULT_DRIVER
    node_name: str = ""
    kubeconfig: Path | None = None
    dra_health: HealthPolicy = HealthPolicy.WITHDRAW
    kubelet_plugins_dir: Path | None = None

    @property
    def plugins_dir(self) -> Path:
        """The kubelet's ``plugins`` dir as this process sees it."""
        if self.kubelet_plugins_dir is not None:
            return self.kubelet_plugins_dir
        return self.device_plugin_dir.parent / "plugins"
