"""Scoring through TensorFlow Serving: a RunInference RemoteModelHandler over gRPC Predict.

    mammobeam score --serving-address HOST:PORT --serving-model NAME [--serving-version N | --serving-label L]

Start-up (`resolve`, once, where the pipeline is built): GetModelMetadata resolves a label (stable,
canary) or "latest" to one version number and checks the signature with the contract, so a wrong
model fails before any image is read. Every Predict then asks for that number, so one run (and one
exam) is never scored by two versions, and the version goes on every PredictionResult (`model_id`).

Requests: uint16 tensors (DT_UINT16, raw `tensor_content`), never float32 or JSON. A full-size
1024x832 image is 1.7 MB, so batches are sized by a pixel budget that keeps each request within the
channel's message limit, and the channel's limits are raised to that budget (gRPC's default receive
limit is 4 MiB; TF Serving's own server limit is INT32_MAX).

Failures (the retry filter is `is_retryable`):
- UNAVAILABLE, DEADLINE_EXCEEDED (and a full batching queue): retried with jittered exponential backoff
  for `retry_budget_s`, long enough to outlast a TF Serving restart.
- RESOURCE_EXHAUSTED about message size (or GPU memory): the batch is split in halves, each sent again.
- INVALID_ARGUMENT, NOT_FOUND and everything else: never retried; a ServingError says what failed.
Retries live inside `request()` because Beam's own retry wrapper starts at 5 s and doubles, which
neither budgets by time nor splits; Beam's wrapper is left at `num_retries=0` with the same filter.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import PredictionResult, RemoteModelHandler

from mammobeam.serving.contract import SIGNATURE_NAME, ContractError, SignatureInfo, check_input_size, check_signature

log = logging.getLogger(__name__)

# A batch of 32 full-size images (32 x 1024 x 832 x 2 bytes = 54.5 MB) with room to spare.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_DEADLINE_S = 30.0
# TF Serving on a GPU node restarts (pull, start, load, warm up) in well under two minutes.
DEFAULT_RETRY_BUDGET_S = 120.0
# Everything in a PredictRequest but the pixels: model spec, tensor shape, keys, framing.
REQUEST_OVERHEAD_BYTES = 4096
# The smallest batch Beam's BatchElements forms when enough images are waiting (goal: >= 16 per RPC).
DEFAULT_MIN_BATCH_SIZE = 16
METADATA_SIGNATURE_FIELD = "signature_def"


class ServingError(RuntimeError):
    """A request to TF Serving failed for good (not retryable, or out of retry budget)."""


def images_per_message(height: int, width: int, max_message_bytes: int) -> int:
    """How many uint16 [height, width] images fit in one PredictRequest within the message limit."""
    n = (max_message_bytes - REQUEST_OVERHEAD_BYTES) // (height * width * 2)
    if n < 1:
        raise ValueError(f"one {height}x{width} uint16 image ({height * width * 2} bytes) does not fit "
                         f"in a {max_message_bytes}-byte message; raise max_message_bytes")
    return int(n)


def _code(exc: BaseException):
    code = getattr(exc, "code", None)
    return code() if callable(code) else None


def _details(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    return (details() if callable(details) else None) or str(exc)


def is_message_too_large(exc: BaseException) -> bool:
    """RESOURCE_EXHAUSTED because the request (or reply) is too big: smaller batches will pass."""
    import grpc
    if _code(exc) != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    text = _details(exc).lower()
    return "larger than max" in text or "message too large" in text or "oom when allocating" in text


def is_retryable(exc: BaseException) -> bool:
    """The retry filter: transient server or network states only."""
    import grpc
    code = _code(exc)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return True
    # TF Serving's batching queue answers RESOURCE_EXHAUSTED (older) when full: back off and retry.
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and not is_message_too_large(exc)


def model_id_of(model_name: str, version: int) -> str:
    """What goes in PredictionResult.model_id: `name:version`."""
    return f"{model_name}:{version}"


@dataclasses.dataclass
class ServingClient:
    """What create_client makes on each worker: a channel, its stub and the call metadata."""

    channel: Any
    stub: Any
    call_metadata: tuple[tuple[str, str], ...]

    def close(self) -> None:
        self.channel.close()


class TFServingModelHandler(RemoteModelHandler[np.ndarray, PredictionResult, ServingClient]):
    """Scores uint16 [H, W] arrays through TF Serving's PredictionService.Predict."""

    def __init__(self, address: str, model_name: str, *, version: Optional[int] = None,
                 label: Optional[str] = None, image_height: int, image_width: int,
                 max_batch_size: int = 32, min_batch_size: int = DEFAULT_MIN_BATCH_SIZE,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 deadline_s: float = DEFAULT_DEADLINE_S, retry_budget_s: float = DEFAULT_RETRY_BUDGET_S,
                 initial_backoff_s: float = 0.25, max_backoff_s: float = 8.0,
                 root_certificates: Optional[bytes] = None, bearer_token: Optional[str] = None,
                 tls_server_name: Optional[str] = None,
                 max_batch_duration_secs: Optional[float] = None):
        if version is not None and label is not None:
            raise ValueError("give a serving version or a serving label, not both")
        super().__init__(namespace="mammobeam_tfserving", num_retries=0, retry_filter=is_retryable)
        self.address = address
        self.model_name = model_name
        self.requested_version = int(version) if version is not None else None
        self.label = label
        self.image_height, self.image_width = int(image_height), int(image_width)
        self.max_message_bytes = int(max_message_bytes)
        self.pixel_budget = images_per_message(self.image_height, self.image_width, self.max_message_bytes)
        self.max_batch_size = max(1, min(int(max_batch_size), self.pixel_budget))
        self.min_batch_size = max(1, min(int(min_batch_size), self.max_batch_size))
        self.max_batch_duration_secs = max_batch_duration_secs
        self.deadline_s = float(deadline_s)
        self.retry_budget_s = float(retry_budget_s)
        self.initial_backoff_s = float(initial_backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.root_certificates = root_certificates
        self.bearer_token = bearer_token
        self.tls_server_name = tls_server_name
        if bearer_token and root_certificates is None:
            log.warning("a bearer token over a plaintext channel to %s: use TLS outside loopback", address)
        # Set by resolve(); travels with the pickled handler to every worker.
        self.version: Optional[int] = None
        self.signature: Optional[SignatureInfo] = None

    # -- start-up -------------------------------------------------------------------------------

    def describe_request(self) -> str:
        if self.label is not None:
            return f"{self.model_name} label {self.label!r}"
        if self.requested_version is not None:
            return f"{self.model_name} version {self.requested_version}"
        return f"{self.model_name} (latest version)"

    def resolve(self) -> tuple[str, int]:
        """GetModelMetadata once: pin the version, check the signature. Returns (model name, version).

        Waits (within retry_budget_s) for a server that is not up yet; a model that does not match
        the contract raises ContractError, a model, version or label the server lacks ServingError.
        """
        if self.version is not None:
            return self.model_name, self.version
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[METADATA_SIGNATURE_FIELD])
        self._fill_spec(request.model_spec, self.requested_version, self.label)
        client = self.create_client()
        try:
            response = self._call_with_retries(client.stub.GetModelMetadata, request, client,
                                               what=f"GetModelMetadata for {self.describe_request()}")
        finally:
            client.close()
        version = response.model_spec.version.value
        if not version:
            raise ServingError(f"{self.address} did not say which version serves {self.describe_request()}")
        if self.requested_version is not None and version != self.requested_version:
            raise ServingError(f"asked for {self.describe_request()}, {self.address} answered v{version}")
        info = signature_from_metadata(response)
        try:
            check_input_size(info, self.image_height, self.image_width)
        except ContractError as e:
            raise ContractError(f"{self.model_name} v{version} at {self.address}: {e}") from None
        self.version, self.signature = int(version), info
        log.info("TF Serving %s: %s resolved to version %d (input %r %dx%d uint16, output %r)",
                 self.address, self.describe_request(), self.version, info.input_key, info.height,
                 info.width, info.output_key)
        return self.model_name, self.version

    @property
    def model_id(self) -> str:
        return model_id_of(self.model_name, self._pinned()[0])

    def _pinned(self) -> tuple[int, SignatureInfo]:
        if self.version is None or self.signature is None:
            if self.label is not None or self.requested_version is None:
                # Resolving a label or "latest" here, on a worker, could give two workers two versions.
                raise ServingError(f"{self.describe_request()} was never resolved: call "
                                   "TFServingModelHandler.resolve() once where the pipeline is built")
            self.resolve()
        return self.version, self.signature

    # -- RemoteModelHandler -----------------------------------------------------------------------

    def create_client(self) -> ServingClient:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        options = [("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.max_receive_message_length", self.max_message_bytes),
                   # Each worker keeps its own connection (no sharing with other handlers' channels).
                   ("grpc.use_local_subchannel_pool", 1)]
        if self.root_certificates is not None:
            if self.tls_server_name:
                options.append(("grpc.ssl_target_name_override", self.tls_server_name))
            credentials = grpc.ssl_channel_credentials(root_certificates=self.root_certificates)
            channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            channel = grpc.insecure_channel(self.address, options=options)
        metadata = (("authorization", f"Bearer {self.bearer_token}"),) if self.bearer_token else ()
        return ServingClient(channel, prediction_service_pb2_grpc.PredictionServiceStub(channel), metadata)

    def request(self, batch: Sequence[np.ndarray], model: ServingClient,
                inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        version, info = self._pinned()
        images = self._stack(batch)
        scores = self._predict_splitting(images, model, version, info)
        model_id = model_id_of(self.model_name, version)
        return [PredictionResult(x, float(s), model_id) for x, s in zip(batch, scores)]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"min_batch_size": self.min_batch_size, "max_batch_size": self.max_batch_size}
        if self.max_batch_duration_secs is not None:
            kwargs["max_batch_duration_secs"] = self.max_batch_duration_secs
        return kwargs

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(x.nbytes for x in batch)

    def get_metrics_namespace(self) -> str:
        return "mammobeam_tfserving"

    def validate_inference_args(self, inference_args: Optional[dict[str, Any]]):
        if inference_args:
            raise ValueError("TFServingModelHandler takes no inference_args")

    # -- the calls ----------------------------------------------------------------------------------

    def _stack(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        shape = (self.image_height, self.image_width)
        for x in batch:
            if x.dtype != np.uint16 or x.shape != shape:
                raise ContractError(f"the model takes uint16 {shape[0]}x{shape[1]} images, "
                                    f"got {x.dtype} {'x'.join(map(str, x.shape))}")
        return np.stack(batch)[..., np.newaxis]

    def _predict_splitting(self, images: np.ndarray, client: ServingClient, version: int,
                           info: SignatureInfo) -> np.ndarray:
        try:
            return self._predict(images, client, version, info)
        except _MessageTooLarge as e:
            if len(images) == 1:
                raise ServingError(f"one {self.image_height}x{self.image_width} image is too large for "
                                   f"{self.address}: {e}; raise the server's and this handler's "
                                   "message limits") from None
            half = len(images) // 2
            log.warning("TF Serving %s refused a batch of %d images (%s); sending halves",
                        self.address, len(images), e)
            return np.concatenate([self._predict_splitting(images[:half], client, version, info),
                                   self._predict_splitting(images[half:], client, version, info)])

    def _predict(self, images: np.ndarray, client: ServingClient, version: int,
                 info: SignatureInfo) -> np.ndarray:
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._fill_spec(request.model_spec, version, None)
        request.model_spec.signature_name = SIGNATURE_NAME
        fill_uint16_tensor(request.inputs[info.input_key], images)
        request.output_filter.append(info.output_key)
        response = self._call_with_retries(client.stub.Predict, request, client,
                                           what=f"Predict of {len(images)} images on "
                                                f"{self.model_name} v{version}")
        answered = response.model_spec.version.value
        if answered and answered != version:
            raise ServingError(f"asked {self.address} for {self.model_name} v{version}, "
                               f"it answered with v{answered}")
        if info.output_key not in response.outputs:
            raise ContractError(f"{self.model_name} v{version} returned {sorted(response.outputs)}, "
                                f"not {info.output_key!r}")
        scores = float_array(response.outputs[info.output_key])
        if scores.shape[0] != len(images):
            raise ContractError(f"{self.model_name} v{version} returned {scores.shape[0]} scores "
                                f"for {len(images)} images")
        return scores

    def _call_with_retries(self, method, request, client: ServingClient, *, what: str):
        started = time.monotonic()
        backoff = self.initial_backoff_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(request, timeout=self.deadline_s, metadata=client.call_metadata)
            except Exception as e:  # grpc.RpcError; its code decides
                if is_message_too_large(e):
                    raise _MessageTooLarge(_details(e)) from None
                code = _code(e)
                code_name = code.name if code is not None else type(e).__name__
                elapsed = time.monotonic() - started
                if not is_retryable(e):
                    raise ServingError(f"{what} at {self.address} failed: {code_name}: {_details(e)} "
                                       "(not retried)") from None
                if elapsed + backoff > self.retry_budget_s:
                    raise ServingError(f"{what} at {self.address} still failing after {attempt} "
                                       f"attempts over {elapsed:.1f} s (retry budget "
                                       f"{self.retry_budget_s:.0f} s): {code_name}: {_details(e)}") from None
                delay = backoff * random.uniform(0.5, 1.0)
                log.warning("%s at %s: %s (attempt %d); retrying in %.2f s", what, self.address,
                            code_name, attempt, delay)
                time.sleep(delay)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _fill_spec(self, spec, version: Optional[int], label: Optional[str]) -> None:
        spec.name = self.model_name
        if version is not None:
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = label


class _MessageTooLarge(Exception):
    pass


# -- tensors without TensorFlow's converters (plain protos, little-endian bytes) ----------------------

def fill_uint16_tensor(proto, array: np.ndarray) -> None:
    """Write `array` into a TensorProto in place (a 32-image batch is 54 MB: copy it once)."""
    from tensorflow.core.framework import types_pb2

    proto.dtype = types_pb2.DT_UINT16
    for d in array.shape:
        proto.tensor_shape.dim.add(size=d)
    proto.tensor_content = np.ascontiguousarray(array, dtype="<u2").tobytes()


def uint16_tensor_proto(array: np.ndarray):
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto()
    fill_uint16_tensor(proto, array)
    return proto


def float_array(proto) -> np.ndarray:
    from tensorflow.core.framework import types_pb2

    if proto.dtype != types_pb2.DT_FLOAT:
        raise ContractError(f"the model returned {types_pb2.DataType.Name(proto.dtype)}, not DT_FLOAT")
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype="<f4")
    else:
        values = np.asarray(proto.float_val, dtype=np.float32)
        size = int(np.prod([d.size for d in proto.tensor_shape.dim])) if proto.tensor_shape.dim else 1
        if values.size == 1 and size > 1:  # TF packs a constant tensor as one value
            values = np.full(size, values[0], dtype=np.float32)
    return values.reshape(-1)


def signature_from_metadata(response) -> SignatureInfo:
    """The contract check on a GetModelMetadataResponse (same rules as the in-process loader)."""
    from tensorflow.python.framework import dtypes
    from tensorflow_serving.apis import get_model_metadata_pb2

    if METADATA_SIGNATURE_FIELD not in response.metadata:
        raise ContractError("the server's metadata has no signature_def")
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[METADATA_SIGNATURE_FIELD].Unpack(signatures)
    if SIGNATURE_NAME not in signatures.signature_def:
        raise ContractError(f"the model has no {SIGNATURE_NAME!r} signature "
                            f"(it has {sorted(signatures.signature_def)})")
    sig = signatures.signature_def[SIGNATURE_NAME]

    def described(tensors) -> dict[str, tuple[str, tuple]]:
        out = {}
        for key, info in tensors.items():
            dtype = dtypes.as_dtype(info.dtype).name if info.dtype else "invalid"
            shape = (() if info.tensor_shape.unknown_rank else
                     tuple(None if d.size < 0 else int(d.size) for d in info.tensor_shape.dim))
            out[key] = (dtype, shape)
        return out

    return check_signature(described(sig.inputs), described(sig.outputs))
