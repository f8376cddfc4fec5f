"""Train, export and evaluate the demo model: a small CNN on synthetic screening exams.

    .venv/bin/python -m mammobeam.serving.train_demo                 # writes serving/demo_model/demo/
    .venv/bin/python -m mammobeam.serving.train_demo --shuffle-labels --no-export   # the control
    .venv/bin/python -m mammobeam.serving.train_demo --report-controls serving/demo_model/controls

DEMONSTRATION MODEL, NOT FOR CLINICAL USE: it learns the synthetic generator's lesions, nothing else.

1. `mammobeam synth` (synthetic.generate) writes a training set (--train-seed) and a test set
   (--test-seed, a different seed: other women, other lesions); `mammobeam preprocess` turns each
   into TFRecord model inputs at PreprocessingSpec() (the pipeline's own reading, acceptance and
   preprocessing); transforms/model_inputs.py reads them back. Labels join outcomes.csv on
   (pseudonymised accession, laterality); the vendor profile comes from the generator's manifest.
2. The training seed's exams are split into training and validation exams (--validation-share).
   A Keras CNN learns each image's breast label (cancer in outcomes.csv) at 512x416: the exported
   signature takes the full preprocessing size, uint16 [N, 1024, 832, 1], and pools 2x2 inside the
   model (the same average the training arrays are made with); its first layer is a strided 5x5
   convolution, so the rest of the network runs at 256x208. AdamW with a warm-up and cosine decay,
   vertical flips and grey-level jitter, class-balanced weights; the epoch with the best validation
   AUC (breast level) is kept, and training stops when it has not improved for --patience epochs.
3. export_model writes demo/1/ with scope.json and thresholds.json; the default operating points are
   chosen on the validation exams with analytics/calibrate.py's rules (see THRESHOLDS below).
4. The exported SavedModel, loaded back through InProcessModelHandler, scores the full-size test
   images: AUC per image and per breast (max of its views) overall, excluding occult cancers, per
   lesion type and per vendor profile, written to demo_model/metrics.json and quoted in
   serving/MODEL_CARD.md.
5. The control (--shuffle-labels) trains the same way on labels that carry no information (see
   shuffle_breast_labels) and writes demo_model/controls/metrics-shuffled-<mode>-<label seed>.json,
   with how far its labels happen to follow the truth; --report-controls tabulates those runs.

Generated and preprocessed sets are cached under --work (default: a temporary folder) and reused
when their seed and size match. Deterministic given the seeds (op determinism, fixed initialisation,
seeded batches), within float rounding.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

SERVING_DIR = Path(__file__).resolve().parent
DEMO_ROOT = SERVING_DIR / "demo_model"
MODEL_NAME = "demo"
MODEL_VERSION = 1
POOL = 2  # 1024x832 -> 512x416 inside the model (the synthetic sources are 512 rows: full source detail)
STEM_FILTERS, STEM_KERNEL = 16, 5  # the first layer: a strided convolution, 512x416 -> 256x208
INPUT_FORMAT = "tfrecord"

# THRESHOLDS: default operating points, chosen on the cancer-free validation exams (training seed,
# unseen by the weights) with analytics/calibrate.py's rules on exam scores (max over the exam's
# images). The synthetic sets are enriched (about 60% of exams hold a cancer, against under 1% of
# a screening population), so the cancer-free exams stand for the population the rates refer to.
RECALL_RATE = 0.10  # recall threshold: at most 10% of cancer-free exams recalled (a US-like rate)
TRIAGE_SHARE = 0.40  # normal-triage threshold: at most the 40% lowest-scored cancer-free exams
# Category cut points: the deciles of the cancer-free exams' scores (calibrate.category_cut_points).

# Occult cancers carry no visible lesion by design (synthetic/lesions.py draws nothing): for an image
# model their breasts are label noise, so training leaves them out. The test set keeps every breast.
TRAIN_WITHOUT = ("occult",)


# --- Data: mammobeam synth -> mammobeam preprocess -> model_inputs ---------------------------------

@dataclasses.dataclass
class Split:
    """The images of one generated set, pooled as the model sees them, with their breast labels."""

    x: np.ndarray  # float32 [N, H/POOL, W/POOL, 1]
    y: np.ndarray  # float32 [N]: 1 when the image's breast has cancer
    sop: list[str]
    breast: list[str]  # "<accession>-<laterality>"
    exam: list[str]  # accession number
    lesion: list[str]  # lesion_type of the breast, "none" for a normal breast
    profile: list[str]  # vendor profile of the exam
    inputs: str  # glob of the full-size model inputs (TFRecord)
    spec_version: str

    def take(self, keep: np.ndarray) -> "Split":
        idx = np.flatnonzero(keep)
        pick = lambda values: [values[i] for i in idx]  # noqa: E731
        return Split(self.x[idx], self.y[idx], pick(self.sop), pick(self.breast), pick(self.exam),
                     pick(self.lesion), pick(self.profile), self.inputs, self.spec_version)


def prepare_split(work: Path, name: str, exams: int, seed: int) -> Path:
    """Generate `exams` exams and preprocess them into TFRecords; reuse a finished folder."""
    from mammobeam.pipelines.cli import main as mammobeam
    from mammobeam.synthetic.generator import generate

    folder = work / f"{name}-seed{seed}-{exams}"
    done = folder / "inputs" / "DONE"
    if done.exists():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    generate(str(folder / "dicom"), exams, seed=seed)
    code = mammobeam(["preprocess", "--input", str(folder / "dicom" / "**" / "*.dcm"),
                      "--output", str(folder / "inputs"), "--format", INPUT_FORMAT])
    if code != 0:
        raise RuntimeError(f"mammobeam preprocess failed ({code}) on {folder / 'dicom'}")
    done.write_text("preprocessed\n")
    return folder


def read_split(folder: Path) -> Split:
    """Read the preprocessed images of one set and join each to its breast's outcome."""
    from mammobeam.transforms import model_inputs
    from mammobeam.transforms.pseudonyms import Pseudonymizer

    manifest = json.loads((folder / "dicom" / "manifest.json").read_text())
    pseudonymizer = Pseudonymizer.from_config()
    # The model inputs carry the pseudonymised accession (accession_key), as every table does.
    outcome_of = {}
    with open(folder / "dicom" / "outcomes.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (pseudonymizer.accession(row["accession_number"], row["site"]), row["laterality"])
            outcome_of[key] = (row["accession_number"], int(row["cancer"]), row["lesion_type"] or "none")
    pattern = str(folder / "inputs" / f"inputs-*.{INPUT_FORMAT}")
    records, versions = [], set()
    for row in model_inputs.read_tfrecords(pattern):
        accession, cancer, lesion = outcome_of[(row["accession_key"], row["laterality"])]
        versions.add(row["preprocessing_version"])
        records.append((accession, row["laterality"], row["view"], row["sop_instance_uid"], cancer, lesion,
                        pool(model_inputs.pixels_of(row))))
    expected = sum(len(views) for views in manifest["exam_files"].values())
    if len(records) != expected or len(versions) != 1:
        raise RuntimeError(f"{pattern}: {len(records)} images of {expected}, "
                           f"preprocessing {sorted(versions)}")
    records.sort(key=lambda r: r[:4])  # shard order is the runner's; sort for a stable order
    return Split(x=np.stack([r[6] for r in records])[..., None],
                 y=np.array([r[4] for r in records], np.float32),
                 sop=[r[3] for r in records], breast=[f"{r[0]}-{r[1]}" for r in records],
                 exam=[r[0] for r in records], lesion=[r[5] for r in records],
                 profile=[manifest["exam_profiles"][r[0]] for r in records],
                 inputs=pattern, spec_version=versions.pop())


def pool(pixels: np.ndarray) -> np.ndarray:
    """What the exported model does first: uint16 -> [0, 1] float32, POOLxPOOL average."""
    x = pixels.astype(np.float32) / 65535.0
    h, w = x.shape
    return x.reshape(h // POOL, POOL, w // POOL, POOL).mean(axis=(1, 3))


def split_exams(split: Split, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of training and validation images: whole exams go to one side."""
    exams = sorted(set(split.exam))
    held = set(np.random.default_rng(seed).permutation(exams)[:round(share * len(exams))])
    val = np.array([e in held for e in split.exam])
    return ~val, val


def first_image_of_breast(split: Split, keep: Optional[np.ndarray] = None) -> dict[str, int]:
    """Each breast's first image (its index in the split), among the kept images."""
    first: dict[str, int] = {}
    for i, b in enumerate(split.breast):
        if keep is None or keep[i]:
            first.setdefault(b, i)
    return first


def shuffle_breast_labels(split: Split, seed: int, sides: np.ndarray, balanced: bool = True) -> np.ndarray:
    """The control's labels: the breast labels permuted among breasts; both views keep one label.

    A plain permutation is independent of the truth only in expectation: in one draw the breasts
    labelled cancer can hold a few more or fewer of some lesion type than the normal breasts do
    (label_association measures it: -0.03 in the seed-7 draw), a signal a network that finds those
    lesions easily can pick up. The balanced permutation (the default) removes it:
    the breasts are ordered by stratum (training or validation side, true lesion type, vendor
    profile) and at random within one, and every 1/p-th is labelled cancer from a random start,
    so every stratum gets the overall share p labelled cancer to within one breast.
    """
    first = first_image_of_breast(split)
    breasts = sorted(first)
    if not balanced:
        label = np.random.default_rng(seed).permutation([split.y[first[b]] for b in breasts])
    else:
        rng = np.random.default_rng([seed, 1])
        p = float(np.mean([split.y[first[b]] for b in breasts]))
        key = {b: (bool(sides[first[b]]), split.lesion[first[b]], split.profile[first[b]]) for b in breasts}
        ordered = sorted(breasts, key=lambda b: (key[b], rng.random()))
        start = rng.random()
        cum = np.floor(start + p * np.arange(len(ordered) + 1))
        order_label = (cum[1:] > cum[:-1]).astype(np.float32)
        position = {b: i for i, b in enumerate(ordered)}
        label = [order_label[position[b]] for b in breasts]
    relabelled = dict(zip(breasts, label))
    return np.array([relabelled[b] for b in split.breast], np.float32)


def label_association(split: Split, y: np.ndarray, keep: np.ndarray) -> dict:
    """Share of the kept breasts labelled cancer, per true lesion type and per vendor profile.

    For the control this measures how far its labels happen to follow the truth: in a clean control
    every row shows the same share.
    """
    first = first_image_of_breast(split, keep)

    def shares(group_of) -> dict:
        groups = defaultdict(list)
        for b, i in first.items():
            groups[group_of(i)].append(y[i])
        return {g: {"breasts": len(v), "labelled_cancer_share": round(float(np.mean(v)), 4)}
                for g, v in sorted(groups.items())}

    visible = [y[i] for i in first.values() if split.lesion[i] not in ("none", "occult")]
    normal = [y[i] for i in first.values() if split.lesion[i] == "none"]
    return {"breasts": len(first),
            "labelled_cancer_share": round(float(np.mean([y[i] for i in first.values()])), 4),
            "visible_minus_normal": round(float(np.mean(visible) - np.mean(normal)), 4),
            "per_lesion_type": shares(lambda i: split.lesion[i]),
            "per_vendor_profile": shares(lambda i: split.profile[i])}


# --- Model ----------------------------------------------------------------------------------------

def build_cnn(height: int, width: int, seed: int, steps: int, warmup_steps: int, peak_lr: float,
              head: str = "max"):
    import keras
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((height, width, 1))
    x = inputs
    for i, filters in enumerate((STEM_FILTERS, 32, 48, 64, 96)):
        # The first layer reads the 2x-pooled image with a stride of 2, so the rest runs at 256x208.
        x = (layers.Conv2D(filters, STEM_KERNEL, strides=2, padding="same", use_bias=False)(x) if i == 0
             else layers.Conv2D(filters, 3, padding="same", use_bias=False)(x))
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2)(x)
    # Lesions are small and local: the strongest response anywhere decides. ("avg" is for the
    # control's experiment in MODEL_CARD.md: how the head shapes what noise labels teach.)
    x = layers.GlobalMaxPooling2D()(x) if head == "max" else layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    schedule = keras.optimizers.schedules.CosineDecay(
        peak_lr / 10, decay_steps=max(steps - warmup_steps, 1), alpha=0.02,
        warmup_target=peak_lr, warmup_steps=warmup_steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss="binary_crossentropy")
    return model


def augmented_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, augment: bool):
    """Seeded, class-balanced batches; vertical flips and grey-level jitter when `augment`.

    No horizontal flip: preprocessing puts the chest wall on the left of every image.
    """
    import keras

    pos = float(y.mean())
    weight = np.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos)).astype(np.float32)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = np.random.default_rng([seed, 0]).permutation(len(y))

        def __len__(self):
            return math.ceil(len(y) / batch_size)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(y))

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            xb = x[idx]
            if augment:
                rng = np.random.default_rng([seed, self.epoch, i, 1])
                flip = rng.random(len(idx)) < 0.5
                xb = np.where(flip[:, None, None, None], xb[:, ::-1], xb)
                # Vendors differ in window and contrast: a gamma and a gain around the identity.
                gamma = np.exp(rng.uniform(-0.2, 0.2, (len(idx), 1, 1, 1))).astype(np.float32)
                gain = rng.uniform(0.9, 1.1, (len(idx), 1, 1, 1)).astype(np.float32)
                xb = np.clip(gain * np.power(xb, gamma), 0.0, 1.0)
            return xb.astype(np.float32), y[idx], weight[idx]

    return Batches()


