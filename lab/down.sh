#!/usr/bin/env bash
# Stop what up.sh started that is not shared: the S3 server. dockerd is left running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$LAB_DIR/s3.sh" stop
