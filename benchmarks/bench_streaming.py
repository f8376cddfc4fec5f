"""Streaming latency benchmark (issue 6): from an exam's last image being uploaded to its exam row
being on disk, p50 and p95, against the configured quiet period.

Against the Pub/Sub emulator and fake-gcs-server (tests/emulators.py), with `mammobeam stream` on
the BundleBasedDirectRunner. One warm-up exam first (start-up and model load are not latency), then
`--exams` exams uploaded `--gap` seconds apart, each as its four images in a row. The row's time is
the modification time of the Parquet file that holds it (written by rename, so complete).

The DirectRunner evaluates with one worker thread; its Pub/Sub read blocks that thread for up to
30 s when no message arrives, and no timer fires meanwhile (FACTS.md). The exam row needs two timers
in a row (the quiet period in the assembly, then the window flush of the sink), so the floor is
quiet + up to one window, and what is above it is waiting for pulls to end. Image rows need only
the flush timer; their latency is measured too, to show one pull wait on its own.

    .venv/bin/python benchmarks/bench_streaming.py [--exams 8] [--quiet 5] [--out benchmarks/results/streaming.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import duckdb  # noqa: E402

from emulators import environment, start_fake_gcs, start_pubsub_emulator  # noqa: E402

BUCKET = "bench-intake"
MAMMOBEAM = str(Path(sys.executable).parent / "mammobeam")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def exam_rows(output: Path) -> dict[str, float]:
    """exam_id -> mtime of the file holding its first row."""
    if not list(output.glob("exams/*/*.parquet")):
        return {}
    con = duckdb.connect()
    found = con.execute(f"SELECT exam_id, filename FROM read_parquet('{output}/exams/*/*.parquet', "
                        "hive_partitioning = true, filename = true) WHERE revision = 0").fetchall()
    return {exam_id: os.path.getmtime(name) for exam_id, name in found}


def image_row(output: Path, uri: str) -> tuple[str, float] | None:
    """(exam_id, mtime of the file holding the image's row) once it is on disk."""
    if not list(output.glob("images/*/*.parquet")):
        return None
    found = duckdb.connect().execute(
        f"SELECT exam_id, filename FROM read_parquet('{output}/images/*/*.parquet', "
        "hive_partitioning = true, filename = true) WHERE source_uri = ?", [uri]).fetchall()
    return (found[0][0], os.path.getmtime(found[0][1])) if found else None


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"no {what} after {seconds:.0f} s")


def run_config(work: Path, synth, model, args) -> dict:
    pubsub = start_pubsub_emulator(work)
    try:
        gcs = start_fake_gcs(work, pubsub=pubsub)
        try:
            with environment(**{**pubsub.env(), **gcs.env()}):
                gcs.create_bucket(BUCKET)
                subscription = pubsub.create_subscription("gcs-notifications", "bench")
                output = work / "tables"
                log_path = work / "stream.log"
                command = [MAMMOBEAM, "stream", "--subscription", subscription, "--output", str(output),
                           "--model", model.model_root, "--exam-quiet-seconds", str(args.quiet),
                           "--exam-max-wait-seconds", str(args.max_wait), "--window-seconds",
                           str(args.window),
                           "--runner", "BundleBasedDirectRunner"]
                env = {**os.environ, "NO_GCE_CHECK": "True", "TF_CPP_MIN_LOG_LEVEL": "2"}
                with open(log_path, "wb") as log:
                    stream = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
                try:
                    return measure(synth, gcs, output, args)
                finally:
                    stream.terminate()
                    try:
                        stream.wait(timeout=40)
                    except subprocess.TimeoutExpired:
                        stream.kill()
                        stream.wait()
        finally:
            gcs.stop()
    finally:
        pubsub.stop()


def upload_exam(gcs, synth, accession) -> tuple[str, float]:
    root = Path(synth.output_dir)
    last_uri, uploaded_at = "", 0.0
    for _, path in sorted(synth.exam_files[accession].items()):
        name = Path(path).relative_to(root).as_posix()
        generation = gcs.upload(BUCKET, name, path)
        uploaded_at = time.time()
        last_uri = f"gs://{BUCKET}/{name}#{generation}"
    return last_uri, uploaded_at


