"""Choose operating points for one model version and write a new thresholds file.

`mammobeam calibrate --tables DIR --outcomes CSV --output FILE (--target-recall R |
--target-sensitivity S) [--triage-share T] [--site S] [--model-version V]`

For the pooled exams (the file's `default`) and for each site with enough exams (its `sites` entry):

- recall threshold: with --target-recall R, the lowest threshold whose recall rate does not exceed R;
  with --target-sensitivity S, the highest threshold whose sensitivity reaches S (needs outcomes);
- normal-triage threshold: the highest threshold that triages at most the share T of in-scope exams
  (default: the share triaged as scored), never above the recall threshold;
- category cut points: the score deciles, so that each category 1..10 holds about a tenth of exams.

Thresholds sit halfway between two neighbouring scores of the data, so rescoring the same exams
reproduces the same decisions. The file records the expected recall rate, sensitivity, specificity and
normal-triage rate on the data used (its `calibration` block). The loop closes: calibrate, rescore
with `mammobeam score --thresholds FILE`, then `mammobeam report`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any, Optional

import numpy as np

from mammobeam.analytics import metrics
from mammobeam.analytics.strategies import add_common_arguments, pseudonymizer_from
from mammobeam.schemas.thresholds import OperatingPoint, Thresholds, ThresholdsError

# Per-site points from fewer exams than this are noise; such sites use the pooled default.
DEFAULT_MIN_SITE_EXAMS = 100
CATEGORIES = 10


def _between(upper: float, lower: Optional[float]) -> float:
    """A threshold halfway between a score and the next lower one (or 0 below the lowest)."""
    return (upper + (lower if lower is not None else 0.0)) / 2


def recall_threshold_for_rate(scores: np.ndarray, target: float) -> float:
    """Lowest threshold (score >= threshold recalls) whose recall rate is at most `target`."""
    values = np.unique(scores)[::-1]  # highest first
    n = len(scores)
    chosen = None
    for i, v in enumerate(values):
        if (scores >= v).sum() / n <= target + 1e-12:
            chosen = i
        else:
            break
    if chosen is None:  # even the top score alone recalls too many: recall nobody
        return float(np.nextafter(values[0], np.inf))
    lower = values[chosen + 1] if chosen + 1 < len(values) else None
    return _between(float(values[chosen]), None if lower is None else float(lower))


def recall_threshold_for_sensitivity(scores: np.ndarray, cancers: np.ndarray, target: float) -> float:
    """Highest threshold whose sensitivity (cancers with score >= threshold) reaches `target`."""
    cancers = cancers.astype(bool)
    if not cancers.any():
        raise metrics.AnalyticsError("no cancers within the follow-up window: cannot target sensitivity")
    values = np.unique(scores)[::-1]
    for i, v in enumerate(values):
        if (scores[cancers] >= v).sum() / cancers.sum() >= target - 1e-12:
            lower = values[i + 1] if i + 1 < len(values) else None
            return _between(float(v), None if lower is None else float(lower))
    return _between(float(values[-1]), None)


def triage_threshold_for_share(scores: np.ndarray, share: float) -> float:
    """Highest threshold (score < threshold triages) that triages at most `share` of `scores`."""
    if len(scores) == 0 or share <= 0:
        return 0.0
    values = np.unique(scores)  # lowest first
    n = len(scores)
    best = 0.0
    for i, v in enumerate(values):
        # Triaging everything below the next value takes all exams scored <= v.
        if (scores <= v).sum() / n <= share + 1e-12:
            best = _between(float(values[i + 1]), float(v)) if i + 1 < len(values) else float(
                np.nextafter(v, np.inf))
        else:
            break
    return best


def category_cut_points(scores: np.ndarray) -> tuple[float, ...]:
    """The 9 score deciles, nudged to be strictly increasing inside (0, 1)."""
    if len(scores) == 0:
        quantiles = np.linspace(0.1, 0.9, CATEGORIES - 1)
    else:
        quantiles = np.quantile(scores, np.linspace(0.1, 0.9, CATEGORIES - 1))
    cuts = []
    for q in np.clip(quantiles, 1e-6, 1 - 1e-3):
        value = float(q)
        if cuts and value <= cuts[-1]:
            value = float(np.nextafter(cuts[-1], np.inf))
        cuts.append(value)
    return tuple(cuts)


def choose_point(scores: np.ndarray, in_scope: np.ndarray, cancers: Optional[np.ndarray], *,
                 target_recall: Optional[float], target_sensitivity: Optional[float],
                 triage_share: float) -> OperatingPoint:
    if target_sensitivity is not None:
        recall_t = recall_threshold_for_sensitivity(scores, cancers, target_sensitivity)
    else:
        recall_t = recall_threshold_for_rate(scores, target_recall)
    triage_t = min(triage_threshold_for_share(scores[in_scope], triage_share), recall_t)
    return OperatingPoint(recall_threshold=recall_t, normal_triage_threshold=triage_t,
                          category_cut_points=category_cut_points(scores))


def expected_figures(scores, in_scope, cancers, points: list[OperatingPoint]) -> dict[str, Any]:
    """Recall rate, normal-triage rate and (with outcomes) sensitivity, specificity, CDR and PPV when
    each exam is read at its own operating point."""
    recall_t = np.array([p.recall_threshold for p in points])
    triage_t = np.array([p.normal_triage_threshold for p in points])
    recalled = scores >= recall_t
    triaged = in_scope & (scores < triage_t)
    n = len(scores)
    out = {"exams": int(n), "recall_rate": metrics.ratio(int(recalled.sum()), n),
           "normal_triage_rate": metrics.ratio(int(triaged.sum()), n)}
    if cancers is not None:
        c = cancers.astype(bool)
        tp = int((recalled & c).sum())
        out.update({"cancers": int(c.sum()), "sensitivity": metrics.ratio(tp, int(c.sum())),
                    "specificity": metrics.ratio(int((~recalled & ~c).sum()), int((~c).sum())),
                    "cancer_detection_rate_per_1000": metrics.ratio(tp, n, 1000),
                    "ppv_recall": metrics.ratio(tp, int(recalled.sum())),
                    "cancers_in_normal_triage": int((triaged & c).sum())})
    return out


def calibrate(data: metrics.ScreeningData, *, target_recall: Optional[float] = None,
              target_sensitivity: Optional[float] = None, triage_share: Optional[float] = None,
              site: Optional[str] = None, version: Optional[str] = None,
              min_site_exams: int = DEFAULT_MIN_SITE_EXAMS) -> Thresholds:
    """A new thresholds file for the data's model version (see the module docstring)."""
    if (target_recall is None) == (target_sensitivity is None):
        raise metrics.AnalyticsError("give exactly one of target recall and target sensitivity")
    for name, value in (("target recall", target_recall), ("target sensitivity", target_sensitivity),
                        ("triage share", triage_share)):
        if value is not None and not 0 <= value <= 1:
            raise metrics.AnalyticsError(f"{name} must be a share between 0 and 1")
    if target_sensitivity is not None and not data.has_outcomes:
        raise metrics.AnalyticsError("targeting sensitivity needs --outcomes")
    if data.model_version is None:
        raise metrics.AnalyticsError(f"no exams in {data.tables}")
    latest = data.one("SELECT model_name, preprocessing_version FROM exams "
                      "ORDER BY scored_at DESC LIMIT 1")
    source = "scored" if data.has_outcomes else "exams"
    where = (f"exam_score IS NOT NULL AND model_name = {metrics._sql_string(latest['model_name'])} "
             f"AND preprocessing_version = {metrics._sql_string(latest['preprocessing_version'])}")
    cancer_sql = "cancer" if data.has_outcomes else "NULL AS cancer"
    cols = data.columns(f"SELECT exam_score, in_scope, normal_triage, {metrics.SITE_SQL} AS site, "
                        f"{cancer_sql} FROM {source} WHERE {where} ORDER BY exam_id")
    scores = cols["exam_score"].astype(float)
    if len(scores) == 0:
        raise metrics.AnalyticsError("no scored exams" + (" with outcomes" if data.has_outcomes else ""))
    in_scope = cols["in_scope"].astype(bool)
    sites = cols["site"].astype(str)
    cancers = cols["cancer"].astype(int) if data.has_outcomes else None
    if triage_share is None:  # keep the share triaged as scored
        triage_share = float(cols["normal_triage"].astype(bool)[in_scope].mean()) if in_scope.any() else 0.0
    kwargs = dict(target_recall=target_recall, target_sensitivity=target_sensitivity,
                  triage_share=triage_share)
    default = choose_point(scores, in_scope, cancers, **kwargs)
    site_points: dict[str, OperatingPoint] = {}
    skipped: dict[str, str] = {}
    wanted_sites = [site] if site else sorted(set(sites))
    for name in wanted_sites:
        mask = sites == name
        if mask.sum() < min_site_exams:
            skipped[name] = f"{int(mask.sum())} exams (< {min_site_exams}): uses the default"
            continue
        if target_sensitivity is not None and not cancers[mask].any():
            skipped[name] = "no cancers: uses the default"
            continue
        site_points[name] = choose_point(scores[mask], in_scope[mask],
                                         None if cancers is None else cancers[mask], **kwargs)
    if site and site not in site_points and site not in set(sites):
        raise metrics.AnalyticsError(f"site {site!r} has no scored exams")
    per_exam = [site_points.get(s, default) for s in sites]
    expected = {"all": expected_figures(scores, in_scope, cancers, per_exam), "sites": {}}
    for name in sorted(set(sites)):
        mask = sites == name
        expected["sites"][name] = expected_figures(
            scores[mask], in_scope[mask], None if cancers is None else cancers[mask],
            [p for p, m in zip(per_exam, mask) if m])
    now = dt.datetime.now(dt.timezone.utc)
    calibration = {
        "created_at": now.isoformat(timespec="seconds"),
        "tables": os.path.abspath(data.tables),
        "outcomes": os.path.basename(data.outcomes_path) if data.outcomes_path else None,
        "follow_up_months": data.follow_up_months if data.has_outcomes else None,
        "target": {"recall_rate": target_recall, "sensitivity": target_sensitivity,
                   "normal_triage_share": triage_share, "site": site},
        "sites_using_default": skipped,
        "expected": expected,
    }
    return Thresholds(
        version=version or f"{latest['model_name']}-v{data.model_version}-cal-{now:%Y%m%dT%H%M%SZ}",
        model_name=latest["model_name"], model_version=str(data.model_version),
        preprocessing_version=latest["preprocessing_version"], default=default, sites=site_points,
        calibration=calibration)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, outcomes_required=False)
    parser.add_argument("--output", required=True, help="thresholds file to write (JSON)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-recall", type=float, help="recall rate to reach at most, e.g. 0.04")
    target.add_argument("--target-sensitivity", type=float, help="sensitivity to reach, e.g. 0.85")
    parser.add_argument("--triage-share", type=float, default=None,
                        help="share of in-scope exams to triage as normal (default: as scored)")
    parser.add_argument("--site", default=None, help="calibrate this site only (others use the default)")
    parser.add_argument("--min-site-exams", type=int, default=DEFAULT_MIN_SITE_EXAMS,
                        help="fewest exams for a site of its own (default %(default)s)")
    parser.add_argument("--version", default=None, help="version string of the new file")


