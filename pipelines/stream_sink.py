"""The streaming sink: the same Hive-partitioned Parquet tables as batch, written in windows of
processing time, so rows are on disk (and readable by DuckDB and `mammobeam report`) while the
pipeline runs. Also the exams table read back, for revisions after the exam state was cleaned up.

Layout (tables_io.py describes the dataset; streaming adds files named so they never collide with
batch's `<run_id>-<chunk_id>.parquet`)::

    exams/scored_date=YYYY-MM-DD/stream-<run_id>-<window start>-<shard>.parquet
    images/scored_date=.../stream-...parquet
    rejections/rejected_date=.../stream-...parquet

Each file is written under a hidden temporary name (`.stream-...parquet.tmp`, which the readers'
`*/*.parquet` globs skip) and renamed when complete, so a reader never sees half a file. Rows are
buffered in state per (table, shard) and flushed by a processing-time timer at the end of the
window; a window's file is rewritten whole if the flush is retried.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import threading
import zlib
from pathlib import Path
from typing import Any, Optional

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.coders import PickleCoder
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (BagStateSpec, ReadModifyWriteStateSpec, TimerSpec,
                                              on_timer)
from apache_beam.utils.timestamp import Timestamp

from mammobeam.pipelines.tables_io import exam_row, image_row, rejection_row, to_arrow, utcnow
from mammobeam.schemas.records import ExamResult, ImageRecord, ImageScore, Rejection
from mammobeam.schemas.tables import TABLES, one_row_per_key_sql
from mammobeam.transforms.exam_state import Clock, PriorExam, WallClock

log = logging.getLogger(__name__)
FILE_PREFIX = "stream-"


def to_table_row(element, run_id: str) -> tuple[str, dict]:
    """(table name, row) for an ExamResult, ImageScore or Rejection, stamped now."""
    at = utcnow()
    if isinstance(element, ExamResult):
        return "exams", exam_row(element, run_id, at)
    if isinstance(element, ImageScore):
        return "images", image_row(element, run_id, at)
    if isinstance(element, Rejection):
        return "rejections", rejection_row(element, run_id, at)
    raise TypeError(f"no table for {type(element).__name__}")


def window_file_name(run_id: str, window_start: float, shard: int) -> str:
    start = dt.datetime.fromtimestamp(window_start, dt.timezone.utc)
    return f"{FILE_PREFIX}{run_id}-{start:%Y%m%dT%H%M%S}-{shard:03d}.parquet"


def write_table_file(output: str, table_name: str, rows: list[dict], file_name: str) -> list[str]:
    """Write rows as one file per partition value, each through a temporary name and a rename."""
    table = TABLES[table_name]
    by_date: dict[dt.date, list[dict]] = {}
    for row in rows:
        by_date.setdefault(row[table.partition_column], []).append(row)
    written = []
    for date, part in sorted(by_date.items()):
        folder = FileSystems.join(output, table_name, f"{table.partition_column}={date.isoformat()}")
        final = FileSystems.join(folder, file_name)
        tmp = FileSystems.join(folder, f".{file_name}.tmp")
        buffer = io.BytesIO()
        pq.write_table(to_arrow(table, part).drop_columns([table.partition_column]), buffer)
        if "://" not in output:
            os.makedirs(folder, exist_ok=True)
            Path(tmp).write_bytes(buffer.getvalue())
            os.replace(tmp, final)
        else:
            with FileSystems.create(tmp) as f:
                f.write(buffer.getvalue())
            if FileSystems.exists(final):
                FileSystems.delete([final])
            FileSystems.rename([tmp], [final])
        written.append(final)
    return written


class _WindowedWriteFn(beam.DoFn):
    ROWS = BagStateSpec("rows", PickleCoder())
    WINDOW = ReadModifyWriteStateSpec("window_start", PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)

    def __init__(self, output: str, run_id: str, window_seconds: float, clock: Clock):
        self.output = output
        self.run_id = run_id
        self.window_seconds = window_seconds
        self.clock = clock
        self.files = beam.metrics.Metrics.counter("mammobeam", "table_files_written")
        self.rows_written = beam.metrics.Metrics.counter("mammobeam", "table_rows_written")

    def process(self, element, rows=beam.DoFn.StateParam(ROWS), window=beam.DoFn.StateParam(WINDOW),
                flush=beam.DoFn.TimerParam(FLUSH)):
        _, row = element
        if window.read() is None:
            now = float(self.clock.now())
            start = now - now % self.window_seconds
            window.write(start)
            flush.set(Timestamp.of(start + self.window_seconds))
        rows.add(row)

    @on_timer(FLUSH)
    def on_flush(self, key=beam.DoFn.KeyParam, rows=beam.DoFn.StateParam(ROWS),
                 window=beam.DoFn.StateParam(WINDOW)):
        table_name, shard = key
        buffered = list(rows.read())
        start = window.read()
        if buffered:
            name = window_file_name(self.run_id, start if start is not None else 0.0, shard)
            written = write_table_file(self.output, table_name, buffered, name)
            self.files.inc(len(written))
            self.rows_written.inc(len(buffered))
            log.info("%s: %d rows -> %s", table_name, len(buffered), ", ".join(written))
        rows.clear()
        window.clear()


def _shard(row: dict, shards: int) -> int:
    return zlib.crc32(str(row.get("source_uri") or row.get("exam_id")).encode()) % shards


class WriteStreamTables(beam.PTransform):
    """(table name, row) -> Parquet files per window of `window_seconds` of processing time."""

    def __init__(self, output: str, run_id: str, window_seconds: float = 60.0, shards: int = 1,
                 clock: Optional[Clock] = None):
        super().__init__()
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.output = output
        self.run_id = run_id
        self.window_seconds = window_seconds
        self.shards = max(1, shards)
        self.clock = clock or WallClock()

    def expand(self, rows):
        shards = self.shards
        return (rows
                | "KeyByTableAndShard" >> beam.Map(
                    lambda tr: ((tr[0], _shard(tr[1], shards)), tr[1]))
                .with_output_types(tuple[tuple[str, int], Any])
                | "BufferAndFlush" >> beam.ParDo(
                    _WindowedWriteFn(self.output, self.run_id, self.window_seconds, self.clock)))


# --- The tables read back -----------------------------------------------------------------------

class TableExamHistory:
    """An exam's latest row and images on the tables (the one-row-per-key rule), for revisions that
    continue after the exam's state was cleaned up, and after a restart. Subclasses say how to read
    one table's current rows for an exam (`_query`)."""

    def _query(self, table: str, exam_id: str) -> list[dict]:
        raise NotImplementedError

    def latest(self, exam_id: str) -> Optional[PriorExam]:
        exams = self._query("exams", exam_id)
        if not exams:
            return None
        exam = exams[0]
        images = tuple(_image_score_from_rows(row, exam) for row in self._query("images", exam_id))
        return PriorExam(revision=int(exam["revision"]), images=images)


