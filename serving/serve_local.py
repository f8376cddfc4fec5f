"""`mammobeam serve-local`: a loopback gRPC server that speaks TF Serving's PredictionService.

    mammobeam serve-local --model serving/demo_model/demo --port 8500
    mammobeam serve-local --model-config models.config --port 8500

For tests and laptops; production runs TensorFlow Serving (infra/tfserving/), whose binary is not on
PyPI. It behaves as TF Serving does where the pipeline can tell:
- Predict and GetModelMetadata (signature_def) on the same SavedModels, uint16 tensors in, float out;
- the latest version loaded by default; `--model-config` (TF Serving's ModelServerConfig text format)
  for version policies (latest N, all, specific) and version labels;
- an unknown model or version answers NOT_FOUND, an unknown label INVALID_ARGUMENT, a wrong input
  INVALID_ARGUMENT; every response carries model_spec.version;
- no practical message limit (TF Serving uses INT32_MAX); `--max-message-bytes` lowers it for tests.
It does not batch across requests, poll its config, or hot-load new versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Optional

log = logging.getLogger("mammobeam.serve_local")

GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving's server limit (INT32_MAX)
PREDICT_METHOD = "tensorflow/serving/predict"
DEFAULT_SIGNATURE = "serving_default"


class ServedModel:
    """One model name: its loaded versions (SavedModels) and labels."""

    def __init__(self, name: str, base_path: str, versions: dict, labels: dict[str, int]):
        self.name, self.base_path, self.versions, self.labels = name, base_path, versions, labels

    @property
    def latest(self) -> int:
        return max(self.versions)


def _numbered_versions(base_path: Path) -> list[int]:
    if not base_path.is_dir():
        raise SystemExit(f"serve-local: model base path {base_path} does not exist")
    return [int(p.name) for p in base_path.iterdir()
            if p.is_dir() and re.fullmatch(r"\d+", p.name) and (p / "saved_model.pb").exists()]


def load_models(model_dir: Optional[str] = None, model_name: Optional[str] = None,
                config_file: Optional[str] = None) -> dict[str, ServedModel]:
    """Load what TF Serving would: from --model (one model, latest version) and/or --model-config."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from mammobeam.serving.tfserving_config import check_labels, load_model_server_config, versions_to_load

    entries = []  # (name, base_path, policy, labels)
    if config_file:
        config = load_model_server_config(config_file)
        for model in config.model_config_list.config:
            base = Path(model.base_path)
            if not base.is_absolute():
                base = Path(config_file).resolve().parent / base
            # --model replaces the base path of the model it names (the container path on a laptop).
            if model_dir and Path(model_dir).name == model.name:
                base = Path(model_dir)
            entries.append((model.name, base, model.model_version_policy, dict(model.version_labels)))
    elif model_dir:
        base = Path(model_dir)
        if re.fullmatch(r"\d+", base.name) and (base / "saved_model.pb").exists():
            raise SystemExit(f"serve-local: --model is the model's folder holding numbered versions "
                             f"({base.parent}), not one version ({base})")
        entries.append((model_name or base.resolve().name, base, None, {}))
    else:
        raise SystemExit("serve-local: give --model DIR or --model-config FILE")

    models = {}
    for name, base, policy, labels in entries:
        available = _numbered_versions(base)
        if not available:
            raise SystemExit(f"serve-local: {base} holds no numbered SavedModel versions")
        wanted = versions_to_load(policy, available)
        check_labels(name, labels, wanted)
        loaded = {}
        for v in wanted:
            loaded[v] = tf.saved_model.load(str(base / str(v)))
            log.info("loaded %s version %d from %s", name, v, base / str(v))
        models[name] = ServedModel(name, str(base), loaded, labels)
    return models


class _Faults:
    """Hidden test hooks: die after N answered Predicts, or stop answering after N."""

    def __init__(self, exit_after: Optional[int] = None, block_after: Optional[int] = None):
        self.exit_after, self.block_after = exit_after, block_after
        self.never = threading.Event()


