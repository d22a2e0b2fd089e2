"""Prometheus metrics of the daemon, read from its state at scrape time.

Per pool (label ``resource``), device plugin and DRA pools alike: ``sriovdp_pool_devices``,
``sriovdp_pool_healthy_devices``, ``sriovdp_pool_unhealthy_devices`` (gauges) and
``sriovdp_pool_info{served="device-plugin|dra|both"}`` (1 per pool: how it is served).
Per device plugin pool: ``sriovdp_allocations_total`` and ``sriovdp_allocate_errors_total``
(counted per device id / per refused request), ``sriovdp_registrations_total``,
``sriovdp_endpoint_restarts_total`` (re-registrations after kubelet restarts, socket loss or
a lost stream), ``sriovdp_pool_registered`` (1/0).
Daemon-wide: ``sriovdp_config_reloads_total{result="ok|failed"}``,
``sriovdp_link_events_total``, ``sriovdp_scan_duration_seconds`` (histogram) and
``sriovdp_build_info{version}``, ``sriovdp_retained_devices{reason="kept|withheld|vanished"}``
and ``sriovdp_draining_pools`` (gauges), ``sriovdp_pod_resources_errors_total`` and
``sriovdp_task_restarts_total{task}``. With ``--dra``: ``sriovdp_dra_publish_errors_total``
(failed ResourceSlice publications), ``sriovdp_dra_devices_published`` and
``sriovdp_dra_prepared_claims`` (gauges).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sriovdp import __version__
from sriovdp.daemon.status import DraStatus, HoldStatus, Status
from sriovdp.model.health import Health

SCAN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ScanHistogram:
    """Scan durations in seconds, bucketed as Prometheus histograms are (cumulative on output)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(SCAN_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(SCAN_BUCKETS, seconds)] += 1
        self.total += seconds


