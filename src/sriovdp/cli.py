"""Command line: the daemon (drop-in for the Go ``sriovdp`` flags) and its tools.

``sriovdp [flags]`` runs the daemon; ``sriovdp discover|validate|demo [flags]`` are tools.
Go-style flags are accepted: ``-config-file x``, ``--config-file=x``, ``-use-cdi=true``, and
the glog flags (``-v 10``, ``-logtostderr``, ``-log_dir D`` ...). This is the only module that
parses argv and turns errors into exit codes: 0 ok, 1 bad config or host, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from sriovdp import __version__
from sriovdp.daemon import settings as defaults
from sriovdp.daemon.configfile import load_config
from sriovdp.daemon.settings import Settings
from sriovdp.errors import ConfigError, HostError
from sriovdp.host.paths import HostPaths
from sriovdp.logconfig import setup_logging
from sriovdp.model.config import DEFAULT_PREFIX, Config
from sriovdp.model.dra.names import DEFAULT_DRIVER as DRA_DEFAULT_DRIVER
from sriovdp.model.dra.names import DraNameError, check_driver_name

log = logging.getLogger("sriovdp")
# grpc core logs connection chatter (GOAWAY on every kubelet restart) at INFO on stderr;
# keep only its errors unless the operator asks for more.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

COMMANDS = ("run", "discover", "validate", "demo")
_BOOL_FLAGS = {"use-cdi", "logtostderr", "alsologtostderr"}
_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


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
    value = float(text)
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"expected seconds >= 1, got {text!r}")
    return value


def _address(text: str) -> str:
    from sriovdp.daemon.http import parse_address

    if not text:
        return text  # off
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sriovdp" if command == "run" else f"sriovdp {command}",
        description={
            "run": "SR-IOV network device plugin daemon (Kubernetes device plugin API v1beta1). "
                   "Tools: 'sriovdp discover', 'sriovdp validate', 'sriovdp demo' "
                   "(each with --help).",
            "discover": "List the host's network and accelerator PCI functions and, for each "
                        "pool of the config, which devices joined and why the others did not.",
            "validate": "Check a config file; exit 0 if valid, 1 with every problem otherwise.",
            "demo": "Run the daemon against a simulated host and kubelet, end to end.",
        }[command],
    )
    p.add_argument("--config-file", type=Path, default=defaults.DEFAULT_CONFIG_FILE,
                   help="resource pool config (JSON); default %(default)s")
    p.add_argument("--resource-prefix", default=DEFAULT_PREFIX,
                   help="default resource name prefix; default %(default)s")
    p.add_argument("--use-cdi", action="store_true", help="Container Device Interface mode")
    p.add_argument("--host-root", type=Path, default=Path("/"),
                   help="root under which sys/, dev/ and proc/ are read; default /")
    p.add_argument("--device-plugin-dir", type=Path, default=defaults.DEFAULT_DEVICE_PLUGIN_DIR)
    p.add_argument("--plugins-registry-dir", type=Path,
                   default=defaults.DEFAULT_PLUGINS_REGISTRY_DIR)
    p.add_argument("--device-info-dir", type=Path, default=defaults.DEFAULT_DEVICE_INFO_DIR)
    p.add_argument("--cdi-dir", type=Path, default=defaults.DEFAULT_CDI_DIR)
    p.add_argument("--pod-resources-socket", type=Path,
                   default=Path("/var/lib/kubelet/pod-resources/kubelet.sock"),
                   help="kubelet pod resources API, asked whether vanished devices are in use")
    p.add_argument("--kubelet-root-dir", type=Path, default=None,
                   help="the kubelet's --root-dir as the host sees it, when this process sees "
                        "its dirs elsewhere (e.g. /data/kubelet mounted at /var/lib/kubelet); "
                        "watcher-mode GetInfo reports sockets under it. Default: as seen here")
    p.add_argument("--resync-interval", type=_interval, default=30.0,
                   help="seconds between full rescans; default %(default)s")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--health-address", type=_address, default="", metavar="[HOST]:PORT",
                   help="serve /healthz and /readyz here, e.g. :8081 (default: off)")
    p.add_argument("--metrics-address", type=_address, default="", metavar="[HOST]:PORT",
                   help="serve Prometheus /metrics here, e.g. :9100 (default: off)")
    p.add_argument("--version", action="version", version=f"sriovdp {__version__}")
    glog = p.add_argument_group("glog flags (accepted for compatibility)")
    glog.add_argument("--v", "-v", type=int, default=0, help="verbosity; 5+ logs debug")
    glog.add_argument("--logtostderr", action="store_true")
    glog.add_argument("--alsologtostderr", action="store_true")
    glog.add_argument("--log_dir", default="", help="also write sriovdp.log here")
    for name in ("--log_link", "--logbuflevel", "--log_backtrace_at", "--stderrthreshold",
                 "--vmodule"):
        glog.add_argument(name, default=None, help=argparse.SUPPRESS)
    if command == "discover":
        p.add_argument("--output", "-o", choices=("table", "json"), default="table")
        p.add_argument("--dra", action="store_true",
                       help="print the ResourceSlices DRA mode would publish "
                            "(YAML; a JSON list with -o json)")
        p.add_argument("--dra-driver", type=_dra_driver, default=DRA_DEFAULT_DRIVER,
                       help="DRA driver name (a DNS subdomain); default %(default)s")
        p.add_argument("--node-name", default=None,
                       help="node (and DRA pool) name; default $NODE_NAME, else the host name")
    if command == "validate":
        p.add_argument("--strict", action="store_true",
                       help="treat every warning (unknown keys, normalised values) as an error")
    return p


def _dra_driver(text: str) -> str:
    try:
        return check_driver_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _settings(args: argparse.Namespace) -> Settings:
    # Absolute paths: gRPC reads "unix://dp/x.sock" as a host name, and the daemon's
    # directory watches must not depend on the working directory.
    return Settings(
        host=HostPaths(args.host_root.absolute()),
        config_file=args.config_file.absolute(),
        resource_prefix=args.resource_prefix,
        device_plugin_dir=args.device_plugin_dir.absolute(),
        plugins_registry_dir=args.plugins_registry_dir.absolute(),
        device_info_dir=args.device_info_dir.absolute(),
        cdi_dir=args.cdi_dir.absolute(),
        pod_resources_socket=args.pod_resources_socket.absolute(),
        kubelet_root_dir=(None if args.kubelet_root_dir is None
                          else args.kubelet_root_dir.absolute()),
        use_cdi=args.use_cdi,
        resync_interval=args.resync_interval,
        health_address=args.health_address,
        metrics_address=args.metrics_address,
    )


def _load(settings: Settings, *, strict: bool = False) -> Config:
    from sriovdp.kubelet.endpoint import KubeletDirs

    dirs = KubeletDirs.detect(settings.device_plugin_dir, settings.plugins_registry_dir)
    config = load_config(settings.config_file, default_prefix=settings.resource_prefix,
                         use_cdi=settings.use_cdi, socket_dir=dirs.socket_dir, strict=strict)
    for warning in config.warnings:
        log.warning("config %s: %s", settings.config_file, warning)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sriovdp`` console script; returns the exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # odd bytes in sysfs names never crash output
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    command = "run"
    for i, token in enumerate(raw):
        if token in COMMANDS:
            command = token
            raw = raw[:i] + raw[i + 1:]
            break
    args, extra = _parser(command).parse_known_args(normalize_go_flags(raw))
    unknown = [a for a in extra if a.startswith("-")]
    if unknown:
        _parser(command).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        setup_logging(verbosity=args.v, fmt=args.log_format, log_dir=args.log_dir)
    except OSError as exc:
        print(f"sriovdp: -log_dir {args.log_dir!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    settings = _settings(args)
    for flag, path in (("--device-plugin-dir", settings.device_plugin_dir),
                       ("--device-info-dir", settings.device_info_dir),
                       ("--cdi-dir", settings.cdi_dir if settings.use_cdi else None)):
        if path is not None and path.exists() and not path.is_dir():
            print(f"sriovdp: {flag} {str(path)!r} is not a directory", file=sys.stderr)
            return 2
    try:
        if command == "validate":
            return _validate(settings, strict=args.strict)
        if command == "discover":
            if args.dra:
                return _discover_dra(settings, args.dra_driver, args.node_name, args.output)
            return _discover(settings, args.output)
        if command == "demo":
            from sriovdp.testing.demo import run_demo

            return run_demo()
        return _run(settings)
    except ConfigError as exc:
        print(f"sriovdp: {exc}", file=sys.stderr)
        return 1
    except HostError as exc:
        print(f"sriovdp: {exc}", file=sys.stderr)
        return 1


def _validate(settings: Settings, *, strict: bool = False) -> int:
    config = _load(settings, strict=strict)
    for r in config.resources:
        print(f"ok: {r.resource_name(settings.resource_prefix)} ({r.kind}, "
              f"{len(r.selectors)} selector{'s' if len(r.selectors) != 1 else ''})")
    count = len(config.resources)
    print(f"{settings.config_file}: valid, {count} resource{'s' if count != 1 else ''}")
    return 0


def _discover(settings: Settings, output: str) -> int:
    from sriovdp.discover import discover_report, render_table

    config: Config | None
    try:
        config = _load(settings)
    except ConfigError as exc:
        if settings.config_file.exists():
            raise
        log.warning("%s; listing devices only", exc.problems[0])
        config = None
    report = discover_report(settings, config)
    if output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_table(report))
    return 0


def _discover_dra(settings: Settings, driver: str, node_name: str | None, output: str) -> int:
    from sriovdp.discover_dra import default_node_name, dra_slices, render_yaml

    config = _load(settings)
    try:
        slices = dra_slices(settings, config, driver=driver,
                            node_name=node_name or default_node_name())
    except DraNameError as exc:
        print(f"sriovdp: {exc} (set --node-name)", file=sys.stderr)
        return 2
    print(json.dumps(slices, indent=2) + "\n" if output == "json" else render_yaml(slices),
          end="")
    return 0


def _run(settings: Settings) -> int:
    from sriovdp.daemon.reconciler import Daemon

    log.info("sriovdp %s starting; config %s, host root %s", __version__,
             settings.config_file, settings.host.root)
    config = _load(settings)  # a bad config exits 1 here, before any socket exists
    if not settings.host.pci_devices.is_dir():
        raise HostError(f"{settings.host.pci_devices} does not exist (wrong --host-root?)")

    async def amain() -> None:
        from sriovdp.host.links import PyrouteLinkSource
        from sriovdp.host.uevents import UeventSource

        # Kernel uevents describe the real host: only useful when scanning it.
        uevents = UeventSource() if settings.host.root == Path("/") else None
        daemon = Daemon(settings, config, links=PyrouteLinkSource(), uevents=uevents)
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            log.info('Received signal "%s", shutting down.', sig.name)
            daemon.stop()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, on_signal, sig)
        def on_hangup() -> None:
            log.info("SIGHUP: reloading %s and rescanning the host", settings.config_file)
            daemon.reload_config("SIGHUP")
            daemon.trigger("SIGHUP")

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        await daemon.run()

    try:
        asyncio.run(amain())
    except HostError as exc:
        print(f"sriovdp: {exc}", file=sys.stderr)
        return 1
    finally:
        from sriovdp.host.ddp import kill_running

        kill_running()
    log.info("sriovdp stopped")
    if threading.active_count() > 1:
        # a scan still stuck on a wedged sysfs file or tool: the shutdown itself is done
        # (sockets removed), so do not wait for it at interpreter exit
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
