#!/usr/bin/env bash
# S3 endpoint for tests: moto in server mode on 127.0.0.1:$RECONCILE_LAB_S3_PORT.
# Usage: s3.sh start|stop|status   (interpreter: $PYTHON, default python3)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYTHON="${PYTHON:-python3}"
PORT="${RECONCILE_LAB_S3_PORT:-9555}"
HOST=127.0.0.1
URL="http://$HOST:$PORT"
PIDFILE="$LAB_RUN_DIR/s3.pid"
LOGFILE="$LAB_RUN_DIR/s3.log"
WAIT_SECONDS=30

usage() { die "usage: $(basename "$0") start|stop|status"; }

# pid from the pidfile, only if that process is alive and is our moto server
server_pid() {
    local pid
    [ -r "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'moto' || return 1
    printf '%s\n' "$pid"
}

answers_http() {
    "$PYTHON" - "$URL" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer counts
PY
}

ensure_moto() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "Python interpreter not found: $PYTHON (set PYTHON)"
    "$PYTHON" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1 && return 0
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        run_logged "$LAB_RUN_DIR/s3-pip.log" "$PYTHON" -m ensurepip --upgrade
    fi
    log "installing moto[server] with $PYTHON -m pip"
    if ! "$PYTHON" -m pip install --quiet 'moto[server]' >"$LAB_RUN_DIR/s3-pip.log" 2>&1; then
        if grep -q externally-managed-environment "$LAB_RUN_DIR/s3-pip.log"; then
            die "$PYTHON is externally managed (PEP 668); set PYTHON to a virtualenv's python"
        fi
        tail -n 20 "$LAB_RUN_DIR/s3-pip.log" | sed 's/^/    /' >&2
        die "pip install 'moto[server]' failed (log: $LAB_RUN_DIR/s3-pip.log)"
    fi
    "$PYTHON" -c 'import moto.server' >/dev/null 2>&1 || die "moto.server still not importable with $PYTHON"
}

start() {
    if server_pid >/dev/null && answers_http; then return 0; fi
    server_pid >/dev/null && stop
    ensure_moto
    if answers_http; then
        die "port $PORT already answers HTTP but not from our moto (pidfile $PIDFILE); set RECONCILE_LAB_S3_PORT"
    fi
    nohup "$PYTHON" -m moto.server -H "$HOST" -p "$PORT" >"$LOGFILE" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local i
    for ((i = 0; i < WAIT_SECONDS * 4; i++)); do
        answers_http && return 0
        if ! server_pid >/dev/null; then break; fi
        sleep 0.25
    done
    tail -n 20 "$LOGFILE" | sed 's/^/    /' >&2
    die "moto server did not answer on $URL (log: $LOGFILE)"
}

stop() {
    local pid i
    if ! pid="$(server_pid)"; then
        rm -f "$PIDFILE"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
}

status() {
    local pid
    if pid="$(server_pid)" && answers_http; then
        echo "s3: running (pid $pid) at $URL"
    else
        echo "s3: not running"
        return 1
    fi
}

main() {
    mkdir -p "$LAB_RUN_DIR"
    case "${1:-}" in
        start) start ;;
        stop) stop ;;
        status) status ;;
        *) usage ;;
    esac
}

main "$@"
