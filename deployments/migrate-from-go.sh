#!/bin/sh
# Replace the Go SR-IOV device plugin's DaemonSets with sriovdp, using only kubectl.
#
#   deployments/migrate-from-go.sh --image REGISTRY/sriovdp:TAG [--target DIR] [--apply]
#                                  [--replace-config]
#
# Without --apply it only prints what it found, what --apply would do and the commands it
# would run, and compares the cluster's config with the one the target would apply.
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
#  4. Renders the target (default: deployments/, the base) with `kubectl kustomize` and
#     compares the config.json of the ConfigMap it holds (kube-system/sriovdp-config, from
#     deployments/base/configmap.yaml) with the cluster's: the apply replaces the cluster's
#     (the Go plugin's config), so when they differ the diff is printed and --apply stops
#     unless --replace-config is given (copy your config into configmap.yaml first).
#  5. Sets the image of the kube-sriovdp container, applies the target and waits for the
#     rollout.
#
# Environment: KUBECTL (default kubectl).
set -eu

KUBECTL="${KUBECTL:-kubectl}"
HERE="$(cd "$(dirname "$0")" && pwd)"
TARGET="$HERE"
IMAGE=""
APPLY=false
REPLACE_CONFIG=false
OLD_NAMES="kube-sriov-device-plugin-amd64 kube-sriov-device-plugin-arm64 kube-sriov-device-plugin-ppc64le kube-sriov-device-plugin"
OURS_NS=kube-system
OURS=kube-sriov-device-plugin
SELECTOR=sriov-device-plugin

usage() {
    cat <<EOF
Usage: migrate-from-go.sh --image IMAGE [--target DIR] [--apply] [--replace-config]
Replace the Go SR-IOV device plugin's DaemonSets with sriovdp.

  --image IMAGE   the sriovdp image the nodes pull (e.g. registry.example.com/sriovdp:0.1.0)
  --target DIR    the kustomization to apply (default: $HERE, the base;
                  e.g. $HERE/overlays/cdi for a Go deployment run with --use-cdi)
  --apply         do it; without it, only print what would be done
  --replace-config  with --apply: replace the cluster's sriovdp-config ConfigMap even when
                  its config.json differs from the target's (deployments/base/configmap.yaml)
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
        --replace-config) REPLACE_CONFIG=true; shift ;;
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
        if [ "$APPLY" = true ]; then
            printf 'found %s/%s: updated in place by the apply\n' "$ns" "$name"
        else
            printf 'found %s/%s: --apply would update it in place\n' "$ns" "$name"
        fi
    elif [ "$ns" = "$OURS_NS" ]; then
        if [ "$APPLY" = true ]; then
            printf 'found %s/%s: old Go DaemonSet, deleting it (its pods are adopted and replaced)\n' "$ns" "$name"
        else
            printf 'found %s/%s: old Go DaemonSet, --apply would delete it (its pods would be adopted and replaced)\n' "$ns" "$name"
        fi
        ORPHAN="$ORPHAN $name"
    else
        if [ "$APPLY" = true ]; then
            printf 'found %s/%s: old Go DaemonSet in another namespace, deleting it with its pods\n' "$ns" "$name"
        else
            printf 'found %s/%s: old Go DaemonSet in another namespace, --apply would delete it with its pods\n' "$ns" "$name"
        fi
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

