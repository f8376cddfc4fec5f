"""Batch scoring speed: `mammobeam score` on 2 workers against the researcher's loop, side by side.

One run, the same full-size JPEG 2000 lossless images, the same preprocessing version, at two
archive sizes. From the two sizes: fixed start-up cost and steady-state per-image throughput of each
configuration; ratios against the researcher's loop (goals: steady state >= 1.8x, end to end >= 1.5x);
exams/hour; peak RSS per process at both sizes (goal < 3 GB and flat). The CPU used by other jobs
during each measurement is recorded; a measurement where others used more than 0.3 of a core is
marked disturbed.

    python -m benchmarks.bench_batch [--small-exams 10 --large-exams 60]

Writes benchmarks/results/batch.md. The image set is cached in .bench/ (same seed, same bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DISTURBED_CORES = 0.3


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def image_set(exams: int) -> tuple[Path, dict[str, dict[str, str]]]:
    from mammobeam.schemas import codes
    from mammobeam.synthetic import generate
    folder = ROOT / ".bench" / f"j2k-full-{exams}"
    manifest = folder / "bench-files.json"
    if manifest.exists():
        return folder, json.loads(manifest.read_text())
    print(f"generating {exams} full-size JPEG 2000 exams into {folder} (cached)...", flush=True)
    summary = generate(str(folder), exams=exams, seed=424242, size="full", edge_cases=False,
                       transfer_syntaxes=[codes.JPEG2000_LOSSLESS])
    manifest.write_text(json.dumps(summary.exam_files))
    return folder, summary.exam_files


def measure(cmd: list[str], env=None) -> dict:
    """Wall time, peak RSS per process of the tree, and the CPU other jobs used meanwhile."""
    start_cpu = psutil.cpu_times()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or os.environ.copy())
    peak: dict[int, int] = {}
    own_cpu: dict[int, float] = {}
    stop = threading.Event()

    def poll():
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        peak[p.pid] = max(peak.get(p.pid, 0), p.memory_info().rss)
                        t = p.cpu_times()
                        own_cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            stop.wait(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    stop.set()
    poller.join()
    wall = time.monotonic() - started
    end_cpu = psutil.cpu_times()
    busy = (end_cpu.user + end_cpu.system + end_cpu.nice) - (start_cpu.user + start_cpu.system + start_cpu.nice)
    others = max(0.0, busy - sum(own_cpu.values())) / wall
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err[-2000:]}")
    return {"wall_s": wall, "peak_rss_gb": max(peak.values(), default=0) / 1e9,
            "others_cores": others, "stdout": out}


def run_config(name: str, files: list[str], folders: list[str], model: str) -> dict:
    if name == "pipeline":
        out = tempfile.mkdtemp(prefix="bench-score-")
        cmd = [str(BIN / "mammobeam"), "score", *[a for f in folders for a in ("--input", f + "/*.dcm")],
               "--output", out, "--model", model, "--quiet", "--batch-size", "16",
               "--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    else:
        cmd = [sys.executable, "-m", "benchmarks.loops", name, model, *files]
    result = measure(cmd)
    result["images"] = len(files)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small-exams", type=int, default=10)
    parser.add_argument("--large-exams", type=int, default=60)
    parser.add_argument("--model", default=None, help="model folder (default: the demo model)")
    args = parser.parse_args()
    os.environ.setdefault("NO_GCE_CHECK", "True")
    from mammobeam.pipelines.batch import default_model_dir
    model = args.model or str(default_model_dir())
    if not Path(model).exists():
        from mammobeam.serving.export import build_reference_model
        from mammobeam.transforms.pixels import PreprocessingSpec
        model = build_reference_model(ROOT / ".bench" / "models", height=1024, width=832,
                                      preprocessing_version=PreprocessingSpec().version).model_root
    folder, exam_files = image_set(args.large_exams)
    accessions = sorted(exam_files)
    sizes = {}
    for label, count in (("small", args.small_exams), ("large", args.large_exams)):
        chosen = accessions[:count]
        files = sorted(p for a in chosen for p in exam_files[a].values())
        sizes[label] = (files, [str(folder / a) for a in chosen])
    configs = ("researcher", "imagecodecs", "pipeline")
    results: dict[str, dict[str, dict]] = {c: {} for c in configs}
    for label, (files, folders) in sizes.items():
        for config in configs:  # interleaved: each size measures the three side by side
            print(f"{label}: {config} on {len(files)} images...", flush=True)
            results[config][label] = run_config(config, files, folders, model)
            r = results[config][label]
            print(f"   {r['wall_s']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB, others {r['others_cores']:.2f} cores",
                  flush=True)
    write_report(results, sizes, model)
    return 0


def write_report(results, sizes, model) -> None:
    n_small, n_large = len(sizes["small"][0]), len(sizes["large"][0])
    rows, derived = [], {}
    for config, by_size in results.items():
        small, large = by_size["small"], by_size["large"]
        per_image = (large["wall_s"] - small["wall_s"]) / (n_large - n_small)
        fixed = small["wall_s"] - n_small * per_image
        derived[config] = {"per_image": per_image, "fixed": fixed, "e2e": large["wall_s"]}
        disturbed = [s for s in ("small", "large") if by_size[s]["others_cores"] > DISTURBED_CORES]
        rows.append(f"| {config} | {small['wall_s']:.1f} | {large['wall_s']:.1f} | {fixed:.1f} | "
                    f"{1 / per_image:.2f} | {small['peak_rss_gb']:.2f} / {large['peak_rss_gb']:.2f} | "
                    f"{small['others_cores']:.2f} / {large['others_cores']:.2f}"
                    f"{' (disturbed: ' + ', '.join(disturbed) + ')' if disturbed else ''} |")
    base = derived["researcher"]
    pipe = derived["pipeline"]
    steady = base["per_image"] / pipe["per_image"]
    e2e = base["e2e"] / pipe["e2e"]
    codecs_steady = base["per_image"] / derived["imagecodecs"]["per_image"]
    exams_per_hour = 3600 / (4 * pipe["per_image"])
    rss_small, rss_large = results["pipeline"]["small"]["peak_rss_gb"], results["pipeline"]["large"]["peak_rss_gb"]
    text = f"""# Batch scoring benchmark

