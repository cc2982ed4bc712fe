#!/usr/bin/env bash
# Downloads Debian's 6.1 cloud kernel (no install on the host) and unpacks it into
#   ${FLINT_CACHE:-~/.cache/flint}/kernels/debian-cloud/{vmlinuz,config,version,modules/}
# by running `flint kernel debian-cloud`; prints the directory. Does nothing when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet -p flint -- kernel debian-cloud
