"""Programme metrics of a screening reader (human or AI), computed once for every view of them.

Everything is read through the tables' one-row-per-key rule (schemas/tables.py) with DuckDB over the
Parquet dataset; the SQL is plain enough to run on BigQuery too (no DuckDB-only functions, no casts).
The figures that need ranks (AUC, its bootstrap, ROC points, drift) are computed with numpy from the
rows the SQL returns. The definitions are in analytics/README.md; each function's docstring names the
figure it returns.

Layout on disk (what `mammobeam score` writes)::

    TABLES/exams/scored_date=YYYY-MM-DD/*.parquet
    TABLES/images/scored_date=YYYY-MM-DD/*.parquet
    TABLES/rejections/rejected_date=YYYY-MM-DD/*.parquet      (a table folder may be absent)
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import logging
import math
import os
from typing import Any, Iterable, Optional, Sequence

import duckdb
import numpy as np
import pyarrow as pa

from mammobeam.schemas.tables import TABLES, one_row_per_key_sql

log = logging.getLogger(__name__)

# A biennial programme's screening interval (EU guidelines, most European programmes): a cancer
# diagnosed within it after a screen belongs to that screen (screen-detected or interval cancer).
DEFAULT_FOLLOW_UP_MONTHS = 24
# Age bands of programme reporting (5-year bands pooled to decades; 50-69 is the EU core range).
AGE_BANDS: tuple[tuple[Optional[int], Optional[int], str], ...] = (
    (None, 50, "<50"), (50, 60, "50-59"), (60, 70, "60-69"), (70, None, "70+"))
# Population stability index: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift
# (the usual credit-scoring convention; Yurdakul 2018, "Statistical properties of the PSI").
PSI_MODERATE, PSI_MAJOR = 0.1, 0.25
SCORE_BINS = 10  # histogram bins of width 0.1 over [0, 1]
DEFAULT_BOOTSTRAP = 1000
OUTCOME_COLUMNS = ("accession_number", "site", "study_date", "laterality", "cancer", "lesion_type",
                   "reader1_recall", "reader2_recall", "consensus_recall", "diagnosis_date",
                   "interval_cancer")

DEVICE_SQL = "CONCAT(COALESCE(manufacturer, 'unknown'), ' ', COALESCE(manufacturer_model, ''))"
SITE_SQL = "COALESCE(site, 'unknown')"
AGE_BAND_SQL = ("CASE WHEN age_at_exam IS NULL THEN 'unknown' "
                + " ".join(f"WHEN age_at_exam < {hi} THEN '{label}'" for lo, hi, label in AGE_BANDS
                           if hi is not None)
                + f" ELSE '{AGE_BANDS[-1][2]}' END")


class AnalyticsError(ValueError):
    """The inputs cannot give the asked figures (no exams table, unknown model version, bad CSV)."""


# --------------------------------------------------------------------------------------------------
# Reading the tables and the outcomes
# --------------------------------------------------------------------------------------------------

def parquet_source(tables_dir: str, table: str) -> Optional[str]:
    """The DuckDB FROM expression for one table folder, or None when it holds no Parquet file."""
    folder = os.path.join(tables_dir, table)
    if not glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True):
        return None
    pattern = os.path.join(folder, "**", "*.parquet").replace("'", "''")
    return f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"


def _bigquery_views(uri: str) -> dict[str, pa.Table]:
    """`bq://PROJECT.DATASET`: each table's `<table>_current` view read into Arrow."""
    from mammobeam.pipelines.bigquery_io import BigQueryDataset
    dataset = BigQueryDataset.from_uri(uri)
    try:
        return {name: dataset.read_view(name) for name in ("exams", "images", "rejections")}
    except Exception as e:  # NotFound, Forbidden, a bad URI: say which dataset and why
        raise AnalyticsError(f"cannot read the views of {uri}: {e}") from None


