#!/bin/sh
# Build the sriovdp image with docker buildx, for the Go plugin's four architectures.
#
#   images/build.sh [--push | --load] [--platforms LIST] [--dry-run] IMAGE
#   images/build.sh --check-wheels [--dry-run]
#
# IMAGE is the full name the nodes pull, e.g. registry.example.com/sriovdp:0.1.0.
# --push       build every platform and push the multi-arch image (the usual case)
# --load       load the image into the local docker (one platform only: buildx cannot load
#              a multi-arch image), e.g. --load --platforms linux/amd64
#              (with neither, the image is only built: a check, kept in buildx's cache)
# --platforms  comma-separated (default linux/amd64,linux/arm64,linux/ppc64le,linux/s390x)
# --dry-run    print the commands instead of running them
# --check-wheels  ask PyPI (pip download) which pinned dependencies have no binary wheel for
#              each platform: those must be in the Dockerfile's source-build list
#
# Foreign architectures build under QEMU: once per machine,
#   docker run --privileged --rm tonistiigi/binfmt --install all
# Environment: DOCKER (default docker), PYTHON (default python3, for --check-wheels).
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
DOCKER="${DOCKER:-docker}"
PYTHON="${PYTHON:-python3}"
PLATFORMS="linux/amd64,linux/arm64,linux/ppc64le,linux/s390x"
OUTPUT=""
DRY_RUN=false
CHECK_WHEELS=false
IMAGE=""

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
}

fail() {
    printf 'build.sh: %s\n' "$1" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --push) OUTPUT=--push ;;
        --load) OUTPUT=--load ;;
        --platforms) [ $# -ge 2 ] || fail "--platforms needs a value"; PLATFORMS="$2"; shift ;;
        --platforms=*) PLATFORMS="${1#*=}" ;;
        --dry-run) DRY_RUN=true ;;
        --check-wheels) CHECK_WHEELS=true ;;
        -h | --help) usage; exit 0 ;;
        -*) fail "unknown option \"$1\" (see --help)" ;;
        *) [ -z "$IMAGE" ] || fail "one image name only, got \"$IMAGE\" and \"$1\""; IMAGE="$1" ;;
    esac
    shift
done

run() {
    if [ "$DRY_RUN" = true ]; then
        printf '%s\n' "$*"
    else
        "$@"
    fi
}

# "linux/ppc64le" -> the manylinux platform tags pip matches wheels against.
pip_platforms() {
    case "$1" in
        linux/amd64) arch=x86_64 ;;
        linux/arm64) arch=aarch64 ;;
        linux/ppc64le) arch=ppc64le ;;
        linux/s390x) arch=s390x ;;
        *) fail "unsupported platform \"$1\"" ;;
    esac
    printf -- '--platform manylinux2014_%s --platform manylinux_2_28_%s' "$arch" "$arch"
}

for platform in $(printf '%s' "$PLATFORMS" | tr ',' ' '); do
    pip_platforms "$platform" >/dev/null
done

if [ "$CHECK_WHEELS" = true ]; then
    # Every pin of pyproject.toml's dependencies, with their own dependencies.
    PINS="$(sed -n '/^dependencies = \[/,/^\]/s/^ *"\([^"]*\)",*$/\1/p' "$ROOT/pyproject.toml")"
    [ -n "$PINS" ] || fail "no dependencies found in $ROOT/pyproject.toml"
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    status=0
    for platform in $(printf '%s' "$PLATFORMS" | tr ',' ' '); do
        for pin in $PINS; do
            # shellcheck disable=SC2046 # the platform flags are separate words
            if [ "$DRY_RUN" = true ]; then
                printf '%s -m pip download --quiet --only-binary=:all: %s --python-version 3.11 --implementation cp -d %s %s\n' \
                    "$PYTHON" "$(pip_platforms "$platform")" "$WORK" "$pin"
            elif "$PYTHON" -m pip download --quiet --only-binary=:all: $(pip_platforms "$platform") \
                    --python-version 3.11 --implementation cp -d "$WORK" "$pin" >/dev/null 2>&1; then
                printf '%s %s: wheel\n' "$platform" "$pin"
            else
                printf '%s %s: NO WHEEL, built from source\n' "$platform" "$pin"
                status=1
            fi
        done
    done
    exit "$status"
fi

[ -n "$IMAGE" ] || fail "an image name is required, e.g. registry.example.com/sriovdp:0.1.0"
case "$PLATFORMS" in
    *,*) [ "$OUTPUT" != --load ] || fail "--load takes one platform (buildx cannot load a multi-arch image)" ;;
esac

if [ "$DRY_RUN" = false ] && ! "$DOCKER" buildx version >/dev/null 2>&1; then
    fail "\"$DOCKER buildx\" is not available: install docker's buildx plugin (docker-buildx-plugin)"
fi
set -- "$DOCKER" buildx build --platform "$PLATFORMS" -f "$HERE/Dockerfile" -t "$IMAGE"
if [ -n "$OUTPUT" ]; then
    set -- "$@" "$OUTPUT"
fi
run "$@" "$ROOT"
