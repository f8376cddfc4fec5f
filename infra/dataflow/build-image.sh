#!/usr/bin/env bash
# Build the project wheel and the Dataflow worker image, and push it to Artifact Registry.
#   PROJECT=my-proj infra/dataflow/build-image.sh            (uses Cloud Build; no local Docker needed)
#   LOCAL_DOCKER=1 PROJECT=my-proj infra/dataflow/build-image.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/dataflow/common.sh
rm -rf dist && python -m pip wheel --no-deps --no-build-isolation -w dist .
if [ -n "${LOCAL_DOCKER:-}" ]; then
  docker build -f infra/dataflow/Dockerfile -t "$IMAGE" .
  docker push "$IMAGE"
else
  gcloud builds submit --project "$PROJECT" --region "$REGION" \
    --config /dev/stdin . <<YAML
steps:
  - name: gcr.io/cloud-builders/docker
    args: [build, -f, infra/dataflow/Dockerfile, -t, "$IMAGE", .]
images: ["$IMAGE"]
YAML
fi
echo "worker image: $IMAGE"
