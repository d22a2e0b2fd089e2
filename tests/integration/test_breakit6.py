"""Break-it pass 6 on the allocation log (``.sriovdp-allocations``, read by a restarted daemon
to hold what its predecessor allocated in the last 60 s) and the ends of our own allocations
without the pod resources API: ways one VF reaches two pods across a daemon restart. Each
test reproduced a defect of that pass and passes since its fix.

As in break-it 4, the KubeletEmulator writes the checkpoint and a :class:`FakePodResources`
stands for ``List``; "the admission waits on a slow plugin" is the kubelet's file put back as
it was before our Allocate (the real kubelet records the grant only once every resource of
the container is allocated).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from daemon_kit import CONFIG, NET, settings_for, write
from test_breakit4 import OTHER, daemon_on, emulator, moved

from sriovdp.daemon.reconciler import Reconciler
from sriovdp.daemon.settings import Settings
from sriovdp.host.allocationlog import FILE_NAME
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator
from sriovdp.testing.podresources import FakePodResources


async def _restart_mid_admission_moves_it(kubelet, settings, pods, before: bytes,
                                          dev: str) -> bool:
    """Put the kubelet's file back as before the Allocate (the container's other plugin is
    still slow), restart the daemon with ``dev`` moved to ``OTHER``: does OTHER offer it?"""
    kubelet.checkpoint_path.write_bytes(before)
    os.utime(kubelet.checkpoint_path, (1.0, 1.0))
    write(settings.config_file, moved(dev))
    async with daemon_on(settings, pods, moved(dev)):
        await kubelet.wait_for(OTHER, lambda d: True, timeout=5)
        await asyncio.sleep(1.5)  # hold polls
        return dev in kubelet.devices(OTHER)


def _settings(workdir: Path, host: FakeHost) -> Settings:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    return settings


@contextlib.asynccontextmanager
async def _first_daemon(kubelet: KubeletEmulator, settings: Settings,
                        pods: FakePodResources) -> AsyncIterator[Reconciler]:
    """The daemon before the restart, its pools registered with the kubelet."""
    async with daemon_on(settings, pods) as daemon:
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        yield daemon


async def _init_container_grant(kubelet: KubeletEmulator) -> tuple[bytes, str]:
    """A plain init container gets a VF of ``net``; returns the kubelet's file as it was
    before (the container's other plugin still slow) and the VF."""
    before = kubelet.checkpoint_path.read_bytes()
    (dev,) = (await kubelet.admit(NET, 1, pod="init", container="setup")).device_ids
    return before, dev


async def test_a_vf_stays_out_of_its_new_pool_when_the_daemon_restarts_mid_admission_after_a_control_run(  # noqa: E501
        workdir: Path, host: FakeHost) -> None:
    """Control: the log as the daemon keeps it: the restart holds the VF."""
    settings = _settings(workdir, host)
    pods = FakePodResources()
    async with emulator(settings) as kubelet:
        async with _first_daemon(kubelet, settings, pods):
            await kubelet.admit(NET, 1, pod="first", container="c")
            before, dev = await _init_container_grant(kubelet)
        assert not await _restart_mid_admission_moves_it(kubelet, settings, pods, before, dev)


async def test_a_vf_stays_out_of_its_new_pool_when_the_allocation_log_was_removed_under_the_daemon(  # noqa: E501
        workdir: Path, host: FakeHost) -> None:
    settings = _settings(workdir, host)
    pods = FakePodResources()
    async with emulator(settings) as kubelet:
        async with _first_daemon(kubelet, settings, pods):
            await kubelet.admit(NET, 1, pod="first", container="c")  # the log is open
            (settings.device_info_dir / FILE_NAME).unlink()  # e.g. a node clean-up
            before, dev = await _init_container_grant(kubelet)
        assert not await _restart_mid_admission_moves_it(kubelet, settings, pods, before, dev), \
            f"{OTHER} offers {dev} while the admission that got it is under way"


async def test_the_status_names_the_allocation_log_when_it_cannot_be_written(
        workdir: Path, host: FakeHost) -> None:
    settings = _settings(workdir, host)
    settings.device_info_dir.mkdir(parents=True, exist_ok=True)
    (settings.device_info_dir / FILE_NAME).symlink_to("elsewhere")  # O_NOFOLLOW refuses it
    pods = FakePodResources()
    async with emulator(settings) as kubelet, _first_daemon(kubelet, settings, pods) as daemon:
        await kubelet.admit(NET, 1, pod="p", container="c")
        assert any(FILE_NAME in p for p in daemon.status().problems), daemon.status().problems


async def test_a_vf_stays_out_of_its_new_pool_when_the_allocation_log_ends_in_a_cut_line(
        workdir: Path, host: FakeHost) -> None:
    settings = _settings(workdir, host)
    settings.device_info_dir.mkdir(parents=True, exist_ok=True)
    # an earlier process's record cut short (its tmpfs was full), long before
    (settings.device_info_dir / FILE_NAME).write_bytes(b"1000.000000 intel.com/net 0000:3b:0")
    pods = FakePodResources()
    async with emulator(settings) as kubelet:
        async with _first_daemon(kubelet, settings, pods):
            before, dev = await _init_container_grant(kubelet)
        assert not await _restart_mid_admission_moves_it(kubelet, settings, pods, before, dev), \
            f"{OTHER} offers {dev} while the admission that got it is under way"


_SHORT_WRITE = """
import resource, signal, sys, time
from pathlib import Path
from sriovdp.host.allocationlog import AllocationLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = AllocationLog(Path(sys.argv[1]))
log.record("intel.com/net", ["0000:3b:02.0"])
size = (Path(sys.argv[1]) / ".sriovdp-allocations").stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, resource.RLIM_INFINITY))  # disk full
try:
    log.record("intel.com/net", ["0000:3b:02.1"])
    print("recorded")
except Exception as exc:
    print("error", exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
log.record("intel.com/net", ["0000:3b:02.2"])  # room again
print(sorted(log.recent(60.0).get("intel.com/net", {})))
"""


def test_a_grant_is_recorded_or_reported_when_the_log_write_is_short(tmp_path: Path) -> None:
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _SHORT_WRITE, str(tmp_path)], check=True,
                         capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert out[0].startswith("error") or "0000:3b:02.1" in out[1], out
    assert "0000:3b:02.2" in out[1], f"the grant after the short write is lost: {out}"