def _sql_string(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _version_order(version: str):
    # TF Serving versions are integers: "10" is later than "9".
    return (0, int(version), "") if str(version).isdigit() else (1, 0, str(version))


class ScreeningData:
    """The tables of one scoring output, read through the one-row-per-key rule, and the outcomes.

    DuckDB views it defines (all for the chosen model version unless named *_all):
      exams_all, images_all, rejections (one row per key, every model version),
      exams, images (the chosen model version),
      outcome_breasts (one row per exam and breast, accession pseudonymised, cancer_in_window),
      outcome_exams (one row per accession_key), scored (exams joined to outcome_exams).
    """

    def __init__(self, tables: str, outcomes: Optional[str] = None,
                 follow_up_months: int = DEFAULT_FOLLOW_UP_MONTHS, model_version: Optional[str] = None,
                 pseudonymizer=None):
        if follow_up_months <= 0:
            raise AnalyticsError("the follow-up window must be at least one month")
        self.tables = tables
        self.outcomes_path = outcomes
        self.follow_up_months = int(follow_up_months)
        self.con = duckdb.connect()
        bigquery_views = _bigquery_views(tables) if tables.startswith("bq://") else None
        for name in ("exams", "images", "rejections"):
            if bigquery_views is not None:
                # The dataset's <table>_current views (committed rows, one per key), held in memory;
                # the rule below then changes nothing, and the SQL after it is the same.
                self.con.register(f"{name}_bq", bigquery_views[name])
                source = f"{name}_bq"
            else:
                source = parquet_source(tables, name)
            if source is None:
                self.con.register(f"{name}_empty", TABLES[name].arrow_schema().empty_table())
                source = f"{name}_empty"
            view = "rejections" if name == "rejections" else f"{name}_all"
            self.con.execute(f"CREATE VIEW {view} AS {one_row_per_key_sql(name, source)}")
        versions = [r[0] for r in self.con.execute(
            "SELECT DISTINCT model_version FROM exams_all").fetchall()]
        self.model_versions = sorted(versions, key=_version_order)
        if model_version is None:
            model_version = self.model_versions[-1] if self.model_versions else None
        elif str(model_version) not in self.model_versions:
            raise AnalyticsError(f"model version {model_version!r} is not in {tables}/exams "
                                 f"(found: {', '.join(self.model_versions) or 'none'})")
        self.model_version = None if model_version is None else str(model_version)
        for name in ("exams", "images"):
            chosen = "NULL" if self.model_version is None else _sql_string(self.model_version)
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM {name}_all WHERE model_version = {chosen}")
        self.has_outcomes = outcomes is not None
        if outcomes is not None:
            if pseudonymizer is None:
                from mammobeam.transforms.pseudonyms import Pseudonymizer
                pseudonymizer = Pseudonymizer.from_config()
            self.con.register("outcome_rows", read_outcomes(outcomes, pseudonymizer))
            self._define_outcome_views()

    def _define_outcome_views(self) -> None:
        window = self.follow_up_months
        # A cancer belongs to the screen if diagnosed on or after it and within the window; a cancer
        # with no recorded diagnosis date counts as diagnosed at the screen.
        self.con.execute(f"""
            CREATE VIEW outcome_breasts AS
            SELECT *, (cancer = 1 AND (diagnosis_date IS NULL OR (diagnosis_date >= study_date AND
                       diagnosis_date <= DATE_ADD(study_date, INTERVAL {window} MONTH)))) AS cancer_in_window
            FROM outcome_rows""")
        self.con.execute("""
            CREATE VIEW outcome_exams AS
            SELECT accession_key,
                   MAX(CASE WHEN cancer_in_window THEN 1 ELSE 0 END) AS cancer,
                   MAX(CASE WHEN cancer_in_window AND laterality = 'L' THEN 1 ELSE 0 END) AS left_cancer,
                   MAX(CASE WHEN cancer_in_window AND laterality = 'R' THEN 1 ELSE 0 END) AS right_cancer,
                   MAX(reader1_recall) AS reader1_recall, MAX(reader2_recall) AS reader2_recall,
                   MAX(consensus_recall) AS consensus_recall,
                   MAX(CASE WHEN interval_cancer = 1 AND cancer_in_window THEN 1 ELSE 0 END)
                       AS interval_cancer_recorded
            FROM outcome_breasts GROUP BY accession_key""")
        self.con.execute("""
            CREATE VIEW scored AS
            SELECT e.*, o.cancer, o.left_cancer, o.right_cancer, o.reader1_recall, o.reader2_recall,
                   o.consensus_recall, o.interval_cancer_recorded
            FROM exams e JOIN outcome_exams o ON e.accession_key = o.accession_key
            WHERE e.exam_score IS NOT NULL""")

    # Small helpers -------------------------------------------------------------------------------
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        found = self.rows(sql, params)
        return found[0] if found else {}

    def columns(self, sql: str, params: Sequence[Any] = ()) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.con.execute(sql, list(params)).fetchnumpy().items()}

    @property
    def has_reader_decisions(self) -> bool:
        if not self.has_outcomes:
            return False
        row = self.one("SELECT COUNT(*) AS n FROM outcome_exams WHERE reader1_recall IS NOT NULL "
                       "AND reader2_recall IS NOT NULL AND consensus_recall IS NOT NULL")
        return bool(row["n"])

    def versions(self) -> dict[str, list[str]]:
        """Model, preprocessing and thresholds versions of the chosen model version's exams."""
        out = {}
        for column in ("model_name", "preprocessing_version", "thresholds_version"):
            out[column] = [r["v"] for r in self.rows(
                f"SELECT DISTINCT {column} AS v FROM exams WHERE {column} IS NOT NULL ORDER BY 1")]
        out["model_versions_in_tables"] = list(self.model_versions)
        out["model_version"] = [self.model_version] if self.model_version else []
        return out