# The config: the target's ConfigMap replaces the cluster's (the Go plugin's config).
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$KUBECTL" kustomize "$TARGET" >"$WORK/rendered.yaml" || {
    printf 'migrate-from-go.sh: cannot render %s (kubectl kustomize failed above)\n' "$TARGET" >&2
    exit 1
}
# Each object's ConfigMap name and config.json, offline (annotate --local only prints).
configmap_field() {  # $1: a go-template applied to the rendered ConfigMap objects
    "$KUBECTL" annotate --local -f "$WORK/rendered.yaml" sriovdp-migrate=render \
        -o go-template="{{if eq .kind \"ConfigMap\"}}$1{{end}}"
}
CONFIG_JSON='{{range $k, $v := .data}}{{if eq $k "config.json"}}{{$v}}{{end}}{{end}}'
CM_NAMES="$(configmap_field '{{.metadata.namespace}}/{{.metadata.name}}{{"\n"}}')" || exit 1
CM="$OURS_NS/sriovdp-config"
case "$CM_NAMES" in
*"$CM"*)
    configmap_field "$CONFIG_JSON" >"$WORK/target.json" || exit 1
    CURRENT="$("$KUBECTL" -n "$OURS_NS" get configmap sriovdp-config --ignore-not-found \
        -o go-template="found{{\"\\n\"}}$CONFIG_JSON")" || {
        printf 'migrate-from-go.sh: cannot read the ConfigMap %s (kubectl get failed above)\n' "$CM" >&2
        exit 1
    }
    if [ -z "$CURRENT" ]; then
        if [ "$APPLY" = true ]; then
            printf 'config: %s does not exist; the apply creates it from %s\n' "$CM" "$TARGET"
        else
            printf 'config: %s does not exist; --apply would create it from %s\n' "$CM" "$TARGET"
        fi
    else
        printf '%s\n' "$CURRENT" | sed 1d >"$WORK/cluster.json"
        printf '%s\n' "$(cat "$WORK/target.json")" >"$WORK/target.txt"
        if cmp -s "$WORK/cluster.json" "$WORK/target.txt"; then
            printf 'config: the config.json of %s is the same as the one %s holds: the apply keeps it\n' "$CM" "$TARGET"
        else
            if [ "$APPLY" = true ]; then
                verb="the apply replaces"
            else
                verb="--apply would replace"
            fi
            printf 'config: %s the config.json of %s (the pools the cluster runs now) with the one %s holds (deployments/base/configmap.yaml); they differ (- cluster, + target):\n' \
                "$verb" "$CM" "$TARGET"
            diff -u "$WORK/cluster.json" "$WORK/target.txt" | sed '1,2d' || true
            printf 'Without --replace-config, --apply stops here and changes nothing: copy the cluster'"'"'s config.json into deployments/base/configmap.yaml first (kubectl -n %s get configmap sriovdp-config -o jsonpath='"'"'{.data.config\\.json}'"'"'), or pass --replace-config to apply the target'"'"'s.\n' "$OURS_NS"
            if [ "$APPLY" = true ] && [ "$REPLACE_CONFIG" = false ]; then
                printf 'migrate-from-go.sh: not applied: the config would change (see above); nothing was changed\n' >&2
                exit 4
            fi
        fi
    fi
    ;;
*)
    printf 'config: %s renders no %s ConfigMap: the cluster'"'"'s is left as it is\n' "$TARGET" "$CM"
    ;;
esac

for name in $ORPHAN; do
    run "$KUBECTL" -n "$OURS_NS" delete daemonset "$name" --cascade=orphan
done
for item in $CASCADE; do
    run "$KUBECTL" -n "${item%%/*}" delete daemonset "${item#*/}"
done

# The image: rendered by kustomize as "image: sriovdp:<tag>"; only that line changes.
if [ "$APPLY" = true ]; then
    printf '+ %s kustomize %s | sed (image %s) | %s apply -f -\n' "$KUBECTL" "$TARGET" "$IMAGE" "$KUBECTL"
    sed "s|^\( *image: \)sriovdp:.*\$|\1$IMAGE|" "$WORK/rendered.yaml" | "$KUBECTL" apply -f -
else
    printf "would run: %s kustomize %s | sed 's|image: sriovdp:.*|image: %s|' | %s apply -f -\n" \
        "$KUBECTL" "$TARGET" "$IMAGE" "$KUBECTL"
fi
run "$KUBECTL" -n "$OURS_NS" rollout status "daemonset/$OURS" --timeout=10m
