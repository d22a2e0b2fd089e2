"""A point-in-time view of the daemon for ``/readyz`` and ``/metrics`` (they read this,
never the daemon itself)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sriovdp.model.pools import ResourcePool


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One pool endpoint: registered with the kubelet, streaming, counters."""

    registered: bool
    streaming: bool
    registrations: int = 0
    restarts: int = 0
    waiting: bool = False
    """Another instance owns the pool's socket; this one waits to take over."""


@dataclass(frozen=True, slots=True)
class DraStatus:
    """DRA mode's counters: failed ResourceSlice publications, devices in the published
    slices, prepared claims."""

    publish_errors: int = 0
    devices_published: int = 0
    prepared_claims: int = 0


@dataclass(frozen=True, slots=True)
class HoldStatus:
    """What retention keeps because pods hold it, and how the pod resources API fares.

    Attributes:
        kept: held devices kept in their granting pool although the config moved them.
        withheld: held devices of a resource that is not ours any more (offered nowhere).
        draining: pools no longer configured, kept for their held devices.
        vanished: devices gone from the host, still listed (Unhealthy) until they leave.
        pod_resources_errors: failed or incomplete pod resources calls so far.
    """

    kept: int = 0
    withheld: int = 0
    draining: int = 0
    vanished: int = 0
    pod_resources_errors: int = 0


@dataclass(frozen=True, slots=True)
class Status:
    """Attributes:
        started: the first pass published.
        pools: the published device plugin pools.
        dra_pools: the pools served through DRA (by resource name; empty without ``--dra``).
        endpoints: per pool, its endpoint.
        failures: supervised task → its error, while failed.
        problems: other reasons not to be ready, e.g. ``"CDI spec intel.com/net: ..."``.
        dra: DRA mode's counters (None without ``--dra``).
        holds: retention and pod resources counters.
        task_restarts: supervised task → times it failed and was restarted.
    """

    started: bool
    pools: Mapping[str, ResourcePool] = field(default_factory=dict)
    endpoints: Mapping[str, EndpointStatus] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    dra: DraStatus | None = None
    holds: HoldStatus = HoldStatus()
    task_restarts: Mapping[str, int] = field(default_factory=dict)
    dra_pools: Mapping[str, ResourcePool] = field(default_factory=dict)

    def not_ready(self) -> list[str]:
        """Why the daemon is not ready (empty: ready)."""
        reasons = [] if self.started else ["first pass not published"]
        reasons += [_endpoint_reason(name, e) for name, e in self.endpoints.items()
                    if not (e.registered and e.streaming)]
        reasons += [f"task {name} failed ({error})"
                    for name, error in sorted(self.failures.items())]
        return reasons + list(self.problems)


def _endpoint_reason(name: str, endpoint: EndpointStatus) -> str:
    """Why one pool's endpoint is not ready, naming the pool as a pool."""
    if endpoint.waiting:
        return f"pool {name}: its socket is owned by another instance"
    if not endpoint.registered:
        return f"pool {name}: not registered with the kubelet"
    return f"pool {name}: registered, but the kubelet has no ListAndWatch stream open"
