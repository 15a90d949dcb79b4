#!/usr/bin/env bash
# Tell Rearguard that a deploy finished. Call it from any CD system after the rollout succeeds:
#   REARGUARD_URL=https://rearguard.example.com REARGUARD_API_TOKEN=... \
#     deploy/cd/notify-deploy.sh checkout production "$GIT_SHA" "$PREVIOUS_SHA"
set -euo pipefail
service=$1 environment=$2 sha=$3 previous=${4:-}
finished_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
body=$(printf '{"service":"%s","environment":"%s","sha":"%s","finished_at":"%s"%s}' \
  "$service" "$environment" "$sha" "$finished_at" "${previous:+,\"previous_sha\":\"$previous\"}")
curl --fail-with-body --silent --show-error \
  -H "Authorization: Bearer ${REARGUARD_API_TOKEN}" -H "Content-Type: application/json" \
  -H "Idempotency-Key: ${service}-${environment}-${sha}-${finished_at}" \
  --data "$body" "${REARGUARD_URL%/}/v1/deploys"
