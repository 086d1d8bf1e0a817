# Shared helpers for the lab scripts. Sourced, never executed.
# shellcheck shell=bash

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_RUN_DIR="${RECONCILE_LAB_RUN_DIR:-/tmp/reconcile-lab}"

log() { printf 'lab: %s\n' "$*" >&2; }

die() {
    printf 'lab: error: %s\n' "$*" >&2
    exit 1
}

# Run a command as root: directly when we are root, via sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@" || die "needs root (sudo -n failed): $*"
    else
        die "needs root: $*"
    fi
}

# Run a command with its output in a log file; on failure show the tail and exit.
run_logged() {
    local logfile="$1"
    shift
    mkdir -p "$(dirname "$logfile")"
    if ! "$@" >"$logfile" 2>&1; then
        printf 'lab: error: command failed: %s\n' "$*" >&2
        printf 'lab: last lines of %s:\n' "$logfile" >&2
        tail -n 30 "$logfile" | sed 's/^/    /' >&2
        exit 1
    fi
}

apt_install() {
    log "apt-get install $*"
    run_logged "$LAB_RUN_DIR/apt.log" as_root apt-get update -q
    run_logged "$LAB_RUN_DIR/apt.log" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}
