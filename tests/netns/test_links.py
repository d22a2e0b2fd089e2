"""Link sources: the ifindex/name table, FakeLinkSource, and PyrouteLinkSource in a netns.

The netns tests (marker ``needs_root``) run the source inside a throwaway namespace
``sdp-<random>`` holding veth pairs; the namespace is deleted in teardown whatever happens.
Nothing here touches the test process's own namespace or sends traffic.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import AsyncIterator, Callable

import pytest
from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]

from sriovdp.errors import HostError
from sriovdp.host.links import LinkTable, PyrouteLinkSource, open_route_socket
from sriovdp.model.health import LinkChange, LinkState
from sriovdp.testing.contracts import check_link_source
from sriovdp.testing.links import FakeLinkSource, NetnsLab

_WHY_NOT = NetnsLab.available()
needs_root = pytest.mark.needs_root
skip_unless_root = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")

UP = LinkState("pf0", carrier=True, operstate="UP")


def st(name: str, carrier: bool = True, admin_up: bool = True) -> LinkState:
    return LinkState(name, carrier, "UP" if carrier else "DOWN", admin_up)


def netns_exists(name: str) -> bool:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return any(line.split()[0] == name for line in out.stdout.splitlines() if line.strip())


async def next_change(
    events: AsyncIterator[LinkChange], match: Callable[[LinkChange], bool],
    timeout: float = 1.0,
) -> LinkChange:
    """The first change that matches, within ``timeout`` seconds in total."""
    async def scan() -> LinkChange:
        async for change in events:
            if match(change):
                return change
        raise AssertionError("events() ended")
    return await asyncio.wait_for(scan(), timeout)


# -- LinkTable: the bookkeeping behind PyrouteLinkSource (no kernel) ---------------------------

def test_update_yields_nothing_when_the_state_is_unchanged() -> None:
    table = LinkTable()
    assert table.update(3, st("pf0")) == [LinkChange("pf0", st("pf0"))]
    assert table.update(3, st("pf0")) == []


def test_old_name_goes_and_new_name_comes_when_an_ifindex_is_renamed() -> None:
    table = LinkTable()
    table.update(3, st("pf0"))
    assert table.update(3, st("uplink0")) == [
        LinkChange("pf0", None), LinkChange("uplink0", st("uplink0"))]
    assert dict(table.view) == {"uplink0": st("uplink0")}
    assert table.delete(3) == [LinkChange("uplink0", None)]
    assert dict(table.view) == {}


def test_name_moves_to_the_new_ifindex_when_a_rename_was_missed() -> None:
    table = LinkTable()
    table.update(3, st("pf0"))
    assert table.update(7, st("pf0", carrier=False)) == [
        LinkChange("pf0", st("pf0", carrier=False))]
    assert table.delete(3) == []          # the old ifindex no longer owns the name
    assert table.delete(7) == [LinkChange("pf0", None)]


def test_delete_yields_nothing_when_the_ifindex_is_unknown() -> None:
    assert LinkTable().delete(42) == []


def test_view_stays_valid_when_the_table_is_replaced_after_a_resync() -> None:
    table, fresh = LinkTable(), LinkTable()
    view = table.view
    table.update(3, st("pf0"))
    fresh.update(4, st("pf1"))
    table.replace(fresh)
    assert dict(view) == {"pf1": st("pf1")}
    assert table.update(4, st("pf1", carrier=False)) == [
        LinkChange("pf1", st("pf1", carrier=False))]


# -- FakeLinkSource ---------------------------------------------------------------------------

async def test_contract_holds_when_the_source_is_the_fake() -> None:
    fake = FakeLinkSource([UP, st("pf1")])
    seen = await check_link_source(fake, fake, ifname="pf0")
    assert any(c.resync for c in seen)


async def test_changes_before_start_are_the_initial_state_when_made_early() -> None:
    fake = FakeLinkSource([UP])
    fake.set_carrier("pf0", False)
    fake.set_carrier("pf1", True)
    async with fake:
        assert dict(fake.snapshot()) == {
            "pf0": LinkState("pf0", False, "DOWN"), "pf1": LinkState("pf1", True, "UP")}
        fake.set_carrier("pf0", True)
        change = await next_change(fake.events(), lambda c: True)
        assert change == LinkChange("pf0", LinkState("pf0", True, "UP"))


async def test_unread_changes_are_lost_when_the_fake_overflows() -> None:
    async with FakeLinkSource([UP]) as fake:
        events = fake.events()
        fake.set_carrier("pf0", False)
        fake.set_carrier("pf0", True)
        fake.set_carrier("pf0", False)
        fake.inject_overflow()
        assert await next_change(events, lambda c: True) == LinkChange("", None, resync=True)
        assert fake.snapshot()["pf0"].carrier is False
        assert fake.resyncs == 1


async def test_snapshot_lags_the_world_when_events_are_not_read() -> None:
    async with FakeLinkSource([UP]) as fake:
        fake.set_carrier("pf0", False)
        assert fake.snapshot()["pf0"].carrier is True
        await next_change(fake.events(), lambda c: True)
        assert fake.snapshot()["pf0"].carrier is False


async def test_events_refuse_to_run_when_the_source_is_not_started() -> None:
    for source in (FakeLinkSource(), PyrouteLinkSource()):
        with pytest.raises(RuntimeError):
            await anext(source.events())


async def test_start_fails_with_host_error_when_the_netns_does_not_exist() -> None:
    name = "sdp-does-not-exist-0"
    source = PyrouteLinkSource(netns=name)
    with pytest.raises(HostError, match=name):
        await source.start()
    assert not await asyncio.to_thread(os.path.exists, f"/run/netns/{name}")  # never created


# -- PyrouteLinkSource in a network namespace -------------------------------------------------

@pytest.fixture
async def lab() -> AsyncIterator[NetnsLab]:
    """A namespace ``sdp-<random>`` with veths pf0<->pf0p and pf1<->pf1p, all up."""
    if _WHY_NOT is not None:
        pytest.skip(_WHY_NOT)
    async with NetnsLab() as lab:
        await lab.add_veth("pf0", "pf0p")
        await lab.add_veth("pf1", "pf1p")
        yield lab
    assert not netns_exists(lab.name)


@pytest.fixture
async def source(lab: NetnsLab) -> AsyncIterator[PyrouteLinkSource]:
    async with PyrouteLinkSource(netns=lab.name) as source:
        yield source


def carrier_of(name: str, up: bool) -> Callable[[LinkChange], bool]:
    return lambda c: c.ifname == name and c.state is not None and c.state.carrier is up


@needs_root
@skip_unless_root
async def test_snapshot_has_the_veths_with_carrier_when_started(
    source: PyrouteLinkSource,
) -> None:
    snap = source.snapshot()
    assert {"lo", "pf0", "pf0p", "pf1", "pf1p"} <= set(snap)
    for name in ("pf0", "pf0p", "pf1", "pf1p"):
        assert snap[name] == LinkState(name, carrier=True, operstate="UP", admin_up=True)
    assert source.receive_buffer >= 1 << 20


@needs_root
@skip_unless_root
async def test_snapshot_agrees_with_pyroute2s_decoder_when_links_are_in_every_state(
    lab: NetnsLab,
) -> None:
    await lab.set_carrier("pf0", False)        # pf0: admin up, no carrier (LOWERLAYERDOWN)
    await lab.set_admin("pf1", False)          # pf1: admin down; pf1p loses carrier
    await lab.rename("pf1p", "peer-of-pf1")
    async with PyrouteLinkSource(netns=lab.name) as source:
        ours = dict(source.snapshot())
    ipr = AsyncIPRoute(fileno=open_route_socket(lab.name).detach())
    try:
        theirs = {}
        async for msg in await ipr.get_links():
            name = msg.get_attr("IFLA_IFNAME")
            theirs[name] = LinkState(name, bool(msg.get_attr("IFLA_CARRIER")),
                                     msg.get_attr("IFLA_OPERSTATE"), bool(msg["flags"] & 1))
    finally:
        ipr.close()
    assert ours == theirs
    assert ours["pf0"] == LinkState("pf0", False, "LOWERLAYERDOWN", admin_up=True)
    assert ours["pf1"] == LinkState("pf1", False, "DOWN", admin_up=False)


@needs_root
@skip_unless_root
async def test_carrier_loss_arrives_within_1s_when_the_peer_goes_down(
    lab: NetnsLab, source: PyrouteLinkSource,
) -> None:
    events = source.events()
    await lab.set_carrier("pf0", False)
    change = await next_change(events, carrier_of("pf0", False), timeout=1.0)
    assert change.state == LinkState("pf0", False, "LOWERLAYERDOWN", admin_up=True)
    assert source.snapshot()["pf0"].carrier is False
    assert source.snapshot()["pf1"].carrier is True


@needs_root
@skip_unless_root
async def test_carrier_returns_when_the_peer_comes_back_up(
    lab: NetnsLab, source: PyrouteLinkSource,
) -> None:
    events = source.events()
    await lab.set_carrier("pf0", False)
    await next_change(events, carrier_of("pf0", False))
    await lab.set_carrier("pf0", True)
    change = await next_change(events, carrier_of("pf0", True))
    assert change.state == LinkState("pf0", True, "UP", admin_up=True)


@needs_root
@skip_unless_root
async def test_deleted_event_when_a_link_is_deleted(
    lab: NetnsLab, source: PyrouteLinkSource,
) -> None:
    events = source.events()
    await lab.remove("pf1")
    await next_change(events, lambda c: c == LinkChange("pf1", None))
    await next_change(events, lambda c: c == LinkChange("pf1p", None))
    assert "pf1" not in source.snapshot() and "pf1p" not in source.snapshot()
    assert "pf0" in source.snapshot()


@needs_root
@skip_unless_root
async def test_old_name_is_gone_when_a_link_is_renamed(
    lab: NetnsLab, source: PyrouteLinkSource,
) -> None:
    events = source.events()
    await lab.rename("pf0", "uplink0")
    await next_change(events, lambda c: c == LinkChange("pf0", None))
    renamed = await next_change(events, lambda c: c.ifname == "uplink0")
    assert renamed.state is not None and renamed.state.carrier
    assert "pf0" not in source.snapshot() and "uplink0" in source.snapshot()
    await lab.set_carrier("uplink0", False)  # the renamed link is still tracked
    await next_change(events, carrier_of("uplink0", False))


@needs_root
@skip_unless_root
async def test_no_change_when_a_message_changes_nothing_tracked(
    lab: NetnsLab, source: PyrouteLinkSource,
) -> None:
    events = source.events()
    for change in (["mtu", "1400"], ["alias", "uplink"]):
        await asyncio.to_thread(subprocess.run, ["ip", "-n", lab.name, "link", "set", "pf0",
                                                 *change], check=True)
    await lab.set_carrier("pf1", False)
    first = await next_change(events, lambda c: True)
    assert first.ifname in {"pf1", "pf1p"}  # nothing for pf0's MTU or alias


@needs_root
@skip_unless_root
async def test_resync_restores_the_snapshot_when_the_receive_buffer_overflows(
    lab: NetnsLab,
) -> None:
    async with PyrouteLinkSource(netns=lab.name, rcvbuf=64 << 10) as source:
        events = source.events()
        await lab.set_carrier("pf0", False)
        await next_change(events, carrier_of("pf0", False))
        await lab.inject_overflow()            # blocks the loop: the socket overflows
        await lab.set_carrier("pf0", True)     # this change is read after the resync
        change = await next_change(events, lambda c: c.resync, timeout=2.0)
        assert change == LinkChange("", None, resync=True)
        assert source.resyncs == 1
        assert source.snapshot()["pf0"].carrier is True  # the dump saw the lost change
        assert "flood0" in source.snapshot()
        await lab.set_carrier("pf1", False)    # the new socket delivers events
        await next_change(events, carrier_of("pf1", False))


@needs_root
@skip_unless_root
async def test_contract_holds_when_the_source_is_pyroute2(lab: NetnsLab) -> None:
    # A small buffer so that lab.inject_overflow() really overflows the socket.
    source = PyrouteLinkSource(netns=lab.name, rcvbuf=64 << 10)
    seen = await check_link_source(source, lab, ifname="pf0")
    assert sum(c.resync for c in seen) >= 1
    assert source.resyncs >= 1


@needs_root
@skip_unless_root
async def test_no_thread_and_no_fd_left_when_the_source_runs_and_closes(lab: NetnsLab) -> None:
    fds = len(os.listdir("/proc/self/fd"))
    before = set(threading.enumerate())

    def new_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t not in before and t.is_alive()}

    source = PyrouteLinkSource(netns=lab.name)
    try:
        await source.start()
        assert new_threads() == set()  # the setns thread has exited
        events = source.events()
        await lab.set_carrier("pf0", False)
        await next_change(events, carrier_of("pf0", False))
        assert new_threads() == set()
    finally:
        await source.close()
    assert await anext(events, None) is None
    assert len(os.listdir("/proc/self/fd")) == fds


@needs_root
@skip_unless_root
async def test_events_end_when_the_source_is_closed_while_waiting(
    source: PyrouteLinkSource,
) -> None:
    async def drain() -> list[LinkChange]:
        return [c async for c in source.events()]

    task = asyncio.create_task(drain())
    await asyncio.sleep(0.05)          # let it block on the socket
    await source.close()
    assert await asyncio.wait_for(task, 1.0) == []


@needs_root
@skip_unless_root
async def test_namespace_is_deleted_when_the_test_body_fails() -> None:
    lab = NetnsLab()
    with pytest.raises(ZeroDivisionError):
        async with lab:
            await lab.add_veth("pf0", "pf0p")
            assert netns_exists(lab.name)
            1 / 0  # noqa: B018
    assert not netns_exists(lab.name)
