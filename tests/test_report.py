"""The dashboard: one self-contained HTML file whose figures equal an independent computation."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from mammobeam.analytics import report
from test_metrics_support import PSEUDONYMIZER, random_programme


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dash"))
    truth = random_programme(root, n=180, seed=5)
    path = report.write_report(root, root + "/report.html", truth["outcomes"],
                               pseudonymizer=PSEUDONYMIZER, bootstrap=100)
    return truth, path, open(path, encoding="utf-8").read()


def independent_headline(truth) -> dict[str, float]:
    """What the headline must say, from scikit-learn on the rows the test wrote."""
    y, pred = truth["cancer"], truth["recall"].astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    n = len(y)
    return {"exams": n, "recall_rate": (tp + fp) / n, "normal_triage_rate": truth["triage"].mean(),
            "cancers": int(y.sum()), "cancer_detection_rate_per_1000": 1000 * tp / n,
            "ppv_recall": tp / (tp + fp), "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
            "auc": roc_auc_score(y, truth["score"]),
            "interval_cancers": int(((y == 1) & (truth["consensus"] == 0)).sum()),
            "cancers_in_normal_triage": int((truth["triage"] & (y == 1)).sum())}


def shown_value(text: str) -> float:
    """The number a headline cell shows, as a fraction for percentages."""
    text = text.strip().replace(",", "")
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


TOLERANCE = {"auc": 5e-4, "cancer_detection_rate_per_1000": 0.05}  # shown with 3 / 1 decimals


def check_headline(shown: dict[str, str], truth) -> None:
    for key, value in independent_headline(truth).items():
        assert shown_value(shown[key]) == pytest.approx(value, abs=TOLERANCE.get(key, 5e-4)), key


def test_headline_figures_shown_equal_an_independent_computation(dashboard):
    truth, _, page = dashboard
    shown = dict(re.findall(r'data-metric="([a-z_0-9]+)" data-value="[^"]*">([^<]*)<', page))
    check_headline(shown, truth)


def test_page_is_self_contained(dashboard):
    _, _, page = dashboard
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "url(" not in page and "@import" not in page and "<script src" not in page
    for chart in ("volume", "rejections", "roc", "tradeoff", "hist-site-0", "hist-device-0"):
        assert f'data-chart="{chart}"' in page


def test_report_shows_versions_rejections_and_strategies(dashboard):
    _, _, page = dashboard
    for text in ("Versions covered", "pp1", "t1", "Rejections by reason", "DECODE_FAILED",
                 "Reading strategies", "AI as safety net", "Drift by month", "By age band",
                 "Breast level"):
        assert text in page


def test_summary_without_outcomes_has_volume_figures_only(dashboard, tmp_path):
    truth, _, _ = dashboard
    import os
    figures = report.summary(os.path.dirname(truth["outcomes"]))
    assert figures["exams"] == len(truth["score"]) and "sensitivity" not in figures
    assert figures["recall_rate"] == pytest.approx(truth["recall"].mean())


def test_cli_writes_the_report_and_says_where(dashboard, tmp_path, capsys, monkeypatch):
    truth, _, _ = dashboard
    import os
    from mammobeam.analytics import strategies
    monkeypatch.setattr(strategies, "pseudonymizer_from", lambda args: PSEUDONYMIZER)
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    out = str(tmp_path / "r.html")
    args = parser.parse_args(["--tables", os.path.dirname(truth["outcomes"]), "--outcomes",
                              truth["outcomes"], "--output", out, "--bootstrap", "20"])
    assert report.run(args) == 0
    assert out in capsys.readouterr().out and os.path.getsize(out) > 10_000
