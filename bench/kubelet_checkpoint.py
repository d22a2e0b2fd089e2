"""Reading the kubelet's device checkpoint as a hold source: 256 and 2,048 granted VFs.

Each grant is one entry as the kubelet writes it (one container, one VF, its Allocate response
base64-encoded: ~600 bytes, env + device spec + mounts). Prints, per size, the median and p99
of :meth:`KubeletCheckpoint.granted` on a changed file (read + parse, done off the event loop
when the pod resources API is asked) and of :meth:`KubeletCheckpoint.changed` on an unchanged
one (a stat, done on the loop at every ask), with the ratio to a floor measured in the same
run: a bare ``read_bytes`` of the same file. Asserts nothing.

Run: ``.venv/bin/python bench/kubelet_checkpoint.py [--repeat 50] [--json]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sriovdp.kubelet.checkpoint import CHECKPOINT_NAME, KubeletCheckpoint

SIZES = (256, 2048)


def write(path: Path, grants: int) -> None:
    resp = base64.b64encode(os.urandom(450)).decode()  # ~600 bytes once encoded
    entries = [{"PodUID": f"6f1c0c52-{i:04x}-4b7e-9d2a-0242ac120002", "ContainerName": "c0",
                "ResourceName": "intel.com/intel_sriov_netdevice",
                "DeviceIDs": {"0": [f"0000:{0x3b + i // 256:02x}:{(i // 8) % 32:02x}.{i % 8}"]},
                "AllocResp": resp} for i in range(grants)]
    doc = {"Data": {"PodDeviceEntries": entries, "RegisteredDevices": {}}, "Checksum": 1}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def summary(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * .99))]


def run(repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sdpb-") as tmp:
        path = Path(tmp) / CHECKPOINT_NAME
        for grants in SIZES:
            write(path, grants)
            floor = timed(path.read_bytes, repeat)

            def changed_read() -> None:
                KubeletCheckpoint(path).granted()  # a new reader: the file counts as changed

            reader = KubeletCheckpoint(path)
            reader.granted()
            parse = timed(changed_read, repeat)
            stat = timed(reader.changed, repeat)
            f_med, _ = summary(floor)
            p_med, p_p99 = summary(parse)
            s_med, s_p99 = summary(stat)
            results[str(grants)] = {
                "bytes": path.stat().st_size, "floor_read_ms": f_med * 1e3,
                "read_parse_median_ms": p_med * 1e3, "read_parse_p99_ms": p_p99 * 1e3,
                "ratio_to_floor": p_med / f_med, "unchanged_stat_median_us": s_med * 1e6,
                "unchanged_stat_p99_us": s_p99 * 1e6}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for grants, r in results.items():
        print(f"{grants:>5} grants ({r['bytes'] / 1e6:.2f} MB): read+parse median "
              f"{r['read_parse_median_ms']:.1f} ms, p99 {r['read_parse_p99_ms']:.1f} ms "
              f"({r['ratio_to_floor']:.0f}x a bare read of {r['floor_read_ms']:.2f} ms); "
              f"unchanged file: stat median {r['unchanged_stat_median_us']:.0f} us, "
              f"p99 {r['unchanged_stat_p99_us']:.0f} us")


if __name__ == "__main__":
    main()
