"""`mammobeam synth --exams N --output DIR --seed S [--size small] [--edge-cases]`."""

from __future__ import annotations

import argparse
import logging
import time

from mammobeam.synthetic.generator import generate
from mammobeam.synthetic.profiles import PROFILES_BY_NAME, SIZES

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exams", type=int, default=10, help="4-view screening exams to write (default 10)")
    parser.add_argument("--output", required=True, help="folder to write DICOM files, outcomes.csv, manifest.json")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: native matrices (4096x3328 ...); medium: 1024 rows; small: 512 rows, "
                             "for fast tests (default full)")
    parser.add_argument("--edge-cases", action="store_true",
                        help="add CT, For Processing, tomosynthesis, C-View, non-standard views, digitised film, "
                             "lossy, no-laterality, truncated, non-DICOM, duplicate and missing-view cases")
    parser.add_argument("--cancer-fraction", type=float, default=0.3,
                        help="share of breasts with cancer (default 0.3)")
    parser.add_argument("--profiles", default=None,
                        help=f"comma-separated vendor profiles (default all: {','.join(PROFILES_BY_NAME)})")


def run(args: argparse.Namespace) -> int:
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()] if args.profiles else None
    start = time.perf_counter()
    summary = generate(args.output, exams=args.exams, seed=args.seed, size=args.size,
                       edge_cases=args.edge_cases, cancer_fraction=args.cancer_fraction, profiles=profiles)
    seconds = time.perf_counter() - start
    print(f"wrote {len(summary.files)} files for {summary.exams} exams "
          f"({len(summary.edge_case_files)} edge cases, {len(summary.expected_rejections)} to be rejected) "
          f"to {args.output} in {seconds:.1f} s")
    print(f"ground truth: {summary.outcomes_csv}; summary: {summary.manifest}")
    return 0
