#!/usr/bin/env bash
# GCS notifications of the archive bucket -> Pub/Sub topic -> subscription read by `mammobeam stream`.
#   PROJECT=my-proj ARCHIVE_BUCKET=archive-bucket infra/gcs/notifications.sh
#
# - Only OBJECT_FINALIZE: an object is visible only once complete, and an overwrite is a new
#   generation (FACTS.md); the stream drops redeliveries by (object, generation).
# - --object-prefix limits notifications to the DICOM drop folder, if there is one.
# - Ack deadline 600 s: reading + scoring one image stays far below it; retention 7 days lets a drained
#   and restarted job catch up. A dead-letter topic keeps poison messages from cycling forever.
set -euo pipefail
: "${PROJECT:?set PROJECT}"
: "${ARCHIVE_BUCKET:?set ARCHIVE_BUCKET (the bucket DICOM files land in)}"
: "${TOPIC:=mammobeam-dicom-finalize}"
: "${SUBSCRIPTION:=mammobeam-dicom-finalize}"
: "${OBJECT_PREFIX:=}"
: "${WORKER_SA:=mammobeam-worker@${PROJECT}.iam.gserviceaccount.com}"

gcloud pubsub topics create "$TOPIC" --project "$PROJECT"
gcloud pubsub topics create "${TOPIC}-dead-letter" --project "$PROJECT"

# The GCS service agent publishes to the topic (gcloud grants this itself when it can; explicit here).
gcs_agent=$(gcloud storage service-agent --project "$PROJECT")
gcloud pubsub topics add-iam-policy-binding "$TOPIC" --project "$PROJECT" \
  --member "serviceAccount:${gcs_agent}" --role roles/pubsub.publisher

prefix=()
[ -n "$OBJECT_PREFIX" ] && prefix=(--object-prefix "$OBJECT_PREFIX")
gcloud storage buckets notifications create "gs://${ARCHIVE_BUCKET}" \
  --topic "projects/${PROJECT}/topics/${TOPIC}" \
  --event-types OBJECT_FINALIZE --payload-format json "${prefix[@]}"

gcloud pubsub subscriptions create "$SUBSCRIPTION" --project "$PROJECT" \
  --topic "$TOPIC" --ack-deadline 600 --message-retention-duration 7d \
  --dead-letter-topic "${TOPIC}-dead-letter" --max-delivery-attempts 20

# The workers read the subscription and the archive objects.
gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project "$PROJECT" \
  --member "serviceAccount:${WORKER_SA}" --role roles/pubsub.subscriber
gcloud storage buckets add-iam-policy-binding "gs://${ARCHIVE_BUCKET}" \
  --member "serviceAccount:${WORKER_SA}" --role roles/storage.objectViewer
