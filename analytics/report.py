"""The programme dashboard: one self-contained HTML file (inline SVG, inline CSS, no network).

`mammobeam report --tables DIR [--outcomes CSV] --output report.html`

Every figure comes from metrics.compute (one computation); the reading-strategy section shows the rows
strategies.compare returns, the same rows `mammobeam strategies` prints. Headline figures carry
`data-metric` and `data-value` attributes so tests (and scrapers) read the exact value shown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import os
import sys
from typing import Any, Optional

from mammobeam.analytics import charts, metrics, strategies

# Headline figures: key, label, kind (how it is shown); outcome figures only with outcomes.
HEADLINE_VOLUME = (("exams", "Exams", "int"), ("complete_share", "Complete exams", "pct"),
                   ("in_scope_share", "In scope", "pct"), ("images", "Images scored", "int"),
                   ("rejections", "Files rejected", "int"), ("recall_rate", "AI recall rate", "pct"),
                   ("normal_triage_rate", "Normal-triage rate", "pct"))
HEADLINE_OUTCOMES = (("matched_exams", "Exams with outcomes", "int"),
                     ("cancers", "Cancers (in window)", "int"),
                     ("cancer_detection_rate_per_1000", "Cancer detection /1000", "rate"),
                     ("ppv_recall", "PPV of recall", "pct"), ("sensitivity", "Sensitivity", "pct"),
                     ("specificity", "Specificity", "pct"), ("auc", "AUC", "auc"),
                     ("interval_cancers", "Interval cancers", "int"),
                     ("cancers_in_normal_triage", "Cancers among normal-triaged", "int"))


def headline(m: metrics.ProgrammeMetrics) -> dict[str, Any]:
    """The headline figures of one computation, as a flat dict."""
    totals = m.volumes["totals"]
    n = totals["exams"] or 0
    out = {"model_version": m.model_version, "exams": n,
           "complete_share": metrics.ratio(totals["complete"] or 0, n),
           "in_scope_share": metrics.ratio(totals["in_scope"] or 0, n),
           "images": m.volumes["images"], "rejections": m.volumes["rejections_total"],
           "recall_rate": m.operating_points["overall"]["recall_rate"],
           "normal_triage_rate": m.operating_points["overall"]["normal_triage_rate"]}
    if m.outcomes is not None:
        o = m.outcomes["overall"]
        out.update({"matched_exams": o["exams"], "cancers": o["cancers"] or 0,
                    "follow_up_months": m.follow_up_months,
                    "cancer_detection_rate_per_1000": o["cancer_detection_rate_per_1000"],
                    "ppv_recall": o["ppv_recall"], "sensitivity": o["sensitivity"],
                    "specificity": o["specificity"], "auc": o["auc"],
                    "auc_ci": o["auc_ci"], "interval_cancers": o["interval_cancers"] or 0,
                    "cancers_in_normal_triage": o["cancers_in_normal_triage"]})
    return out


def summary(tables: str, outcomes: Optional[str] = None,
            follow_up_months: int = metrics.DEFAULT_FOLLOW_UP_MONTHS, pseudonymizer=None,
            model_version: Optional[str] = None, thresholds=None,
            bootstrap: int = metrics.DEFAULT_BOOTSTRAP) -> dict[str, Any]:
    """The headline figures the dashboard shows, computed from the tables (and outcomes)."""
    data = metrics.ScreeningData(tables, outcomes, follow_up_months, model_version, pseudonymizer)
    return headline(metrics.compute(data, thresholds, bootstrap=bootstrap))


def _fmt(value, kind: str) -> str:
    return html.escape(charts.format_figure(value, kind))


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    if not rows:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figures(pairs, values: dict[str, Any]) -> str:
    cells = []
    for key, label, kind in pairs:
        value = values.get(key)
        shown = _fmt(value, kind)
        extra = ""
        if key == "auc" and values.get("auc_ci"):
            lo, hi = values["auc_ci"]
            extra = f'<div class="ci">95% CI {lo:.3f}-{hi:.3f}</div>'
        cells.append(f'<div class="figure"><div class="label">{html.escape(label)}</div>'
                     f'<div class="value" data-metric="{key}" data-value="{"" if value is None else value}">'
                     f'{shown}</div>{extra}</div>')
    return '<div class="figures">' + "".join(cells) + "</div>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.figures{display:flex;flex-wrap:wrap;gap:10px}.figure{border:1px solid #ddd;border-radius:6px;
padding:8px 12px;min-width:130px}.label{font-size:12px;color:#555}.value{font-size:22px;font-weight:600}
.ci{font-size:11px;color:#555}.charts{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:right}td:first-child,th:first-child{text-align:left}.note{font-size:12px;color:#555}
.empty{color:#888;font-size:12px}
"""


