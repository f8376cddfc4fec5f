"""Train, export and evaluate the demo model: a small CNN on synthetic screening exams.

    .venv/bin/python -m mammobeam.serving.train_demo                 # writes serving/demo_model/demo/
    .venv/bin/python -m mammobeam.serving.train_demo --shuffle-labels --no-export   # the control

DEMONSTRATION MODEL, NOT FOR CLINICAL USE: it learns the synthetic generator's lesions, nothing else.

1. `mammobeam.synthetic.generate` writes a training set (seed --train-seed) and a test set
   (--test-seed, a different seed: other women, other lesions);
2. every file goes through the pipeline's own header reader and preprocessing
   (transforms/dicom.read_header, transforms/pixels.preprocess_dataset at PreprocessingSpec());
3. a small Keras CNN learns each image's breast label (cancer in outcomes.csv) at 256x208: the
   exported signature takes the full preprocessing size, uint16 [N, 1024, 832, 1], and pools 4x4
   inside the model (the same average the training arrays were made with);
4. export_model writes demo/1/ with scope.json and thresholds.json (this preprocessing version);
5. the exported SavedModel, loaded back through InProcessModelHandler, scores the test set: AUC per
   image and per breast (max of its views) overall, per lesion type and per vendor profile, written
   to demo_model/metrics.json (or metrics-shuffled.json) and quoted in serving/MODEL_CARD.md.
Deterministic given the seeds (single-threaded TF ops, fixed initialisation), within float rounding.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

SERVING_DIR = Path(__file__).resolve().parent
DEMO_ROOT = SERVING_DIR / "demo_model"
MODEL_NAME = "demo"
MODEL_VERSION = 1
POOL = 4  # 1024x832 -> 256x208 inside the model


def load_split(directory: str, exams: int, seed: int, keep_full: bool = False) -> dict:
    """Generate one split and preprocess every image; returns pooled arrays and their labels."""
    import pydicom

    from mammobeam.synthetic.generator import generate
    from mammobeam.transforms.dicom import read_header
    from mammobeam.transforms.pixels import PreprocessingSpec, preprocess_dataset
    from mammobeam.transforms.pseudonyms import Pseudonymizer

    summary = generate(directory, exams, seed=seed)
    outcomes = {}
    with open(summary.outcomes_csv, newline="") as f:
        for row in csv.DictReader(f):
            outcomes[(row["accession_number"], row["laterality"])] = (int(row["cancer"]), row["lesion_type"] or "none")
    pseudonymizer, spec = Pseudonymizer.from_config(), PreprocessingSpec()
    pooled, labels, lesion, profile, breast, full = [], [], [], [], [], []
    for accession, views in sorted(summary.exam_files.items()):
        for exam_view, path in sorted(views.items()):
            laterality = exam_view.split("-")[0]
            data = Path(path).read_bytes()
            header = read_header(data, path, pseudonymizer)
            if not header.accepted:
                continue
            image = preprocess_dataset(pydicom.dcmread(path), header.record, spec)
            pooled.append(pool(image.pixels))
            if keep_full:
                full.append(image.pixels)
            cancer, lesion_type = outcomes[(accession, laterality)]
            labels.append(cancer)
            lesion.append(lesion_type)
            profile.append(summary.exam_profiles[accession])
            breast.append(f"{accession}-{laterality}")
    return {"x": np.stack(pooled)[..., None], "y": np.array(labels, np.float32), "lesion": lesion,
            "profile": profile, "breast": breast, "spec_version": spec.version, "full": full}


def pool(pixels: np.ndarray) -> np.ndarray:
    """What the exported model does first: uint16 -> [0, 1] float32, 4x4 average."""
    x = pixels.astype(np.float32) / 65535.0
    h, w = x.shape
    return x.reshape(h // POOL, POOL, w // POOL, POOL).mean(axis=(1, 3))


def build_cnn(height: int, width: int, seed: int):
    import keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((height, width, 1))
    x = inputs
    for filters in (16, 32, 48, 64):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    # Lesions are small and local: the strongest response anywhere decides.
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    return model


def auc(labels, scores) -> float | None:
    from sklearn.metrics import roc_auc_score
    labels = np.asarray(labels)
    if labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def evaluate(scores: np.ndarray, split: dict) -> dict:
    """AUC per image and per breast (max over its views): overall, per lesion type, per profile."""
    by_breast = defaultdict(list)
    for s, b in zip(scores, split["breast"]):
        by_breast[b].append(float(s))
    first = {}
    for i, b in enumerate(split["breast"]):
        first.setdefault(b, i)
    breasts = sorted(by_breast)
    b_score = np.array([max(by_breast[b]) for b in breasts])
    b_label = np.array([split["y"][first[b]] for b in breasts])
    b_lesion = [split["lesion"][first[b]] for b in breasts]
    b_profile = [split["profile"][first[b]] for b in breasts]
    result = {"images": len(scores), "breasts": len(breasts), "cancer_breasts": int(b_label.sum()),
              "auc_image": auc(split["y"], scores), "auc_breast": auc(b_label, b_score),
              "per_lesion_type": {}, "per_profile": {}}
    normal = b_label == 0
    for lesion in sorted(set(b_lesion) - {"none"}):
        pick = normal | np.array([lt == lesion for lt in b_lesion])
        result["per_lesion_type"][lesion] = {"cancer_breasts": int(sum(lt == lesion for lt in b_lesion)),
                                             "auc_breast_vs_all_normals": auc(b_label[pick], b_score[pick])}
    for prof in sorted(set(b_profile)):
        pick = np.array([p == prof for p in b_profile])
        result["per_profile"][prof] = {"breasts": int(pick.sum()), "cancer_breasts": int(b_label[pick].sum()),
                                       "auc_breast": auc(b_label[pick], b_score[pick])}
    return result


def export(model, spec_version: str, root: Path, train_info: dict):
    import tensorflow as tf

    from mammobeam.schemas.thresholds import ModelScope
    from mammobeam.serving.export import export_model

    class Demo(tf.Module):
        def __init__(self, cnn):
            super().__init__()
            self.cnn = cnn

        def score(self, images):
            x = tf.cast(images, tf.float32) / 65535.0
            x = tf.nn.avg_pool2d(x, POOL, POOL, "VALID")
            return tf.reshape(self.cnn(x, training=False), [-1])

    scope = ModelScope(manufacturers=None, views=("CC", "MLO"), implants=False,
                       statement=("DEMONSTRATION MODEL, NOT FOR CLINICAL USE. Trained and tested only on "
                                  "synthetic exams from mammobeam.synthetic (" + train_info["description"]
                                  + "); it has never seen a real mammogram."))
    target = root / MODEL_NAME
    if target.exists():
        shutil.rmtree(target)
    from mammobeam.transforms.pixels import PreprocessingSpec
    spec = PreprocessingSpec()
    return export_model(Demo(model), root, MODEL_NAME, MODEL_VERSION, spec.height, spec.width,
                        preprocessing_version=spec_version, scope=scope)


def score_with_export(ref, full: list[np.ndarray]) -> np.ndarray:
    from mammobeam.serving.inprocess import InProcessModelHandler
    handler = InProcessModelHandler(ref, max_batch_size=16)
    loaded = handler.load_model()
    scores = []
    for i in range(0, len(full), 16):
        scores += [r.inference for r in handler.run_inference(full[i:i + 16], loaded)]
    return np.array(scores)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-exams", type=int, default=300)
    parser.add_argument("--test-exams", type=int, default=150)
    parser.add_argument("--train-seed", type=int, default=1001)
    parser.add_argument("--test-seed", type=int, default=2002)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7, help="initialisation and shuffling")
    parser.add_argument("--shuffle-labels", action="store_true", help="the control: train on permuted labels")
    parser.add_argument("--no-export", action="store_true", help="evaluate in memory, write no model")
    parser.add_argument("--output", default=str(DEMO_ROOT), help="where demo/1/ goes")
    parser.add_argument("--work", help="scratch folder for the generated exams (default: a temp dir)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import tensorflow as tf
    tf.config.threading.set_inter_op_parallelism_threads(1)

    work = Path(args.work or tempfile.mkdtemp(prefix="demo-train-"))
    t0 = time.time()
    train = load_split(str(work / "train"), args.train_exams, args.train_seed)
    test = load_split(str(work / "test"), args.test_exams, args.test_seed, keep_full=not args.no_export)
    print(f"data: {len(train['y'])} train images ({int(train['y'].sum())} from cancer breasts), "
          f"{len(test['y'])} test images, {time.time() - t0:.0f} s", flush=True)
    y = train["y"].copy()
    if args.shuffle_labels:
        y = np.random.default_rng(args.seed).permutation(y)
    model = build_cnn(train["x"].shape[1], train["x"].shape[2], args.seed)
    pos = float(y.mean())
    t1 = time.time()
    model.fit(train["x"], y, batch_size=32, epochs=args.epochs, shuffle=True, verbose=2,
              class_weight={0: 0.5 / (1 - pos), 1: 0.5 / pos})
    train_s = time.time() - t1
    description = (f"train seed {args.train_seed}, {args.train_exams} exams, {len(y)} images; "
                   f"test seed {args.test_seed}, {args.test_exams} exams")
    if args.no_export:
        scores = model.predict(test["x"], batch_size=32, verbose=0).reshape(-1)
    else:
        ref = export(model, train["spec_version"], Path(args.output), {"description": description})
        # Score the exported artifact on the preprocessed full-size images, as the pipeline would.
        scores = score_with_export(ref, test["full"])
    metrics = {"model": f"{MODEL_NAME}-{MODEL_VERSION}", "shuffled_labels": args.shuffle_labels,
               "preprocessing_version": train["spec_version"], "data": description,
               "epochs": args.epochs, "train_seconds": round(train_s), "test": evaluate(scores, test)}
    name = "metrics-shuffled.json" if args.shuffle_labels else "metrics.json"
    out = Path(args.output) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
