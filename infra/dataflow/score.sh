#!/usr/bin/env bash
# `mammobeam score` on Dataflow: an archive on GCS into bq://$PROJECT.$DATASET, scored by TF Serving.
#
#   PROJECT=my-proj INPUT='gs://archive-bucket/site-north/**.dcm' infra/dataflow/score.sh
#
# What runs where: the header pass (headers only, threads) and the run state (--state-dir, for
# --resume) are on the launcher: run it on a VM in $REGION with a persistent disk, not a laptop.
# Each wave of --wave-exams exams is one Dataflow job; every chunk of --chunk-exams exams is committed
# (BigQuery load jobs + commit record) by the workers. Re-run with RESUME=1 after any interruption.
set -euo pipefail
source "$(dirname "$0")/common.sh"
: "${INPUT:?set INPUT, e.g. gs://archive-bucket/site-north/**.dcm}"
: "${STATE_DIR:=$HOME/mammobeam-runs/${DATASET}}"
: "${MAX_WORKERS:=20}"

export MAMMOBEAM_PSEUDONYM_KEY_FILE="$(pseudonym_key_file)"
resume=()
[ -n "${RESUME:-}" ] && resume=(--resume)

# Sizing, per the measurements in FACTS.md and BENCHMARKS.md:
# - n2-standard-8: decode + resize is CPU-bound (about 0.1-1 s per image); inference is remote.
# - SDK processes: one per vCPU (Dataflow's default for Python); 4 threads each overlap the gRPC
#   waits on TF Serving; --threads 1 keeps codecs/OpenCV from oversubscribing the cores.
# - --chunk-exams 200: BigQuery allows 1,500 load jobs per table per day; each chunk is one per table.
# - --wave-exams 20000: each wave is a Dataflow job with minutes of start-up.
launch mammobeam score \
  --input "$INPUT" \
  --output "bq://${PROJECT}.${DATASET}" \
  --state-dir "$STATE_DIR" \
  --serving-address "$TFSERVING_ADDRESS" --serving-model "$MODEL_NAME" --serving-label "$MODEL_LABEL" \
  --image-size "$IMAGE_SIZE" --batch-size 16 --threads 1 \
  --chunk-exams 200 --wave-exams 20000 --header-threads 64 \
  --pseudonymize-paths \
  "${resume[@]}" \
  --runner DataflowRunner \
  --project "$PROJECT" --region "$REGION" \
  --job_name "mammobeam-score-$(date -u +%Y%m%d-%H%M%S)" \
  --temp_location "gs://${PIPELINE_BUCKET}/temp" --staging_location "gs://${PIPELINE_BUCKET}/staging" \
  --sdk_container_image "$IMAGE" --sdk_location container \
  --service_account_email "$SERVICE_ACCOUNT" \
  --subnetwork "$SUBNETWORK" --no_use_public_ips \
  --machine_type n2-standard-8 --disk_size_gb 50 \
  --num_workers 2 --max_num_workers "$MAX_WORKERS" --autoscaling_algorithm THROUGHPUT_BASED \
  --number_of_worker_harness_threads 4 \
  --experiments use_runner_v2