def _flag(value: str, column: str, line: int) -> Optional[int]:
    value = (value or "").strip()
    if value == "":
        return None
    if value not in ("0", "1"):
        raise AnalyticsError(f"outcomes line {line}: {column} must be 0 or 1, not {value!r}")
    return int(value)


def _date(value: str, column: str, line: int):
    import datetime as dt
    value = (value or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise AnalyticsError(f"outcomes line {line}: {column} must be YYYY-MM-DD, not {value!r}") from None


def read_outcomes(path: str, pseudonymizer) -> pa.Table:
    """The outcomes CSV (one row per exam and breast) with accession numbers pseudonymised.

    The accession number becomes `accession_key` exactly as the pipeline writes it into the exams
    table (Pseudonymizer.accession(accession_number, site)); the number itself is dropped.
    """
    columns: dict[str, list] = {k: [] for k in (
        "accession_key", "site", "study_date", "laterality", "cancer", "lesion_type", "reader1_recall",
        "reader2_recall", "consensus_recall", "diagnosis_date", "interval_cancer")}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in OUTCOME_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnalyticsError(f"{path}: outcomes CSV lacks column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            site = (row["site"] or "").strip() or None
            columns["accession_key"].append(pseudonymizer.accession(row["accession_number"].strip(), site))
            columns["site"].append(site)
            columns["study_date"].append(_date(row["study_date"], "study_date", line))
            laterality = (row["laterality"] or "").strip().upper()
            if laterality not in ("L", "R"):
                raise AnalyticsError(f"{path} line {line}: laterality must be L or R")
            columns["laterality"].append(laterality)
            columns["cancer"].append(_flag(row["cancer"], "cancer", line) or 0)
            columns["lesion_type"].append((row["lesion_type"] or "").strip() or None)
            for c in ("reader1_recall", "reader2_recall", "consensus_recall"):
                columns[c].append(_flag(row[c], c, line))
            columns["diagnosis_date"].append(_date(row["diagnosis_date"], "diagnosis_date", line))
            columns["interval_cancer"].append(_flag(row["interval_cancer"], "interval_cancer", line) or 0)
    types = {"study_date": pa.date32(), "diagnosis_date": pa.date32(), "cancer": pa.int64(),
             "interval_cancer": pa.int64(), "reader1_recall": pa.int64(), "reader2_recall": pa.int64(),
             "consensus_recall": pa.int64()}
    return pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in columns.items()})


# --------------------------------------------------------------------------------------------------
# Rank statistics (numpy; scikit-learn is only the tests' reference)
# --------------------------------------------------------------------------------------------------

