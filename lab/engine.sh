#!/usr/bin/env bash
# Ensure a working Docker engine: install Debian's docker.io if needed, start dockerd
# in the background if no daemon answers. Quiet when the engine already works.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERD_LOG=/var/log/reconcile-lab-dockerd.log
WAIT_SECONDS=60

engine_ok() { docker info >/dev/null 2>&1; }

install_engine() {
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        apt_install docker.io
    fi
}

start_dockerd() {
    if command -v pgrep >/dev/null 2>&1 && pgrep -x dockerd >/dev/null 2>&1; then
        log "dockerd is running but not answering yet; waiting"
        return
    fi
    log "starting dockerd (log: $DOCKERD_LOG)"
    as_root bash -c "nohup dockerd >>'$DOCKERD_LOG' 2>&1 </dev/null &"
}

wait_for_engine() {
    local i
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        engine_ok && return 0
        sleep 1
    done
    printf 'lab: error: docker engine did not answer within %ss\n' "$WAIT_SECONDS" >&2
    if [ -r "$DOCKERD_LOG" ]; then
        printf 'lab: last lines of %s:\n' "$DOCKERD_LOG" >&2
        tail -n 20 "$DOCKERD_LOG" | sed 's/^/    /' >&2
    fi
    exit 1
}

main() {
    engine_ok && return 0
    install_engine
    engine_ok && return 0
    start_dockerd
    wait_for_engine
}

main "$@"