class PredictionServicer:
    """TF Serving's PredictionService (Predict, GetModelMetadata) over loaded SavedModels."""

    def __init__(self, models: dict[str, ServedModel], *, bearer_token: Optional[str] = None,
                 faults: Optional[_Faults] = None):
        import grpc

        self.models = models
        self.bearer_token = bearer_token
        self.faults = faults or _Faults()
        self.lock = threading.Lock()
        self.predict_calls = 0
        self.images = 0
        self.batch_sizes: dict[int, int] = {}
        self.requested_specs: list[tuple[str, Optional[int], Optional[str]]] = []
        self._grpc = grpc

    # -- lookups, with TF Serving's status codes --------------------------------------------------

    def _abort(self, context, code: str, message: str):
        context.abort(getattr(self._grpc.StatusCode, code), message)

    def _authorise(self, context) -> None:
        if self.bearer_token is None:
            return
        sent = dict(context.invocation_metadata()).get("authorization")
        if sent != f"Bearer {self.bearer_token}":
            self._abort(context, "UNAUTHENTICATED", "missing or wrong bearer token")

    def _servable(self, spec, context):
        model = self.models.get(spec.name)
        if spec.HasField("version"):
            version, description = spec.version.value, f"Specific({spec.name}, {spec.version.value})"
        elif spec.version_label:
            if model is None or spec.version_label not in model.labels:
                self._abort(context, "INVALID_ARGUMENT",
                            f"Unrecognized servable version label: {spec.version_label}")
            version, description = model.labels[spec.version_label], spec.version_label
        else:
            version, description = (model.latest if model else None), f"Latest({spec.name})"
        if model is None or version not in model.versions:
            self._abort(context, "NOT_FOUND", f"Servable not found for request: {description}")
        return model, version, model.versions[version]

    def _signature(self, loaded, spec, context):
        name = spec.signature_name or DEFAULT_SIGNATURE
        if name not in loaded.signatures:
            self._abort(context, "FAILED_PRECONDITION", f"Serving signature key \"{name}\" not found.")
        return name, loaded.signatures[name]

    # -- the two methods the pipeline uses ---------------------------------------------------------

    def Predict(self, request, context):
        import numpy as np
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        self._authorise(context)
        spec = request.model_spec
        with self.lock:
            self.requested_specs.append((spec.name, spec.version.value if spec.HasField("version") else None,
                                         spec.version_label or None))
            blocked = any(limit is not None and self.predict_calls >= limit
                          for limit in (self.faults.block_after, self.faults.exit_after))
        if blocked:  # far past any client deadline (or until the test fault's SIGKILL)
            log.warning("blocking a Predict (test fault)")
            self.faults.never.wait(3600)
        model, version, loaded = self._servable(spec, context)
        sig_name, fn = self._signature(loaded, spec, context)
        _, expected = fn.structured_input_signature
        if set(request.inputs) != set(expected):
            self._abort(context, "INVALID_ARGUMENT",
                        f"input keys {sorted(request.inputs)} do not match the signature's {sorted(expected)}")
        feeds = {}
        for key, proto in request.inputs.items():
            try:
                array = _ndarray(proto)
            except Exception as e:  # malformed TensorProto
                self._abort(context, "INVALID_ARGUMENT", f"input {key!r}: {e}")
            want = expected[key]
            if tf.as_dtype(array.dtype) != want.dtype:
                self._abort(context, "INVALID_ARGUMENT", f"input {key!r} is {array.dtype.name}, "
                                                         f"the signature takes {want.dtype.name}")
            if not want.shape.is_compatible_with(array.shape):
                self._abort(context, "INVALID_ARGUMENT", f"input {key!r} has shape {list(array.shape)}, "
                                                         f"the signature takes {want.shape}")
            feeds[key] = tf.constant(array)
        outputs = fn(**feeds)
        wanted = list(request.output_filter) or list(outputs)
        response = predict_pb2.PredictResponse()
        for key in wanted:
            if key not in outputs:
                self._abort(context, "INVALID_ARGUMENT", f"output_filter {key!r} is not an output")
            response.outputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(outputs[key])))
        response.model_spec.name = model.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = sig_name
        n = int(next(iter(feeds.values())).shape[0]) if feeds else 0
        with self.lock:
            self.predict_calls += 1
            self.images += n
            self.batch_sizes[n] = self.batch_sizes.get(n, 0) + 1
            answered = self.predict_calls
        log.info("Predict %s v%d: %d images (call %d)", model.name, version, n, answered)
        if self.faults.exit_after is not None and answered == self.faults.exit_after:
            # Let this reply leave, then die as a crashed server would (no clean shutdown).
            log.warning("exiting after %d Predict calls (test fault)", answered)
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return response

    def GetModelMetadata(self, request, context):
        from tensorflow_serving.apis import get_model_metadata_pb2

        self._authorise(context)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            self._abort(context, "INVALID_ARGUMENT", f"Metadata field {fields} is not supported "
                                                     "(only signature_def)")
        model, version, loaded = self._servable(request.model_spec, context)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for sig_name, fn in loaded.signatures.items():
            _, inputs = fn.structured_input_signature
            sig = signatures.signature_def[sig_name]
            sig.method_name = PREDICT_METHOD
            for key, spec in inputs.items():
                _tensor_info(sig.inputs[key], f"{sig_name}_{key}:0", spec)
            for i, (key, spec) in enumerate(sorted(fn.structured_outputs.items())):
                _tensor_info(sig.outputs[key], f"StatefulPartitionedCall:{i}", spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = version
        response.metadata["signature_def"].Pack(signatures)
        return response

    def Classify(self, request, context):
        self._abort(context, "UNIMPLEMENTED", "serve-local answers Predict and GetModelMetadata only")

    Regress = MultiInference = Classify

    def stats(self) -> dict:
        with self.lock:
            return {"predict_calls": self.predict_calls, "images": self.images,
                    "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}}


def _ndarray(proto):
    """TensorProto to numpy; raw little-endian content is viewed, not converted (tf.make_ndarray
    takes 5x longer on a 54 MB batch)."""
    import numpy as np
    import tensorflow as tf

    content = proto.tensor_content  # a copy per access
    if content:
        dtype = tf.as_dtype(proto.dtype).as_numpy_dtype
        shape = [d.size for d in proto.tensor_shape.dim]
        return np.frombuffer(content, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    return tf.make_ndarray(proto)


def _tensor_info(info, name: str, spec) -> None:
    info.name = name
    info.dtype = spec.dtype.as_datatype_enum
    if spec.shape.rank is None:
        info.tensor_shape.unknown_rank = True
        return
    for d in spec.shape.as_list():
        info.tensor_shape.dim.add(size=-1 if d is None else d)


def build_server(servicer: PredictionServicer, *, host: str = "127.0.0.1", port: int = 0,
                 max_message_bytes: int = GRPC_MAX_MESSAGE_BYTES, max_workers: int = 8,
                 server_credentials=None):
    """A started-ready (not yet started) gRPC server and the port it bound."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         options=[("grpc.max_receive_message_length", max_message_bytes),
                                  ("grpc.max_send_message_length", max_message_bytes),
                                  # A second server on a busy port must fail, not share it.
                                  ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    address = f"{host}:{port}"
    bound = (server.add_secure_port(address, server_credentials) if server_credentials
             else server.add_insecure_port(address))
    if not bound:
        raise SystemExit(f"serve-local: cannot bind {address}")
    return server, bound


# -- a serve-local subprocess, for tests, benchmarks and laptops ------------------------------------

def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """`python -m mammobeam.serving.serve_local ARGS` on a loopback port, as a real process."""

    def __init__(self, args: list[str], *, port: Optional[int] = None, log_path: Optional[str] = None,
                 command: Optional[list[str]] = None):
        self.args, self.port, self.log_path = list(args), port or free_port(), log_path
        self.command = command or [sys.executable, "-m", "mammobeam.serving.serve_local"]
        self.process = None
        self.address = f"127.0.0.1:{self.port}"

    def start(self, extra_args: Optional[list[str]] = None, wait: bool = True, timeout_s: float = 90):
        import subprocess
        log_file = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(
            self.command + self.args + (extra_args or []) + ["--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=log_file, env=env, text=True)
        if wait:
            self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 90) -> str:
        import time
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("serve-local: ready"):
                return line
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"serve-local exited with {self.process.returncode} before it was ready "
                                   f"(log: {self.log_path})")
        raise TimeoutError(f"serve-local not ready after {timeout_s} s")

    def stop(self) -> str:
        """SIGTERM and wait; returns the rest of stdout (the stopped line with call counts)."""
        if self.process is None or self.process.poll() is not None:
            return ""
        self.process.terminate()
        try:
            out, _ = self.process.communicate(timeout=20)
        except Exception:
            self.process.kill()
            out, _ = self.process.communicate()
        return out or ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- command line ---------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model folder holding numbered versions (<name>/<version>/)")
    parser.add_argument("--model-name", help="name to serve --model under (default: the folder's name)")
    parser.add_argument("--model-config", help="TF Serving model config file (ModelServerConfig text "
                                               "format): version policies and labels")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500, TF Serving's)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--max-message-bytes", type=int, default=GRPC_MAX_MESSAGE_BYTES,
                        help="largest request or reply (default INT32_MAX, as TF Serving)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: all)")
    parser.add_argument("--bearer-token", help="require this bearer token in `authorization` metadata")
    parser.add_argument("--stats-file", help="write call counts and batch sizes here (JSON) on exit")
    # Test hooks for the fault drills; not part of the interface.
    parser.add_argument("--exit-after-predicts", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--block-predicts-after", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    models = load_models(args.model, args.model_name, args.model_config)
    servicer = PredictionServicer(models, bearer_token=args.bearer_token,
                                  faults=_Faults(args.exit_after_predicts, args.block_predicts_after))
    server, port = build_server(servicer, host=args.host, port=args.port,
                                max_message_bytes=args.max_message_bytes)
    stopped = threading.Event()

    def stop(signum, frame):
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    served = ", ".join(f"{m.name} versions {sorted(m.versions)}"
                       + (f" labels {m.labels}" if m.labels else "") for m in models.values())
    # Tests and scripts wait for this line.
    print(f"serve-local: ready on {args.host}:{port}: {served}", flush=True)
    stopped.wait()
    servicer.faults.never.set()
    server.stop(grace=2).wait()
    stats = servicer.stats()
    print(f"serve-local: stopped after {stats['predict_calls']} Predict calls, {stats['images']} images, "
          f"batch sizes {stats['batch_sizes']}", flush=True)
    if args.stats_file:
        Path(args.stats_file).write_text(json.dumps(stats, indent=2) + "\n")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="mammobeam serve-local", description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
