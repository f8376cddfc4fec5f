"""Reading strategies on eight exams whose answers are worked out by hand (table below)."""

from __future__ import annotations

import argparse

import pytest

from mammobeam.analytics import metrics, strategies
from mammobeam.schemas.thresholds import OperatingPoint, Thresholds, ThresholdsError
from test_metrics_support import PSEUDONYMIZER, exam, outcome, write_outcomes, write_tables

# exam, score, cancer, reader 1, reader 2, consensus. As scored: recall at >= 0.5, triage below 0.2.
#   a 0.90 cancer 1 1 1   screen-detected by everyone
#   b 0.70 cancer 0 0 0   interval cancer the AI flags
#   c 0.30 cancer 0 1 1   reader 2 finds it, arbitration recalls
#   d 0.10 cancer 0 0 0   interval cancer the AI misses (triaged)
#   e 0.60 normal 1 0 0   reader 1 and the AI recall, arbitration clears
#   f 0.15 normal 0 0 0
#   g 0.05 normal 1 0 0   reader 1 recalls a triaged normal exam
#   h 0.40 normal 0 0 0
EXAMS = [("a", 0.90, 1, 1, 1, 1), ("b", 0.70, 1, 0, 0, 0), ("c", 0.30, 1, 0, 1, 1),
         ("d", 0.10, 1, 0, 0, 0), ("e", 0.60, 0, 1, 0, 0), ("f", 0.15, 0, 0, 0, 0),
         ("g", 0.05, 0, 1, 0, 0), ("h", 0.40, 0, 0, 0, 0)]

# strategy: recalled, true positives, reads, missed cancers, missed cancers the AI flagged
BY_HAND = {
    "double_reading": (2, 2, 19, 2, 1),    # 16 reads + arbitration of c, e, g
    "single_reader": (3, 1, 8, 3, 1),
    "ai_second_reader": (2, 1, 10, 3, 1),  # 8 reads + arbitration of b, g
    "ai_triage": (3, 2, 15, 2, 1),         # d, f, g single read (g recalled); a, b, h 2; c, e 3
    "ai_safety_net": (4, 3, 21, 1, 0),     # today + reviews of b, e
}


@pytest.fixture()
def hand_worked(tmp_path):
    write_tables(str(tmp_path), [exam(e, s) for e, s, *_ in EXAMS] + [exam("no-readers", 0.8)])
    rows = [outcome(e, cancer_side="L" if c else None, diagnosis_date="2024-03-01", r1=r1, r2=r2,
                    consensus=k) for e, s, c, r1, r2, k in EXAMS]
    rows.append(outcome("no-readers", r1=None, r2=None, consensus=None))  # excluded: no decisions
    csv = write_outcomes(str(tmp_path / "outcomes.csv"), rows)
    return str(tmp_path), csv


def test_each_strategy_matches_the_hand_worked_counts(hand_worked):
    tables, csv = hand_worked
    rows = {r["key"]: r for r in strategies.compare(metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER))}
    assert list(rows) == [s.key for s in strategies.STRATEGIES]
    for key, (recalled, tp, reads, missed, flagged) in BY_HAND.items():
        r = rows[key]
        assert (r["exams"], r["cancers"]) == (8, 4)
        assert (r["recalled"], r["true_positives"], r["reads"], r["interval_cancers"],
                r["interval_cancers_ai_flagged"]) == (recalled, tp, reads, missed, flagged), key
        assert r["recall_rate"] == pytest.approx(recalled / 8)
        assert r["cancer_detection_rate_per_1000"] == pytest.approx(1000 * tp / 8)
        assert r["ppv_recall"] == pytest.approx(tp / recalled)
        assert r["sensitivity"] == pytest.approx(tp / 4)
        assert r["specificity"] == pytest.approx((4 - (recalled - tp)) / 4)
        assert r["reads_per_1000"] == pytest.approx(1000 * reads / 8)
        assert r["workload_vs_today"] == pytest.approx(reads / 19)
        assert r["interval_cancer_capture"] == pytest.approx(flagged / missed)


def test_a_thresholds_file_changes_the_ai_decisions(hand_worked):
    tables, csv = hand_worked
    cuts = tuple(i / 10 for i in range(1, 10))
    # AI recall at >= 0.35 adds h; triage below 0.12 keeps d and g, drops f.
    t = Thresholds(version="t2", model_name="demo", model_version="1", preprocessing_version="pp1",
                   default=OperatingPoint(0.35, 0.12, cuts))
    rows = {r["key"]: r for r in strategies.compare(
        metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER), t)}
    assert rows["ai_second_reader"]["reads"] == 11  # h now discordant with reader 1
    assert rows["ai_safety_net"]["recalled"] == 5
    assert (rows["ai_triage"]["recalled"], rows["ai_triage"]["reads"]) == (3, 16)
    other = Thresholds(version="t3", model_name="demo", model_version="1", preprocessing_version="pp2",
                       default=OperatingPoint(0.35, 0.12, cuts))
    with pytest.raises(ThresholdsError, match="calibrate again"):
        strategies.compare(metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER), other)


def test_cli_prints_every_strategy_with_its_rule(hand_worked, capsys, monkeypatch):
    tables, csv = hand_worked
    monkeypatch.setattr(strategies, "pseudonymizer_from", lambda args: PSEUDONYMIZER)
    parser = argparse.ArgumentParser()
    strategies.add_arguments(parser)
    assert strategies.run(parser.parse_args(["--tables", tables, "--outcomes", csv])) == 0
    out = capsys.readouterr().out
    for s in strategies.STRATEGIES:
        assert s.name in out and s.rule in out
    assert "2375.0" in out  # today's reads per 1000: 19 / 8


def test_report_and_cli_show_the_same_computation(hand_worked):
    tables, csv = hand_worked
    data = metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER)
    assert metrics.compute(data, bootstrap=0).strategies == strategies.compare(
        metrics.ScreeningData(tables, csv, pseudonymizer=PSEUDONYMIZER))
