#!/usr/bin/env bash
# `mammobeam stream` on Dataflow: GCS notifications of the archive bucket (infra/gcs/notifications.sh)
# into bq://$PROJECT.$DATASET with streaming inserts, scored by TF Serving.
#
#   PROJECT=my-proj infra/dataflow/stream.sh
#
# The job runs until drained: gcloud dataflow jobs drain JOB_ID --region $REGION (drain, not cancel:
# exams held in state are emitted). Update in place with --update and the same --job_name.
set -euo pipefail
source "$(dirname "$0")/common.sh"
: "${SUBSCRIPTION:=projects/${PROJECT}/subscriptions/mammobeam-dicom-finalize}"
: "${MAX_WORKERS:=10}"

export MAMMOBEAM_PSEUDONYM_KEY_FILE="$(pseudonym_key_file)"

# Sizing: a screening site sends tens of images a minute at peak; 1-2 n2-standard-4 workers keep up
# and Streaming Engine moves state (exams being assembled) and shuffle off the workers.
launch mammobeam stream \
  --subscription "$SUBSCRIPTION" \
  --output "bq://${PROJECT}.${DATASET}" \
  --serving-address "$TFSERVING_ADDRESS" --serving-model "$MODEL_NAME" --serving-label "$MODEL_LABEL" \
  --image-size "$IMAGE_SIZE" --batch-size 8 --threads 1 \
  --exam-quiet-seconds 120 --exam-max-wait-seconds 1800 --window-seconds 60 \
  --pseudonymize-paths \
  --runner DataflowRunner --streaming \
  --project "$PROJECT" --region "$REGION" \
  --job_name mammobeam-stream \
  --temp_location "gs://${PIPELINE_BUCKET}/temp" --staging_location "gs://${PIPELINE_BUCKET}/staging" \
  --sdk_container_image "$IMAGE" --sdk_location container \
  --service_account_email "$SERVICE_ACCOUNT" \
  --subnetwork "$SUBNETWORK" --no_use_public_ips \
  --machine_type n2-standard-4 --disk_size_gb 30 \
  --num_workers 1 --max_num_workers "$MAX_WORKERS" --autoscaling_algorithm THROUGHPUT_BASED \
  --enable_streaming_engine \
  --number_of_worker_harness_threads 8 \
  --experiments use_runner_v2
