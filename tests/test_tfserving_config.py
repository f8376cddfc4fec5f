"""The committed TF Serving configuration: models.config, batching parameters, the launch description."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mammobeam.serving.tfserving import DEFAULT_MAX_MESSAGE_BYTES, TFServingModelHandler  # noqa: E402
from mammobeam.serving.tfserving_config import (BATCHING_PARAMETERS, MODELS_CONFIG, BatchingParameters,  # noqa: E402
                                                ConfigError, batching_problems, check_labels,
                                                load_model_server_config, read_batching_parameters,
                                                versions_to_load)

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra" / "tfserving"
# The contract's preprocessing size (serving/contract.py, PreprocessingSpec default).
FULL_H, FULL_W = 1024, 832


def test_models_config_parses_with_tf_serving_protos_and_labels_point_at_loaded_versions():
    config = load_model_server_config(MODELS_CONFIG)
    (demo,) = config.model_config_list.config
    assert demo.name == "demo" and demo.model_platform == "tensorflow"
    assert demo.model_version_policy.WhichOneof("policy_choice") == "specific"
    labels = dict(demo.version_labels)
    assert set(labels) == {"stable", "canary"}
    loaded = versions_to_load(demo.model_version_policy, [1, 2, 3])
    check_labels(demo.name, labels, loaded)


def test_a_label_on_an_unloaded_version_is_refused():
    with pytest.raises(ConfigError, match="label 'canary' points at version 3"):
        check_labels("demo", {"stable": 1, "canary": 3}, [1, 2])


def test_version_policies_follow_tf_serving(tmp_path):
    from tensorflow_serving.config import file_system_storage_path_source_pb2 as fs

    policy = fs.FileSystemStoragePathSourceConfig.ServableVersionPolicy
    assert versions_to_load(None, [1, 3, 2]) == [3]
    assert versions_to_load(policy(latest=policy.Latest(num_versions=2)), [1, 3, 2]) == [2, 3]
    assert versions_to_load(policy(all=policy.All()), [1, 3, 2]) == [1, 2, 3]
    assert versions_to_load(policy(specific=policy.Specific(versions=[1])), [1, 3]) == [1]
    with pytest.raises(ConfigError, match="not on disk"):
        versions_to_load(policy(specific=policy.Specific(versions=[4])), [1, 3])


def test_a_misspelt_models_config_is_refused(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text('model_config_list { config { name: "demo" base_path: "/m" version_label { key: "x" value: 1 } } }')
    with pytest.raises(ConfigError):
        load_model_server_config(bad)


def test_batching_parameters_follow_the_rules_that_matter():
    params = read_batching_parameters(BATCHING_PARAMETERS)
    sizes = params.allowed_batch_sizes
    assert sizes and list(sizes) == sorted(set(sizes)) and sizes[-1] == params.max_batch_size
    assert batching_problems(params, image_height=FULL_H, image_width=FULL_W,
                             max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES) == []
    # The largest batch fits the message limit, and the client never sends more than the server batches.
    assert params.max_batch_size * FULL_H * FULL_W * 2 < DEFAULT_MAX_MESSAGE_BYTES
    handler = TFServingModelHandler("x:1", "demo", image_height=FULL_H, image_width=FULL_W)
    assert handler.batch_elements_kwargs()["max_batch_size"] <= params.max_batch_size
    assert params.batch_timeout_micros > 0 and params.num_batch_threads >= 1


def test_batching_rules_catch_bad_files(tmp_path):
    bad = BatchingParameters(max_batch_size=64, batch_timeout_micros=0, max_enqueued_batches=None,
                             num_batch_threads=None, allowed_batch_sizes=(16, 8, 32),
                             pad_variable_length_inputs=False)
    problems = batching_problems(bad, image_height=FULL_H, image_width=FULL_W,
                                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES)
    assert len(problems) == 3  # not increasing, does not end at 64, 64 images exceed 64 MiB
    typo = tmp_path / "batching.txt"
    typo.write_text("max_batch_size { value: 32 }\nallowed_batch_size: 32\n")
    with pytest.raises(ConfigError, match="allowed_batch_size"):
        read_batching_parameters(typo)


def _flags(args):
    return dict(a.lstrip("-").split("=", 1) for a in args)


def test_kubernetes_launch_uses_the_serving_files_with_batching_on_one_gpu():
    docs = list(yaml.safe_load_all((INFRA / "tfserving-gpu.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving:") and container["image"].endswith("-gpu")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    flags = _flags(container["args"])
    assert flags["enable_batching"] == "true"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert flags["model_config_file"] == f"{mounts['config']}/{MODELS_CONFIG.name}"
    assert flags["batching_parameters_file"] == f"{mounts['config']}/{BATCHING_PARAMETERS.name}"
    base = load_model_server_config(MODELS_CONFIG).model_config_list.config[0].base_path
    assert base.startswith(mounts["models"] + "/")
    # The single-host script passes the same flags.
    script = (INFRA / "docker-run.sh").read_text()
    for name, value in flags.items():
        assert f"--{name}={value}" in script
