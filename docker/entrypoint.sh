#!/bin/sh
# The container's command: serve the model repository mounted at $DEEPLINE_MODELS (read-only)
# over HTTP on $PORT and KServe V2 gRPC on $GRPC_PORT, on every interface of the container
# (its network is its pod's). $DEEPLINE_TOKEN, when set, is the bearer token every request needs.
set -eu
exec deepline serve "${DEEPLINE_MODELS:-/models}" \
    --host "${HOST:-0.0.0.0}" --port "${PORT:-8080}" --grpc-port "${GRPC_PORT:-8081}" \
    --workers "${WORKERS:-1}" "$@"
