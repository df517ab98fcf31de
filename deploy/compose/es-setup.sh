#!/usr/bin/env bash
# One-shot set-up of Elasticsearch for the ztgw audit trail (run by the es-setup service).
set -euo pipefail
A=(-fsS -u "elastic:${ELASTIC_PASSWORD}" -H "Content-Type: application/json")
D=/ztgw/elasticsearch

curl "${A[@]}" -X POST "$ES/_security/user/kibana_system/_password" \
  -d "{\"password\":\"${KIBANA_PASSWORD}\"}" >/dev/null

# the same requests `ztgw audit install` sends
curl "${A[@]}" -X PUT "$ES/_ilm/policy/ztgw-audit" --data-binary "@$D/ilm-policy.json" >/dev/null
curl "${A[@]}" -X PUT "$ES/_ingest/pipeline/ztgw-audit" --data-binary "@$D/ingest-pipeline.json" >/dev/null
curl "${A[@]}" -X PUT "$ES/_component_template/ztgw@mappings" --data-binary "@$D/component-template.json" >/dev/null
curl "${A[@]}" -X PUT "$ES/_index_template/logs-ztgw" --data-binary "@$D/index-template.json" >/dev/null

# append-only writer: create_doc (no index/delete/update) on the ztgw data streams (ASVS 16.4.2)
curl "${A[@]}" -X PUT "$ES/_security/role/ztgw_audit_writer" -d '{
  "indices": [{"names": ["logs-ztgw.*"], "privileges": ["create_doc", "auto_configure"]}]
}' >/dev/null
# read-only role for investigators in Kibana
curl "${A[@]}" -X PUT "$ES/_security/role/ztgw_audit_reader" -d '{
  "indices": [{"names": ["logs-ztgw.*"], "privileges": ["read", "view_index_metadata"]}]
}' >/dev/null

KEY=$(curl "${A[@]}" -X POST "$ES/_security/api_key" -d '{
  "name": "ztgw-audit-writer",
  "role_descriptors": {"ztgw_audit_writer": {
    "indices": [{"names": ["logs-ztgw.*"], "privileges": ["create_doc", "auto_configure"]}]}}
}' | sed -n 's/.*"encoded":"\([^"]*\)".*/\1/p')
[ -n "$KEY" ] || { echo "could not create the writer API key" >&2; exit 1; }
umask 077
printf '%s' "$KEY" > /ztgw/secrets/es-api-key   # not echoed: secrets stay out of logs
echo "ztgw audit writer API key written to deploy/compose/secrets/es-api-key"