Machine: {os.cpu_count()} cores, {cpu_model()}, {psutil.virtual_memory().total / 2**30:.0f} GiB; Python {platform.python_version()}.
Images: full-size synthetic JPEG 2000 lossless mammograms (mixed vendor profiles, 4096x3328 down to
2294x1914), {n_small} and {n_large} images; model `{Path(model).name}` at its input size, in process.
`pipeline` = `mammobeam score --direct_num_workers=2 --direct_running_mode=multi_threading`
(batch 16); `researcher` = pydicom `pixel_array` + the same preprocessing + one model call per image;
`imagecodecs` = the same loop decoding with imagecodecs on 2 threads. Each size runs the three side by
side. Fixed cost and steady state come from the two sizes (t = fixed + n x per-image).

| config | {n_small} images s | {n_large} images s | fixed s | steady img/s | peak RSS GB (small / large) | other jobs, cores |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

- Steady state, pipeline vs researcher: **{steady:.2f}x** (goal >= 1.8x: {'met' if steady >= 1.8 else 'missed'}).
- End to end on {n_large} images: **{e2e:.2f}x** (goal >= 1.5x: {'met' if e2e >= 1.5 else 'missed'}).
- imagecodecs loop on 2 threads vs researcher, steady state: {codecs_steady:.2f}x.
- Pipeline throughput: {1 / pipe['per_image']:.2f} images/s = **{exams_per_hour:.0f} exams/hour** on this machine.
- Peak RSS of the pipeline process: {rss_small:.2f} GB at {n_small} images, {rss_large:.2f} GB at {n_large}
  (goal < 3 GB and flat: {'met' if rss_large < 3 and rss_large < rss_small * 1.25 + 0.1 else 'missed'}).
- Measurements marked disturbed had other jobs using more than {DISTURBED_CORES} of a core.
"""
    out = ROOT / "benchmarks" / "results" / "batch.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