def run(args) -> int:
    try:
        data = metrics.ScreeningData(args.tables, args.outcomes, args.follow_up_months,
                                     args.model_version, pseudonymizer_from(args))
        thresholds = calibrate(data, target_recall=args.target_recall,
                               target_sensitivity=args.target_sensitivity,
                               triage_share=args.triage_share, site=args.site, version=args.version,
                               min_site_exams=args.min_site_exams)
    except (metrics.AnalyticsError, ThresholdsError, OSError) as e:
        print(f"mammobeam calibrate: {e}", file=sys.stderr)
        return 2
    with open(args.output, "w") as f:
        f.write(thresholds.to_json())
    expected = thresholds.calibration["expected"]["all"]

    def pct(key):
        value = expected.get(key)
        return "n/a" if value is None else f"{100 * value:.1f}%"
    print(f"wrote {args.output}: thresholds {thresholds.version} for {thresholds.model_name} "
          f"v{thresholds.model_version} ({thresholds.preprocessing_version})")
    print(f"default recall threshold {thresholds.default.recall_threshold:.4f}, normal-triage "
          f"threshold {thresholds.default.normal_triage_threshold:.4f}; "
          f"{len(thresholds.sites)} site(s) with their own point")
    print(f"expected on {expected['exams']} exams: recall {pct('recall_rate')}, sensitivity "
          f"{pct('sensitivity')}, specificity {pct('specificity')}, normal triage "
          f"{pct('normal_triage_rate')}")
    return 0
