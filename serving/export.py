"""Writing models in the contract's layout (serving/contract.py).

`export_model` saves any `tf.Module` whose `score(images)` maps uint16 [N, H, W, 1] to float32 [N]
as `<root>/<name>/<version>/` with the contract signature, and writes the scope and thresholds files
beside it. `build_reference_model` makes a small deterministic model for tests, benchmarks and
fault drills: a real SavedModel (a fixed convolution, pooling and a logistic read-out), not a stub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from mammobeam.schemas.thresholds import ModelScope, OperatingPoint, Thresholds
from mammobeam.serving.contract import SCOPE_FILE, SIGNATURE_NAME, THRESHOLDS_FILE, ModelRef

DEFAULT_CUTS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8)


def export_model(module, root: str | Path, name: str, version: int, height: int, width: int, *,
                 preprocessing_version: str, scope: Optional[ModelScope] = None,
                 thresholds: Optional[Thresholds] = None, input_key: str = "images",
                 output_key: str = "score") -> ModelRef:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 1], tf.uint16, name=input_key)])
    def serve(images):
        return {output_key: tf.reshape(tf.cast(module.score(images), tf.float32), [-1])}

    model_root = Path(root) / name
    saved = model_root / str(version)
    tf.saved_model.save(module, str(saved), signatures={SIGNATURE_NAME: serve})
    scope = scope or ModelScope(statement="reference model: no clinical validation")
    (model_root / SCOPE_FILE).write_text(scope.to_json())
    thresholds = thresholds or Thresholds(
        version=f"{name}-{version}-default", model_name=name, model_version=str(version),
        preprocessing_version=preprocessing_version,
        default=OperatingPoint(0.5, 0.1, DEFAULT_CUTS))
    (model_root / THRESHOLDS_FILE).write_text(thresholds.to_json())
    return ModelRef(name, str(version), str(saved), str(model_root))


def build_reference_model(root: str | Path, *, height: int, width: int, preprocessing_version: str,
                          name: str = "reference", version: int = 1, seed: int = 0) -> ModelRef:
    """A small real SavedModel: score = sigmoid(w . pooled(conv(image)) + b), fixed weights."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    class Reference(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(rng.normal(0, 0.3, (5, 5, 1, 4)).astype(np.float32))
            self.weights = tf.Variable(rng.normal(0, 1.0, (4,)).astype(np.float32))
            self.bias = tf.Variable(np.float32(-0.5))

        def score(self, images):
            x = tf.cast(images, tf.float32) / 65535.0
            x = tf.nn.avg_pool2d(x, 8, 8, "VALID")
            x = tf.nn.relu(tf.nn.conv2d(x, self.kernel, 1, "SAME"))
            pooled = tf.reduce_mean(x, axis=[1, 2]) * 8.0
            return tf.sigmoid(tf.linalg.matvec(pooled, self.weights) + self.bias)

    return export_model(Reference(), root, name, version, height, width,
                        preprocessing_version=preprocessing_version)
