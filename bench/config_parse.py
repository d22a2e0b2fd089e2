"""Config parsing on large and hostile input: time and peak RSS per case, each case in its own
process (so one case's memory does not hide another's).

Cases are about 1 MiB (a ConfigMap's limit), built to maximise the work per byte: a value
list whose every item is an error, thousands of broken resources, duplicate names, unknown
keys, long strings, deep nesting, and a large *valid* config. The floor is ``json.loads`` of
the same bytes in the same process. Prints figures; asserts nothing.

Run: ``.venv/bin/python bench/config_parse.py [--size-mib 1]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

MIB = 1024 * 1024


def _fill(prefix: str, item: str, suffix: str, size: int) -> str:
    """``prefix`` + ``item`` repeated (comma-separated) + ``suffix``, about ``size`` bytes."""
    count = max(1, (size - len(prefix) - len(suffix)) // (len(item) + 1))
    return prefix + ",".join([item] * count) + suffix


def cases(size: int) -> dict[str, str]:
    res = '{"resourceName":"a.b","excludeTopology":"y","selectors":[{"vendors":["x"]},7]}'
    return {
        "bad-values": _fill('{"resourceList":[{"resourceName":"a","selectors":{"vendors":[',
                            '"x"', "]}}]}", size),
        "bad-ranges": _fill('{"resourceList":[{"resourceName":"a","selectors":{"pfNames":[',
                            '"p#5-2"', "]}}]}", size),
        "bad-resources": _fill('{"resourceList":[', res, "]}", size),
        "duplicate-names": _fill('{"resourceList":[', '{"resourceName":"a","selectors":{}}',
                                 "]}", size),
        "unknown-selector-keys": '{"resourceList":[{"resourceName":"a","selectors":{'
        + ",".join(f'"k{i}":1' for i in range(size // 11)) + "}}]}",
        "unknown-top-keys": "{" + ",".join(f'"k{i}":1' for i in range(size // 11)) + "}",
        "long-string": '{"resourceList":[{"resourceName":"' + "x" * (size - 80)
                       + '","selectors":{}}]}',
        "deep": "[" * size,
        "valid-many-resources": '{"resourceList":[' + ",".join(
            f'{{"resourceName":"pf{i}","selectors":{{"drivers":["iavf"]}}}}'
            for i in range(size // 64)) + "]}",
        "bad-types": _fill('{"resourceList":[{"resourceName":"a","selectors":{"drivers":[',
                           "1", "]}}]}", size),
        "bad-info-values": '{"resourceList":[{"resourceName":"a","selectors":{},'
        '"additionalInfo":{"*":{' + ",".join(f'"k{i}":1' for i in range(size // 11)) + "}}}]}",
        "valid-1000-resources": '{"resourceList":[' + ",".join(
            f'{{"resourceName":"pf{i}","selectors":[{{"vendors":["8086"],"drivers":["iavf"],'
            f'"pfNames":["ens{i}f0#0-63"],"pciAddresses":['
            + ",".join(f'"0000:{i % 256:02x}:{j // 8:02x}.{j % 8}"' for j in range(60))
            + "]}]}" for i in range(1000)) + "]}",
        "valid-long-range": '{"resourceList":[{"resourceName":"a","selectors":{"pfNames":["p#'
        + ",".join(str(i) for i in range(size // 8)) + '"]}}]}',
    }


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
text = Path(sys.argv[1]).read_bytes()
from sriovdp.errors import ConfigError
from sriovdp.model.config import parse_config
import sriovdp.model.config as config_module
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    json.loads(text)
except (ValueError, RecursionError):
    pass
floor = time.perf_counter() - t0
floor_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    config = parse_config(text)
    out = "\n".join(["valid"] + [str(w) for w in config.warnings])
except ConfigError as exc:
    out = str(exc)  # what validate prints / the daemon logs
took = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"floor": floor, "took": took, "rss_kib": rss - base,
                  "floor_rss_kib": floor_rss - base, "lines": out.count("\n") + 1,
                  "chars": len(out)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=float, default=1.0)
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    args = parser.parse_args()
    size = int(args.size_mib * MIB)
    print(f"config parse, ~{args.size_mib:g} MiB inputs (floor: json.loads of the same bytes)")
    print(f"{'case':24} {'bytes':>9} {'parse s':>8} {'floor s':>8} {'ratio':>6} "
          f"{'peak RSS MiB':>12} {'out lines':>9} {'out chars':>9}")
    for name, text in cases(size).items():
        if args.only and args.only not in name:
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(text)
            f.flush()
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD, f.name], capture_output=True,
                                  text=True, check=False, timeout=3600)
            wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"{name:24} failed after {wall:.1f} s: {proc.stderr.strip()[-300:]}")
            continue
        r = json.loads(proc.stdout)
        ratio = r["took"] / max(r["floor"], 1e-6)
        print(f"{name:24} {len(text):9d} {r['took']:8.3f} {r['floor']:8.3f} {ratio:6.1f} "
              f"{r['rss_kib'] / 1024:12.1f} {r['lines']:9d} {r['chars']:9d}")


if __name__ == "__main__":
    main()
