#!/usr/bin/env python3
"""A kubectl for tests: a cluster of DaemonSets held in a JSON file, the real kubectl for
the offline parts.

FAKE_CLUSTER: JSON file, {"daemonsets": [objects...], "configmaps": [objects...] (optional),
"applied": [objects...]}; updated by `delete daemonset` and `apply -f -`. FAKE_LOG: every
call, one JSON array a line. `get daemonsets --all-namespaces -o jsonpath={range
.items[*]}...{end}` and `-n NS get configmap NAME --ignore-not-found -o go-template=...`
evaluate the template with the real kubectl (offline, `annotate --local`); `kustomize` and
`annotate --local` run the real one; `rollout status` succeeds.
"""

import json
import os
import subprocess
import sys
import tempfile

REAL = os.environ["REAL_KUBECTL"]
state_file = os.environ["FAKE_CLUSTER"]
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
with open(state_file) as f:
    state = json.load(f)


def save() -> None:
    with open(state_file, "w") as f:
        json.dump(state, f)


def evaluate(obj: dict, output: str) -> str:
    """``-o output`` (jsonpath=... or go-template=...) of one object, by the real kubectl."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        json.dump(obj, tmp)
    proc = subprocess.run([REAL, "annotate", "--local", "-f", tmp.name, "x=y", "-o", output],
                          capture_output=True, text=True, check=True)
    os.unlink(tmp.name)
    return proc.stdout


def jsonpath_each(template: str) -> str:
    prefix, suffix = "{range .items[*]}", "{end}"
    assert template.startswith(prefix) and template.endswith(suffix), template
    inner = template[len(prefix):-len(suffix)]
    out = []
    for obj in state["daemonsets"]:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
            json.dump(obj, tmp)
        proc = subprocess.run([REAL, "annotate", "--local", "-f", tmp.name, "x=y",
                               "-o", f"jsonpath={inner}"], capture_output=True, text=True,
                              check=True)
        os.unlink(tmp.name)
        out.append(proc.stdout)
    return "".join(out)


if args[:3] == ["get", "daemonsets", "--all-namespaces"]:
    assert args[3] == "-o" and args[4].startswith("jsonpath="), args
    sys.stdout.write(jsonpath_each(args[4][len("jsonpath="):]))
elif args[0] == "kustomize" or args[:2] == ["annotate", "--local"]:
    sys.exit(subprocess.run([REAL, *args]).returncode)
elif args[0] == "-n" and args[2:4] == ["get", "configmap"]:
    ns, name = args[1], args[4]
    assert "--ignore-not-found" in args, args
    output = next(a[len("-o="):] if a.startswith("-o=") else args[i + 1]
                  for i, a in enumerate(args) if a == "-o" or a.startswith("-o="))
    for cm in state.get("configmaps", []):
        if (cm["metadata"]["namespace"], cm["metadata"]["name"]) == (ns, name):
            sys.stdout.write(evaluate(cm, output))
elif args[:2] == ["apply", "-f"] and args[2] == "-":
    import yaml

    docs = [d for d in yaml.safe_load_all(sys.stdin.read()) if d]
    state["applied"].extend(docs)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            key = (doc["metadata"]["namespace"], doc["metadata"]["name"])
            state["configmaps"] = [d for d in state.get("configmaps", []) if (
                d["metadata"]["namespace"], d["metadata"]["name"]) != key] + [doc]
        if doc["kind"] != "DaemonSet":
            continue
        key = (doc["metadata"]["namespace"], doc["metadata"]["name"])
        state["daemonsets"] = [d for d in state["daemonsets"]
                               if (d["metadata"]["namespace"], d["metadata"]["name"]) != key]
        state["daemonsets"].append(doc)
    save()
elif args[0] == "-n" and args[2:4] == ["delete", "daemonset"]:
    ns, name = args[1], args[4]
    before = len(state["daemonsets"])
    state["daemonsets"] = [d for d in state["daemonsets"]
                           if (d["metadata"]["namespace"], d["metadata"]["name"]) != (ns, name)]
    if len(state["daemonsets"]) == before:
        sys.exit(f'Error from server (NotFound): daemonsets.apps "{name}" not found')
    save()
elif args[0] == "-n" and args[2:4] == ["rollout", "status"]:
    print(f"{args[4]} successfully rolled out")
else:
    sys.exit(f"fake kubectl: unexpected arguments {args}")