def render(m: metrics.ProgrammeMetrics, tables: str, thresholds_label: str = "as scored") -> str:
    """The dashboard's HTML for one computation."""
    h = headline(m)
    v, s, op, o = m.volumes, m.scores, m.operating_points, m.outcomes
    pct = lambda x: _fmt(x, "pct")  # noqa: E731
    parts = [f"<h1>Screening programme report: model version {html.escape(str(m.model_version))}</h1>",
             f'<p class="note">Tables: {html.escape(tables if tables.startswith("bq://") else os.path.abspath(tables))}. Generated '
             f'{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Every table read with one row '
             f'per key (latest revision).'
             + (f" Cancers count within {m.follow_up_months} months of the screen." if o else
                " No outcomes given: outcome figures are not shown.") + "</p>",
             "<h2>Headline figures</h2>", _figures(HEADLINE_VOLUME, h)]
    if o:
        parts.append(_figures(HEADLINE_OUTCOMES, h))
        matching = o["matching"]
        parts.append(f'<p class="note">{matching["matched"]} of {matching["exams_in_table"]} exams '
                     f'matched to {matching["exams_in_outcomes"]} exams in the outcomes.</p>')
    versions = m.versions
    parts.append("<h2>Versions covered</h2>" + _table(
        ["what", "versions"],
        [["model", ", ".join(versions["model_name"])],
         ["model version analysed", ", ".join(versions["model_version"])],
         ["model versions in the tables", ", ".join(versions["model_versions_in_tables"])],
         ["preprocessing", ", ".join(versions["preprocessing_version"])],
         ["thresholds (as scored)", ", ".join(versions["thresholds_version"]) or "none"],
         ["thresholds for strategies", thresholds_label]]))

    # Volumes ---------------------------------------------------------------------------------------
    days = v["by_day"]
    parts.append("<h2>Volumes</h2><div class=\"charts\">" + charts.bar_chart(
        "volume", "Exams per day", [str(r["day"]) for r in days], [r["exams"] for r in days],
        "study date", "exams", width=640) + charts.bar_chart(
        "rejections", "Rejected files by reason", [r["reason"] for r in v["rejections_by_reason"]],
        [r["files"] for r in v["rejections_by_reason"]], "reason", "files", color=charts.PALETTE[1])
        + "</div>")
    vol_headers = ["", "exams", "complete", "in scope"]
    parts.append("<h3>By site</h3>" + _table(vol_headers, [[r["site"], r["exams"], r["complete"],
                                                               r["in_scope"]] for r in v["by_site"]]))
    parts.append("<h3>By device</h3>" + _table(vol_headers, [[r["device"], r["exams"], r["complete"],
                                                                 r["in_scope"]] for r in v["by_device"]]))
    parts.append("<h3>Exam status</h3>" + _table(["status", "exams"], [[r["status"], r["exams"]]
                                                                        for r in v["status"]]))
    parts.append("<h3>Out of scope, by reason</h3>" + _table(
        ["reason", "exams"], [[r["reason"], r["exams"]] for r in v["scope_reasons"]]))
    parts.append("<h3>Rejections by reason and stage</h3>" + _table(
        ["reason", "stage", "files"], [[r["reason"], r["stage"], r["files"]]
                                       for r in v["rejections_by_reason"]], "rejections"))
    parts.append("<h3>Rejections by device</h3>" + _table(
        ["device", "reason", "files"], [[r["device"], r["reason"], r["files"]]
                                        for r in v["rejections_by_device"]]))

    # Scores --------------------------------------------------------------------------------------
    hist = ['<div class="charts">']
    for i, (site, counts) in enumerate(s["by_site"].items()):
        hist.append(charts.histogram_chart(f"hist-site-{i}", f"Scores, site {site}", counts))
    for i, (device, counts) in enumerate(s["by_device"].items()):
        hist.append(charts.histogram_chart(f"hist-device-{i}", f"Scores, device {device}", counts,
                                           color=charts.PALETTE[2]))
    hist.append("</div>")
    parts.append("<h2>Score distributions</h2>" + "".join(hist))
    parts.append("<h3>Drift by month (PSI against the first month)</h3>" + _table(
        ["month", "exams", "PSI", "verdict"],
        [[r["period"], r["exams"], "n/a" if r["psi"] is None else f"{r['psi']:.3f}", r["verdict"]]
         for r in s["period_drift"]]))
    parts.append("<h3>Drift by model version (PSI against the analysed version)</h3>" + _table(
        ["model version", "exams", "PSI", "verdict"],
        [[r["model_version"], r["exams"], "n/a" if r["psi"] is None else f"{r['psi']:.3f}",
          r["verdict"]] for r in s["version_drift"]]))

    # Operating points ----------------------------------------------------------------------------
    parts.append("<h2>Operating points in force</h2>" + _table(
        ["site", "exams", "recall rate", "normal-triage rate", "normal triage (in scope)"],
        [[r["site"], r["exams"], pct(r["recall_rate"]), pct(r["normal_triage_rate"]),
          pct(r["normal_triage_rate_in_scope"])] for r in op["by_site"]]) + _table(
        ["thresholds version", "exams", "recall rate", "normal-triage rate"],
        [[r["thresholds_version"], r["exams"], pct(r["recall_rate"]), pct(r["normal_triage_rate"])]
         for r in op["by_thresholds_version"]]))

    # Outcomes ------------------------------------------------------------------------------------
    if o:
        overall = o["overall"]
        markers = [("AI at operating point", 1 - overall["specificity"] if overall["specificity"]
                    is not None else None, overall["sensitivity"])]
        trade_markers = [("AI at operating point", overall["recall_rate"], overall["sensitivity"])]
        for row in m.strategies or []:
            if row["key"] in ("double_reading", "single_reader"):
                label = "Readers (consensus)" if row["key"] == "double_reading" else "Reader 1"
                fpr = None if row["specificity"] is None else 1 - row["specificity"]
                markers.append((label, fpr, row["sensitivity"]))
                trade_markers.append((label, row["recall_rate"], row["sensitivity"]))
        roc = [(x, y) for x, y, _ in o["roc"]] + [(1.0, 1.0)]
        trade = [(r, s_) for r, s_, _ in o["trade_off"]]
        auc_text = "n/a" if overall["auc"] is None else f"{overall['auc']:.3f}"
        parts.append("<h2>Accuracy against outcomes</h2><div class=\"charts\">" + charts.line_chart(
            "roc", f"ROC, exam level (AUC {auc_text})", [("AI exam score", roc)], markers,
            "1 - specificity", "sensitivity", diagonal=True) + charts.line_chart(
            "tradeoff", "Recall rate versus sensitivity", [("AI threshold sweep", trade)],
            trade_markers, "recall rate", "sensitivity") + "</div>")
        sub_headers = ["", "exams", "cancers", "recall", "CDR/1000", "PPV", "sensitivity",
                       "specificity", "AUC", "cancers in triage"]
        for name, rows in o["subgroups"].items():
            parts.append(f"<h3>By {name.replace('_', ' ')}</h3>" + _table(sub_headers, [[
                r["grp"], r["exams"], r["cancers"], pct(r["recall_rate"]),
                _fmt(r["cancer_detection_rate_per_1000"], "rate"), pct(r["ppv_recall"]),
                pct(r["sensitivity"]), pct(r["specificity"]), _fmt(r["auc"], "auc"),
                r["cancers_in_normal_triage"]] for r in rows]))
        b = o["breast"]
        ci = f" (95% CI {b['auc_ci'][0]:.3f}-{b['auc_ci'][1]:.3f})" if b["auc_ci"] else ""
        parts.append("<h3>Breast level</h3>" + _table(
            ["breasts", "cancer breasts", "AUC", "recalled one-sided cancers", "cancer side scored higher"],
            [[b["breasts"], b["cancer_breasts"], _fmt(b["auc"], "auc") + ci, b["recalled_one_sided_cancers"],
              pct(b["correct_side_share"])]]))

    # Reading strategies ------------------------------------------------------------------------
    if m.strategies:
        rows = m.strategies
        parts.append("<h2>Reading strategies</h2>" + _table(
            ["strategy"] + [label for _, label, _ in strategies.COLUMNS],
            [[r["name"]] + [_fmt(r[k], kind) for k, _, kind in strategies.COLUMNS]
             for r in rows], "strategies"))
        parts.append(f'<p class="note">{rows[0]["exams"]} exams with all reader decisions, '
                     f'{rows[0]["cancers"]} cancers within the follow-up window. Missed cancers are '
                     "those the strategy does not recall; interval-cancer capture is the share of them "
                     "the AI flagged at the operating point. Workload counts human reads "
                     "(arbitrations and reviews included).</p><ul>"
                     + "".join(f"<li><b>{html.escape(r['name'])}</b>: {html.escape(r['rule'])}</li>"
                               for r in rows) + "</ul>")
    body = "\n".join(parts)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>mammobeam report: model {html.escape(str(m.model_version))}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_report(tables: str, output: str, outcomes: Optional[str] = None,
                 follow_up_months: int = metrics.DEFAULT_FOLLOW_UP_MONTHS, pseudonymizer=None,
                 model_version: Optional[str] = None, thresholds=None,
                 bootstrap: int = metrics.DEFAULT_BOOTSTRAP) -> str:
    """Write the dashboard for `tables` (and `outcomes`) to `output`; returns the path written."""
    data = metrics.ScreeningData(tables, outcomes, follow_up_months, model_version, pseudonymizer)
    m = metrics.compute(data, thresholds, bootstrap=bootstrap)
    page = render(m, tables, thresholds.version if thresholds else "as scored")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        f.write(page)
    return os.path.abspath(output)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    strategies.add_common_arguments(parser, outcomes_required=False)
    parser.add_argument("--output", required=True, help="HTML file to write")
    parser.add_argument("--thresholds", default=None,
                        help="thresholds file for the reading strategies (default: flags as scored)")
    parser.add_argument("--bootstrap", type=int, default=metrics.DEFAULT_BOOTSTRAP,
                        help="bootstrap replicates for AUC intervals (default %(default)s)")


def run(args) -> int:
    from mammobeam.schemas.thresholds import Thresholds, ThresholdsError
    try:
        thresholds = Thresholds.load(args.thresholds) if args.thresholds else None
        model_version = args.model_version or (thresholds.model_version if thresholds else None)
        path = write_report(args.tables, args.output, args.outcomes, args.follow_up_months,
                            strategies.pseudonymizer_from(args), model_version, thresholds,
                            args.bootstrap)
    except (metrics.AnalyticsError, ThresholdsError, OSError) as e:
        print(f"mammobeam report: {e}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0
