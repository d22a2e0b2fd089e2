#!/bin/sh
# Replace the Go SR-IOV device plugin's DaemonSets with sriovdp, using only kubectl.
#
#   deployments/migrate-from-go.sh --image REGISTRY/sriovdp:TAG [--target DIR] [--apply]
#
# Without --apply it only prints what it found and the commands it would run.
#
# What it does:
#  1. Lists every DaemonSet in the cluster and picks the Go plugin's: those named
#     kube-sriov-device-plugin-amd64 / -arm64 / -ppc64le (older manifests) or
#     kube-sriov-device-plugin, and any other whose pod selector is name=sriov-device-plugin.
#  2. Stops if one of them has an owner (the sriov-network-operator's, which would recreate
#     it): such clusters keep the operator's DaemonSet (docs/real-node.md, section 10).
#  3. Deletes the old ones in kube-system with --cascade=orphan: their pods keep running
#     (no node is without a plugin), and the sriovdp DaemonSet, which has the same pod
#     selector, adopts them and replaces them one node at a time. kube-system's
#     kube-sriov-device-plugin is not deleted: the apply updates it in place. Old ones in
#     other namespaces are deleted with their pods (they cannot be adopted).
#  4. Renders the target (default: deployments/, the base) with `kubectl kustomize`, sets
#     the image of the kube-sriovdp container, applies it and waits for the rollout.
#
# Environment: KUBECTL (default kubectl).
set -eu

KUBECTL="${KUBECTL:-kubectl}"
HERE="$(cd "$(dirname "$0")" && pwd)"
TARGET="$HERE"
IMAGE=""
APPLY=false
OLD_NAMES="kube-sriov-device-plugin-amd64 kube-sriov-device-plugin-arm64 kube-sriov-device-plugin-ppc64le kube-sriov-device-plugin"
OURS_NS=kube-system
OURS=kube-sriov-device-plugin
SELECTOR=sriov-device-plugin

usage() {
    cat <<EOF
Usage: migrate-from-go.sh --image IMAGE [--target DIR] [--apply]
Replace the Go SR-IOV device plugin's DaemonSets with sriovdp.

  --image IMAGE   the sriovdp image the nodes pull (e.g. registry.example.com/sriovdp:0.1.0)
  --target DIR    the kustomization to apply (default: $HERE, the base;
                  e.g. $HERE/overlays/cdi for a Go deployment run with --use-cdi)
  --apply         do it; without it, only print what would be done
  -h, --help      show this help
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --image) [ $# -ge 2 ] || { usage >&2; exit 2; }; IMAGE="$2"; shift 2 ;;
        --image=*) IMAGE="${1#*=}"; shift ;;
        --target) [ $# -ge 2 ] || { usage >&2; exit 2; }; TARGET="$2"; shift 2 ;;
        --target=*) TARGET="${1#*=}"; shift ;;
        --apply) APPLY=true; shift ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'migrate-from-go.sh: unknown argument "%s"\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -z "$IMAGE" ]; then
    printf 'migrate-from-go.sh: --image is required (the image built with images/build.sh)\n' >&2
    exit 2
fi

run() {
    if [ "$APPLY" = true ]; then
        printf '+ %s\n' "$*"
        "$@"
    else
        printf 'would run: %s\n' "$*"
    fi
}

is_old_name() {
    for n in $OLD_NAMES; do
        [ "$1" = "$n" ] && return 0
    done
    return 1
}

TAB="$(printf '\t')"
# namespace, name, the selector's "name" label, owner kinds: one DaemonSet a line.
LIST="$("$KUBECTL" get daemonsets --all-namespaces -o jsonpath='{range .items[*]}{.metadata.namespace}{"\t"}{.metadata.name}{"\t"}{.spec.selector.matchLabels.name}{"\t"}{.metadata.ownerReferences[*].kind}{"\n"}{end}')" || {
    printf 'migrate-from-go.sh: cannot list the DaemonSets of the cluster (kubectl get daemonsets --all-namespaces failed above)\n' >&2
    exit 1
}

ORPHAN=""
CASCADE=""
OWNED=""
while IFS="$TAB" read -r ns name selector owners; do
    [ -n "$ns" ] || continue
    if ! is_old_name "$name" && [ "$selector" != "$SELECTOR" ]; then
        continue
    fi
    if [ -n "$owners" ]; then
        OWNED="$OWNED $ns/$name($owners)"
    elif [ "$ns" = "$OURS_NS" ] && [ "$name" = "$OURS" ]; then
        printf 'found %s/%s: updated in place by the apply\n' "$ns" "$name"
    elif [ "$ns" = "$OURS_NS" ]; then
        printf 'found %s/%s: old Go DaemonSet, deleted (its pods are adopted and replaced)\n' "$ns" "$name"
        ORPHAN="$ORPHAN $name"
    else
        printf 'found %s/%s: old Go DaemonSet in another namespace, deleted with its pods\n' "$ns" "$name"
        CASCADE="$CASCADE $ns/$name"
    fi
done <<EOF
$LIST
EOF

if [ -n "$OWNED" ]; then
    printf 'migrate-from-go.sh: managed by an operator, not touched:%s\n' "$OWNED" >&2
    printf 'Its operator recreates what is deleted; see docs/real-node.md section 10 (sriov-network-operator).\n' >&2
    exit 3
fi

for name in $ORPHAN; do
    run "$KUBECTL" -n "$OURS_NS" delete daemonset "$name" --cascade=orphan
done
for item in $CASCADE; do
    run "$KUBECTL" -n "${item%%/*}" delete daemonset "${item#*/}"
done

# The image: rendered by kustomize as "image: sriovdp:<tag>"; only that line changes.
if [ "$APPLY" = true ]; then
    printf '+ %s kustomize %s | sed (image %s) | %s apply -f -\n' "$KUBECTL" "$TARGET" "$IMAGE" "$KUBECTL"
    "$KUBECTL" kustomize "$TARGET" | sed "s|^\( *image: \)sriovdp:.*\$|\1$IMAGE|" | "$KUBECTL" apply -f -
else
    printf "would run: %s kustomize %s | sed 's|image: sriovdp:.*|image: %s|' | %s apply -f -\n" \
        "$KUBECTL" "$TARGET" "$IMAGE" "$KUBECTL"
fi
run "$KUBECTL" -n "$OURS_NS" rollout status "daemonset/$OURS" --timeout=10m
