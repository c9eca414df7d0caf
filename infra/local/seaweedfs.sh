#!/usr/bin/env bash
# The local S3 object store for development: SeaweedFS on 127.0.0.1 (S3 on PORT, default 8333),
# data under SAVERZOO_OBJECTSTORE_DIR. The tests start the same store through the same code
# (cluster.localstore.LocalObjectStore) on free ports of their own.
#   infra/local/seaweedfs.sh up | down | status
set -euo pipefail
exec saverzoo objectstore "${1:-up}"
