"""TF Serving's configuration files, read the way TF Serving reads them.

- models.config: `ModelServerConfig` in protobuf text format (tensorflow_serving/config protos, shipped
  with tensorflow-serving-api): per model a base path, a version policy and version labels.
- batching_parameters.txt: `BatchingParameters` in text format. Its proto
  (tensorflow_serving/servables/tensorflow/session_bundle_config.proto) is not in the PyPI package, so
  the message is declared here with the same field names and types; a misspelt or unknown field fails
  to parse here as it would in the server.

serve-local uses the version policy and labels; tests use both files' rules (see
tests/test_tfserving_config.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Optional

SERVING_DIR = Path(__file__).resolve().parent
MODELS_CONFIG = SERVING_DIR / "models.config"
BATCHING_PARAMETERS = SERVING_DIR / "batching_parameters.txt"


class ConfigError(ValueError):
    """A TF Serving configuration file that TF Serving would refuse."""


def load_model_server_config(path: str | Path):
    """Parse a models.config file into tensorflow.serving.ModelServerConfig."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(Path(path).read_text(), config)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: {e}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: only model_config_list is supported")
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ConfigError(f"{path}: every model needs a name and a base_path")
        if model.model_platform and model.model_platform != "tensorflow":
            raise ConfigError(f"{path}: model {model.name}: platform {model.model_platform!r} is not tensorflow")
    return config


def versions_to_load(policy, available: Iterable[int]) -> list[int]:
    """TF Serving's FileSystemStoragePathSource rules: latest N (default 1), all, or specific."""
    available = sorted(set(available), reverse=True)
    kind = policy.WhichOneof("policy_choice") if policy is not None else None
    if kind == "all":
        return sorted(available)
    if kind == "specific":
        wanted = sorted(set(policy.specific.versions))
        missing = [v for v in wanted if v not in available]
        if missing:
            raise ConfigError(f"version policy asks for versions {missing}, which are not on disk "
                              f"(found {sorted(available)})")
        return wanted
    n = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions else 1
    return sorted(available[:n])


def check_labels(name: str, labels: dict[str, int], loaded: Iterable[int]) -> None:
    """TF Serving refuses labels that point at versions it has not loaded (its default)."""
    loaded = set(loaded)
    for label, version in labels.items():
        if version not in loaded:
            raise ConfigError(f"model {name}: label {label!r} points at version {version}, which is not "
                              f"loaded (loaded: {sorted(loaded)})")


# -- batching parameters -------------------------------------------------------------------------

def _batching_parameters_class():
    """BatchingParameters, declared with session_bundle_config.proto's field names and types."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    f = descriptor_pb2.FileDescriptorProto(name="mammobeam/batching_parameters.proto",
                                           package="tensorflow.serving", syntax="proto3",
                                           dependency=["google/protobuf/wrappers.proto"])
    msg = f.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    fields = [  # (name, number, type, type_name, repeated)
        ("max_batch_size", 1, F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("batch_timeout_micros", 2, F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("max_enqueued_batches", 3, F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("num_batch_threads", 4, F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("thread_pool_name", 5, F.TYPE_MESSAGE, ".google.protobuf.StringValue", False),
        ("allowed_batch_sizes", 6, F.TYPE_INT64, None, True),
        ("pad_variable_length_inputs", 7, F.TYPE_BOOL, None, False),
        ("enable_large_batch_splitting", 8, F.TYPE_MESSAGE, ".google.protobuf.BoolValue", False),
        ("max_execution_batch_size", 9, F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
    ]
    for name, number, ftype, type_name, repeated in fields:
        field = msg.field.add(name=name, number=number, type=ftype,
                              label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    max_batch_size: int
    batch_timeout_micros: int
    max_enqueued_batches: Optional[int]
    num_batch_threads: Optional[int]
    allowed_batch_sizes: tuple[int, ...]
    pad_variable_length_inputs: bool


def read_batching_parameters(path: str | Path = BATCHING_PARAMETERS) -> BatchingParameters:
    from google.protobuf import text_format

    proto = _batching_parameters_class()()
    try:
        text_format.Parse(Path(path).read_text(), proto)
    except text_format.ParseError as e:
        raise ConfigError(f"{path}: {e}") from None

    def value(field) -> Optional[int]:
        return getattr(proto, field).value if proto.HasField(field) else None

    if value("max_batch_size") is None:
        raise ConfigError(f"{path}: max_batch_size is required")
    return BatchingParameters(max_batch_size=value("max_batch_size"),
                              batch_timeout_micros=value("batch_timeout_micros") or 0,
                              max_enqueued_batches=value("max_enqueued_batches"),
                              num_batch_threads=value("num_batch_threads"),
                              allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
                              pad_variable_length_inputs=proto.pad_variable_length_inputs)


def batching_problems(params: BatchingParameters, *, image_height: int, image_width: int,
                      max_message_bytes: int) -> list[str]:
    """The rules that matter for TF Serving's batcher with this pipeline's requests ([] when fine)."""
    from mammobeam.serving.tfserving import images_per_message

    problems = []
    sizes = params.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            problems.append(f"allowed_batch_sizes {list(sizes)} must be strictly increasing")
        if sizes[-1] != params.max_batch_size:
            problems.append(f"allowed_batch_sizes must end at max_batch_size {params.max_batch_size}, "
                            f"not {sizes[-1]}")
        if sizes[0] < 1:
            problems.append("allowed_batch_sizes must be positive")
    budget = images_per_message(image_height, image_width, max_message_bytes)
    if params.max_batch_size > budget:
        problems.append(f"max_batch_size {params.max_batch_size} exceeds the pixel budget: only {budget} "
                        f"{image_height}x{image_width} uint16 images fit in {max_message_bytes} bytes")
    return problems