class DaemonMetrics:
    """Counters the daemon bumps, plus a collector that reads pool state when scraped.

    prometheus-client is imported on the first scrape only, so a daemon without
    ``--metrics-address`` never loads it.
    """

    def __init__(self) -> None:
        self.allocations: Counter[str] = Counter()
        self.allocate_errors: Counter[str] = Counter()
        self.reloads: Counter[str] = Counter()
        self.link_events = 0
        self.scan_duration = ScanHistogram()
        self._status: Callable[[], Status] | None = None
        self._registry: Any = None

    def bind(self, status: Callable[[], Status]) -> None:
        """Read pool and endpoint state from ``status()`` at scrape time."""
        self._status = status

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(self)
        return bytes(generate_latest(self._registry))

    def collect(self) -> Iterator[Any]:
        """prometheus-client's collector protocol."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        buckets, running = [], 0
        for bound, count in zip((*SCAN_BUCKETS, float("inf")), self.scan_duration.counts,
                                strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
        yield HistogramMetricFamily("sriovdp_scan_duration_seconds",
                                    "Time of one host scan and pool build", buckets=buckets,
                                    sum_value=self.scan_duration.total)
        info = GaugeMetricFamily("sriovdp_build_info", "sriovdp build", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        if self._status is None:
            return
        status = self._status()
        yield from _pool_metrics(status)
        regs = CounterMetricFamily("sriovdp_registrations", "Successful registrations",
                                   labels=["resource"])
        restarts = CounterMetricFamily("sriovdp_endpoint_restarts",
                                       "Socket re-creations (kubelet restart, socket or stream "
                                       "lost, registration refused)", labels=["resource"])
        for name, endpoint in status.endpoints.items():
            regs.add_metric([name], endpoint.registrations)
            restarts.add_metric([name], endpoint.restarts)
        yield from (regs, restarts)
        allocs = CounterMetricFamily("sriovdp_allocations", "Devices allocated",
                                     labels=["resource"])
        for name, n in self.allocations.items():
            allocs.add_metric([name], n)
        errors = CounterMetricFamily("sriovdp_allocate_errors", "Refused Allocate requests",
                                     labels=["resource"])
        for name, n in self.allocate_errors.items():
            errors.add_metric([name], n)
        reloads = CounterMetricFamily("sriovdp_config_reloads", "Config reloads",
                                      labels=["result"])
        for result in ("ok", "failed"):
            reloads.add_metric([result], self.reloads[result])
        links = CounterMetricFamily("sriovdp_link_events", "Netlink link changes seen")
        links.add_metric([], self.link_events)
        yield from (allocs, errors, reloads, links)
        yield from _hold_metrics(status.holds, status.task_restarts)
        if status.dra is not None:
            yield from _dra_metrics(status.dra)


def _pool_metrics(status: Status) -> Iterator[Any]:
    """Per pool: its devices (device plugin and DRA pools; one series per resource), whether
    its device plugin endpoint is registered, and ``sriovdp_pool_info{served}``."""
    from prometheus_client.core import GaugeMetricFamily

    counts: dict[str, list[int]] = {}  # resource → [devices, healthy]
    served: dict[str, str] = {}
    for way, pools in (("device-plugin", status.pools), ("dra", status.dra_pools)):
        for name, pool in pools.items():
            # a resource is in both only while a move drains: a device is offered one way
            served[name] = "both" if name in served else way
            count = counts.setdefault(name, [0, 0])
            count[0] += len(pool.devices)
            count[1] += sum(1 for d in pool.devices.values() if d.health is Health.HEALTHY)
    info = GaugeMetricFamily("sriovdp_pool_info", "1 per pool, and how it is served "
                             "(device-plugin: a socket and an extended resource; dra: "
                             "ResourceSlices; both: while a move drains)",
                             labels=["resource", "served"])
    for name, way in served.items():
        info.add_metric([name, way], 1)
    devices = GaugeMetricFamily("sriovdp_pool_devices", "Devices in the pool",
                                labels=["resource"])
    healthy = GaugeMetricFamily("sriovdp_pool_healthy_devices", "Healthy devices",
                                labels=["resource"])
    unhealthy = GaugeMetricFamily("sriovdp_pool_unhealthy_devices", "Unhealthy devices",
                                  labels=["resource"])
    for name, (n, n_ok) in counts.items():
        devices.add_metric([name], n)
        healthy.add_metric([name], n_ok)
        unhealthy.add_metric([name], n - n_ok)
    registered = GaugeMetricFamily("sriovdp_pool_registered",
                                   "1 while the pool is registered with the kubelet",
                                   labels=["resource"])
    for name in status.pools:
        endpoint = status.endpoints.get(name)
        registered.add_metric([name], 1 if endpoint and endpoint.registered else 0)
    yield from (devices, healthy, unhealthy, registered, info)


def _hold_metrics(holds: HoldStatus, task_restarts: Mapping[str, int]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    retained = GaugeMetricFamily("sriovdp_retained_devices",
                                 "Devices retention keeps: held ones a config moved (kept in "
                                 "their granting pool, or withheld from every pool) and "
                                 "vanished ones still listed", labels=["reason"])
    for reason, n in (("kept", holds.kept), ("withheld", holds.withheld),
                      ("vanished", holds.vanished)):
        retained.add_metric([reason], n)
    draining = GaugeMetricFamily("sriovdp_draining_pools",
                                 "Pools no longer configured, kept while pods hold devices")
    draining.add_metric([], holds.draining)
    errors = CounterMetricFamily("sriovdp_pod_resources_errors",
                                 "Failed or incomplete pod resources List calls (holds kept)")
    errors.add_metric([], holds.pod_resources_errors)
    restarts = CounterMetricFamily("sriovdp_task_restarts",
                                   "Supervised background tasks that failed and were started "
                                   "again", labels=["task"])
    for task, n in sorted(task_restarts.items()):
        restarts.add_metric([task], n)
    yield from (retained, draining, errors, restarts)


def _dra_metrics(dra: DraStatus) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    errors = CounterMetricFamily("sriovdp_dra_publish_errors",
                                 "Failed ResourceSlice publications (each retried)")
    errors.add_metric([], dra.publish_errors)
    published = GaugeMetricFamily("sriovdp_dra_devices_published",
                                  "Devices in the node's published ResourceSlices")
    published.add_metric([], dra.devices_published)
    prepared = GaugeMetricFamily("sriovdp_dra_prepared_claims",
                                 "DRA claims prepared on this node (checkpoint)")
    prepared.add_metric([], dra.prepared_claims)
    yield from (errors, published, prepared)
