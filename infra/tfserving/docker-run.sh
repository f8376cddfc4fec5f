#!/usr/bin/env bash
# TensorFlow Serving on one GPU of this host, with the same flags as tfserving-gpu.yaml.
#   infra/tfserving/docker-run.sh MODELS_DIR      (MODELS_DIR holds <name>/<version>/, e.g. serving/demo_model)
# then: mammobeam score ... --serving-address 127.0.0.1:8500 --serving-model demo --serving-label stable
set -euo pipefail
models_dir=$(realpath "${1:?usage: docker-run.sh MODELS_DIR}")
serving_dir=$(realpath "$(dirname "$0")/../../serving")
exec docker run --rm --gpus 1 -p 127.0.0.1:8500:8500 \
  -v "$models_dir":/models:ro \
  -v "$serving_dir/models.config":/config/models.config:ro \
  -v "$serving_dir/batching_parameters.txt":/config/batching_parameters.txt:ro \
  tensorflow/serving:2.21.0-gpu \
  --port=8500 --rest_api_port=0 \
  --model_config_file=/config/models.config --model_config_file_poll_wait_seconds=60 \
  --enable_batching=true --batching_parameters_file=/config/batching_parameters.txt \
  --enable_model_warmup=true
