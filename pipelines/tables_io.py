"""Rows for the three tables, and the Parquet dataset they are committed to.

Layout under the output folder (Hive partitions, read directly by DuckDB and pyarrow.dataset)::

    images/scored_date=YYYY-MM-DD/<run_id>-<chunk_id>.parquet
    exams/scored_date=YYYY-MM-DD/<run_id>-<chunk_id>.parquet
    rejections/rejected_date=YYYY-MM-DD/<run_id>-<chunk_id>.parquet
    _commits/<run_id>/<chunk_id>.json      one per committed chunk
    _staging/<run_id>/<chunk_id>/...       chunks being written (never read)
    _runs/<run_id>/run.json, manifest.jsonl  what a run covers, for --resume

A chunk is written to _staging first and moved into the table folders only when complete; then its
commit record is written. Resume removes any files of an uncommitted chunk before redoing it, so a
reader never sees half a chunk for long and never sees it twice.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from mammobeam.schemas.records import ExamResult, ImageScore, Rejection
from mammobeam.schemas.tables import TABLES, Table
from mammobeam.transforms.pixels import row_direction_check

COMMITS_DIR = "_commits"
STAGING_DIR = "_staging"
RUNS_DIR = "_runs"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def image_row(score: ImageScore, run_id: str, at: dt.datetime, chunk_id: Optional[str] = None) -> dict:
    r = score.record
    return {
        "sop_instance_uid": r.sop_instance_uid, "exam_id": r.exam_id,
        "study_instance_uid": r.study_instance_uid, "source_uri": r.source_uri, "site": r.site,
        "laterality": r.laterality, "laterality_source": r.laterality_source, "view": r.view,
        "view_source": r.view_source, "flip_applied": score.flip_applied,
        "orientation_check": score.orientation_check, "row_direction": row_direction_check(r),
        "image_score": score.score,
        "manufacturer": r.manufacturer, "manufacturer_model": r.manufacturer_model,
        "transfer_syntax_uid": r.transfer_syntax_uid, "model_name": score.model_name,
        "model_version": score.model_version, "preprocessing_version": score.preprocessing_version,
        "run_id": run_id, "chunk_id": chunk_id, "scored_at": at, "scored_date": at.date(),
    }


def exam_row(exam: ExamResult, run_id: str, at: dt.datetime, chunk_id: Optional[str] = None) -> dict:
    row = exam.as_row()
    row["study_date"] = dt.date.fromisoformat(exam.study_date) if exam.study_date else None
    row.update(run_id=run_id, chunk_id=chunk_id, scored_at=at, scored_date=at.date())
    return row


def rejection_row(rejection: Rejection, run_id: str, at: dt.datetime, chunk_id: Optional[str] = None) -> dict:
    return {
        "source_uri": rejection.source_uri, "sop_instance_uid": rejection.sop_instance_uid,
        "exam_id": rejection.exam_id, "site": rejection.site, "manufacturer": rejection.manufacturer,
        "manufacturer_model": rejection.manufacturer_model, "laterality": rejection.laterality,
        "view": rejection.view, "reason": str(rejection.reason), "detail": rejection.detail,
        "stage": str(rejection.stage), "run_id": run_id, "chunk_id": chunk_id, "rejected_at": at,
        "rejected_date": at.date(),
    }


def to_arrow(table: Table, rows: list[dict]) -> pa.Table:
    schema = table.arrow_schema()
    return pa.Table.from_pylist([{c: row.get(c) for c in schema.names} for row in rows], schema=schema)


class ParquetDataset:
    """The output folder: commits chunks atomically and answers what a run has committed."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def commit_chunk(self, run_id: str, chunk_id: str, rows: dict[str, list[dict]], files: int) -> None:
        """Write every table's rows of one chunk, move them in, then write the commit record."""
        staging = self.root / STAGING_DIR / run_id / chunk_id
        shutil.rmtree(staging, ignore_errors=True)
        staged: list[tuple[Path, Path]] = []
        for name, table_rows in rows.items():
            table = TABLES[name]
            by_date: dict[dt.date, list[dict]] = {}
            for row in table_rows:
                by_date.setdefault(row[table.partition_column], []).append(row)
            for date, part in sorted(by_date.items()):
                rel = Path(name) / f"{table.partition_column}={date.isoformat()}" / f"{run_id}-{chunk_id}.parquet"
                tmp = staging / rel
                tmp.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(to_arrow(table, part).drop_columns([table.partition_column]), tmp)
                staged.append((tmp, self.root / rel))
        for tmp, final in staged:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        record = self.root / COMMITS_DIR / run_id / f"{chunk_id}.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        counts = {name: len(r) for name, r in rows.items()}
        tmp_record = record.with_suffix(".json.tmp")
        tmp_record.write_text(json.dumps({"run_id": run_id, "chunk_id": chunk_id, "files": files,
                                          "rows": counts, "committed_at": utcnow().isoformat()}))
        os.replace(tmp_record, record)
        shutil.rmtree(staging, ignore_errors=True)

    def committed_chunks(self, run_id: str) -> set[str]:
        folder = self.root / COMMITS_DIR / run_id
        return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()

    def committed_files(self, run_id: str) -> int:
        folder = self.root / COMMITS_DIR / run_id
        return sum(json.loads(p.read_text())["files"] for p in folder.glob("*.json")) if folder.is_dir() else 0

    def clear_uncommitted(self, run_id: str, chunk_ids: Iterable[str]) -> int:
        """Remove any table files of chunks that have no commit record (a run killed mid-move)."""
        removed = 0
        for chunk_id in chunk_ids:
            for name in TABLES:
                for path in (self.root / name).glob(f"*/{run_id}-{chunk_id}.parquet"):
                    path.unlink()
                    removed += 1
        shutil.rmtree(self.root / STAGING_DIR / run_id, ignore_errors=True)
        return removed

    def run_counts(self, run_id: str) -> tuple[int, dict[str, int], dict[str, int]]:
        """(images scored, rejections by reason, exams by status) committed by one run."""
        import duckdb
        con = duckdb.connect()

        def grouped(name: str, column: str) -> dict[str, int]:
            if not self.has_table(name):
                return {}
            return dict(con.execute(
                f"SELECT {column}, count(*) FROM read_parquet('{self.table_glob(name)}', "
                f"hive_partitioning = true) WHERE run_id = ? GROUP BY {column}", [run_id]).fetchall())
        scored = sum(grouped("images", "run_id").values())
        return scored, grouped("rejections", "reason"), grouped("exams", "status")

    def table_glob(self, name: str) -> str:
        return str(self.root / name / "*" / "*.parquet")

    def has_table(self, name: str) -> bool:
        return any((self.root / name).glob("*/*.parquet"))


def open_output(output: str):
    """The table destination named by --output: a Parquet folder, or `bq://PROJECT.DATASET`.

    Every destination offers commit_chunk, committed_chunks, committed_files and clear_uncommitted.
    """
    if output.startswith("bq://"):
        from mammobeam.pipelines.bigquery_io import BigQueryDataset
        return BigQueryDataset.from_uri(output)
    return ParquetDataset(output)
