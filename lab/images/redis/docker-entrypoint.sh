#!/usr/bin/env bash
# Run redis-server as the redis user (PID 1 stays redis-server). Arguments starting
# with "-" are passed to redis-server; protected mode is off unless asked for, so a
# custom command still accepts connections from other containers.
set -euo pipefail

if [ "$#" -eq 0 ] || [ "${1:0:1}" = "-" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = "redis-server" ]; then
    case " $* " in
        *" --protected-mode "*) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
    if [ "$(id -u)" = "0" ]; then
        if [ "$(stat -c %u /data)" != "$(id -u redis)" ]; then
            chown -R redis:redis /data
        fi
        export HOME=/data
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
