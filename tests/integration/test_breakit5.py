"""Break-it pass 5 on holds: ways one VF reached two pods. Each test reproduced a defect of
that pass and passes since its fix.

As in break-it 4, the KubeletEmulator serves the device plugin side and writes the
checkpoint, and a :class:`FakePodResources` stands for ``List`` (which leaves plain init
containers out).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from daemon_kit import CONFIG, NET, settings_for, write
from test_breakit4 import OTHER, daemon_on, moved
from test_dra_daemon import emulator

from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.podresources import FakePodResources


async def test_a_vf_regranted_to_an_init_container_stays_out_of_its_new_pool_when_the_checkpoint_still_names_the_ended_pod(  # noqa: E501
        workdir: Path, host: FakeHost) -> None:
    settings = settings_for(workdir, host)
    write(settings.config_file, CONFIG)
    pods = FakePodResources()
    async with emulator(settings) as kubelet, daemon_on(settings, pods) as daemon:
        await kubelet.wait_capacity(NET, (4, 4), timeout=5)
        (dev,) = (await kubelet.admit(NET, 1, pod="a", container="app")).device_ids
        pods.hold(NET, [dev])
        rest = (await kubelet.admit(NET, 3, pod="fill", container="app")).device_ids
        pods.hold(NET, rest)
        await asyncio.sleep(1.2)  # past the allocation grace; List showed a's grant
        write(settings.config_file, moved(dev))
        assert daemon.reload_config("test")
        await kubelet.wait_for(OTHER, lambda d: True, timeout=5)
        await asyncio.sleep(2.5)  # a hold poll: dev kept in net (a holds it)
        assert dev in kubelet.devices(NET) and dev not in kubelet.devices(OTHER)
        # the file as the kubelet last wrote it: dev -> pod a
        stale = kubelet.checkpoint_path.read_bytes()
        written = os.stat(kubelet.checkpoint_path).st_mtime_ns
        # pod a ends; before the daemon's next poll the kubelet gives dev (net still lists
        # it) to pod b's plain init container, whose other resource's plugin is slow: the
        # kubelet writes its checkpoint only after that one answers
        kubelet.release("a")
        (got,) = (await kubelet.admit(NET, 1, pod="b", container="init")).device_ids
        assert got == dev
        pods.release(NET, [dev])  # List: a gone; b's init container is never listed
        tmp = kubelet.checkpoint_path.with_suffix(".tmp")
        tmp.write_bytes(stale)
        os.utime(tmp, ns=(written, written))
        os.replace(tmp, kubelet.checkpoint_path)  # not written yet since a ended
        await asyncio.sleep(4.5)  # two hold polls, well inside the 60 s allocation grace
        assert dev not in kubelet.devices(OTHER), \
            f"{OTHER} offers {dev} while pod b's init container holds it"