def train(split: Split, y: np.ndarray, val: Split, val_y: np.ndarray, args,
          trace: Optional[Split] = None) -> tuple[object, list[dict]]:
    """Fit with early stopping on the validation breasts' AUC; returns the best epoch's model.

    `trace`: a set whose breast AUC (true labels) is recorded each epoch, to see when a control
    drifts; it is only recorded, never used to choose an epoch.
    """
    import keras

    batches = augmented_batches(split.x, y, args.batch_size, args.seed, augment=True)
    steps = args.max_epochs * len(batches)
    model = build_cnn(split.x.shape[1], split.x.shape[2], args.seed, steps, warmup_steps=2 * len(batches),
                      peak_lr=args.learning_rate, head=args.head)
    history: list[dict] = []

    class BestOnValidation(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.best_weights, self.started = -1.0, -1, None, time.time()

        def on_epoch_end(self, epoch, logs=None):
            scores = self.model.predict(val.x, batch_size=64, verbose=0).reshape(-1)
            val_auc = breast_auc(scores, val, val_y)
            history.append({"epoch": epoch + 1, "loss": round(float(logs["loss"]), 4),
                            "val_auc_breast": round(val_auc, 4),
                            "seconds": round(time.time() - self.started)})
            if trace is not None:
                traced = evaluate(self.model.predict(trace.x, batch_size=64, verbose=0).reshape(-1), trace,
                                  intervals=False)
                history[-1]["traced"] = {"auc_breast": round(traced["auc_breast"], 4), **{
                    f"auc_{lesion}": round(v["auc_breast_vs_all_normals"], 4)
                    for lesion, v in traced["per_lesion_type"].items()}}
                print(f"  traced: {history[-1]['traced']}", flush=True)
            print(f"epoch {epoch + 1}: loss {logs['loss']:.4f}, validation breast AUC {val_auc:.4f}, "
                  f"{time.time() - self.started:.0f} s", flush=True)
            if val_auc > self.best:
                self.best, self.best_epoch, self.best_weights = val_auc, epoch, self.model.get_weights()
            elif epoch - self.best_epoch >= args.patience:
                self.model.stop_training = True

    best = BestOnValidation()
    model.fit(batches, epochs=args.max_epochs, verbose=0, callbacks=[best])
    model.set_weights(best.best_weights)
    return model, history


# --- Evaluation -------------------------------------------------------------------------------------

def auc(labels, scores) -> Optional[float]:
    from sklearn.metrics import roc_auc_score
    labels = np.asarray(labels)
    if len(labels) == 0 or labels.min() == labels.max():
        return None
    return float(roc_auc_score(labels, scores))


def by_breast(scores: np.ndarray, split: Split, y: Optional[np.ndarray] = None):
    """Breast score = max over the breast's images (the pipeline's default aggregation)."""
    y = split.y if y is None else y
    score, first = defaultdict(lambda: -1.0), first_image_of_breast(split)
    for s, b in zip(scores, split.breast):
        score[b] = max(score[b], float(s))
    breasts = sorted(first)
    return (breasts, np.array([score[b] for b in breasts]), np.array([y[first[b]] for b in breasts]),
            [split.lesion[first[b]] for b in breasts], [split.profile[first[b]] for b in breasts],
            [split.exam[first[b]] for b in breasts])


def breast_auc(scores, split: Split, y: Optional[np.ndarray] = None) -> float:
    _, b_score, b_label, *_ = by_breast(scores, split, y)
    return auc(b_label, b_score) or 0.5


def exam_scores(scores: np.ndarray, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Exam score = max over its images; an exam is a cancer exam when either breast has cancer."""
    score, cancer = defaultdict(lambda: -1.0), defaultdict(bool)
    for s, e, y in zip(scores, split.exam, split.y):
        score[e] = max(score[e], float(s))
        cancer[e] |= bool(y)
    exams = sorted(score)
    return np.array([score[e] for e in exams]), np.array([cancer[e] for e in exams])


def bootstrap_ci(labels: np.ndarray, scores: np.ndarray, seed: int = 0, rounds: int = 1000):
    """95% percentile interval of the AUC over breasts resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        idx = rng.integers(0, len(labels), len(labels))
        value = auc(labels[idx], scores[idx])
        if value is not None:
            values.append(value)
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def evaluate(scores: np.ndarray, split: Split, intervals: bool = True) -> dict:
    """AUC per image and per breast: overall (every cancer), excluding occult cancers, per lesion type
    (its cancers against every normal breast) and per vendor profile; `intervals`: with bootstrap
    95% intervals (None without)."""
    ci = bootstrap_ci if intervals else (lambda labels, scores: None)
    _, b_score, b_label, b_lesion, b_profile, _ = by_breast(scores, split)
    b_lesion = np.array(b_lesion)
    b_profile = np.array(b_profile)
    normal = b_label == 0
    visible = b_lesion != "occult"
    image_visible = np.array([lt != "occult" for lt in split.lesion])
    result = {
        "images": len(scores), "breasts": len(b_label), "cancer_breasts": int(b_label.sum()),
        "occult_cancer_breasts": int((~visible).sum()),
        "auc_image": auc(split.y, scores), "auc_breast": auc(b_label, b_score),
        "auc_breast_95ci": ci(b_label, b_score),
        "excluding_occult": {
            "note": "occult cancers carry no visible lesion by design; every normal breast is kept",
            "auc_image": auc(split.y[image_visible], scores[image_visible]),
            "auc_breast": auc(b_label[visible], b_score[visible]),
            "auc_breast_95ci": ci(b_label[visible], b_score[visible])},
        "per_lesion_type": {}, "per_profile": {}}
    for lesion in sorted(set(b_lesion) - {"none"}):
        pick = normal | (b_lesion == lesion)
        result["per_lesion_type"][lesion] = {"cancer_breasts": int((b_lesion == lesion).sum()),
                                             "auc_breast_vs_all_normals": auc(b_label[pick], b_score[pick])}
    for prof in sorted(set(b_profile)):
        pick = b_profile == prof
        result["per_profile"][prof] = {
            "breasts": int(pick.sum()), "cancer_breasts": int(b_label[pick].sum()),
            "occult_cancer_breasts": int((pick & ~visible).sum()),
            "auc_breast": auc(b_label[pick], b_score[pick]),
            "auc_breast_excluding_occult": auc(b_label[pick & visible], b_score[pick & visible])}
    return result


def operating_point_figures(scores: np.ndarray, split: Split, point) -> dict:
    from mammobeam.analytics.calibrate import expected_figures
    e_score, e_cancer = exam_scores(scores, split)
    return expected_figures(e_score, np.ones(len(e_score), bool), e_cancer, [point] * len(e_score))


# --- Export -----------------------------------------------------------------------------------------

def default_operating_point(scores: np.ndarray, split: Split):
    from mammobeam.analytics.calibrate import choose_point
    e_score, e_cancer = exam_scores(scores, split)
    e_score = e_score[~e_cancer]
    return choose_point(e_score, np.ones(len(e_score), bool), None, target_recall=RECALL_RATE,
                        target_sensitivity=None, triage_share=TRIAGE_SHARE)


def model_scope(description: str):
    from mammobeam.schemas.thresholds import ModelScope
    from mammobeam.synthetic.exams import AGE_RANGE
    from mammobeam.synthetic.profiles import PROFILES

    spacings = [p.geometry("small").pixel_spacing_mm for p in PROFILES]
    return ModelScope(
        manufacturers=tuple(p.manufacturer for p in PROFILES), views=("CC", "MLO"), implants=False,
        age_range=AGE_RANGE,
        pixel_spacing_mm=(math.floor(min(spacings) * 100) / 100, math.ceil(max(spacings) * 100) / 100),
        statement=("DEMONSTRATION MODEL, NOT FOR CLINICAL USE. Trained and tested only on synthetic "
                   "exams from mammobeam.synthetic at size 'small' (" + description + "); it has never "
                   "seen a real mammogram. See serving/MODEL_CARD.md."))


def export(model, spec_version: str, root: Path, scope, thresholds):
    import tensorflow as tf

    from mammobeam.serving.export import export_model
    from mammobeam.transforms.pixels import PreprocessingSpec

    class Demo(tf.Module):
        def __init__(self, cnn):
            super().__init__()
            self.cnn = cnn

        def score(self, images):
            x = tf.cast(images, tf.float32) / 65535.0
            x = tf.nn.avg_pool2d(x, POOL, POOL, "VALID")
            return tf.reshape(self.cnn(x, training=False), [-1])

    spec = PreprocessingSpec()
    if spec.version != spec_version:
        raise RuntimeError(f"model inputs are {spec_version}, the default preprocessing is {spec.version}")
    target = root / MODEL_NAME
    if target.exists():
        shutil.rmtree(target)
    return export_model(Demo(model), root, MODEL_NAME, MODEL_VERSION, spec.height, spec.width,
                        preprocessing_version=spec_version, scope=scope, thresholds=thresholds)


def score_with_export(ref, split: Split, batch: int = 16) -> np.ndarray:
    """Score the full-size preprocessed images through the exported model, as the pipeline would."""
    from mammobeam.serving.inprocess import InProcessModelHandler
    from mammobeam.transforms import model_inputs

    handler = InProcessModelHandler(ref, max_batch_size=batch)
    loaded = handler.load_model()
    score_of, pending = {}, []

    def flush():
        results = handler.run_inference([p for _, p in pending], loaded)
        score_of.update({sop: r.inference for (sop, _), r in zip(pending, results)})
        pending.clear()

    for row in model_inputs.read_tfrecords(split.inputs):
        pending.append((row["sop_instance_uid"], model_inputs.pixels_of(row)))
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return np.array([score_of[sop] for sop in split.sop])


def controls_markdown(folder: Path) -> str:
    """The control runs in `folder` (metrics-shuffled-*.json) as the model card's table."""
    rows = ["| Labels | Label seed | Head | Label share gap, visible lesion - normal (train / val) "
            "| Epoch kept / run | Test breast AUC (95% CI) | Masses | Traced per epoch: min-max (mean) |",
            "|---|---|---|---|---|---|---|---|"]
    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("metrics-shuffled-*.json"))]
    runs.sort(key=lambda m: (m["training"].get("head", "max") != "max", m["shuffled_labels"]["mode"],
                             m["shuffled_labels"]["label_seed"]))
    for m in runs:
        labels, training, test = m["shuffled_labels"], m["training"], m["test"]
        traced = [h["traced"]["auc_breast"] for h in training["history"] if "traced" in h]
        low, high = test["auc_breast_95ci"]
        rows.append(" | ".join([
            f"| {labels['mode']}", str(labels["label_seed"]), training.get("head", "max"),
            f"{labels['training']['visible_minus_normal']:+.3f} / {labels['validation']['visible_minus_normal']:+.3f}",
            f"{training['best_epoch']} / {training['epochs_run']}",
            f"**{test['auc_breast']:.3f}** ({low:.3f}-{high:.3f})",
            f"{test['per_lesion_type']['mass']['auc_breast_vs_all_normals']:.2f}",
            (f"{min(traced):.2f}-{max(traced):.2f} ({np.mean(traced):.2f})" if traced else "not traced") + " |"]))
    return "\n".join(rows) + "\n"


