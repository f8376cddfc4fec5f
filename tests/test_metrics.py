"""Programme metrics against independent computations (scikit-learn, numpy) on data with known answers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from mammobeam.analytics import metrics
from test_metrics_support import (PSEUDONYMIZER, T0, exam, image, outcome, random_programme,
                                  rejection, write_outcomes, write_tables)


@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("programme"))
    truth = random_programme(root)
    data = metrics.ScreeningData(root, truth["outcomes"], pseudonymizer=PSEUDONYMIZER)
    return root, truth, data, metrics.compute(data, bootstrap=200)


def _reference(truth, mask=None):
    mask = np.ones(len(truth["score"]), bool) if mask is None else mask
    y, pred = truth["cancer"][mask], truth["recall"][mask].astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    n = len(y)
    return {"recall_rate": (tp + fp) / n, "cancer_detection_rate_per_1000": 1000 * tp / n,
            "ppv_recall": tp / (tp + fp), "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
            "auc": roc_auc_score(y, truth["score"][mask])}


def test_confusion_figures_and_auc_match_scikit_learn(programme):
    _, truth, _, m = programme
    overall = m.outcomes["overall"]
    assert overall["exams"] == len(truth["score"])  # older revisions not counted
    for key, value in _reference(truth).items():
        assert overall[key] == pytest.approx(value), key


def test_subgroups_by_site_device_and_age_band_match_scikit_learn(programme):
    _, truth, _, m = programme
    bands = np.where(truth["age"] < 50, "<50", np.where(truth["age"] < 60, "50-59",
                                                         np.where(truth["age"] < 70, "60-69", "70+")))
    groups = {"site": truth["site"], "device": truth["device"], "age_band": bands}
    for name, labels in groups.items():
        rows = {r["grp"]: r for r in m.outcomes["subgroups"][name]}
        assert set(rows) == set(labels)
        for grp, row in rows.items():
            for key, value in _reference(truth, labels == grp).items():
                assert row[key] == pytest.approx(value), (name, grp, key)


def test_breast_level_auc_uses_breast_scores(programme):
    _, truth, _, m = programme
    scores = np.concatenate([truth["left"], truth["right"]])
    labels = np.concatenate([truth["left_cancer"], truth["right_cancer"]])
    assert m.outcomes["breast"]["breasts"] == 2 * len(truth["score"])
    assert m.outcomes["breast"]["auc"] == pytest.approx(roc_auc_score(labels, scores))
    lo, hi = m.outcomes["breast"]["auc_ci"]
    assert lo < m.outcomes["breast"]["auc"] < hi


def test_bootstrap_interval_resamples_exams_like_an_independent_bootstrap():
    rng = np.random.default_rng(3)
    labels = (rng.random(80) < 0.3).astype(int)
    scores = np.round(rng.random(80) * 0.6 + 0.4 * labels, 2)  # ties on purpose
    ci = metrics.bootstrap_auc_ci(scores, labels, replicates=300, seed=11)
    draws = np.random.default_rng(11)
    reference = []
    for _ in range(300):
        idx = draws.integers(0, 80, 80)
        if 0 < labels[idx].sum() < 80:
            reference.append(roc_auc_score(labels[idx], scores[idx]))
    assert ci == pytest.approx(tuple(np.percentile(reference, [2.5, 97.5])))
    assert ci[0] < roc_auc_score(labels, scores) < ci[1]


def test_cancers_in_normal_triage_and_interval_cancers(programme):
    _, truth, _, m = programme
    overall = m.outcomes["overall"]
    assert overall["triaged"] == truth["triage"].sum()
    assert overall["cancers_in_normal_triage"] == (truth["triage"] & (truth["cancer"] == 1)).sum()
    interval = (truth["cancer"] == 1) & (truth["consensus"] == 0)
    assert overall["interval_cancers"] == interval.sum()
    assert overall["interval_cancers_flagged"] == (interval & truth["recall"]).sum()


def test_volumes_read_one_row_per_key(programme):
    _, truth, _, m = programme
    v = m.volumes
    assert v["totals"]["exams"] == len(truth["score"])
    assert {r["site"]: r["exams"] for r in v["by_site"]} == {
        s: int((truth["site"] == s).sum()) for s in set(truth["site"])}
    assert sum(r["exams"] for r in v["by_day"]) == len(truth["score"])
    assert v["rejections_total"] == 5
    assert {(r["reason"]): r["files"] for r in v["rejections_by_reason"]} == {
        "NOT_MAMMOGRAPHY": 2, "DECODE_FAILED": 3}
    assert {(r["device"], r["reason"]): r["files"] for r in v["rejections_by_device"]} == {
        ("Acme M1", "DECODE_FAILED"): 2, ("Acme M1", "NOT_MAMMOGRAPHY"): 1,
        ("Zed M1", "NOT_MAMMOGRAPHY"): 1, ("Zed M1", "DECODE_FAILED"): 1}
    assert v["totals"]["in_scope"] == sum(1 for i in range(len(truth["score"])) if i % 17)


def test_score_histograms_match_numpy_and_psi_matches_its_formula(programme):
    _, truth, _, m = programme
    for site in set(truth["site"]):
        counts, _ = np.histogram(truth["score"][truth["site"] == site], bins=10, range=(0, 1))
        assert m.scores["by_site"][site] == counts.tolist()
    months = sorted(m.scores["by_period"])
    assert months == ["2024-01", "2024-02", "2024-03"]
    p = np.maximum(np.array(m.scores["by_period"][months[0]]) / sum(m.scores["by_period"][months[0]]), 1e-4)
    q = np.maximum(np.array(m.scores["by_period"][months[2]]) / sum(m.scores["by_period"][months[2]]), 1e-4)
    assert m.scores["period_drift"][2]["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    assert m.scores["period_drift"][0]["psi"] == 0


def test_recall_and_triage_rates_at_the_operating_points_in_force(programme):
    _, truth, _, m = programme
    op = m.operating_points["overall"]
    assert op["recall_rate"] == pytest.approx(truth["recall"].mean())
    assert op["normal_triage_rate"] == pytest.approx(truth["triage"].mean())


def test_follow_up_window_decides_which_cancers_count(tmp_path):
    rows = [exam("a", 0.9), exam("b", 0.8), exam("c", 0.2), exam("d", 0.1)]
    write_tables(str(tmp_path), rows)
    csv = write_outcomes(str(tmp_path / "o.csv"), [
        outcome("a", cancer_side="L", diagnosis_date="2024-02-20"),   # 19 days: counts
        outcome("b", cancer_side="R", diagnosis_date="2026-08-01"),   # 30 months: only in a 36-month window
        outcome("c", cancer_side="R", diagnosis_date="2023-12-01"),   # before the screen: never
        outcome("d")])
    for months, cancers in ((24, 1), (36, 2)):
        data = metrics.ScreeningData(str(tmp_path), csv, follow_up_months=months, pseudonymizer=PSEUDONYMIZER)
        assert metrics.outcome_metrics(data, bootstrap=0)["overall"]["cancers"] == cancers


def test_no_cancers_gives_no_auc_or_sensitivity(tmp_path):
    write_tables(str(tmp_path), [exam("a", 0.9), exam("b", 0.2), exam("c", 0.1)])
    csv = write_outcomes(str(tmp_path / "o.csv"), [outcome("a"), outcome("b"), outcome("c")])
    o = metrics.outcome_metrics(metrics.ScreeningData(str(tmp_path), csv, pseudonymizer=PSEUDONYMIZER))
    assert o["overall"]["auc"] is None and o["overall"]["auc_ci"] is None
    assert o["overall"]["sensitivity"] is None and o["overall"]["ppv_recall"] == 0
    assert o["overall"]["specificity"] == pytest.approx(2 / 3)


def test_all_recalled_and_one_site(tmp_path):
    write_tables(str(tmp_path), [exam(f"e{i}", 0.6 + i / 100) for i in range(5)])
    csv = write_outcomes(str(tmp_path / "o.csv"),
                         [outcome("e0", cancer_side="L", diagnosis_date="2024-03-01")]
                         + [outcome(f"e{i}") for i in range(1, 5)])
    o = metrics.outcome_metrics(metrics.ScreeningData(str(tmp_path), csv, pseudonymizer=PSEUDONYMIZER),
                                bootstrap=50)
    y, s = [1, 0, 0, 0, 0], [0.6, 0.61, 0.62, 0.63, 0.64]
    assert o["overall"]["recall_rate"] == 1 and o["overall"]["specificity"] == 0
    assert o["overall"]["ppv_recall"] == pytest.approx(0.2) and o["overall"]["sensitivity"] == 1
    assert o["overall"]["auc"] == pytest.approx(roc_auc_score(y, s)) == 0
    assert [r["grp"] for r in o["subgroups"]["site"]] == ["North"]


def test_one_exam(tmp_path):
    write_tables(str(tmp_path), [exam("only", 0.7)])
    csv = write_outcomes(str(tmp_path / "o.csv"), [outcome("only", cancer_side="R", diagnosis_date="2024-02-02")])
    m = metrics.compute(metrics.ScreeningData(str(tmp_path), csv, pseudonymizer=PSEUDONYMIZER), bootstrap=20)
    o = m.outcomes["overall"]
    assert (o["exams"], o["cancers"], o["sensitivity"], o["specificity"], o["auc"]) == (1, 1, 1, None, None)
    assert o["cancer_detection_rate_per_1000"] == 1000


def test_outcomes_join_only_through_the_tables_pseudonym_key(tmp_path):
    from mammobeam.transforms.pseudonyms import Pseudonymizer
    write_tables(str(tmp_path), [exam("a", 0.9)])
    csv = write_outcomes(str(tmp_path / "o.csv"), [outcome("a", cancer_side="L", diagnosis_date="2024-02-10")])
    other = Pseudonymizer(b"another-key-entirely-000000")
    assert metrics.outcome_metrics(metrics.ScreeningData(str(tmp_path), csv, pseudonymizer=other),
                                   bootstrap=0)["overall"]["exams"] == 0
    assert metrics.outcome_metrics(metrics.ScreeningData(str(tmp_path), csv, pseudonymizer=PSEUDONYMIZER),
                                   bootstrap=0)["overall"]["exams"] == 1


def test_latest_revision_wins_and_latest_model_version_is_the_default(tmp_path):
    later = T0 + dt.timedelta(hours=1)
    write_tables(str(tmp_path), [
        exam("a", 0.1, model_version="9"), exam("a", 0.9, model_version="9", scored_at=later),
        exam("b", 0.2, model_version="9", revision=0), exam("b", 0.7, model_version="9", revision=1),
        exam("a", 0.3, model_version="10")], [image("i1", "a", 0.1, model_version="9"), image("i1", "a", 0.2, model_version="9")])
    data = metrics.ScreeningData(str(tmp_path))
    assert data.model_versions == ["9", "10"] and data.model_version == "10"
    assert metrics.volumes(data)["rejections_total"] == 0  # no rejections folder at all
    nine = metrics.ScreeningData(str(tmp_path), model_version="9")
    assert metrics.operating_points_in_force(nine)["overall"]["recall_rate"] == 1.0
    assert metrics.volumes(nine)["images"] == 1
    drift = {r["model_version"]: r for r in metrics.score_distributions(nine)["version_drift"]}
    assert drift["9"]["psi"] == 0 and drift["10"]["psi"] > metrics.PSI_MAJOR
    with pytest.raises(metrics.AnalyticsError, match="not in"):
        metrics.ScreeningData(str(tmp_path), model_version="3")


def test_partition_column_inside_the_files_is_read_too(tmp_path):
    import os
    import pyarrow as pa
    import pyarrow.parquet as pq
    from mammobeam.schemas.tables import TABLES
    folder = tmp_path / "exams" / "scored_date=2024-03-01"
    os.makedirs(folder)
    pq.write_table(pa.Table.from_pylist([exam("a", 0.9), exam("b", 0.1)], schema=TABLES["exams"].arrow_schema()),
                   str(folder / "part-0.parquet"))
    data = metrics.ScreeningData(str(tmp_path))
    assert metrics.volumes(data)["totals"]["exams"] == 2


def test_malformed_outcomes_are_refused(tmp_path):
    write_tables(str(tmp_path), [exam("a", 0.9)])
    bad = tmp_path / "o.csv"
    bad.write_text("accession_number,site\na,North\n")
    with pytest.raises(metrics.AnalyticsError, match="lacks column"):
        metrics.ScreeningData(str(tmp_path), str(bad), pseudonymizer=PSEUDONYMIZER)
