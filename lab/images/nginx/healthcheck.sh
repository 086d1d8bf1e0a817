#!/usr/bin/env bash
# Healthy when GET /health on port 80 answers with a status below 500, so a
# bind-mounted proxy config without its own /health (404) still counts as up.
set -euo pipefail
exec 3<>/dev/tcp/127.0.0.1/80
printf 'GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
read -r -t 3 _ status _ <&3
[ -n "${status:-}" ] && [ "$status" -lt 500 ]
