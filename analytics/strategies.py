"""Reading strategies: what happens to recall, cancers found and workload if the AI reads.

Every strategy is applied to the same exams: those of one model version that have outcomes with all
three human decisions (reader1_recall, reader2_recall, consensus_recall). The AI's decisions are the
exam's recall flag (score at or above the site's recall threshold) and its normal-triage flag (in
scope and below the site's triage threshold), from the thresholds file given, else as the exams were
scored. Each strategy's rule is written once, in SQL, and stated in words beside it; `mammobeam
strategies` prints the table and `mammobeam report` shows the same rows (metrics.compute calls
`compare`).

Workload counts human reads: each reader's read is one, an arbitration (the consensus meeting that
settles two discordant opinions) is one, a safety-net review is one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

import pyarrow as pa

from mammobeam.analytics import metrics
from mammobeam.analytics.charts import format_figure


@dataclasses.dataclass(frozen=True)
class Strategy:
    key: str
    name: str
    rule: str  # the rule in words, shown wherever the figures are
    recall_sql: str  # true when the strategy recalls the exam
    reads_sql: str  # human reads the exam costs


_R1, _R2, _CONSENSUS = "reader1_recall = 1", "reader2_recall = 1", "consensus_recall = 1"
_DISCORDANT_HUMANS = "CASE WHEN reader1_recall <> reader2_recall THEN 1 ELSE 0 END"
_DISCORDANT_R1_AI = f"CASE WHEN ({_R1}) <> ai_recall THEN 1 ELSE 0 END"

STRATEGIES: tuple[Strategy, ...] = (
    Strategy("double_reading", "Double reading with consensus (today)",
             "Two readers read every exam; discordant exams go to arbitration; the consensus decision "
             "recalls.",
             _CONSENSUS, f"2 + {_DISCORDANT_HUMANS}"),
    Strategy("single_reader", "Single reader",
             "Reader 1 alone reads every exam and decides.",
             _R1, "1"),
    Strategy("ai_second_reader", "AI as second reader",
             "The AI replaces reader 2: where reader 1 and the AI agree, that decides; discordant exams "
             "go to arbitration, modelled by the consensus decision.",
             f"CASE WHEN ({_R1}) = ai_recall THEN {_R1} ELSE {_CONSENSUS} END",
             f"1 + {_DISCORDANT_R1_AI}"),
    Strategy("ai_triage", "AI triage",
             "Exams under the normal-triage threshold (in scope) get one reader (reader 1 decides); the "
             "rest are double read with consensus.",
             f"CASE WHEN ai_triage THEN {_R1} ELSE {_CONSENSUS} END",
             f"CASE WHEN ai_triage THEN 1 ELSE 2 + {_DISCORDANT_HUMANS} END"),
    Strategy("ai_safety_net", "AI as safety net",
             "Double reading with consensus; exams the AI flags that the humans cleared are reviewed "
             "and, as an upper bound, recalled (one review read each).",
             f"{_CONSENSUS} OR ai_recall",
             f"2 + {_DISCORDANT_HUMANS} + CASE WHEN ai_recall AND consensus_recall = 0 THEN 1 ELSE 0 END"),
)


def _define_ai_decisions(data: metrics.ScreeningData, thresholds=None) -> None:
    """The view `strategy_exams`: scored exams with all human decisions and the AI's decisions."""
    if thresholds is None:
        decisions = "recall AS ai_recall, normal_triage AS ai_triage"
        join = ""
    else:
        sites = sorted(thresholds.sites)
        data.con.register("ai_site_points", pa.table({
            "point_site": pa.array(sites, pa.string()),
            "site_recall_threshold": [thresholds.sites[s].recall_threshold for s in sites],
            "site_triage_threshold": [thresholds.sites[s].normal_triage_threshold for s in sites]}))
        d = thresholds.default
        recall_t = f"COALESCE(site_recall_threshold, {d.recall_threshold!r})"
        triage_t = f"COALESCE(site_triage_threshold, {d.normal_triage_threshold!r})"
        decisions = (f"exam_score >= {recall_t} AS ai_recall, "
                     f"(in_scope AND exam_score < {triage_t}) AS ai_triage")
        join = "LEFT JOIN ai_site_points ON site = point_site"
    data.con.execute(f"""
        CREATE OR REPLACE VIEW strategy_exams AS
        SELECT *, {decisions} FROM scored {join}
        WHERE reader1_recall IS NOT NULL AND reader2_recall IS NOT NULL
          AND consensus_recall IS NOT NULL""")


