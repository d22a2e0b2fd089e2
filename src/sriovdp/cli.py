"""Command line: the daemon (drop-in for the Go ``sriovdp`` flags) and its tools.

``sriovdp [flags]`` runs the daemon; ``sriovdp discover|validate|demo [flags]`` are tools.
Go-style flags are accepted: ``-config-file x``, ``--config-file=x``, ``-use-cdi=true``, and
the glog flags (``-v 10``, ``-logtostderr``, ``-log_dir D`` ...). This is the only module that
parses argv and turns errors into exit codes: 0 ok, 1 bad config or host, 2 bad usage.
Every default comes from :class:`~sriovdp.daemon.settings.Settings`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from sriovdp import __version__
from sriovdp.daemon.settings import Settings

if TYPE_CHECKING:
    from sriovdp.model.config import Config

# grpc core logs connection chatter (GOAWAY on every kubelet restart) at INFO on stderr;
# keep only its errors unless the operator asks for more.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

COMMANDS = ("run", "discover", "validate", "demo")
_BOOL_FLAGS = {"use-cdi", "logtostderr", "alsologtostderr"}
_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}
DEFAULTS = Settings()
# Files the daemon creates (sockets, device-info files, CDI specs) are never group- or
# world-writable, whatever umask the container runtime or a shell left.
UMASK = 0o022
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_EARLY_SIGNALS = (*_STOP_SIGNALS, signal.SIGHUP)
log = logging.getLogger("sriovdp")


def normalize_go_flags(argv: Sequence[str]) -> list[str]:
    """Rewrite Go ``flag`` spellings into argparse ones.

    ``-config-file x`` → ``--config-file x``; ``-v=4`` → ``--v=4``; ``--use-cdi=true`` →
    ``--use-cdi`` (``=false`` drops it), as Go's bool flags take values only after ``=``.
    """
    out: list[str] = []
    for arg in argv:
        if arg == "--":
            out.append(arg)
            continue
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 1 and arg[1].isalpha():
            if arg in ("-h",):
                out.append(arg)
                continue
            arg = "-" + arg
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            if name in _BOOL_FLAGS and value.lower() in _TRUE | _FALSE:
                if value.lower() in _TRUE:
                    out.append("--" + name)
                continue
        out.append(arg)
    return out


def _interval(text: str) -> float:
    import math

    value = float(text)
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected seconds >= 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    import math

    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _prefix(text: str) -> str:
    from sriovdp.model.config.names import prefix_problem

    problem = prefix_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _address(text: str) -> str:
    from sriovdp.daemon.http import parse_address

    if not text:
        return text  # off
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


@dataclass
class EarlySignals:
    """Signals that arrive before the daemon's own handlers exist (issue: a SIGHUP during
    start-up killed the process, a SIGINT ended it with a traceback).

    Installed first thing in :func:`main`: a stop signal is remembered and honoured as soon
    as the daemon can stop cleanly (before it creates anything: exit 0); a SIGHUP is
    remembered and ignored, as the config is read after it anyway. The signals are also
    unblocked, so a mask inherited from the parent cannot hold them back.
    """

    received: list[signal.Signals] = field(default_factory=list)

    @classmethod
    def install(cls) -> EarlySignals:
        early = cls()
        for sig in _EARLY_SIGNALS:
            signal.signal(sig, early._handle)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _EARLY_SIGNALS)
        return early

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum))

    @property
    def stop(self) -> signal.Signals | None:
        """The first stop signal received, if any."""
        return next((s for s in self.received if s in _STOP_SIGNALS), None)

    def restore_defaults(self) -> None:
        """For the tools: Ctrl-C interrupts them as usual."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)


_DESCRIPTIONS = {
    "run": "SR-IOV network device plugin daemon (Kubernetes device plugin API v1beta1).",
    "discover": "List every PCI function of the host a selector could name, and for each "
                "pool of the config which devices joined and why the others did not.",
    "validate": "Check a config file; exit 0 if valid, 1 with every problem otherwise.",
    "demo": "Run the daemon against a simulated host and kubelet, end to end (with "
            "--config-file: your config on the simulated host).",
}
_USAGE = {
    "run": "sriovdp [FLAGS]                      run the daemon\n"
           "       sriovdp {discover,validate,demo} [FLAGS]   tools (each with --help)",
}


