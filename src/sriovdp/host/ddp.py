"""DDP (Dynamic Device Personalization) profile names of Intel 700/800 series functions.

The kernel does not show the running DDP package in sysfs; Intel's ``ddptool`` reads it:
``ddptool -l -a -j -s <pci address>`` prints JSON
``{"DDPInventory": {..., "DDPpackage": {"track_id": .., "version": .., "name": "<PROFILE>"}}}``
and exits 8 when the function has no DDP package loaded.

Reading a profile costs one process per function; which functions are asked is decided in
the model (:func:`~sriovdp.model.pools.ddp_candidates`). A :class:`DdpReader` owns the runs it
started and kills them when closed.
Every failure gives ``None`` (no profile), which no ``ddpProfiles`` selector matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sriovdp.model.config import ResourceConfig
from sriovdp.model.devices import Inventory
from sriovdp.model.pools import ddp_candidates

__all__ = ["NO_PROFILE_EXIT", "DdpReader", "Runner", "fill_ddp_profiles",
           "fill_ddp_profiles_if_asked", "parse_ddptool_output", "read_ddp_profile"]

log = logging.getLogger(__name__)

NO_PROFILE_EXIT = 8
"""``ddptool`` exit status for "this function has no DDP package"."""
TIMEOUT_S = 10.0
"""How long one ``ddptool`` run may take."""
_MAX_WORKERS = 8

Runner = Callable[[Sequence[str]], tuple[int, str]]
"""Runs an argv and returns ``(exit status, stdout)``; raises OSError when it cannot start
and ``subprocess.TimeoutExpired`` when it hangs."""



def _run_group(argv: Sequence[str], running: set[int], closed: Callable[[], bool]
               ) -> tuple[int, str]:
    """Run the tool in its own process group with a timeout; on a timeout (or when its
    reader closes meanwhile) the whole group is killed, so a hung tool leaves no children."""
    if closed():
        return 1, ""
    with subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          stdin=subprocess.DEVNULL, text=True, errors="replace",
                          start_new_session=True) as proc:
        running.add(proc.pid)
        if closed():  # close() ran while this one was starting
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        try:
            stdout, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            running.discard(proc.pid)
        return proc.returncode, stdout


class DdpReader:
    """Reads DDP profiles with ``ddptool``; one instance per owner (the daemon has one).

    Args:
        runner: runs an argv (tests pass a fake); default: the tool as a subprocess in its
            own process group, killed on timeout or :meth:`close`.
        tool: the ddptool command name or path, looked up on ``PATH``.
    """

    def __init__(self, *, runner: Runner | None = None, tool: str = "ddptool") -> None:
        self._runner = runner
        self.tool = tool
        self._running: set[int] = set()
        self._closed = False
        self._missing_logged = False

    def _run(self, argv: Sequence[str]) -> tuple[int, str]:
        return _run_group(argv, self._running, lambda: self._closed)

    def close(self) -> None:
        """Kill every ddptool this reader still runs (and its children) and start no more:
        a hung tool neither delays the owner's exit nor outlives it."""
        self._closed = True
        for pid in list(self._running):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def _log_missing(self) -> None:
        if not self._missing_logged:
            self._missing_logged = True
            log.warning("%s not found on PATH: ddpProfiles selectors cannot match any device "
                        "without ddptool", self.tool)

    def read(self, pci_address: str) -> str | None:
        """The DDP profile running on ``pci_address``, e.g. ``"ICE COMMS Package"``.

        Runs ``<tool> -l -a -j -s <pci_address>``.

        Returns:
            The profile name; None when ddptool is missing (logged once per reader), exits
            8 (no profile), exits otherwise non-zero, times out or prints something
            :func:`parse_ddptool_output` rejects (logged).
        """
        if self._runner is None:
            path = shutil.which(self.tool)
            if path is None:
                self._log_missing()
                return None
            argv = [path, "-l", "-a", "-j", "-s", pci_address]
            runner: Runner = self._run
        else:
            argv = [self.tool, "-l", "-a", "-j", "-s", pci_address]
            runner = self._runner
        tool = self.tool
        try:
            status, stdout = runner(argv)
        except FileNotFoundError:
            self._log_missing()
            return None
        except subprocess.TimeoutExpired:
            log.warning("%s: %s did not answer within %.0f s; no DDP profile", pci_address,
                        tool, TIMEOUT_S, extra={"pci": pci_address})
            return None
        except OSError as exc:
            log.warning("%s: cannot run %s: %s; no DDP profile", pci_address, tool,
                        exc.strerror, extra={"pci": pci_address})
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

    def fill(self, inventory: Inventory, addresses: Iterable[str]) -> Inventory:
        """A copy of ``inventory`` with ``ddp_profile`` read for ``addresses``.

        Only the listed functions are asked (a few ddptool runs at a time); addresses not in
        ``inventory.functions`` are ignored, and the other functions are kept as they are.
        Auxiliary devices keep their ``parent`` as scanned (sub-functions have no profile).
        """
        wanted = [a for a in dict.fromkeys(addresses) if a in inventory.functions]
        if not wanted or self._closed:
            return inventory
        if self._runner is None and shutil.which(self.tool) is None:
            self._log_missing()
            return inventory
        workers = min(_MAX_WORKERS, len(wanted))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ddptool") as pool:
            profiles = dict(zip(wanted, pool.map(self.read, wanted), strict=True))
        functions = {
            address: (dataclasses.replace(fn, ddp_profile=profiles[address])
                      if address in profiles else fn)
            for address, fn in inventory.functions.items()
        }
        return dataclasses.replace(inventory, functions=functions)


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
    """:meth:`DdpReader.read` with a reader of its own (``discover`` and one-off reads)."""
    return DdpReader(runner=runner, tool=tool).read(pci_address)


def fill_ddp_profiles(
    inventory: Inventory,
    addresses: Iterable[str],
    *,
    runner: Runner | None = None,
    tool: str = "ddptool",
) -> Inventory:
    """:meth:`DdpReader.fill` with a reader of its own."""
    return DdpReader(runner=runner, tool=tool).fill(inventory, addresses)


def fill_ddp_profiles_if_asked(inventory: Inventory,
                               resources: Sequence[ResourceConfig]) -> Inventory:
    """:func:`fill_ddp_profiles` for the functions :func:`~sriovdp.model.pools.ddp_candidates`
    names (none unless some selector asks for ``ddpProfiles``)."""
    return fill_ddp_profiles(inventory, ddp_candidates(inventory, resources))
