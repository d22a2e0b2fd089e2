"""DDP (Dynamic Device Personalization) profile names of Intel 700/800 series functions.

The kernel does not show the running DDP package in sysfs; Intel's ``ddptool`` reads it:
``ddptool -l -a -j -s <pci address>`` prints JSON
``{"DDPInventory": {..., "DDPpackage": {"track_id": .., "version": .., "name": "<PROFILE>"}}}``
and exits 8 when the function has no DDP package loaded.

Reading a profile costs one process per function, so the daemon asks only when some
selector has ``ddpProfiles`` (:func:`fill_ddp_profiles` on the functions that could match).
Every failure gives ``None`` (no profile), which no ``ddpProfiles`` selector matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import logging
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import NET_CLASS, Inventory
from sriovdp.model.selectors import NetSelector

__all__ = ["NO_PROFILE_EXIT", "Runner", "fill_ddp_profiles", "parse_ddptool_output",
           "read_ddp_profile"]

log = logging.getLogger(__name__)

NO_PROFILE_EXIT = 8
"""``ddptool`` exit status for "this function has no DDP package"."""
TIMEOUT_S = 10.0
"""How long one ``ddptool`` run may take."""
_MAX_WORKERS = 8

Runner = Callable[[Sequence[str]], tuple[int, str]]
"""Runs an argv and returns ``(exit status, stdout)``; raises OSError when it cannot start
and ``subprocess.TimeoutExpired`` when it hangs."""

_missing_logged: set[str] = set()
_running: set[int] = set()  # process group ids of ddptool runs in flight
_stopping = False


def _run(argv: Sequence[str]) -> tuple[int, str]:
    """The default :data:`Runner`: the tool in its own process group with a timeout; on a
    timeout the whole group is killed (a hung tool leaves no children behind)."""
    if _stopping:
        return 1, ""
    with subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          stdin=subprocess.DEVNULL, text=True, errors="replace",
                          start_new_session=True) as proc:
        _running.add(proc.pid)
        if _stopping:  # kill_running() ran while this one was starting
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            stdout, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            _running.discard(proc.pid)
        return proc.returncode, stdout


def kill_running() -> None:
    """Kill every ddptool still running (and its children): called at shutdown, so a hung
    tool neither delays the exit nor outlives the daemon; no new run starts afterwards."""
    global _stopping
    _stopping = True
    for pid in list(_running):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def parse_ddptool_output(stdout: str) -> str:
    """The profile name in ``ddptool -j`` output (``DDPInventory.DDPpackage.name``).

    Raises:
        ValueError: empty output, not JSON (e.g. ddptool's table format), no
            ``DDPInventory`` or ``DDPpackage`` object (``{"DDPInventory": {"error": "2",
            "message": ...}}``), or an empty or non-string name.
    """
    if not stdout.strip():
        raise ValueError("ddptool printed nothing")
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise ValueError(f"ddptool output is not JSON: {exc}") from None
    inventory = doc.get("DDPInventory") if isinstance(doc, dict) else None
    if not isinstance(inventory, dict):
        raise ValueError("ddptool output has no DDPInventory object")
    package = inventory.get("DDPpackage")
    if not isinstance(package, dict):
        message = inventory.get("message") or inventory.get("error")
        raise ValueError("ddptool output has no DDPpackage"
                         + (f" ({message})" if message else ""))
    name = package.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("ddptool output has no DDPpackage name")
    return name


def read_ddp_profile(
    pci_address: str, *, runner: Runner | None = None, tool: str = "ddptool"
) -> str | None:
    """The DDP profile running on ``pci_address``, e.g. ``"ICE COMMS Package"``.

    Runs ``<tool> -l -a -j -s <pci_address>``, with ``tool`` looked up on ``PATH``.

    Args:
        pci_address: e.g. ``"0000:3b:02.0"``.
        runner: runs the argv (tests pass a fake); default: a subprocess with a timeout.
        tool: the ddptool command name or path.

    Returns:
        The profile name; None when ddptool is missing (logged once per process and tool),
        exits 8 (no profile), exits otherwise non-zero, times out or prints something
        :func:`parse_ddptool_output` rejects (logged).
    """
    if runner is None:
        path = shutil.which(tool)
        if path is None:
            _log_missing(tool)
            return None
        argv = [path, "-l", "-a", "-j", "-s", pci_address]
        runner = _run
    else:
        argv = [tool, "-l", "-a", "-j", "-s", pci_address]
    try:
        status, stdout = runner(argv)
    except FileNotFoundError:
        _log_missing(tool)
        return None
    except subprocess.TimeoutExpired:
        log.warning("%s: %s did not answer within %.0f s; no DDP profile", pci_address, tool,
                    TIMEOUT_S, extra={"pci": pci_address})
        return None
    except OSError as exc:
        log.warning("%s: cannot run %s: %s; no DDP profile", pci_address, tool, exc.strerror,
                    extra={"pci": pci_address})
        return None
    if status == NO_PROFILE_EXIT:
        log.debug("%s: no DDP profile loaded (%s exit %d)", pci_address, tool, status,
                  extra={"pci": pci_address})
        return None
    if status != 0:
        log.warning("%s: %s failed with exit status %d; no DDP profile", pci_address, tool,
                    status, extra={"pci": pci_address})
        return None
    try:
        return parse_ddptool_output(stdout)
    except ValueError as exc:
        log.warning("%s: %s; no DDP profile", pci_address, exc, extra={"pci": pci_address})
        return None


def fill_ddp_profiles(
    inventory: Inventory,
    addresses: Iterable[str],
    *,
    runner: Runner | None = None,
    tool: str = "ddptool",
) -> Inventory:
    """A copy of ``inventory`` with ``ddp_profile`` read for ``addresses``.

    Only the listed functions are asked (a few ddptool runs at a time); addresses not in
    ``inventory.functions`` are ignored, and the other functions are kept as they are.
    Auxiliary devices keep their ``parent`` as scanned (sub-functions have no DDP profile).
    """
    wanted = [a for a in dict.fromkeys(addresses) if a in inventory.functions]
    if not wanted:
        return inventory
    if runner is None and shutil.which(tool) is None:
        _log_missing(tool)
        return inventory
    workers = min(_MAX_WORKERS, len(wanted))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ddptool") as pool:
        profiles = dict(zip(wanted, pool.map(
            lambda a: read_ddp_profile(a, runner=runner, tool=tool), wanted), strict=True))
    functions = {
        address: (dataclasses.replace(fn, ddp_profile=profiles[address])
                  if address in profiles else fn)
        for address, fn in inventory.functions.items()
    }
    return dataclasses.replace(inventory, functions=functions)


def _log_missing(tool: str) -> None:
    if tool in _missing_logged:
        return
    _missing_logged.add(tool)
    log.warning("%s not found on PATH: ddpProfiles selectors cannot match any device "
                "without ddptool", tool)


def fill_ddp_profiles_if_asked(inventory: Inventory,
                               resources: Sequence[ResourceConfig]) -> Inventory:
    """:func:`fill_ddp_profiles` for the network functions, only when some netDevice
    selector of ``resources`` has ``ddpProfiles`` (ddptool is slow: never run it otherwise)."""
    if not any(isinstance(sel, NetSelector) and sel.ddp_profiles
               for resource in resources for sel in resource.selectors):
        return inventory
    return fill_ddp_profiles(inventory, [a for a, fn in inventory.functions.items()
                                         if fn.base_class == NET_CLASS])