def _add_config_flags(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    if demo:
        p.add_argument("--config-file", metavar="FILE", type=Path, default=None,
                       help="your resource pool config (JSON, or a ConfigMap manifest with a "
                            "config.json key) to run on the simulated host; "
                            "default: the demo's own config")
    else:
        p.add_argument("--config-file", metavar="FILE", type=Path, default=DEFAULTS.config_file,
                       help="resource pool config: JSON, or a ConfigMap manifest with a "
                            "config.json key (as deployments/base/configmap.yaml); "
                            "default %(default)s")
    p.add_argument("--resource-prefix", metavar="PREFIX", default=DEFAULTS.resource_prefix,
                   type=_prefix,
                   help="prefix of resources without resourcePrefix; default %(default)s")
    p.add_argument("--use-cdi", action="store_true", default=DEFAULTS.use_cdi,
                   help="Container Device Interface mode (CDI device names and specs); "
                        "default off")


def _add_kubelet_dir_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device-plugin-dir", metavar="DIR", type=Path,
                   default=DEFAULTS.device_plugin_dir,
                   help="the kubelet's device-plugins dir (kubelet.sock, and the pool sockets "
                        "when the registry dir is absent); default %(default)s")
    p.add_argument("--plugins-registry-dir", metavar="DIR", type=Path,
                   default=DEFAULTS.plugins_registry_dir,
                   help="the kubelet's plugin-watcher dir; if it exists at start the pool "
                        "sockets live there; default %(default)s")


def _add_host_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host-root", metavar="DIR", type=Path, default=DEFAULTS.host.root,
                   help="root under which sys/, dev/ and proc/ are read; default %(default)s")


def _add_log_flags(p: argparse.ArgumentParser, *, glog: bool) -> None:
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log lines as text or one JSON object each; default %(default)s")
    group = p.add_argument_group("glog flags (accepted for compatibility)") if glog else p
    group.add_argument("--v", "-v", type=int, default=0, metavar="N",
                       help="verbosity: 5 and up log sriovdp's debug messages; default 0")
    if not glog:
        return
    group.add_argument("--logtostderr", action="store_true",
                       help="logs go to stderr only: -log_dir is ignored, as in glog; "
                            "default off")
    group.add_argument("--alsologtostderr", action="store_true",
                       help="no effect: logs always go to stderr; default off")
    group.add_argument("--log_dir", default="", metavar="DIR",
                       help="also write DIR/sriovdp.log (not with -logtostderr); default: none")
    for name in ("--log_link", "--logbuflevel", "--log_backtrace_at", "--stderrthreshold",
                 "--vmodule"):
        group.add_argument(name, default=None, help=argparse.SUPPRESS)