async def test_a_vf_stays_out_of_its_new_pool_when_the_wall_clock_stepped_forward_before_the_restart(  # noqa: E501
        workdir: Path, host: FakeHost) -> None:
    settings = _settings(workdir, host)
    pods = FakePodResources()
    async with emulator(settings) as kubelet:
        async with _first_daemon(kubelet, settings, pods):
            before, dev = await _init_container_grant(kubelet)
        # were the log's times wall clock, a step forward past the grace (NTP correcting a
        # slow RTC) would age this line; they are boot time, which never steps
        path = settings.device_info_dir / FILE_NAME
        stamp = float(path.read_text().splitlines()[-1].split(" ", 1)[0])
        assert abs(stamp - time.clock_gettime(time.CLOCK_BOOTTIME)) < 60.0
        assert not await _restart_mid_admission_moves_it(kubelet, settings, pods, before, dev), \
            f"{OTHER} offers {dev} while the admission that got it is under way"


async def test_a_vf_stays_out_of_the_renamed_pool_when_the_daemon_restarts_mid_admission(
        workdir: Path, host: FakeHost) -> None:
    """Held: the adopted grant names the old resource, which no pool serves any more: the
    VF is withheld from every pool until the kubelet's file shows it."""
    settings = _settings(workdir, host)
    pods = FakePodResources()
    renamed = {"resourceList": [dict(CONFIG["resourceList"][0], resourceName="net2"),
                                CONFIG["resourceList"][1]]}
    async with emulator(settings) as kubelet:
        async with _first_daemon(kubelet, settings, pods):
            before, dev = await _init_container_grant(kubelet)
        kubelet.checkpoint_path.write_bytes(before)
        os.utime(kubelet.checkpoint_path, (1.0, 1.0))
        write(settings.config_file, renamed)
        async with daemon_on(settings, pods, renamed):
            await kubelet.wait_for("intel.com/net2", lambda d: len(d) == 3, timeout=5)
            await asyncio.sleep(1.5)  # hold polls
            assert dev not in kubelet.devices("intel.com/net2")
