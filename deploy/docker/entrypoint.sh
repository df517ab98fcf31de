#!/bin/sh
# ztgw container entrypoint.
#   init   — keys, default policy, database schema (alembic, under an advisory lock); run once
#            per deployment (compose: the ztgw-init service; Helm: a pre-install/upgrade Job)
#   serve  — the gateway; refuses to start on a database that was never initialised
# An Elasticsearch writer key, when mounted, turns the ES audit sink on without putting the key
# in the environment of the container definition.
set -eu
if [ -n "${ZTGW_AUDIT_ES_API_KEY_FILE:-}" ] && [ -s "$ZTGW_AUDIT_ES_API_KEY_FILE" ]; then
  ZTGW_AUDIT_ES_API_KEY=$(cat "$ZTGW_AUDIT_ES_API_KEY_FILE")
  export ZTGW_AUDIT_ES_API_KEY
  export ZTGW_AUDIT_SINKS="${ZTGW_AUDIT_SINKS:-[\"store\",\"elasticsearch\"]}"
fi
case "${1:-serve}" in
  init) shift; exec ztgw init "$@" ;;
  serve) shift; exec ztgw serve --host "${ZTGW_HOST:-0.0.0.0}" --port "${ZTGW_PORT:-8080}" "$@" ;;
  *) exec ztgw "$@" ;;
esac