def _parser(command: str) -> argparse.ArgumentParser:
    """The parser of one command, holding only the flags that command uses."""
    p = argparse.ArgumentParser(
        prog="sriovdp" if command == "run" else f"sriovdp {command}",
        usage=_USAGE.get(command),
        description=_DESCRIPTIONS[command],
    )
    _add_config_flags(p, demo=command == "demo")
    if command in ("run", "discover"):
        _add_host_flag(p)
    if command in ("run", "discover", "validate"):
        _add_kubelet_dir_flags(p)
    if command == "discover":
        from sriovdp.model.dra.names import DEFAULT_DRIVER as DRA_DEFAULT_DRIVER

        p.add_argument("--output", "-o", choices=("table", "json"), default="table",
                       help="table for reading, json for scripts (every field of every "
                            "device); default %(default)s")
        p.add_argument("--dra", nargs="?", const="marked", choices=("marked", "all"),
                       default=None,
                       help="print the ResourceSlices the daemon with the same flag would "
                            'publish: the pools marked "dra": true (--dra=all: every pool); '
                            "YAML, a JSON list with -o json; default off")
        p.add_argument("--dra-driver", metavar="DRIVER", type=_dra_driver,
                       default=DRA_DEFAULT_DRIVER,
                       help="DRA driver name (a DNS subdomain); default %(default)s")
        p.add_argument("--node-name", metavar="NODE", default=None,
                       help="node (and DRA pool) name; default $NODE_NAME, else the host name")
    if command == "validate":
        p.add_argument("--strict", action="store_true",
                       help="treat every warning (unknown keys, normalised values) as an "
                            "error; default off")
    if command in ("run", "validate"):
        p.add_argument("--dra", nargs="?", const="marked", choices=("marked", "all"),
                       default=None,
                       help=('serve the pools marked "dra": true (--dra=all: every pool) '
                             "through DRA (ResourceSlices and the kubelet DRA plugin) instead "
                             "of device plugin sockets; default off") if command == "run" else
                            ("check the config as the daemon with the same flag reads it: "
                             'pools marked "dra": true are DRA pools (--dra=all: every '
                             "pool); default off: a marked pool is an error"))
    if command == "run":
        _add_dra_flags(p)
    if command == "run":
        p.add_argument("--device-info-dir", metavar="DIR", type=Path,
                       default=DEFAULTS.device_info_dir,
                       help="NPWG device-info files; default %(default)s")
        p.add_argument("--cdi-dir", metavar="DIR", type=Path, default=DEFAULTS.cdi_dir,
                       help="CDI spec files (--use-cdi); default %(default)s")
        p.add_argument("--pod-resources-socket", metavar="SOCKET", type=Path,
                       default=DEFAULTS.pod_resources_socket,
                       help="kubelet pod resources API, asked what pods hold; "
                            "default %(default)s")
        p.add_argument("--kubelet-root-dir", metavar="DIR", type=Path,
                       default=DEFAULTS.kubelet_root_dir,
                       help="the kubelet's --root-dir as the host sees it, when this process "
                            "sees its dirs elsewhere (e.g. /data/kubelet mounted at "
                            "/var/lib/kubelet); watcher-mode GetInfo reports sockets under it; "
                            "default: as seen here")
        p.add_argument("--resync-interval", type=_interval, default=DEFAULTS.resync_interval,
                       metavar="SECONDS",
                       help="seconds between full rescans (>= 1); default %(default)s")
        p.add_argument("--settle-window", type=_seconds, default=DEFAULTS.settle_window,
                       metavar="SECONDS",
                       help="seconds a function that appeared or changed driver must stay so "
                            "before it joins a pool (0: at once); default %(default)s")
        p.add_argument("--kubelet-settle", type=_seconds, default=DEFAULTS.kubelet_settle,
                       metavar="SECONDS",
                       help="seconds after the kubelet's start during which its pod resources "
                            "answers release no device (it is still adding its pods) and the "
                            "first publication waits; default %(default)s")
        p.add_argument("--scan-deadline", type=_seconds, default=DEFAULTS.scan_deadline,
                       metavar="SECONDS",
                       help="a host scan running longer is logged and abandoned; "
                            "default %(default)s")
        p.add_argument("--health-address", type=_address, default=DEFAULTS.health_address,
                       metavar="[HOST]:PORT",
                       help="serve /healthz and /readyz here, e.g. :8081 (an empty or [::] "
                            "host: every IPv4 and IPv6 address); default off")
        p.add_argument("--metrics-address", type=_address, default=DEFAULTS.metrics_address,
                       metavar="[HOST]:PORT",
                       help="serve Prometheus /metrics here, e.g. :8082 (as "
                            "deployments/overlays/metrics); default off")
    p.add_argument("--version", action="version", version=f"sriovdp {__version__}")
    _add_log_flags(p, glog=command == "run")
    return p