def measure(synth, gcs, output: Path, args) -> dict:
    accessions = list(synth.exam_files)
    warm_uri, _ = upload_exam(gcs, synth, accessions[0])
    warm_exam, _ = wait_for(lambda: image_row(output, warm_uri), 240, "warm-up image")
    wait_for(lambda: warm_exam in exam_rows(output), 240, "warm-up exam row")
    uploads = []
    for accession in accessions[1:]:
        uploads.append(upload_exam(gcs, synth, accession))
        time.sleep(args.gap)
    budget = args.quiet + args.max_wait + 30 + args.window + 60
    images = [wait_for(lambda u=uri: image_row(output, u), budget, "image row") for uri, _ in uploads]
    exam_ids = [exam_id for exam_id, _ in images]
    wait_for(lambda: all(e in exam_rows(output) for e in exam_ids), budget, "exam rows")
    written = exam_rows(output)
    latencies = [written[e] - at for e, (_, at) in zip(exam_ids, uploads)]
    image_latencies = [mtime - at for (_, mtime), (_, at) in zip(images, uploads)]
    return {"latencies": latencies, "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
            "image_p50": percentile(image_latencies, 50), "image_p95": percentile(image_latencies, 95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exams", type=int, default=8, help="measured exams (plus one warm-up)")
    parser.add_argument("--quiet", type=float, default=5.0)
    parser.add_argument("--max-wait", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--gap", type=float, default=6.0, help="seconds between exams")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "streaming.md"))
    args = parser.parse_args()
    os.environ.setdefault("NO_GCE_CHECK", "True")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mammobeam.serving.export import build_reference_model
    from mammobeam.synthetic import generate
    from mammobeam.transforms.preprocess_step import spec_from_size

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synth = generate(str(work / "synth"), exams=args.exams + 1, seed=5, size="small")
        spec = spec_from_size("128x104")
        model = build_reference_model(work / "models", height=spec.height, width=spec.width,
                                      preprocessing_version=spec.version)
        started = time.monotonic()
        r = run_config(work, synth, model, args)
        print(f"exam rows: p50 {r['p50']:.1f} s, p95 {r['p95']:.1f} s; image rows: p50 {r['image_p50']:.1f} s "
              f"({time.monotonic() - started:.0f} s)", flush=True)

    lines = [
        "# Streaming latency benchmark (issue 6)", "",
        f"Machine: {platform.machine()}, nproc {os.cpu_count()}, Python {platform.python_version()}; "
        "Pub/Sub emulator (Cloud CLI) + fake-gcs-server on loopback; `mammobeam stream` on the "
        "BundleBasedDirectRunner with the small reference SavedModel (128x104 input), small synthetic exams.",
        f"Command: `.venv/bin/python benchmarks/bench_streaming.py --exams {args.exams} --quiet {args.quiet:g} "
        f"--max-wait {args.max_wait:g} --window {args.window:g} --gap {args.gap:g}`.",
        "", "Latency: last image of an exam uploaded (upload call returned) -> the Parquet file holding its "
        "exam row renamed into exams/ (its mtime). One warm-up exam excluded.", "",
        "| rows | exams | quiet period s | window s | p50 s | p95 s | max s |",
        "|---|---|---|---|---|---|---|",
        f"| exam (upload of last image -> exam row) | {len(r['latencies'])} | {args.quiet:g} | {args.window:g} | "
        f"{r['p50']:.1f} | {r['p95']:.1f} | {max(r['latencies']):.1f} |",
        f"| image (upload -> image row) | {len(r['latencies'])} | - | {args.window:g} | "
        f"{r['image_p50']:.1f} | {r['image_p95']:.1f} | - |",
        "", "Per exam, in upload order (s): " + ", ".join(f"{x:.1f}" for x in r["latencies"]) + ".",
        "", f"Exam-row latency above the floor (quiet period + window = {args.quiet + args.window:g} s): "
        f"p50 {r['p50'] - args.quiet - args.window:.1f} s, p95 {r['p95'] - args.quiet - args.window:.1f} s. "
        "That is waiting for the DirectRunner's blocking Pub/Sub pull to return (30 s when no message "
        "arrives) before the quiet-period timer, and again before the window-flush timer, can fire: "
        "the emulator's pull interval, not the pipeline's work (reading, scoring and assembly of a "
        "small exam take well under a second here). On Dataflow, timers do not wait for reads."]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