class ParquetExamHistory(TableExamHistory):
    """TableExamHistory on the Parquet dataset, through DuckDB."""

    def __init__(self, output: str, model_version: str):
        self.output = output
        self.model_version = model_version
        self._local = threading.local()

    def __getstate__(self):
        return {"output": self.output, "model_version": self.model_version}

    def __setstate__(self, state):
        self.__init__(state["output"], state["model_version"])

    def _query(self, table: str, exam_id: str) -> list[dict]:
        import duckdb
        glob = FileSystems.join(self.output, table, "*", "*.parquet")
        if "://" not in self.output and not list(Path(self.output, table).glob("*/*.parquet")):
            return []
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = duckdb.connect()
        source = f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
        cur = con.execute(f"SELECT * FROM ({one_row_per_key_sql(table, source)}) "
                          "WHERE exam_id = ? AND model_version = ?", [exam_id, self.model_version])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def _image_score_from_rows(image: dict, exam: dict) -> ImageScore:
    """The score record as far as the tables keep it (enough to aggregate the exam again)."""
    record = ImageRecord(
        source_uri=image["source_uri"], sop_instance_uid=image["sop_instance_uid"],
        study_instance_uid=image["study_instance_uid"], exam_id=image["exam_id"],
        patient_key=exam.get("patient_key"), accession_key=exam.get("accession_key"), site=image["site"],
        laterality=image["laterality"], laterality_source=image["laterality_source"], view=image["view"],
        view_source=image["view_source"], manufacturer=image["manufacturer"],
        manufacturer_model=image["manufacturer_model"], transfer_syntax_uid=image["transfer_syntax_uid"],
        study_date=exam["study_date"].isoformat() if exam.get("study_date") else None,
        age_at_exam=exam.get("age_at_exam"))
    return ImageScore(record=record, score=float(image["image_score"]), model_name=image["model_name"],
                      model_version=image["model_version"],
                      preprocessing_version=image["preprocessing_version"],
                      flip_applied=bool(image["flip_applied"]),
                      orientation_check=image["orientation_check"] or "not_checked")
