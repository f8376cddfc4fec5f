"""In-process scoring: a RunInference ModelHandler around `tf.saved_model.load`.

Beam's TFModelHandlerTensor cannot load SavedModels under Keras 3 (FACTS.md), so this small handler
loads the contract's signature itself. One model per worker process (Beam's shared handle); batches
are sized by `max_batch_size`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from mammobeam.serving.contract import (SIGNATURE_NAME, ContractError, ModelRef, SignatureInfo,
                                        check_signature)

log = logging.getLogger(__name__)


def _import_tf(threads: Optional[int]):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised in this process
            pass
    return tf


def signature_of(loaded) -> tuple[Any, SignatureInfo]:
    """The contract signature of a loaded SavedModel, checked."""
    if SIGNATURE_NAME not in loaded.signatures:
        raise ContractError(f"SavedModel has no {SIGNATURE_NAME!r} signature "
                            f"(it has {sorted(loaded.signatures.keys())})")
    fn = loaded.signatures[SIGNATURE_NAME]
    _, kwargs = fn.structured_input_signature
    inputs = {k: (spec.dtype.name, tuple(spec.shape.as_list())) for k, spec in kwargs.items()}
    outputs = {k: (spec.dtype.name, tuple(spec.shape.as_list())) for k, spec in fn.structured_outputs.items()}
    return fn, check_signature(inputs, outputs)


def load_and_check(model: ModelRef, threads: Optional[int] = None):
    tf = _import_tf(threads)
    try:
        loaded = tf.saved_model.load(model.saved_model_dir)
    except Exception as e:  # TF raises many types for a broken directory
        raise ContractError(f"cannot load SavedModel {model.saved_model_dir}: {e}") from None
    fn, info = signature_of(loaded)
    return loaded, fn, info


class _Loaded:
    """Keeps the SavedModel alive alongside its signature function."""

    def __init__(self, loaded, fn, info: SignatureInfo):
        self.loaded, self.fn, self.info = loaded, fn, info


class InProcessModelHandler(ModelHandler[np.ndarray, PredictionResult, _Loaded]):
    """Scores uint16 [H, W] arrays with the contract signature, in batches, in this process."""

    def __init__(self, model: ModelRef, *, min_batch_size: int = 1, max_batch_size: int = 16,
                 threads: Optional[int] = None):
        super().__init__()
        self.model = model
        self._batch = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}
        self._threads = threads

    def load_model(self) -> _Loaded:
        loaded, fn, info = load_and_check(self.model, self._threads)
        log.info("loaded model %s v%s (%dx%d)", self.model.name, self.model.version, info.height, info.width)
        return _Loaded(loaded, fn, info)

    def run_inference(self, batch: Sequence[np.ndarray], model: _Loaded,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        import tensorflow as tf
        images = np.stack(batch)[..., np.newaxis]
        scores = model.fn(**{model.info.input_key: tf.constant(images, dtype=tf.uint16)})
        values = np.asarray(scores[model.info.output_key], dtype=np.float32).reshape(-1)
        if values.shape[0] != len(batch):
            raise ContractError(f"model returned {values.shape[0]} scores for {len(batch)} images")
        return [PredictionResult(x, float(s)) for x, s in zip(batch, values)]

    def batch_elements_kwargs(self) -> dict[str, int]:
        return dict(self._batch)

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return sum(x.nbytes for x in batch)

    def get_metrics_namespace(self) -> str:
        return "mammobeam_inprocess"

    def share_model_across_processes(self) -> bool:
        return False
