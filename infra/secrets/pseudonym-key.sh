#!/usr/bin/env bash
# Create the pseudonym key once, in Secret Manager, and let the worker service account read it.
#   PROJECT=my-proj infra/secrets/pseudonym-key.sh
# The key never touches a disk here: generated into a pipe. Losing it means new pseudonyms for every
# patient (no linkage to earlier runs); leaking it makes pseudonyms reversible by dictionary attack.
set -euo pipefail
: "${PROJECT:?set PROJECT}"
: "${SECRET:=mammobeam-pseudonym-key}"
: "${WORKER_SA:=mammobeam-worker@${PROJECT}.iam.gserviceaccount.com}"
: "${LOCATIONS:=europe-west4}"   # keep the key in the data's jurisdiction

python3 -c "import secrets; print(secrets.token_hex(32), end='')" |
  gcloud secrets create "$SECRET" --project "$PROJECT" \
    --replication-policy user-managed --locations "$LOCATIONS" --data-file -
gcloud secrets add-iam-policy-binding "$SECRET" --project "$PROJECT" \
  --member "serviceAccount:${WORKER_SA}" --role roles/secretmanager.secretAccessor