# --- Main -------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-exams", type=int, default=900)
    parser.add_argument("--test-exams", type=int, default=300)
    parser.add_argument("--train-seed", type=int, default=1001)
    parser.add_argument("--test-seed", type=int, default=2002)
    parser.add_argument("--validation-share", type=float, default=0.2, help="of the training exams")
    parser.add_argument("--max-epochs", type=int, default=36)
    parser.add_argument("--patience", type=int, default=12, help="epochs without a better validation AUC")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak, after warm-up")
    parser.add_argument("--seed", type=int, default=7, help="split, initialisation and batches")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    parser.add_argument("--shuffle-labels", nargs="?", const="balanced", choices=("balanced", "plain"),
                        help="the control: train on permuted labels, balanced across strata (the default) "
                             "or a plain permutation (see shuffle_breast_labels)")
    parser.add_argument("--label-seed", type=int, help="the control's permutation (default: --seed)")
    parser.add_argument("--head", choices=("max", "avg"), default="max",
                        help="global pooling before the score (max: the demo model)")
    parser.add_argument("--trace-test", action="store_true",
                        help="record the test set's breast AUC after every epoch (never used to choose)")
    parser.add_argument("--no-export", action="store_true", help="evaluate in memory, write no model")
    parser.add_argument("--output", help="where demo/1/ and metrics.json go (default: demo_model/; a "
                                         "control's metrics: demo_model/controls/)")
    parser.add_argument("--report-controls", metavar="FOLDER",
                        help="print the control runs in FOLDER as MODEL_CARD.md's table, and stop")
    parser.add_argument("--work", help="cache of generated and preprocessed sets (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.report_controls:
        print(controls_markdown(Path(args.report_controls)), end="")
        return 0
    args.output = args.output or str(DEMO_ROOT / "controls" if args.shuffle_labels else DEMO_ROOT)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()

    work = Path(args.work or tempfile.mkdtemp(prefix="demo-train-"))
    t0 = time.time()
    every = read_split(prepare_split(work, "train", args.train_exams, args.train_seed))
    test = read_split(prepare_split(work, "test", args.test_exams, args.test_seed))
    data_s = time.time() - t0
    train_mask, val_mask = split_exams(every, args.validation_share, args.seed)
    label_seed = args.seed if args.label_seed is None else args.label_seed
    y_all = (shuffle_breast_labels(every, label_seed, val_mask, balanced=args.shuffle_labels == "balanced")
             if args.shuffle_labels else every.y)
    train_mask &= np.array([lt not in TRAIN_WITHOUT for lt in every.lesion])
    train_split, val = every.take(train_mask), every.take(val_mask)
    y, val_y = y_all[train_mask], y_all[val_mask]
    print(f"data: {len(y)} training images ({int(y.sum())} labelled cancer), {len(val_y)} validation, "
          f"{len(test.y)} test; {data_s:.0f} s", flush=True)

    t1 = time.time()
    model, history = train(train_split, y, val, val_y, args, trace=test if args.trace_test else None)
    train_s = time.time() - t1
    val_scores = model.predict(val.x, batch_size=64, verbose=0).reshape(-1)
    point = default_operating_point(val_scores, val)
    description = (f"training seed {args.train_seed}: {args.train_exams} exams, {len(y)} training and "
                   f"{len(val_y)} validation images; test seed {args.test_seed}: {args.test_exams} exams")
    if args.no_export:
        scores = model.predict(test.x, batch_size=64, verbose=0).reshape(-1)
        scored_by = f"the trained Keras model in memory, on the {POOL}x{POOL}-pooled test images"
    else:
        from mammobeam.schemas.thresholds import Thresholds
        thresholds = Thresholds(
            version=f"{MODEL_NAME}-{MODEL_VERSION}-default", model_name=MODEL_NAME,
            model_version=str(MODEL_VERSION), preprocessing_version=every.spec_version, default=point,
            calibration={"data": f"cancer-free validation exams of training seed {args.train_seed}",
                         "rules": f"recall rate <= {RECALL_RATE}, normal triage <= {TRIAGE_SHARE}, "
                                  "categories at score deciles (analytics/calibrate.py)",
                         "expected_on_validation": operating_point_figures(val_scores, val, point)})
        ref = export(model, every.spec_version, Path(args.output), model_scope(description), thresholds)
        scores = score_with_export(ref, test)
        scored_by = "the exported SavedModel through InProcessModelHandler, on full-size 1024x832 inputs"
    best_epoch = max(history, key=lambda h: h["val_auc_breast"])["epoch"]
    first_150 = np.array([int(e[4:]) <= 150 for e in test.exam])  # accession = seed(4) + index+1 (6)
    metrics = {
        "model": f"{MODEL_NAME}-{MODEL_VERSION}",
        "shuffled_labels": (None if not args.shuffle_labels else
                            {"mode": args.shuffle_labels, "label_seed": label_seed,
                             "training": label_association(every, y_all, train_mask),
                             "validation": label_association(every, y_all, val_mask)}),
        "preprocessing_version": every.spec_version, "data": description, "scored_by": scored_by,
        "training": {"head": args.head, "epochs_run": len(history), "best_epoch": best_epoch,
                     "train_seconds": round(train_s), "data_seconds": round(data_s), "threads": args.threads,
                     "history": history},
        "default_operating_point": point.as_dict(),
        "test": evaluate(scores, test),
        "test_operating_point": operating_point_figures(scores, test, point),
        "test_first_150_exams": {k: v for k, v in evaluate(scores[first_150], test.take(first_150)).items()
                                 if k in ("breasts", "cancer_breasts", "occult_cancer_breasts",
                                          "auc_breast", "excluding_occult")},
    }
    name = (f"metrics-shuffled-{args.shuffle_labels}-{label_seed}{'-avg' if args.head == 'avg' else ''}.json"
            if args.shuffle_labels else "metrics.json")
    out = Path(args.output) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if k != "training"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