def _add_dra_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dra-driver", metavar="DRIVER", type=_dra_driver,
                   default=DEFAULTS.dra_driver,
                   help="DRA driver name (a DNS subdomain); default %(default)s")
    p.add_argument("--node-name", metavar="NODE", default=DEFAULTS.node_name,
                   help="node (and DRA pool) name; default $NODE_NAME, else the host name")
    p.add_argument("--kubeconfig", metavar="FILE", type=Path, default=DEFAULTS.kubeconfig,
                   help="the apiserver for DRA mode; default: the in-cluster service "
                        "account, else $KUBECONFIG / ~/.kube/config")
    p.add_argument("--dra-health", choices=("withdraw", "taint"), default=DEFAULTS.dra_health,
                   help="an unhealthy device is left out of the ResourceSlices (withdraw) or "
                        "published with a NoSchedule taint (taint: needs the DRADeviceTaints "
                        "feature gate); default %(default)s")
    p.add_argument("--kubelet-plugins-dir", metavar="DIR", type=Path,
                   default=DEFAULTS.kubelet_plugins_dir,
                   help="the kubelet's plugins dir (dra.sock in <dir>/<driver>/); default: "
                        "plugins beside --device-plugin-dir (/var/lib/kubelet/plugins)")


def _dra_driver(text: str) -> str:
    from sriovdp.model.dra.names import check_driver_name

    try:
        return check_driver_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The sub-command and the flags without it.

    The command is the first word that is neither a flag nor a flag's value, so
    ``sriovdp --config-file demo`` runs the daemon with the config file ``demo``. Without a
    command word it is ``run`` (the Go binary's usage). ``argv`` is already normalised by
    :func:`normalize_go_flags`.
    """
    takes_value = {  # an optional value ("--dra") is only taken after "="
        opt for action in _parser("run")._actions if action.nargs not in (0, "?")
        for opt in action.option_strings
    }
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            break
        if token.startswith("-") and len(token) > 1:
            if token in takes_value:
                i += 1  # its value
        elif token in COMMANDS:
            return token, [*argv[:i], *argv[i + 1:]]
        i += 1
    return "run", list(argv)


def _settings(args: argparse.Namespace) -> Settings:
    # Absolute paths: gRPC reads "unix://dp/x.sock" as a host name, and the daemon's
    # directory watches must not depend on the working directory.
    from sriovdp.host.paths import HostPaths

    def path(name: str) -> Path:
        value: Path | None = getattr(args, name, None)
        chosen: Path = value if value is not None else getattr(DEFAULTS, name)
        return chosen.absolute()

    host_root = getattr(args, "host_root", DEFAULTS.host.root)
    dra = getattr(args, "dra", None)
    return Settings(
        host=HostPaths(host_root.absolute()),
        config_file=path("config_file"),
        resource_prefix=args.resource_prefix,
        device_plugin_dir=path("device_plugin_dir"),
        plugins_registry_dir=path("plugins_registry_dir"),
        device_info_dir=path("device_info_dir"),
        cdi_dir=path("cdi_dir"),
        pod_resources_socket=path("pod_resources_socket"),
        kubelet_root_dir=(None if getattr(args, "kubelet_root_dir", None) is None
                          else args.kubelet_root_dir.absolute()),
        use_cdi=args.use_cdi,
        resync_interval=getattr(args, "resync_interval", DEFAULTS.resync_interval),
        settle_window=getattr(args, "settle_window", DEFAULTS.settle_window),
        scan_deadline=getattr(args, "scan_deadline", DEFAULTS.scan_deadline),
        kubelet_settle=getattr(args, "kubelet_settle", DEFAULTS.kubelet_settle),
        health_address=getattr(args, "health_address", DEFAULTS.health_address),
        metrics_address=getattr(args, "metrics_address", DEFAULTS.metrics_address),
        own_pod=_own_pod(),
        **_dra_settings(args, dra),
    )


def _own_pod() -> tuple[str, str] | None:
    """``(namespace, name)`` of the pod this process runs in, from the downward API's
    ``POD_NAMESPACE`` and ``POD_NAME`` (the DaemonSet sets both); None when either is unset."""
    namespace, name = os.environ.get("POD_NAMESPACE", ""), os.environ.get("POD_NAME", "")
    return (namespace, name) if namespace and name else None


def _dra_settings(args: argparse.Namespace, dra: str | None) -> dict[str, Any]:
    """The DRA fields of :class:`Settings` (only ``dra`` for ``validate``)."""
    from sriovdp.model.dra.modes import DraMode
    from sriovdp.model.dra.slices import HealthPolicy

    if hasattr(args, "output"):  # discover reads a config made for either mode
        return {"dra": DraMode(dra or DraMode.MARKED)}
    out: dict[str, Any] = {"dra": DraMode(dra) if dra else None}
    if not hasattr(args, "kubelet_plugins_dir"):  # only run has the daemon's DRA flags
        return out
    from sriovdp.discover_dra import default_node_name

    plugins = args.kubelet_plugins_dir
    out.update(dra_driver=args.dra_driver, node_name=args.node_name or default_node_name(),
               kubeconfig=args.kubeconfig.absolute() if args.kubeconfig else None,
               dra_health=HealthPolicy(args.dra_health),
               kubelet_plugins_dir=plugins.absolute() if plugins else None)
    return out


class UnreadableConfig(Exception):
    """The config file cannot be read at all (missing, not a file): not an invalid config."""


class UsageError(Exception):
    """A flag whose value cannot work (exit 2)."""


# A pool socket is "<prefix>_<name>.sock": leave room for at least this one.
_SHORT_SOCKET_NAME = "intel.com_sriov.sock"


def _check_socket_dir(settings: Settings) -> Path:
    """The directory the pool sockets go to; a :class:`UsageError` naming the flag when it is
    too long to hold any socket (a unix socket path holds at most 107 bytes)."""
    from sriovdp.kubelet.endpoint import KubeletDirs
    from sriovdp.model.config.deployment import UNIX_PATH_MAX

    dirs = KubeletDirs.detect(settings.device_plugin_dir, settings.plugins_registry_dir)
    socket_dir = dirs.socket_dir
    room = UNIX_PATH_MAX - len(os.fsencode(socket_dir)) - 1
    if room < len(_SHORT_SOCKET_NAME):
        flag = ("--plugins-registry-dir" if socket_dir == settings.plugins_registry_dir
                else "--device-plugin-dir")
        raise UsageError(
            f"{flag} {str(socket_dir)!r} is {len(os.fsencode(socket_dir))} bytes long: a unix "
            f"socket path holds at most {UNIX_PATH_MAX} bytes, which leaves "
            f"{max(room, 0)} for the pool sockets' names (e.g. {_SHORT_SOCKET_NAME!r}); use a "
            f"shorter directory")
    return socket_dir


def _check_dra(settings: Settings) -> None:
    """A :class:`UsageError` when the node name cannot be a DRA pool name."""
    from sriovdp.model.dra.names import DraNameError, check_pool_name

    try:
        check_pool_name(settings.node_name)
    except DraNameError as exc:
        raise UsageError(f"--node-name: {exc}") from None
    log.info("DRA mode (%s): driver %s, node %s, plugin dir %s", settings.dra,
             settings.dra_driver, settings.node_name,
             settings.plugins_dir / settings.dra_driver)


def _load(settings: Settings, *, check_sockets: bool = True, strict: bool = False) -> Config:
    """The config of ``settings``: a JSON file or a ConfigMap manifest holding one (the file
    an operator edits is ``deployments/base/configmap.yaml``), read as every command and the
    daemon's reloads read it (:func:`~sriovdp.daemon.configfile.load_config`)."""
    from sriovdp.daemon.configfile import load_config, read_config_bytes
    from sriovdp.errors import ConfigError

    socket_dir = _check_socket_dir(settings) if check_sockets else None
    try:
        text = read_config_bytes(settings.config_file)
    except ConfigError as exc:
        if isinstance(exc.__cause__, OSError) or not settings.config_file.is_file():
            raise UnreadableConfig(str(exc.problems[0])) from None
        raise  # too large: a problem of the config itself
    config = load_config(settings.config_file, default_prefix=settings.resource_prefix,
                         use_cdi=settings.use_cdi, socket_dir=socket_dir, text=text,
                         strict=strict, dra=settings.dra)
    for warning in config.warnings:
        log.warning("config %s: %s", settings.config_file, warning,
                    extra={"problems": [warning.record("warning")]})
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sriovdp`` console script; returns the exit code."""
    early = EarlySignals.install()  # first: a signal during start-up must not kill us
    os.umask(UMASK)
    raw = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # odd bytes in sysfs names never crash output
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    command, flags = split_command(normalize_go_flags(raw))
    if command != "run":
        early.restore_defaults()
    parser = _parser(command)
    args, extra = parser.parse_known_args(flags)
    unknown = [a for a in extra if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from sriovdp.logconfig import setup_logging

    log_dir = "" if getattr(args, "logtostderr", False) else getattr(args, "log_dir", "")
    try:
        setup_logging(verbosity=args.v, fmt=args.log_format, log_dir=log_dir)
    except OSError as exc:
        print(f"sriovdp: -log_dir {log_dir!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    settings = _settings(args)
    for flag, path in (("--device-plugin-dir", settings.device_plugin_dir),
                       ("--device-info-dir", settings.device_info_dir),
                       ("--cdi-dir", settings.cdi_dir if settings.use_cdi else None)):
        if path is not None and path.exists() and not path.is_dir():
            print(f"sriovdp: {flag} {str(path)!r} is not a directory", file=sys.stderr)
            return 2
    try:
        return _run_command(command, settings, args, early)
    except BrokenPipeError:  # `sriovdp discover | head`: the reader is gone, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run_command(command: str, settings: Settings, args: argparse.Namespace,
                 early: EarlySignals) -> int:
    from sriovdp.errors import ConfigError, HostError

    try:
        if command == "demo":
            from sriovdp.testing.demo import run_demo

            return run_demo(config_file=args.config_file, use_cdi=args.use_cdi,
                            resource_prefix=args.resource_prefix, verbosity=args.v)
        if command == "validate":
            return _validate(settings, strict=args.strict)
        if command == "discover":
            if args.dra is not None:
                return _discover_dra(settings, args.dra_driver, args.node_name, args.output)
            return _discover(settings, args.output)
        return _run(settings, early)
    except UsageError as exc:
        print(f"sriovdp: {exc}", file=sys.stderr)
        return 2
    except UnreadableConfig as exc:
        _report_error(f"config file: {exc}", args.log_format)
        return 1
    except ConfigError as exc:
        problems = [p.record() for p in exc.problems]
        _report_error(str(exc), args.log_format,
                      problems=problems + [w.record("warning") for w in exc.warnings])
        return 1
    except HostError as exc:
        _report_error(str(exc), args.log_format)
        return 1


def _report_error(message: str, log_format: str,
                  problems: list[dict[str, str]] | None = None) -> None:
    """On stderr: ``sriovdp: message``, or one JSON log record with ``--log-format json``."""
    if log_format == "json":
        extra = {"problems": problems} if problems is not None else {}
        log.error("%s", message, extra=extra)
    else:
        print(f"sriovdp: {message}", file=sys.stderr)



def _validate(settings: Settings, *, strict: bool = False) -> int:
    from sriovdp.model.dra.modes import served_by_dra

    config = _load(settings, strict=strict)
    for r in config.resources:
        dra = ", DRA" if served_by_dra(r, settings.dra) else ""
        print(f"ok: {r.resource_name(settings.resource_prefix)} ({r.kind}, "
              f"{len(r.selectors)} selector{'s' if len(r.selectors) != 1 else ''}{dra})")
    count = len(config.resources)
    print(f"{settings.config_file}: valid, {count} resource{'s' if count != 1 else ''}")
    if settings.dra is not None and not any(served_by_dra(r, settings.dra)
                                            for r in config.resources):
        print('note: with --dra no pool is served through DRA: mark pools "dra": true, or '
              "use --dra=all (every pool)")
    return 0


def _discover(settings: Settings, output: str) -> int:
    import json

    from sriovdp.discover import discover_report, render_table

    config: Config | None
    try:
        config = _load(settings, check_sockets=False)
    except UnreadableConfig as exc:
        if settings.config_file.exists():
            raise
        log.warning("config file: %s; listing devices only", exc)
        config = None
    report = discover_report(settings, config)
    if output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    return 0


def _discover_dra(settings: Settings, driver: str, node_name: str | None, output: str) -> int:
    import json

    from sriovdp.discover_dra import default_node_name, dra_slices, render_yaml
    from sriovdp.model.dra.modes import DraMode, served_by_dra
    from sriovdp.model.dra.names import DraNameError

    config = _load(settings)
    mode = settings.dra or DraMode.MARKED
    try:
        slices = dra_slices(settings, config, driver=driver,
                            node_name=node_name or default_node_name(), mode=mode)
    except DraNameError as exc:
        print(f"sriovdp: {exc} (set --node-name)", file=sys.stderr)
        return 2
    print(json.dumps(slices, indent=2) + "\n" if output == "json" else render_yaml(slices),
          end="")
    dra_pools = [r.resource_name(settings.resource_prefix) for r in config.resources
                 if served_by_dra(r, mode)]
    if not dra_pools:
        log.warning('no pool of %s is marked "dra": true: with --dra this node publishes no '
                    "device (sriovdp discover --dra=all shows every pool, as the daemon "
                    "with --dra=all publishes them)", settings.config_file)
    elif not any(s["spec"]["devices"] for s in slices):
        host = "" if settings.host.root == Path("/") else f" --host-root {settings.host.root}"
        log.warning("no device joined a DRA pool (%s): sriovdp discover --config-file %s%s "
                    "shows why each device is not in each pool", ", ".join(dra_pools),
                    settings.config_file, host)
    return 0


def _run(settings: Settings, early: EarlySignals) -> int:
    import asyncio
    import threading

    from sriovdp.daemon.reconciler import Reconciler
    from sriovdp.errors import HostError

    log.info("sriovdp %s starting; config %s, host root %s", __version__,
             settings.config_file, settings.host.root)
    if settings.dra is not None:
        _check_dra(settings)
    config = _load(settings)  # a bad config exits 1 here, before any socket exists
    if not settings.host.pci_devices.is_dir():
        raise HostError(f"{settings.host.pci_devices} does not exist (wrong --host-root?)")

    async def amain() -> None:
        from sriovdp.host.links import PyrouteLinkSource
        from sriovdp.host.uevents import UeventSource

        # Kernel uevents describe the real host: only useful when scanning it.
        uevents = UeventSource() if settings.host.root == Path("/") else None
        daemon = Reconciler(settings, config, links=PyrouteLinkSource(), uevents=uevents,
                            freeze_gc=True)
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            log.info('Received signal "%s", shutting down.', sig.name)
            daemon.stop()

        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig)

        def on_hangup() -> None:
            log.info("SIGHUP: reloading %s and rescanning the host", settings.config_file)
            daemon.reload_config("SIGHUP")
            daemon.trigger("SIGHUP")

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        # A stop signal that came during start-up (before the handlers above): stop at once.
        if early.stop is not None:
            on_signal(early.stop)
        await daemon.run()

    if early.stop is not None:
        log.info('Received signal "%s" while starting, shutting down.', early.stop.name)
        return 0
    try:
        asyncio.run(amain())
    except HostError as exc:
        print(f"sriovdp: {exc}", file=sys.stderr)
        return 1
    log.info("sriovdp stopped")
    if threading.active_count() > 1:
        # a scan still stuck on a wedged sysfs file or tool: the shutdown itself is done
        # (sockets removed), so do not wait for it at interpreter exit
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
