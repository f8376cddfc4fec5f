# Shared settings for score.sh and stream.sh; every value can be overridden from the environment.
# Sourced, not run. `DRY_RUN=1` makes `launch` print the command (one argument per NUL-terminated
# field) instead of running it: tests/test_dataflow_package.py parses the printed command lines.

: "${PROJECT:?set PROJECT (the GCP project id)}"
: "${REGION:=europe-west4}"
: "${DATASET:=screening}"                       # BigQuery dataset: bq://$PROJECT.$DATASET
: "${PIPELINE_BUCKET:=${PROJECT}-mammobeam-pipeline}"  # temp + staging, never the archive bucket
: "${IMAGE:=${REGION}-docker.pkg.dev/${PROJECT}/mammobeam/worker:0.1.0}"  # infra/dataflow/build-image.sh
: "${SERVICE_ACCOUNT:=mammobeam-worker@${PROJECT}.iam.gserviceaccount.com}"
: "${SUBNETWORK:=regions/${REGION}/subnetworks/mammobeam}"  # reaches TF Serving's internal load balancer
: "${TFSERVING_ADDRESS:=10.10.0.50:8500}"       # infra/dataflow/tfserving-internal-lb.yaml
: "${MODEL_NAME:=mammo}"
: "${MODEL_LABEL:=stable}"
: "${IMAGE_SIZE:=1024x832}"                      # the model's input size (serving/contract.py)
: "${PSEUDONYM_SECRET:=mammobeam-pseudonym-key}"  # Secret Manager secret (infra/secrets/pseudonym-key.sh)

launch() {
  if [ -n "${DRY_RUN:-}" ]; then
    printf '%s\0' "$@"
  else
    exec "$@"
  fi
}

# The launcher reads the pseudonym key too (the batch header pass pseudonymises on the launcher):
# fetch it from Secret Manager into memory-backed storage, readable by this user only.
pseudonym_key_file() {
  if [ -n "${DRY_RUN:-}" ]; then
    echo "/dev/shm/mammobeam-pseudonym-key"
    return
  fi
  local file
  file=$(mktemp -p /dev/shm mammobeam-pseudonym-key.XXXXXX)
  chmod 600 "$file"
  gcloud secrets versions access latest --secret="$PSEUDONYM_SECRET" --project="$PROJECT" >"$file"
  echo "$file"
}
