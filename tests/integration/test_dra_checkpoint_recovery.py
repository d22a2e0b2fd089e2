"""A damaged or unreadable DRA claim checkpoint at start: the device plugin pools are served,
the problem is logged and in /readyz, the damaged file is kept aside and the prepared claims
are rebuilt from the records in their CDI specs, so their VFs stay held and a later
unprepare still cleans up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from daemon_kit import ALL_DPDK, ALL_NET, CONFIG, DPDK, NET, free_port, http_get, write
from test_dra_daemon import (
    DEV,
    DRIVER,
    REF,
    UID,
    Apiserver,
    dra_daemon,
    dra_kubelet,
    dra_settings,
    emulator,
    prepared,
)

from sriovdp.daemon.settings import Settings
from sriovdp.host.draclaims import ClaimCheckpoint
from sriovdp.testing import eventually
from sriovdp.testing.fakehost import FakeHost
from sriovdp.testing.kubelet import KubeletEmulator


def checkpoint_of(settings: Settings) -> Path:
    return settings.plugins_dir / DRIVER / "checkpoint.json"


def kept_aside(settings: Settings) -> list[Path]:
    path = checkpoint_of(settings)
    return sorted(path.parent.glob(f"{path.name}.damaged-*"))


@contextlib.asynccontextmanager
async def prepared_then_damaged(settings: Settings, api: Apiserver, damage: bytes = b""
                                ) -> AsyncIterator[KubeletEmulator]:
    """A claim prepared for DEV, the daemon stopped, the checkpoint damaged (empty: a rename
    without fsync, then a power loss), and the config moved DEV's pool back to the device
    plugin: DEV would be offered to pods unless the claim is recovered."""
    async with emulator(settings) as kubelet:
        async with dra_daemon(settings, api), dra_kubelet(settings) as dra:
            await prepared(api, dra)
        checkpoint_of(settings).write_bytes(damage)
        write(settings.config_file, CONFIG)
        yield kubelet


async def test_a_prepared_vf_stays_withheld_when_the_checkpoint_was_damaged_across_a_restart(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with prepared_then_damaged(settings, api, b'{"version": 1, "claims": {"7d3') \
            as kubelet, dra_daemon(settings, api, CONFIG):
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET - {DEV}, timeout=5)
        await asyncio.sleep(1.0)
        assert DEV not in kubelet.devices(NET), "the claim's VF offered to pods too"
        claim = ClaimCheckpoint(checkpoint_of(settings)).get(UID)
        assert claim is not None, "the claim not written to the new checkpoint"
        assert [(d.resource_name, d.device_id) for d in claim.devices] == [(NET, DEV)]
        (aside,) = kept_aside(settings)
        assert aside.read_bytes() == b'{"version": 1, "claims": {"7d3', "the damaged file lost"


async def test_an_unprepare_cleans_up_when_the_claim_was_recovered_from_its_cdi_spec(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    info = settings.device_info_dir / f"intel.com-net-{DEV}-device.json"
    async with prepared_then_damaged(settings, api) as kubelet, \
            dra_daemon(settings, api, CONFIG), dra_kubelet(settings) as dra:
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET - {DEV}, timeout=5)
        assert info.exists()
        api.claims.delete("default", "c1")  # the pod and its claim are gone
        assert (await dra.unprepare(REF))[UID].error == ""
        assert not info.exists(), "the claim's device-info file left"
        assert not list(settings.cdi_dir.glob("sriov-dra-*")), "the claim's CDI spec left"
        assert ClaimCheckpoint(checkpoint_of(settings)).uids() == set()
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET, timeout=5)


async def test_readyz_names_the_damaged_checkpoint_until_its_kept_copy_is_removed(
        workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    settings = dra_settings(workdir, host, health_address=f"127.0.0.1:{port}",
                            metrics_address="")
    api = Apiserver()
    async with prepared_then_damaged(settings, api) as kubelet, \
            dra_daemon(settings, api, CONFIG) as daemon, dra_kubelet(settings):
        await kubelet.wait_for(DPDK, lambda d: set(d) == ALL_DPDK, timeout=5)
        await eventually(lambda: any("recovered" in p for p in daemon.status().not_ready()),
                         what="the repaired checkpoint in /readyz")
        code, body = await http_get(port, "/readyz")
        assert code != 200
        assert str(checkpoint_of(settings)) in body
        assert "Expecting value" in body, "the parse error"
        assert "1 prepared claims recovered" in body
        assert any(str(checkpoint_of(settings)) in r.getMessage()
                   and "Expecting value" in r.getMessage() for r in caplog.records)
        (aside,) = kept_aside(settings)
        aside.unlink()  # the operator looked at it
        await eventually(lambda: daemon.is_ready, timeout=5, what="ready again")


async def test_the_dra_plugin_retries_while_the_checkpoint_cannot_be_read(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    checkpoint = checkpoint_of(settings)
    checkpoint.mkdir(parents=True)  # read() fails: EISDIR, as for EACCES or EIO
    async with emulator(settings) as kubelet, dra_daemon(settings, api) as daemon:
        await kubelet.wait_for(DPDK, lambda d: set(d) == ALL_DPDK, timeout=5)
        await eventually(lambda: "dra plugin" in daemon.supervisor.failures,
                         what="the plugin task failing")
        assert any(str(checkpoint) in p for p in daemon.status().not_ready())
        assert kept_aside(settings) == [], "a file that could not be read is no damaged one"
        checkpoint.rmdir()
        async with dra_kubelet(settings):  # served once the supervisor tried again
            await eventually(lambda: daemon.is_ready, timeout=10, what="ready")


async def test_other_claims_are_recovered_when_one_cdi_spec_has_no_record(
        workdir: Path, host: FakeHost, caplog: pytest.LogCaptureFixture) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    stranger = settings.cdi_dir / "sriov-dra-00000000-0000-4000-8000-00000000dead.yaml"
    async with prepared_then_damaged(settings, api) as kubelet:
        stranger.write_text("cdiVersion: 0.5.0\nkind: sriov.network.k8s.io/claim\n")
        async with dra_daemon(settings, api, CONFIG) as daemon:
            await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET - {DEV}, timeout=5)
            assert ClaimCheckpoint(checkpoint_of(settings)).uids() == {UID}
            assert any("1 specs unreadable" in p for p in daemon.status().not_ready())
            assert any(stranger.name in r.getMessage() for r in caplog.records)
            assert stranger.exists(), "a spec the daemon could not read was deleted"


async def test_a_prepared_vf_is_withheld_without_dra_when_its_checkpoint_is_damaged(
        workdir: Path, host: FakeHost) -> None:
    settings = dra_settings(workdir, host)
    api = Apiserver()
    async with prepared_then_damaged(settings, api) as kubelet, \
            dra_daemon(replace(settings, dra=None), api, CONFIG):
        await kubelet.wait_for(NET, lambda d: set(d) == ALL_NET - {DEV}, timeout=5)
        await asyncio.sleep(1.0)
        assert DEV not in kubelet.devices(NET), "the claim's VF offered to pods too"
        assert checkpoint_of(settings).read_bytes() == b"", "the damaged file was changed"
