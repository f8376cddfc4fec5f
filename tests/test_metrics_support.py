"""Builders for the analytics tests: tables written with pyarrow as the pipeline lays them out, and
outcomes CSVs as `mammobeam synth` writes them. No tests here; the test_* modules import it."""

from __future__ import annotations

import csv
import datetime as dt
import os
from typing import Iterable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from mammobeam.schemas.tables import TABLES
from mammobeam.transforms.pseudonyms import Pseudonymizer

PSEUDONYMIZER = Pseudonymizer(b"analytics-test-key-0123456789")
T0 = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.timezone.utc)
OUTCOME_HEADER = ["accession_number", "site", "study_date", "laterality", "cancer", "lesion_type",
                  "reader1_recall", "reader2_recall", "consensus_recall", "diagnosis_date",
                  "interval_cancer"]


def exam(exam_id: str, score: Optional[float], *, site: str = "North", model_version: str = "1",
         recall: Optional[bool] = None, normal_triage: Optional[bool] = None, in_scope: bool = True,
         status: str = "COMPLETE", age: Optional[int] = 55, manufacturer: str = "Acme",
         manufacturer_model: str = "M1", study_date: dt.date = dt.date(2024, 2, 1),
         scored_at: dt.datetime = T0, revision: int = 0, left: Optional[float] = None,
         right: Optional[float] = None, recall_threshold: float = 0.5, triage_threshold: float = 0.2,
         thresholds_version: str = "t1", preprocessing_version: str = "pp1",
         model_name: str = "demo", scope_reason: Optional[str] = None) -> dict:
    """One exams row; the accession number is the exam id, pseudonymised with the test key."""
    if recall is None:
        recall = score is not None and score >= recall_threshold
    if normal_triage is None:
        normal_triage = score is not None and in_scope and score < triage_threshold
    return {
        "exam_id": exam_id, "study_instance_uid": f"1.2.{exam_id}",
        "accession_key": PSEUDONYMIZER.accession(exam_id, site), "patient_key": f"p-{exam_id}",
        "age_at_exam": age, "site": site, "manufacturer": manufacturer,
        "manufacturer_model": manufacturer_model, "study_date": study_date, "status": status,
        "views": ["L-CC", "L-MLO", "R-CC", "R-MLO"], "missing_views": [],
        "left_score": score if left is None else left, "right_score": 0.01 if right is None else right,
        "exam_score": score, "category": None if score is None else min(10, 1 + int(score * 10)),
        "recall": recall, "normal_triage": normal_triage, "in_scope": in_scope,
        "scope_reason": None if in_scope else (scope_reason or "age unknown"),
        "model_name": model_name, "model_version": model_version,
        "preprocessing_version": preprocessing_version, "thresholds_version": thresholds_version,
        "revision": revision, "run_id": "run-1", "scored_at": scored_at, "scored_date": scored_at.date(),
    }


def image(sop: str, exam_id: str, score: float, *, site: str = "North", model_version: str = "1",
          scored_at: dt.datetime = T0) -> dict:
    return {"sop_instance_uid": sop, "exam_id": exam_id, "study_instance_uid": None,
            "source_uri": f"/data/{sop}.dcm", "site": site, "laterality": "L", "laterality_source": None,
            "view": "CC", "view_source": None, "flip_applied": False, "orientation_check": None,
            "image_score": score, "manufacturer": "Acme", "manufacturer_model": "M1",
            "transfer_syntax_uid": None, "model_name": "demo", "model_version": model_version,
            "preprocessing_version": "pp1", "run_id": "run-1", "scored_at": scored_at,
            "scored_date": scored_at.date()}


def rejection(uri: str, reason: str, *, stage: str = "accept", manufacturer: str = "Acme",
              rejected_at: dt.datetime = T0) -> dict:
    return {"source_uri": uri, "sop_instance_uid": None, "exam_id": None, "site": "North",
            "manufacturer": manufacturer, "manufacturer_model": "M1", "laterality": None, "view": None,
            "reason": reason, "detail": None, "stage": stage, "run_id": "run-1",
            "rejected_at": rejected_at, "rejected_date": rejected_at.date()}


def write_table(root: str, name: str, rows: Iterable[dict]) -> None:
    """Rows as the pipeline writes them: Hive-partitioned Parquet with the table's Arrow schema."""
    rows = list(rows)
    if not rows:
        return
    spec = TABLES[name]
    table = pa.Table.from_pylist(rows, schema=spec.arrow_schema())
    pq.write_to_dataset(table, os.path.join(root, name), partition_cols=[spec.partition_column])


