#!/bin/sh
# Image entrypoint of sriovdp: takes the Go image's options (--log-dir=, --log-level=, ...),
# turns them into sriovdp flags and execs the daemon, which then runs as PID 1 and gets
# SIGTERM directly from the container runtime.
#
# Differences from the Go image's script, on purpose:
#   * a value is everything after the first "=", so "--config-file=/a=b" keeps "/a=b", and
#     a value with spaces stays one argument;
#   * --health-address=, --metrics-address= and --log-format= are passed through, and
#     DRA mode's --dra[=marked|all], --dra-driver=, --dra-health=, --node-name=,
#     --kubeconfig=, --kubelet-plugins-dir= (deployments/overlays/dra);
#   * --log-level= must be a number (the daemon would refuse anything else anyway);
#   * any other argument (every other daemon flag, e.g. --kubelet-root-dir=/data/kubelet,
#     --resync-interval=10, -v 3, "--config-file /x" with a space) is passed to the daemon
#     unchanged and in order, before the translated ones; the daemon rejects what it does
#     not know (exit 2, naming it);
#   * string values are passed to the daemon as "--flag=value" (one argument).
#
# Environment (for tests and unusual images):
#   SRIOVDP_BIN       the daemon to exec (default /usr/local/bin/sriovdp)
#   SRIOVDP_LOG_BASE  the directory --log-dir= is relative to (default /var/log)
set -eu

BIN="${SRIOVDP_BIN:-/usr/local/bin/sriovdp}"
LOG_BASE="${SRIOVDP_LOG_BASE:-/var/log}"

usage() {
    cat <<EOF
Usage: entrypoint.sh [OPTION]...
Start the SR-IOV network device plugin (sriovdp).

  -h, --help                  show this help and exit
  --log-dir=DIR               log to files in ${LOG_BASE}/DIR (created if missing) and to
                              stderr; without it, log to stderr only
  --log-level=N               log verbosity (passed as -v N, default 10; 5 and up log debug)
  --resource-prefix=PREFIX    default resource name prefix (sriovdp default intel.com)
  --config-file=FILE          resource pool config (sriovdp default /etc/pcidp/config.json)
  --use-cdi                   Container Device Interface mode
  --health-address=ADDR       serve /healthz and /readyz on ADDR (e.g. :8081)
  --metrics-address=ADDR      serve Prometheus metrics on ADDR (e.g. :8082)
  --log-format=FORMAT         text or json
  --dra, --dra=marked|all     serve pools marked "dra": true (or all) through DRA
  --dra-driver=NAME           DRA driver name (sriovdp default sriov.network.k8s.io)
  --dra-health=POLICY         withdraw or taint unhealthy devices (default withdraw)
  --node-name=NODE            node name (sriovdp default \$NODE_NAME, else the host name)
  --kubeconfig=FILE           API server access (sriovdp default: in-cluster config)
  --kubelet-plugins-dir=DIR   DRA plugin socket dir (sriovdp default /var/lib/kubelet/plugins)

Options take their value after "=" only; the value is everything after the first "=".
Any other argument is passed to sriovdp unchanged (see sriovdp --help for its flags).
EOF
}

fail() {
    printf 'ERROR: %s\n' "$1" >&2
    usage >&2
    exit 1
}

LOG_DIR=""
LOG_LEVEL=10
RESOURCE_PREFIX=""
CONFIG_FILE=""
USE_CDI=false
HEALTH_ADDRESS=""
METRICS_ADDRESS=""
LOG_FORMAT=""
DRA=""
DRA_DRIVER=""
DRA_HEALTH=""
NODE_NAME_ARG=""
KUBECONFIG_ARG=""
KUBELET_PLUGINS_DIR=""

# Each argument is taken from the front; one the script does not translate goes to the back,
# so after $# turns "$@" holds exactly the pass-through arguments, in their order.
count=$#
while [ "$count" -gt 0 ]; do
    count=$((count - 1))
    param="$1"
    shift
    value="${param#*=}"
    case "$param" in
        -h | --help)
            usage
            exit 0
            ;;
        --log-dir=*) LOG_DIR="$value" ;;
        --log-level=*)
            case "$value" in
                "") LOG_LEVEL=10 ;;
                *[!0-9]*) fail "--log-level must be a number, got \"$value\"" ;;
                *) LOG_LEVEL="$value" ;;
            esac
            ;;
        --resource-prefix=*) RESOURCE_PREFIX="$value" ;;
        --config-file=*) CONFIG_FILE="$value" ;;
        --use-cdi | --use-cdi=true) USE_CDI=true ;;
        --use-cdi=false) USE_CDI=false ;;
        --health-address=*) HEALTH_ADDRESS="$value" ;;
        --metrics-address=*) METRICS_ADDRESS="$value" ;;
        --log-format=*) LOG_FORMAT="$value" ;;
        --dra) DRA=marked ;;
        --dra=marked | --dra=all) DRA="$value" ;;
        --dra-driver=*) DRA_DRIVER="$value" ;;
        --dra-health=*) DRA_HEALTH="$value" ;;
        --node-name=*) NODE_NAME_ARG="$value" ;;
        --kubeconfig=*) KUBECONFIG_ARG="$value" ;;
        --kubelet-plugins-dir=*) KUBELET_PLUGINS_DIR="$value" ;;
        *) set -- "$@" "$param" ;;
    esac
done

# Append the translated flags to the pass-through ones; each value stays one argument.
# String values are passed as "--flag=value", so a value starting with "-" cannot be taken
# for a flag.
if [ -n "$LOG_DIR" ]; then
    mkdir -p "$LOG_BASE/$LOG_DIR"
    set -- "$@" --log_dir "$LOG_BASE/$LOG_DIR" --alsologtostderr
else
    set -- "$@" --logtostderr
fi
set -- "$@" -v "$LOG_LEVEL"
if [ -n "$RESOURCE_PREFIX" ]; then
    set -- "$@" "--resource-prefix=$RESOURCE_PREFIX"
fi
if [ -n "$CONFIG_FILE" ]; then
    set -- "$@" "--config-file=$CONFIG_FILE"
fi
if [ "$USE_CDI" = true ]; then
    set -- "$@" --use-cdi
fi
if [ -n "$HEALTH_ADDRESS" ]; then
    set -- "$@" "--health-address=$HEALTH_ADDRESS"
fi
if [ -n "$METRICS_ADDRESS" ]; then
    set -- "$@" "--metrics-address=$METRICS_ADDRESS"
fi
if [ -n "$LOG_FORMAT" ]; then
    set -- "$@" "--log-format=$LOG_FORMAT"
fi
if [ -n "$DRA" ]; then
    set -- "$@" "--dra=$DRA"
fi
if [ -n "$DRA_DRIVER" ]; then
    set -- "$@" "--dra-driver=$DRA_DRIVER"
fi
if [ -n "$DRA_HEALTH" ]; then
    set -- "$@" "--dra-health=$DRA_HEALTH"
fi
if [ -n "$NODE_NAME_ARG" ]; then
    set -- "$@" "--node-name=$NODE_NAME_ARG"
fi
if [ -n "$KUBECONFIG_ARG" ]; then
    set -- "$@" "--kubeconfig=$KUBECONFIG_ARG"
fi
if [ -n "$KUBELET_PLUGINS_DIR" ]; then
    set -- "$@" "--kubelet-plugins-dir=$KUBELET_PLUGINS_DIR"
fi

exec "$BIN" "$@"
