"""Serving throughput, side by side in one run: in process versus through serve-local (gRPC Predict).

    .venv/bin/python benchmarks/bench_serving.py [--model DIR] [--images 64] [--score-exams 12]

1. images/s at batch sizes 1, 8, 32: InProcessModelHandler.run_inference against
   TFServingModelHandler.request to a serve-local subprocess on loopback (uint16 1024x832 tensors).
2. images per RPC in a real `mammobeam score --serving-address ...` run over synthetic exams
   (serve-local counts Predict calls and images; goal >= 16 under load).
Model: --model (a contract model folder, e.g. serving/demo_model/demo), else the reference model
(serving/export.py) at the full preprocessing size. `--only-inprocess` measures just (1) in process,
for a GPU machine. Prints a Markdown table; `--output FILE` writes it too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH_SIZES = (1, 8, 32)


def machine() -> str:
    import psutil
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    gpu = ""
    if gpus:
        try:
            gpu = ", GPU " + tf.config.experimental.get_device_details(gpus[0]).get("device_name", "?")
        except Exception:
            gpu = ", GPU"
    return (f"{platform.machine()}, {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB{gpu}, Python {platform.python_version()}, "
            f"TF {tf.__version__}")


def timed(fn, batches, repeats: int = 1) -> float:
    fn(batches[0])  # warm up (tracing, first allocation)
    n = 0
    started = time.perf_counter()
    for _ in range(repeats):
        for batch in batches:
            fn(batch)
            n += len(batch)
    return n / (time.perf_counter() - started)


def make_images(n: int, h: int, w: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 4096, (h, w), dtype=np.uint16) for _ in range(n)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="contract model folder <name>/ (default: reference model)")
    parser.add_argument("--images", type=int, default=64, help="images per batch-size measurement")
    parser.add_argument("--score-exams", type=int, default=12, help="exams for the `mammobeam score` run (0: skip)")
    parser.add_argument("--only-inprocess", action="store_true")
    parser.add_argument("--output", help="also write the Markdown here")
    args = parser.parse_args(argv)

    from mammobeam.serving.contract import resolve_model
    from mammobeam.serving.export import build_reference_model
    from mammobeam.serving.inprocess import InProcessModelHandler, load_and_check
    from mammobeam.serving.serve_local import LocalServer
    from mammobeam.serving.tfserving import TFServingModelHandler
    from mammobeam.transforms.pixels import PreprocessingSpec

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    spec = PreprocessingSpec()
    if args.model:
        ref = resolve_model(args.model)
    else:
        ref = build_reference_model(work / "models", height=spec.height, width=spec.width,
                                    preprocessing_version=spec.version)
    _, _, info = load_and_check(ref)
    h, w = info.height, info.width
    images = make_images(args.images, h, w)
    lines = [f"Machine: {machine()}", f"Model: {ref.name} v{ref.version} ({h}x{w} uint16 input)", ""]
    rows = []

    inproc = InProcessModelHandler(ref, max_batch_size=32)
    loaded = inproc.load_model()
    server = None
    remote = client = None
    if not args.only_inprocess:
        server = LocalServer(["--model", ref.model_root], log_path=str(work / "serve.log")).start()
        remote = TFServingModelHandler(server.address, ref.name, version=int(ref.version),
                                       image_height=h, image_width=w)
        remote.resolve()
        client = remote.create_client()
    try:
        for size in BATCH_SIZES:
            batches = [images[i:i + size] for i in range(0, len(images), size)]
            if size == 1:
                batches = batches[:16]
            local_rate = timed(lambda b: inproc.run_inference(b, loaded), batches)
            row = [size, local_rate]
            if remote is not None:
                row.append(timed(lambda b: remote.request(b, client), batches))
            rows.append(row)
            print(f"batch {size}: " + ", ".join(f"{x:.1f}" for x in row[1:]) + " images/s", flush=True)
    finally:
        if server is not None:
            client.close()
            server.stop()

    if remote is None:
        lines += ["| batch | in process img/s |", "|---|---|"]
        lines += [f"| {b} | {r:.1f} |" for b, r in rows]
    else:
        lines += ["| batch | in process img/s | serve-local img/s | serve-local / in process |",
                  "|---|---|---|---|"]
        lines += [f"| {b} | {a:.1f} | {r:.1f} | {r / a:.2f} |" for b, a, r in rows]

    if args.score_exams and not args.only_inprocess:
        lines += [""] + score_run(args.score_exams, ref, work, spec)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


def score_run(n_exams: int, ref, work: Path, spec) -> list[str]:
    """A real `mammobeam score` through serve-local; images per Predict from serve-local's counts."""
    from mammobeam.serving.serve_local import LocalServer
    from mammobeam.synthetic.generator import generate

    exams_dir = work / "exams"
    generate(str(exams_dir), n_exams, seed=11)
    stats = work / "serve-stats.json"
    server = LocalServer(["--model", ref.model_root, "--stats-file", str(stats)],
                         log_path=str(work / "serve-score.log")).start()
    mammobeam = str(Path(sys.executable).parent / "mammobeam")
    cmd = [mammobeam, "score", "--input", str(exams_dir / "**" / "*.dcm"), "--output", str(work / "out"),
           "--serving-address", server.address, "--serving-model", ref.name,
           "--image-size", f"{spec.height}x{spec.width}", "--batch-size", "32", "--quiet",
           "--thresholds", str(Path(ref.model_root) / "thresholds.json"),
           "--scope", str(Path(ref.model_root) / "scope.json")]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    finally:
        server.stop()
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        return [f"`mammobeam score` through serve-local failed ({done.returncode}): "
                f"{done.stderr.strip().splitlines()[-1:]}"]
    counts = json.loads(stats.read_text())
    per_rpc = counts["images"] / max(counts["predict_calls"], 1)
    return [f"`mammobeam score` through serve-local, {n_exams} synthetic exams: {counts['images']} images "
            f"in {counts['predict_calls']} Predict calls = **{per_rpc:.1f} images per RPC** "
            f"(batch sizes {counts['batch_sizes']}), {elapsed:.0f} s end to end."]


if __name__ == "__main__":
    sys.exit(main())