def write_tables(root: str, exams=(), images=(), rejections=()) -> str:
    write_table(root, "exams", exams)
    write_table(root, "images", images)
    write_table(root, "rejections", rejections)
    return root


def outcome(accession: str, *, site: str = "North", study_date: str = "2024-02-01",
            cancer_side: Optional[str] = None, diagnosis_date: str = "", r1: Optional[int] = 0,
            r2: Optional[int] = 0, consensus: Optional[int] = 0, interval: int = 0) -> list[list]:
    """The two breast rows of one exam; `cancer_side` L, R or None."""
    rows = []
    for side in ("L", "R"):
        cancer = 1 if cancer_side == side else 0
        rows.append([accession, site, study_date, side, cancer, "mass" if cancer else "",
                     "" if r1 is None else r1, "" if r2 is None else r2,
                     "" if consensus is None else consensus, diagnosis_date if cancer else "",
                     interval if cancer else 0])
    return rows


def write_outcomes(path: str, exams_rows: Iterable[list[list]]) -> str:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(OUTCOME_HEADER)
        for pair in exams_rows:
            w.writerows(pair)
    return path


def random_programme(root: str, n: int = 240, seed: int = 7) -> dict:
    """A programme with known answers: exams over two sites, two devices and four age bands with
    seeded scores and cancers; returns the per-exam truth the tests compute their references from."""
    import numpy as np
    rng = np.random.default_rng(seed)
    truth = {"exam_id": [], "site": [], "device": [], "age": [], "score": [], "cancer": [],
             "left": [], "right": [], "left_cancer": [], "right_cancer": [], "recall": [],
             "triage": [], "r1": [], "r2": [], "consensus": []}
    exams, outcomes = [], []
    for i in range(n):
        exam_id = f"x{i:04d}"
        site = "North" if i % 3 else "South"
        maker = ("Acme", "M1") if i % 2 else ("Zed", "Z9")
        age = int(rng.integers(45, 78))
        cancer = bool(rng.random() < 0.15)
        side = "L" if rng.random() < 0.5 else "R"
        cancer_score = float(np.clip(rng.beta(5, 2) if cancer else rng.beta(2, 5), 0.001, 0.999))
        other = float(np.clip(rng.beta(2, 5), 0.001, 0.999))
        left, right = (cancer_score, other) if side == "L" else (other, cancer_score)
        score = round(max(left, right), 4)
        in_scope = i % 17 != 0
        r1 = int(rng.random() < (0.8 if cancer else 0.08))
        r2 = int(rng.random() < (0.8 if cancer else 0.08))
        consensus = int(r1 and r2) if r1 == r2 else int(rng.random() < (0.7 if cancer else 0.3))
        day = dt.date(2024, 1 + i % 3, 1 + i % 27)
        row = exam(exam_id, score, site=site, manufacturer=maker[0], manufacturer_model=maker[1],
                   age=age, left=left, right=right, in_scope=in_scope, study_date=day,
                   scored_at=T0 + dt.timedelta(minutes=i))
        exams.append(row)
        if i % 5 == 0:  # an older revision of the same exam that must not count
            exams.append(exam(exam_id, 0.999 - score, site=site, manufacturer=maker[0],
                              manufacturer_model=maker[1], age=age, study_date=day, in_scope=in_scope,
                              scored_at=row["scored_at"] - dt.timedelta(hours=1)))
        diagnosis = (day + dt.timedelta(days=40)).isoformat() if cancer else ""
        outcomes.append(outcome(exam_id, site=site, study_date=day.isoformat(),
                                cancer_side=side if cancer else None, diagnosis_date=diagnosis,
                                r1=r1, r2=r2, consensus=consensus, interval=int(cancer and not consensus)))
        for key, value in (("exam_id", exam_id), ("site", site), ("device", f"{maker[0]} {maker[1]}"),
                           ("age", age), ("score", score), ("cancer", int(cancer)), ("left", left),
                           ("right", right), ("left_cancer", int(cancer and side == "L")),
                           ("right_cancer", int(cancer and side == "R")), ("recall", row["recall"]),
                           ("triage", row["normal_triage"]), ("r1", r1), ("r2", r2),
                           ("consensus", consensus)):
            truth[key].append(value)
    write_tables(root, exams, [image(f"s{i}", e["exam_id"], 0.5) for i, e in enumerate(exams[:10])],
                 [rejection(f"/r/{i}", "NOT_MAMMOGRAPHY" if i % 2 else "DECODE_FAILED",
                            manufacturer="Acme" if i < 3 else "Zed") for i in range(5)])
    truth["outcomes"] = write_outcomes(os.path.join(root, "outcomes.csv"), outcomes)
    truth = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in truth.items()}
    return truth
