"""The operating-point loop with the real commands: score -> calibrate -> score --thresholds -> report.

The rescored rows carry the new thresholds version, and the recall rate in force equals what
calibrate promised on the data it was given, give or take one exam: calibrate puts each threshold
midway between two observed exam scores, and a rescore reproduces scores only to float precision
(RunInference's batches are composed differently from run to run, and oneDNN's sums with them), so
two exams whose scores differ in the 7th digit may swap sides.
"""

from __future__ import annotations

import os

import pytest

from mammobeam.analytics import metrics
from mammobeam.pipelines.cli import main
from mammobeam.schemas.thresholds import Thresholds

pytestmark = pytest.mark.slow


def test_calibrate_then_rescore_gives_the_promised_recall_rate(reference_model, tmp_path):
    from mammobeam.synthetic import generate
    synth_set = generate(str(tmp_path / "synth"), exams=12, seed=77, size="small")
    tables = str(tmp_path / "tables")
    score = ["score", "--input", os.path.join(synth_set.output_dir, "**", "*.dcm"), "--output", tables,
             "--model", reference_model.model_root, "--quiet"]
    assert main(score) == 0
    thresholds = str(tmp_path / "calibrated.json")
    assert main(["calibrate", "--tables", tables, "--outcomes", synth_set.outcomes_csv, "--output",
                 thresholds, "--target-recall", "0.25", "--min-site-exams", "1", "--version", "cal-7"]) == 0
    calibrated = Thresholds.load(thresholds)
    assert (calibrated.model_name, calibrated.model_version) == (reference_model.name, reference_model.version)
    promised = calibrated.calibration["expected"]["all"]["recall_rate"]

    assert main([*score, "--thresholds", thresholds]) == 0  # rescoring: later rows win
    data = metrics.ScreeningData(tables, synth_set.outcomes_csv)
    in_force = metrics.operating_points_in_force(data)
    assert [r["thresholds_version"] for r in in_force["by_thresholds_version"]] == ["cal-7"]
    assert in_force["overall"]["exams"] == 12
    assert abs(in_force["overall"]["recall_rate"] - promised) <= 1 / 12 + 1e-9
    assert 0 < promised <= 0.25

    report = str(tmp_path / "report.html")
    assert main(["report", "--tables", tables, "--outcomes", synth_set.outcomes_csv, "--output", report]) == 0
    assert "cal-7" in open(report).read()