def compare(data: metrics.ScreeningData, thresholds=None) -> list[dict[str, Any]]:
    """One row per strategy: recall rate, cancers detected per 1000, PPV, sensitivity, specificity,
    reads per 1000 exams and relative to today, and interval-cancer capture (of the cancers the
    strategy does not recall, the share the AI flagged at the operating point)."""
    if not data.has_outcomes:
        raise metrics.AnalyticsError("reading strategies need outcomes with reader decisions")
    if thresholds is not None:
        check_thresholds(data, thresholds)
    _define_ai_decisions(data, thresholds)
    rows = []
    for s in STRATEGIES:
        counts = data.one(f"""
            SELECT COUNT(*) AS exams, SUM(cancer) AS cancers,
                   SUM(CASE WHEN {s.recall_sql} THEN 1 ELSE 0 END) AS recalled,
                   SUM(CASE WHEN ({s.recall_sql}) AND cancer = 1 THEN 1 ELSE 0 END) AS true_positives,
                   SUM(CASE WHEN NOT ({s.recall_sql}) AND cancer = 0 THEN 1 ELSE 0 END) AS true_negatives,
                   SUM({s.reads_sql}) AS reads,
                   SUM(CASE WHEN NOT ({s.recall_sql}) AND cancer = 1 THEN 1 ELSE 0 END) AS interval_cancers,
                   SUM(CASE WHEN NOT ({s.recall_sql}) AND cancer = 1 AND ai_recall THEN 1 ELSE 0 END)
                       AS interval_cancers_ai_flagged
            FROM strategy_exams""")
        counts = {k: int(v or 0) for k, v in counts.items()}
        n = counts["exams"]
        rows.append({
            "key": s.key, "name": s.name, "rule": s.rule, **counts,
            "recall_rate": metrics.ratio(counts["recalled"], n),
            "cancer_detection_rate_per_1000": metrics.ratio(counts["true_positives"], n, 1000),
            "ppv_recall": metrics.ratio(counts["true_positives"], counts["recalled"]),
            "sensitivity": metrics.ratio(counts["true_positives"], counts["cancers"]),
            "specificity": metrics.ratio(counts["true_negatives"], n - counts["cancers"]),
            "reads_per_1000": metrics.ratio(counts["reads"], n, 1000),
            "interval_cancer_capture": metrics.ratio(counts["interval_cancers_ai_flagged"],
                                                     counts["interval_cancers"]),
        })
    today = rows[0]["reads"]
    for row in rows:
        row["workload_vs_today"] = metrics.ratio(row["reads"], today)
    return rows


def check_thresholds(data: metrics.ScreeningData, thresholds) -> None:
    """Refuse a thresholds file made for another model or preprocessing than the exams."""
    for r in data.rows("SELECT DISTINCT model_name, model_version, preprocessing_version FROM exams"):
        thresholds.check_matches(r["model_name"], r["model_version"], r["preprocessing_version"])


COLUMNS = (("recall_rate", "recall", "pct"), ("cancer_detection_rate_per_1000", "CDR/1000", "rate"),
           ("ppv_recall", "PPV", "pct"), ("sensitivity", "sensitivity", "pct"),
           ("specificity", "specificity", "pct"), ("reads_per_1000", "reads/1000", "rate"),
           ("workload_vs_today", "vs today", "ratio"), ("interval_cancers", "missed cancers", "int"),
           ("interval_cancer_capture", "AI-flagged of missed", "pct"))


def format_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as plain text: one line per strategy, then each rule."""
    header = ["strategy"] + [label for _, label, _ in COLUMNS]
    body = [[r["name"]] + [format_figure(r[key], kind) for key, _, kind in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                       enumerate(zip(line, widths))) for line in [header] + body]
    n = rows[0]["exams"] if rows else 0
    cancers = rows[0]["cancers"] if rows else 0
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(f"{n} exams with all reader decisions, {cancers} cancers within the follow-up window.")
    lines.append("'missed cancers' are cancers within the window that the strategy does not recall "
                 "(its interval cancers); 'AI-flagged of missed' is interval-cancer capture.")
    lines.extend(f"- {r['name']}: {r['rule']}" for r in rows)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------

def add_common_arguments(parser: argparse.ArgumentParser, outcomes_required: bool) -> None:
    parser.add_argument("--tables", required=True,
                        help="folder holding exams/, images/, rejections/, or bq://PROJECT.DATASET (its views)")
    parser.add_argument("--outcomes", required=outcomes_required, default=None,
                        help="outcomes CSV (one row per exam and breast, as `mammobeam synth` writes)")
    parser.add_argument("--follow-up-months", type=int, default=metrics.DEFAULT_FOLLOW_UP_MONTHS,
                        help="a cancer counts if diagnosed within this many months of the screen "
                             "(default %(default)s, a biennial programme's interval)")
    parser.add_argument("--model-version", default=None,
                        help="model version to analyse (default: the latest in the tables)")
    parser.add_argument("--pseudonym-key-file", default=None,
                        help="key the tables' accession pseudonyms were made with "
                             "(default: MAMMOBEAM_PSEUDONYM_KEY[_FILE], else the demo key)")


def pseudonymizer_from(args):
    from mammobeam.transforms.pseudonyms import Pseudonymizer
    return Pseudonymizer.from_config(getattr(args, "pseudonym_key_file", None))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, outcomes_required=True)
    parser.add_argument("--thresholds", default=None,
                        help="thresholds file for the AI's decisions (default: the flags as scored)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from mammobeam.schemas.thresholds import Thresholds, ThresholdsError
    try:
        thresholds = Thresholds.load(args.thresholds) if args.thresholds else None
        model_version = args.model_version or (thresholds.model_version if thresholds else None)
        data = metrics.ScreeningData(args.tables, args.outcomes, args.follow_up_months, model_version,
                                     pseudonymizer_from(args))
        if not data.has_reader_decisions:
            print("mammobeam strategies: the outcomes carry no reader decisions "
                  "(reader1_recall, reader2_recall, consensus_recall)", file=sys.stderr)
            return 2
        rows = compare(data, thresholds)
        if not rows[0]["exams"]:
            print("mammobeam strategies: no exam of the tables matched the outcomes with reader "
                  "decisions; were the tables pseudonymised with another key (--pseudonym-key-file)?",
                  file=sys.stderr)
            return 2
    except (metrics.AnalyticsError, ThresholdsError, OSError) as e:
        print(f"mammobeam strategies: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"Model version {data.model_version}; thresholds: "
              f"{thresholds.version if thresholds else 'as scored'}; follow-up "
              f"{data.follow_up_months} months\n")
        print(format_table(rows))
    return 0
