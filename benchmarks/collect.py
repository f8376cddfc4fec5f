"""Assemble BENCHMARKS.md from the latest result of each benchmark (benchmarks/results/*.md).

Each benchmark script writes its own result file with the machine it ran on; this only collects
them, in the data-flow order, so BENCHMARKS.md is never edited by hand twice.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["demo", "synth", "preprocess", "batch", "serving", "streaming", "bigquery"]


def main() -> None:
    results = ROOT / "benchmarks" / "results"
    found = {p.stem: p for p in results.glob("*.md")}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    parts = ["# Benchmarks\n",
             "Latest results of the scripts in `benchmarks/` (each section names its machine and date).",
             "Performance is always a ratio measured side by side in one run; the build machines are shared",
             "and noisy, so each section also says how disturbed the measurement was.\n"]
    for name in names:
        text = found[name].read_text().strip()
        lines = text.splitlines()
        if lines and lines[0].startswith("# "):
            lines[0] = "#" + lines[0]  # demote each result's title to a section
        parts.append("\n".join(lines) + "\n")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"BENCHMARKS.md: {', '.join(names)}")


if __name__ == "__main__":
    main()
