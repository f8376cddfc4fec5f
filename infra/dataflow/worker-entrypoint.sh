#!/usr/bin/env bash
# Worker container entrypoint: fetch the pseudonym key from Secret Manager (with the worker's service
# account) into /dev/shm, export MAMMOBEAM_PSEUDONYM_KEY_FILE, then start Beam's SDK harness.
# MAMMOBEAM_PSEUDONYM_SECRET names the secret version, e.g.
#   projects/P/secrets/mammobeam-pseudonym-key/versions/latest
# (set it in the image, or with --dataflow_service_options / a derived image per environment).
set -euo pipefail
if [ -n "${MAMMOBEAM_PSEUDONYM_SECRET:-}" ]; then
  key_file=/dev/shm/mammobeam-pseudonym-key
  umask 077
  python - "$MAMMOBEAM_PSEUDONYM_SECRET" "$key_file" <<'PY'
import sys
from google.cloud import secretmanager
name, path = sys.argv[1], sys.argv[2]
payload = secretmanager.SecretManagerServiceClient().access_secret_version(name=name).payload.data
with open(path, "wb") as f:
    f.write(payload)
PY
  export MAMMOBEAM_PSEUDONYM_KEY_FILE="$key_file"
fi
exec /opt/apache/beam/boot "$@"
