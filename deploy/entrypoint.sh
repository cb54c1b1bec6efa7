#!/bin/sh
# The one image's entrypoint (Dockerfile): which Dagster process this container runs.
#   entrypoint.sh grpc       the code location as a gRPC server (port $DAGSTER_GRPC_PORT, default 4000);
#                            the runs it is asked to launch execute as its subprocesses
#   entrypoint.sh webserver  the UI on port $DAGSTER_WEBSERVER_PORT (default 3000), loading the
#                            code location named in $DAGSTER_WORKSPACE (default deploy/workspace.yaml)
#   entrypoint.sh daemon     schedules, sensors, the run queue and run monitoring
# Anything else is run as a command (e.g. `ml-platform status`). Hosts default to 0.0.0.0 (all
# interfaces of the container); the tests start `grpc` on 127.0.0.1 with DAGSTER_GRPC_HOST.
set -eu
role="${1:-}"
[ "$#" -gt 0 ] && shift
case "$role" in
  grpc)
    exec dagster api grpc -m ml_platform -h "${DAGSTER_GRPC_HOST:-0.0.0.0}" -p "${DAGSTER_GRPC_PORT:-4000}" "$@" ;;
  webserver)
    exec dagster-webserver -w "${DAGSTER_WORKSPACE:-deploy/workspace.yaml}" \
      -h "${DAGSTER_WEBSERVER_HOST:-0.0.0.0}" -p "${DAGSTER_WEBSERVER_PORT:-3000}" "$@" ;;
  daemon)
    exec dagster-daemon run -w "${DAGSTER_WORKSPACE:-deploy/workspace.yaml}" "$@" ;;
  "")
    echo "entrypoint.sh: name a role: grpc, webserver or daemon (or a command to run)" >&2
    exit 2 ;;
  *)
    exec "$role" "$@" ;;
esac
