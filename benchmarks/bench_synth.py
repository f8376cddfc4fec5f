"""Time `mammobeam synth`: 50 small exams (200 files, mixed syntaxes) and full-size images per profile.

Run: .venv/bin/python benchmarks/bench_synth.py [--exams 50] [--full-per-profile 1] [--out FILE]
Writes benchmarks/results/synth.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np

from mammobeam.schemas import codes
from mammobeam.synthetic import dicom_files, exams, generate, profiles

FULL_SIZE_SYNTAXES = (codes.EXPLICIT_VR_LE, codes.JPEG2000_LOSSLESS, codes.JPEG_LS_LOSSLESS,
                      codes.HTJ2K_LOSSLESS, codes.JPEG_LOSSLESS_SV1, codes.RLE_LOSSLESS)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_small(n_exams: int, repeats: int) -> list[float]:
    times = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            generate(out, exams=n_exams, seed=100 + r, size="small", edge_cases=False)
            times.append(time.perf_counter() - start)
    return times


def bench_full(per_profile: int) -> list[tuple[str, float, dict[str, tuple[float, float]]]]:
    """Per profile: render seconds per image, and per syntax (encode seconds, lossless ratio)."""
    rows = []
    for profile in profiles.PROFILES:
        render_s, encode = [], {ts: [] for ts in FULL_SIZE_SYNTAXES}
        for i in range(per_profile):
            plan = exams.plan_exam(7, i, profile, "full", 1.0)
            start = time.perf_counter()
            ds, stored = exams.build_exam_view(7, plan, "L-CC")
            render_s.append(time.perf_counter() - start)
            for ts in FULL_SIZE_SYNTAXES:
                start = time.perf_counter()
                dicom_files.set_pixel_data(ds, stored, ts)
                seconds = time.perf_counter() - start
                encode[ts].append((seconds, stored.nbytes / len(ds.PixelData)))
        rows.append((f"{profile.name} {profile.rows}x{profile.columns} {profile.bits_stored}-bit",
                     statistics.median(render_s),
                     {ts: (statistics.median(s for s, _ in v), float(np.mean([r for _, r in v])))
                      for ts, v in encode.items()}))
    return rows


SYNTAX_NAMES = {codes.EXPLICIT_VR_LE: "native", codes.JPEG2000_LOSSLESS: "J2K .90",
                codes.JPEG_LS_LOSSLESS: "JPEG-LS .80", codes.HTJ2K_LOSSLESS: "HTJ2K .201",
                codes.JPEG_LOSSLESS_SV1: "SV1 .70", codes.RLE_LOSSLESS: "RLE .5"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exams", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-per-profile", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "synth.md"))
    args = parser.parse_args()

    small = bench_small(args.exams, args.repeats)
    full = bench_full(args.full_per_profile) if args.full_per_profile else []

    lines = [
        "# Synthetic exam generation (`mammobeam synth`)",
        "",
        f"Machine: {cpu_model()}, nproc {os.cpu_count()}, Python {platform.python_version()}; "
        f"one process, one core used by the generator.",
        "",
        f"## {args.exams} small exams ({4 * args.exams} files, 512-row matrices, 7 lossless syntaxes rotated)",
        "",
        f"Seconds, {args.repeats} runs (different seeds): median {statistics.median(small):.2f}, "
        f"min {min(small):.2f}, max {max(small):.2f} "
        f"({statistics.median(small) / (4 * args.exams) * 1000:.0f} ms per file).",
    ]
    if full:
        header = "| profile | render s | " + " | ".join(f"{SYNTAX_NAMES[t]} s (ratio)" for t in FULL_SIZE_SYNTAXES) + " |"
        lines += ["", f"## Full-size images ({args.full_per_profile} per profile, median)", "",
                  "Render = anatomy + lesion + noise + header; encode = one frame into the syntax; ratio = "
                  "uncompressed 16-bit bytes / encoded bytes.", "", header,
                  "|" + "---|" * (2 + len(FULL_SIZE_SYNTAXES))]
        for name, render, enc in full:
            cells = " | ".join(f"{enc[t][0]:.2f} ({enc[t][1]:.2f})" for t in FULL_SIZE_SYNTAXES)
            lines.append(f"| {name} | {render:.2f} | {cells} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
