"""Device health from link state: which pool devices the kubelet should see as Unhealthy.

Pure: the link states come from a :class:`~sriovdp.host.links.LinkSource` (netlink), the
inventory from a sysfs scan; nothing here reads the host.

The rules (F36, F37), for every function of the inventory:

1. **PF link.** A VF whose PF netdev (``pf_netdev``) is known and has no carrier is
   Unhealthy, whatever the VF's driver: a VF bound to ``vfio-pci`` or ``uio`` (F37) or whose
   netdev was moved into a pod (F05) has no visible netdev of its own and follows its PF.
2. **Own link.** A function whose own netdev is known, administratively up (``IFF_UP``) and
   without carrier is Unhealthy. This covers a PF in a pool (no VFs created) and a VF whose
   link was disabled (``ip link set <pf> vf N state disable``).

   An *administratively down* own link is not evidence of a fault: VF netdevs left in the
   host namespace are normally down until a CNI moves them into a pod and sets them up, and
   most drivers drop the carrier on ``ndo_stop``. Counting them would advertise every idle VF
   as Unhealthy. (A down *PF* does stop its VFs' traffic, so rule 1 counts it.)
3. **No evidence, no verdict.** A netdev that is not in ``links`` at all (it lives in another
   network namespace, or the source has not seen it yet) says nothing; a function with no
   netdev and no PF netdev (accelerators, unbound non-VFs) is always Healthy.

:func:`derive_health` returns only the Unhealthy ids (a missing id means Healthy, as
:func:`~sriovdp.model.pools.build_pools` reads it) and costs O(functions): two dict look-ups
per function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sriovdp.model.devices import Inventory


class Health(StrEnum):
    """What the kubelet is told about one device (its values are the kubelet's strings).

    ``UNHEALTHY`` is for faults only (a link without carrier, a device gone from the host):
    the kubelet copies a device's health into the status of the pod holding it (KEP-4680).
    """

    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"


@dataclass(frozen=True, slots=True)
class LinkState:
    """What netlink says about one netdev (an ``RTM_NEWLINK`` message, reduced).

    Attributes:
        ifname: the netdev name, e.g. ``"ens1f0"`` (``IFLA_IFNAME``).
        carrier: the link has carrier, e.g. ``True`` (``IFLA_CARRIER``, else ``IFF_LOWER_UP``).
        operstate: RFC 2863 operational state as the kernel names it, e.g. ``"UP"``,
            ``"DOWN"``, ``"LOWERLAYERDOWN"`` (``IFLA_OPERSTATE``); for logs and ``discover``.
        admin_up: the link is administratively up, e.g. ``True`` (``IFF_UP``). Defaults to
            True so a state built without it counts its carrier like the PF rule does.
    """

    ifname: str
    carrier: bool
    operstate: str
    admin_up: bool = True


@dataclass(frozen=True, slots=True)
class LinkChange:
    """One change a link source observed, as :meth:`LinkSource.events` yields it.

    Attributes:
        ifname: the netdev whose state changed, e.g. ``"ens1f0"``; ``""`` for a resync.
        state: its new state; None when the netdev is gone (deleted, moved to another
            namespace, or renamed away: the new name arrives as its own change).
        resync: the source lost events (netlink receive buffer overflow, ``ENOBUFS``) and
            re-read every link; ``ifname``/``state`` are empty and the consumer must re-read
            the whole snapshot.
    """

    ifname: str
    state: LinkState | None
    resync: bool = False


def unhealthy_reasons(
    inventory: Inventory, links: Mapping[str, LinkState]
) -> dict[str, str]:
    """Why each Unhealthy function is Unhealthy, by device id (see the module rules).

    Args:
        inventory: one scan of the host.
        links: ifname → state, as a link source's ``snapshot()`` gives it.

    Returns:
        device id → reason, e.g. ``{"0000:3b:02.0": "PF ens1f0 has no carrier (DOWN)"}``;
        only Unhealthy ids are present.
    """
    out: dict[str, str] = {}
    get = links.get
    # One pass, two look-ups per function, no per-function call: this runs on every link
    # event and must stay well under 1 ms at 2048 VFs (performance-anchors G5).
    for dev_id, fn in inventory.functions.items():
        pf_name = fn.pf_netdev
        if pf_name is not None:
            pf = get(pf_name)
            if pf is not None and not pf.carrier:
                out[dev_id] = f"PF {pf.ifname} has no carrier ({pf.operstate})"
                continue
        if fn.netdevs:
            own = get(fn.netdevs[0])
            if own is not None and own.admin_up and not own.carrier:
                out[dev_id] = f"{own.ifname} is up but has no carrier ({own.operstate})"
    return out


def derive_health(inventory: Inventory, links: Mapping[str, LinkState]) -> dict[str, Health]:
    """Device id → :attr:`Health.UNHEALTHY` for every function the module rules mark Unhealthy.

    Ids that are not in the result are Healthy, which is how ``build_pools(..., health=...)``
    reads a missing id; the result is therefore small and O(functions) to build.
    """
    return dict.fromkeys(unhealthy_reasons(inventory, links), Health.UNHEALTHY)
