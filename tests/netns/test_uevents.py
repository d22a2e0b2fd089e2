"""Kernel uevents: parsing, and a real uevent socket in a test-made network namespace."""

from __future__ import annotations

import asyncio

import pytest

from sriovdp.host.uevents import UeventSource, parse_uevent
from sriovdp.testing.links import NetnsLab

_WHY_NOT = NetnsLab.available()


def test_kernel_datagram_is_parsed_when_it_has_action_and_subsystem() -> None:
    event = parse_uevent(b"bind@/devices/pci0000:3b/0000:3b:02.0\0ACTION=bind\0"
                         b"DEVPATH=/devices/pci0000:3b/0000:3b:02.0\0SUBSYSTEM=pci\0"
                         b"DRIVER=vfio-pci\0SEQNUM=4242\0")
    assert event is not None and event.relevant
    assert (event.action, event.subsystem, event.driver) == ("bind", "pci", "vfio-pci")


@pytest.mark.parametrize("datagram", [
    pytest.param(b"libudev\0\xfe\xed\xca\xfe", id="udev-rebroadcast"),
    pytest.param(b"junk without an at sign", id="junk"),
    pytest.param(b"", id="empty"),
])
def test_other_datagrams_are_ignored_when_they_are_not_kernel_uevents(datagram: bytes) -> None:
    assert parse_uevent(datagram) is None


def test_change_events_are_not_relevant_when_nothing_came_or_went() -> None:
    event = parse_uevent(b"change@/devices/x\0ACTION=change\0SUBSYSTEM=pci\0")
    assert event is not None and not event.relevant


@pytest.mark.needs_root
async def test_netdev_add_arrives_when_a_veth_is_created_in_the_namespace() -> None:
    if _WHY_NOT is not None:
        pytest.skip(_WHY_NOT)
    async with NetnsLab() as lab:
        source = UeventSource(netns=lab.name)
        await source.start()
        try:
            await lab.add_veth("vf9", "vf9p")

            async def first_add() -> str:
                async for event in source.events():
                    if event.action == "add" and event.subsystem == "net":
                        return event.devpath
                return ""

            devpath = await asyncio.wait_for(first_add(), 5)
            assert devpath.endswith(("/vf9", "/vf9p"))
        finally:
            await source.close()
