"""Operating points chosen by `calibrate`, and the loop: calibrate, rescore, report."""

from __future__ import annotations

import argparse
import datetime as dt

import numpy as np
import pytest

from mammobeam.analytics import calibrate, metrics
from mammobeam.schemas.thresholds import Thresholds
from test_metrics_support import PSEUDONYMIZER, T0, exam, outcome, write_outcomes, write_tables

SCORES = [round(0.005 + i / 100, 3) for i in range(100)]  # 0.005 .. 0.995, distinct
CANCERS = {95, 90, 85, 80, 70, 60, 40, 20}  # indexes of cancer exams (scores 0.955, ...)


@pytest.fixture()
def hundred(tmp_path):
    rows = [exam(f"e{i}", s, site="North" if i % 2 else "South", preprocessing_version="pp7",
                 model_version="4") for i, s in enumerate(SCORES)]
    write_tables(str(tmp_path), rows)
    csv = write_outcomes(str(tmp_path / "o.csv"), [
        outcome(f"e{i}", site="North" if i % 2 else "South", cancer_side="L" if i in CANCERS else None,
                diagnosis_date="2024-04-01") for i in range(100)])
    return str(tmp_path), csv, rows


def test_target_recall_gives_that_recall_rate_and_a_valid_file(hundred):
    tables, csv, _ = hundred
    t = calibrate.calibrate(metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER),
                            target_recall=0.1, triage_share=0.3, min_site_exams=1)
    scores = np.array(SCORES)
    assert (scores >= t.default.recall_threshold).sum() == 10
    assert (scores < t.default.normal_triage_threshold).sum() == 30
    assert (t.model_name, t.model_version, t.preprocessing_version) == ("demo", "4", "pp7")
    again = Thresholds.from_dict(__import__("json").loads(t.to_json()))  # the file format validates it
    assert again.default == t.default and set(again.sites) == {"North", "South"}
    expected = t.calibration["expected"]["all"]
    assert expected["recall_rate"] == pytest.approx(0.1)
    y = np.array([i in CANCERS for i in range(100)])
    recalled = np.array([s >= t.for_site("North" if i % 2 else "South").recall_threshold
                         for i, s in enumerate(SCORES)])
    assert expected["sensitivity"] == pytest.approx((recalled & y).sum() / y.sum())
    assert expected["specificity"] == pytest.approx((~recalled & ~y).sum() / (~y).sum())
    cuts = np.array(t.default.category_cut_points)
    assert np.all(np.diff(cuts) > 0) and 0 < cuts[0] and cuts[-1] < 1
    assert [int((scores >= c).sum()) for c in cuts] == [90, 80, 70, 60, 50, 40, 30, 20, 10]


def test_target_sensitivity_picks_the_highest_threshold_reaching_it(hundred):
    tables, csv, _ = hundred
    t = calibrate.calibrate(metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER),
                            target_sensitivity=0.75, triage_share=0.0)
    # cancers by score: .955 .905 .855 .805 .705 .605 .405 .205; 6 of 8 = 75% at >= 0.605
    assert 0.595 < t.default.recall_threshold <= 0.605
    assert t.calibration["expected"]["all"]["sensitivity"] == 0.75
    assert t.default.normal_triage_threshold == 0.0
    assert t.sites == {}  # 50 exams per site is under the default minimum: the default applies


def test_one_site_only_and_triage_kept_as_scored(hundred):
    tables, csv, _ = hundred
    t = calibrate.calibrate(metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER),
                            target_recall=0.2, site="North", min_site_exams=1)
    assert set(t.sites) == {"North"}
    north = np.array(SCORES[1::2])
    assert (north >= t.sites["North"].recall_threshold).sum() == 10
    # as scored, 20 of 100 exams were below 0.2: the share triaged stays 20%
    assert t.calibration["target"]["normal_triage_share"] == pytest.approx(0.2)


def test_the_loop_closes_calibrate_rescore_report(hundred, tmp_path):
    tables, csv, rows = hundred
    t = calibrate.calibrate(metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER),
                            target_recall=0.05, triage_share=0.5, version="cal-1", min_site_exams=1)
    # Rescoring writes new rows for the same keys, decided by the new file, scored later.
    later = T0 + dt.timedelta(days=1)
    rescored = [exam(r["exam_id"], r["exam_score"], site=r["site"], model_version="4",
                     preprocessing_version="pp7", scored_at=later, thresholds_version=t.version,
                     recall_threshold=t.for_site(r["site"]).recall_threshold,
                     triage_threshold=t.for_site(r["site"]).normal_triage_threshold) for r in rows]
    write_tables(tables, rescored)
    data = metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER)
    op = metrics.operating_points_in_force(data)
    expected = t.calibration["expected"]["all"]
    assert op["overall"]["exams"] == 100
    assert op["overall"]["recall_rate"] == pytest.approx(expected["recall_rate"])
    assert op["overall"]["normal_triage_rate"] == pytest.approx(expected["normal_triage_rate"])
    assert metrics.outcome_metrics(data, bootstrap=0)["overall"]["sensitivity"] == pytest.approx(
        expected["sensitivity"])
    assert [r["thresholds_version"] for r in op["by_thresholds_version"]] == ["cal-1"]


def test_cli_writes_the_file(hundred, tmp_path, capsys, monkeypatch):
    tables, csv, _ = hundred
    monkeypatch.setattr(calibrate, "pseudonymizer_from", lambda args: PSEUDONYMIZER)
    parser = argparse.ArgumentParser()
    calibrate.add_arguments(parser)
    out = str(tmp_path / "thresholds.json")
    args = parser.parse_args(["--tables", tables, "--outcomes", csv, "--output", out,
                              "--target-recall", "0.1", "--triage-share", "0.25", "--model-version", "4"])
    assert calibrate.run(args) == 0
    assert Thresholds.load(out).calibration["expected"]["all"]["recall_rate"] == pytest.approx(0.1)
    assert "expected on 100 exams" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--tables", tables, "--output", out])  # a target is required
    no_outcomes = parser.parse_args(["--tables", tables, "--output", out, "--target-sensitivity", "0.9"])
    assert calibrate.run(no_outcomes) == 2