def auc(scores: Sequence[float], labels: Sequence[int], weights: Optional[Sequence[float]] = None
        ) -> Optional[float]:
    """Area under the ROC curve (ties count one half); None when a class is absent."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=float)
    if scores.size == 0:
        return None
    values, group = np.unique(scores, return_inverse=True)
    pos = np.bincount(group, weights=w * labels, minlength=len(values))
    neg = np.bincount(group, weights=w * ~labels, minlength=len(values))
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return None
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (total_pos * total_neg))


def bootstrap_auc_ci(scores: Sequence[float], labels: Sequence[int], clusters: Optional[Sequence] = None,
                     replicates: int = DEFAULT_BOOTSTRAP, seed: int = 0, level: float = 0.95
                     ) -> Optional[tuple[float, float]]:
    """Percentile bootstrap interval of the AUC, resampling exams (a cluster = one exam's rows).

    Replicates that draw a single class are dropped; None when the AUC itself is undefined.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(int)
    if auc(scores, labels) is None or replicates <= 0:
        return None
    if clusters is None:
        cluster_index = np.arange(len(scores))
    else:
        _, cluster_index = np.unique(np.asarray(clusters), return_inverse=True)
    n_clusters = int(cluster_index.max()) + 1
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(replicates):
        draws = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
        value = auc(scores, labels, weights=draws[cluster_index])
        if value is not None:
            estimates.append(value)
    if not estimates:
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(estimates, [tail, 100 - tail])
    return float(lo), float(hi)


def roc_points(scores: Sequence[float], labels: Sequence[int]) -> list[tuple[float, float, float]]:
    """(false-positive rate, true-positive rate, threshold) for every distinct score, highest first,
    starting at (0, 0); recall means score >= threshold."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    points = [(0.0, 0.0, math.inf)]
    if scores.size == 0:
        return points
    values = np.unique(scores)[::-1]
    for t in values:
        recalled = scores >= t
        tpr = (recalled & labels).sum() / n_pos if n_pos else 0.0
        fpr = (recalled & ~labels).sum() / n_neg if n_neg else 0.0
        points.append((float(fpr), float(tpr), float(t)))
    return points


def recall_sensitivity_curve(scores, labels) -> list[tuple[float, Optional[float], float]]:
    """(recall rate, sensitivity, threshold) for every distinct score: the trade-off a threshold buys."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    n, n_pos = len(scores), labels.sum()
    out = [(0.0, 0.0 if n_pos else None, math.inf)]
    for t in np.unique(scores)[::-1]:
        recalled = scores >= t
        out.append((float(recalled.sum() / n), float((recalled & labels).sum() / n_pos) if n_pos else None,
                    float(t)))
    return out


def histogram(scores: Iterable[float], bins: int = SCORE_BINS) -> list[int]:
    """Counts of scores in [k/bins, (k+1)/bins), the last bin closed; the same binning as the SQL."""
    counts = [0] * bins
    for s in scores:
        counts[min(int(math.floor(s * bins)), bins - 1)] += 1
    return counts


def psi(reference: Sequence[int], current: Sequence[int], floor: float = 1e-4) -> Optional[float]:
    """Population stability index between two histograms on the same bins:
    sum over bins of (p_cur - p_ref) * ln(p_cur / p_ref), proportions floored at `floor`."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if ref.sum() == 0 or cur.sum() == 0:
        return None
    p, q = np.maximum(ref / ref.sum(), floor), np.maximum(cur / cur.sum(), floor)
    return float(((q - p) * np.log(q / p)).sum())


def psi_verdict(value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    return "major shift" if value > PSI_MAJOR else "moderate shift" if value > PSI_MODERATE else "stable"


def ratio(numerator: float, denominator: float, scale: float = 1.0) -> Optional[float]:
    return None if not denominator else scale * numerator / denominator


# --------------------------------------------------------------------------------------------------
# Volumes, scores, operating points in force (no outcomes needed)
# --------------------------------------------------------------------------------------------------

def volumes(data: ScreeningData) -> dict[str, Any]:
    """Exam and image counts per day (study date, else scored date), site and device; complete vs
    incomplete; in scope vs out (with reasons); rejections by reason, stage and device."""
    c = data
    exam_counts = """COUNT(*) AS exams,
        SUM(CASE WHEN status = 'COMPLETE' THEN 1 ELSE 0 END) AS complete,
        SUM(CASE WHEN in_scope THEN 1 ELSE 0 END) AS in_scope"""
    out = {
        "totals": c.one(f"SELECT {exam_counts} FROM exams"),
        "images": c.one("SELECT COUNT(*) AS images FROM images")["images"],
        "by_day": c.rows(f"SELECT COALESCE(study_date, scored_date) AS day, {exam_counts} FROM exams "
                         "GROUP BY 1 ORDER BY 1"),
        "by_site": c.rows(f"SELECT {SITE_SQL} AS site, {exam_counts} FROM exams GROUP BY 1 ORDER BY 1"),
        "by_device": c.rows(f"SELECT {DEVICE_SQL} AS device, {exam_counts} FROM exams GROUP BY 1 ORDER BY 1"),
        "status": c.rows("SELECT status, COUNT(*) AS exams FROM exams GROUP BY 1 ORDER BY 1"),
        "scope_reasons": c.rows("SELECT scope_reason AS reason, COUNT(*) AS exams FROM exams "
                                "WHERE NOT in_scope GROUP BY 1 ORDER BY 2 DESC, 1"),
        "images_by_site": c.rows(f"SELECT {SITE_SQL} AS site, COUNT(*) AS images FROM images "
                                 "GROUP BY 1 ORDER BY 1"),
        "rejections_total": c.one("SELECT COUNT(*) AS n FROM rejections")["n"],
        "rejections_by_reason": c.rows("SELECT reason, stage, COUNT(*) AS files FROM rejections "
                                       "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"),
        "rejections_by_device": c.rows(f"SELECT {DEVICE_SQL} AS device, reason, COUNT(*) AS files "
                                       "FROM rejections GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2"),
        "rejections_by_day": c.rows("SELECT rejected_date AS day, COUNT(*) AS files FROM rejections "
                                    "GROUP BY 1 ORDER BY 1"),
    }
    return out


def _hist_sql(group_sql: str, where: str = "TRUE", table: str = "exams") -> str:
    return (f"SELECT {group_sql} AS grp, LEAST(CAST(FLOOR(exam_score * {SCORE_BINS}) AS INT64), "
            f"{SCORE_BINS - 1}) AS bin, COUNT(*) AS n FROM {table} "
            f"WHERE exam_score IS NOT NULL AND {where} GROUP BY 1, 2")


def _histograms(data: ScreeningData, group_sql: str, table: str = "exams") -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in data.rows(_hist_sql(group_sql, table=table)):
        out.setdefault(str(r["grp"]), [0] * SCORE_BINS)[int(r["bin"])] += int(r["n"])
    return dict(sorted(out.items()))


def score_distributions(data: ScreeningData) -> dict[str, Any]:
    """Exam-score histograms (10 bins of 0.1) and summaries per site, device and model version, and
    the drift indicator (PSI): each calendar month against the first, each model version against
    the chosen one."""
    stats_sql = ("COUNT(*) AS n, AVG(exam_score) AS mean, "
                 "APPROX_QUANTILE(exam_score, 0.5) AS median, APPROX_QUANTILE(exam_score, 0.9) AS p90")
    by_site = _histograms(data, SITE_SQL)
    by_device = _histograms(data, DEVICE_SQL)
    by_version = _histograms(data, "model_version", table="exams_all")
    period_sql = "STRFTIME(COALESCE(study_date, scored_date), '%Y-%m')"
    by_period = _histograms(data, period_sql)
    periods = list(by_period)
    period_drift = [{"period": p, "exams": sum(by_period[p]),
                     "psi": psi(by_period[periods[0]], by_period[p]),
                     } for p in periods]
    for row in period_drift:
        row["verdict"] = psi_verdict(row["psi"])
    version_drift = []
    chosen = by_version.get(str(data.model_version))
    for v in sorted(by_version, key=_version_order):
        value = psi(chosen, by_version[v]) if chosen else None
        version_drift.append({"model_version": v, "exams": sum(by_version[v]), "psi": value,
                              "verdict": psi_verdict(value)})
    return {
        "overall": _histograms(data, "'all'").get("all", [0] * SCORE_BINS),
        "by_site": by_site, "by_device": by_device, "by_model_version": by_version,
        "by_period": by_period, "period_drift": period_drift, "version_drift": version_drift,
        "summary_by_site": data.rows(f"SELECT {SITE_SQL} AS site, {stats_sql} FROM exams "
                                     "WHERE exam_score IS NOT NULL GROUP BY 1 ORDER BY 1"),
    }


def operating_points_in_force(data: ScreeningData) -> dict[str, Any]:
    """Recall rate and normal-triage rate at the operating points the exams were scored with, overall
    and per site and thresholds version; normal-triage rate over all exams and over in-scope exams."""
    figures = """COUNT(*) AS exams,
        SUM(CASE WHEN recall THEN 1 ELSE 0 END) AS recalled,
        SUM(CASE WHEN normal_triage THEN 1 ELSE 0 END) AS triaged,
        SUM(CASE WHEN in_scope THEN 1 ELSE 0 END) AS in_scope"""

    def finish(row):
        row["recall_rate"] = ratio(row["recalled"] or 0, row["exams"])
        row["normal_triage_rate"] = ratio(row["triaged"] or 0, row["exams"])
        row["normal_triage_rate_in_scope"] = ratio(row["triaged"] or 0, row["in_scope"])
        return row
    return {
        "overall": finish(data.one(f"SELECT {figures} FROM exams")),
        "by_site": [finish(r) for r in data.rows(
            f"SELECT {SITE_SQL} AS site, {figures} FROM exams GROUP BY 1 ORDER BY 1")],
        "by_thresholds_version": [finish(r) for r in data.rows(
            f"SELECT COALESCE(thresholds_version, 'none') AS thresholds_version, {figures} FROM exams "
            "GROUP BY 1 ORDER BY 1")],
        "categories": data.rows("SELECT category, COUNT(*) AS exams FROM exams GROUP BY 1 ORDER BY 1"),
    }


# --------------------------------------------------------------------------------------------------
# Outcome metrics
# --------------------------------------------------------------------------------------------------

CONFUSION_SQL = """COUNT(*) AS exams,
    SUM(cancer) AS cancers,
    SUM(CASE WHEN {recall} THEN 1 ELSE 0 END) AS recalled,
    SUM(CASE WHEN {recall} AND cancer = 1 THEN 1 ELSE 0 END) AS true_positives,
    SUM(CASE WHEN NOT ({recall}) AND cancer = 0 THEN 1 ELSE 0 END) AS true_negatives,
    SUM(CASE WHEN normal_triage THEN 1 ELSE 0 END) AS triaged,
    SUM(CASE WHEN normal_triage AND cancer = 1 THEN 1 ELSE 0 END) AS triaged_cancers,
    SUM(CASE WHEN cancer = 1 AND consensus_recall = 0 THEN 1 ELSE 0 END) AS interval_cancers,
    SUM(CASE WHEN cancer = 1 AND consensus_recall = 0 AND {recall} THEN 1 ELSE 0 END)
        AS interval_cancers_flagged"""


def programme_figures(counts: dict[str, Any]) -> dict[str, Any]:
    """Programme figures from confusion counts (definitions: analytics/README.md)."""
    n = counts.get("exams") or 0
    cancers = counts.get("cancers") or 0
    recalled = counts.get("recalled") or 0
    tp = counts.get("true_positives") or 0
    tn = counts.get("true_negatives") or 0
    triaged = counts.get("triaged") or 0
    out = dict(counts)
    out.update({
        "recall_rate": ratio(recalled, n),
        "cancer_detection_rate_per_1000": ratio(tp, n, 1000),
        "ppv_recall": ratio(tp, recalled),
        "sensitivity": ratio(tp, cancers),
        "specificity": ratio(tn, n - cancers),
        "normal_triage_rate": ratio(triaged, n),
        "cancers_in_normal_triage": counts.get("triaged_cancers") or 0,
        "cancer_rate_in_normal_triage_per_1000": ratio(counts.get("triaged_cancers") or 0, triaged, 1000),
        "interval_cancer_rate_per_1000": ratio(counts.get("interval_cancers") or 0, n, 1000),
    })
    return out


def outcome_metrics(data: ScreeningData, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0
                    ) -> Optional[dict[str, Any]]:
    """Cancer detection rate per 1000, PPV of recall, sensitivity, specificity, AUC with a bootstrap
    CI resampling exams, cancers among normal-triaged exams, breast-level figures, and subgroups by
    age band, site and device, at the recall flags in force. None without outcomes."""
    if not data.has_outcomes:
        return None
    confusion = CONFUSION_SQL.format(recall="recall")
    overall = programme_figures(data.one(f"SELECT {confusion} FROM scored"))
    cols = data.columns("SELECT exam_id, exam_score, cancer, left_score, right_score, left_cancer, "
                        "right_cancer, recall FROM scored ORDER BY exam_id")
    scores, labels = cols["exam_score"].astype(float), cols["cancer"].astype(int)
    overall["auc"] = auc(scores, labels)
    overall["auc_ci"] = bootstrap_auc_ci(scores, labels, replicates=bootstrap, seed=seed)
    matched = data.one("SELECT (SELECT COUNT(*) FROM exams) AS exams_in_table, "
                       "(SELECT COUNT(*) FROM outcome_exams) AS exams_in_outcomes, "
                       "(SELECT COUNT(*) FROM scored) AS matched")
    if not matched["matched"] and matched["exams_in_outcomes"]:
        log.warning("no exam matched the outcomes: were the tables pseudonymised with another key?")
    subgroups = {}
    for name, group_sql in (("age_band", AGE_BAND_SQL), ("site", SITE_SQL), ("device", DEVICE_SQL)):
        rows = []
        for r in data.rows(f"SELECT {group_sql} AS grp, {confusion} FROM scored GROUP BY 1 ORDER BY 1"):
            figures = programme_figures(r)
            sub = data.columns(f"SELECT exam_score, cancer FROM scored WHERE {group_sql} = ?", [r["grp"]])
            figures["auc"] = auc(sub["exam_score"].astype(float), sub["cancer"].astype(int))
            rows.append(figures)
        subgroups[name] = rows
    return {"overall": overall, "matching": matched, "breast": breast_metrics(cols, bootstrap, seed),
            "subgroups": subgroups, "roc": roc_points(scores, labels),
            "trade_off": recall_sensitivity_curve(scores, labels),
            "follow_up_months": data.follow_up_months}


def breast_metrics(cols: dict[str, np.ndarray], bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0
                   ) -> dict[str, Any]:
    """Breast-level figures from breast scores: AUC (bootstrap resampling exams, both breasts
    together) and, among recalled exams with a cancer in one breast only, the share whose cancer
    breast scored higher (the AI pointed at the right side)."""
    left_ok = ~np.isnan(cols["left_score"].astype(float))
    right_ok = ~np.isnan(cols["right_score"].astype(float))
    scores = np.concatenate([cols["left_score"][left_ok], cols["right_score"][right_ok]]).astype(float)
    labels = np.concatenate([cols["left_cancer"][left_ok], cols["right_cancer"][right_ok]]).astype(int)
    exams = np.concatenate([cols["exam_id"][left_ok], cols["exam_id"][right_ok]])
    one_sided = (cols["recall"].astype(bool) & (cols["left_cancer"] != cols["right_cancer"])
                 & left_ok & right_ok)
    right_side = np.where(cols["left_cancer"][one_sided] == 1,
                          cols["left_score"][one_sided] > cols["right_score"][one_sided],
                          cols["right_score"][one_sided] > cols["left_score"][one_sided])
    return {"breasts": int(len(scores)), "cancer_breasts": int(labels.sum()),
            "auc": auc(scores, labels),
            "auc_ci": bootstrap_auc_ci(scores, labels, clusters=exams, replicates=bootstrap, seed=seed),
            "recalled_one_sided_cancers": int(one_sided.sum()),
            "correct_side_share": ratio(int(right_side.sum()), int(one_sided.sum()))}


@dataclasses.dataclass
class ProgrammeMetrics:
    """Every figure of one report, computed once."""
    model_version: Optional[str]
    versions: dict[str, list[str]]
    volumes: dict[str, Any]
    scores: dict[str, Any]
    operating_points: dict[str, Any]
    outcomes: Optional[dict[str, Any]]
    strategies: Optional[list[dict[str, Any]]]
    follow_up_months: int


def compute(data: ScreeningData, thresholds=None, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0
            ) -> ProgrammeMetrics:
    """All figures for one model version; reading strategies when outcomes carry reader decisions."""
    from mammobeam.analytics import strategies as strategies_module
    strategy_rows = None
    if data.has_reader_decisions and data.model_version is not None:
        strategy_rows = strategies_module.compare(data, thresholds)
    return ProgrammeMetrics(
        model_version=data.model_version, versions=data.versions(), volumes=volumes(data),
        scores=score_distributions(data), operating_points=operating_points_in_force(data),
        outcomes=outcome_metrics(data, bootstrap=bootstrap, seed=seed), strategies=strategy_rows,
        follow_up_months=data.follow_up_months)
