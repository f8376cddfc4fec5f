"""`mammobeam demo`: the README's main job on the embedded default.

Synthesises screening exams with the edge cases of a real feed, scores them with the in-process demo
model into Parquet tables, prints the run summary, and writes the programme dashboard. Everything
lands under --output: synthetic/ (DICOM + outcomes.csv), tables/ (exams, images, rejections) and
report.html.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

PASSES_PIPELINE_OPTIONS = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo-output", help="folder for everything the demo writes")
    parser.add_argument("--exams", type=int, default=40, help="synthetic exams (default 40)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--size", default="small", help="synthetic image size profile (default small)")
    parser.add_argument("--cancer-fraction", type=float, default=0.1,
                        help="share of breasts with a cancer (default 0.1; far above a real programme's "
                             "~0.3%%, so a small demo still has cancers to count)")
    parser.add_argument("--workers", type=int, default=2, help="Beam workers (threads) for scoring")


def run(args: argparse.Namespace) -> int:
    from mammobeam.analytics.report import write_report
    from mammobeam.pipelines import batch
    from mammobeam.synthetic import generate

    started = time.monotonic()
    output = Path(args.output)
    synthetic, tables = output / "synthetic", output / "tables"
    for folder in (synthetic, tables):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"[1/3] synthesising {args.exams} exams with edge cases into {synthetic}")
    summary = generate(str(synthetic), exams=args.exams, seed=args.seed, size=args.size, edge_cases=True,
                       cancer_fraction=args.cancer_fraction)
    print(f"      {len(summary.files)} files, outcomes in {summary.outcomes_csv}")

    print("[2/3] scoring with the in-process demo model (Beam, FnApiRunner)")
    parser = argparse.ArgumentParser()
    batch.add_arguments(parser)
    score_args, extra = parser.parse_known_args(
        ["--input", str(synthetic / "**"), "--output", str(tables),
         f"--direct_num_workers={args.workers}", "--direct_running_mode=multi_threading",
         *getattr(args, "pipeline_args", [])])
    score_args.pipeline_args = extra
    try:
        run_summary = batch.score_archive(score_args)
    except batch.StartupError as e:
        print(f"mammobeam demo: {e}")
        return 2
    print("\n".join("      " + line for line in run_summary.lines()))

    print("[3/3] writing the dashboard")
    report = write_report(str(tables), str(output / "report.html"), outcomes=summary.outcomes_csv)
    print(f"\ndone in {time.monotonic() - started:.0f} s")
    print(f"  tables:    {tables}/exams, {tables}/images, {tables}/rejections (Parquet, DuckDB-readable)")
    print(f"  dashboard: {report}")
    return 0
