#!/usr/bin/env bash
# Bring the whole test lab up: Docker engine, lab images, S3 endpoint.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$LAB_DIR/engine.sh"
"$LAB_DIR/images.sh"
"$LAB_DIR/s3.sh" start

images="$(docker images --filter 'reference=reconcile-lab/*' --format '{{.Repository}}:{{.Tag}}' | LC_ALL=C sort | tr '\n' ' ')"
echo "lab up: images: ${images% } | s3: http://127.0.0.1:${RECONCILE_LAB_S3_PORT:-9555}"
