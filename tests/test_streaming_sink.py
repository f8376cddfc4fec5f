"""The streaming Parquet sink: batch's table layout, windowed files that never collide with batch's,
written by rename, and the exams table read back for revisions after a cleanup."""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import duckdb
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as ScriptedStream

from mammobeam.pipelines.stream_sink import (ParquetExamHistory, WriteStreamTables, to_table_row,
                                             write_table_file)
from mammobeam.schemas.reasons import Reason, Stage
from mammobeam.schemas.records import Rejection
from mammobeam.transforms.exams import aggregate_exam
from test_exam_state import FOUR_VIEWS, POLICY, image, runner_clock  # noqa: F401


def read(output: Path, table: str) -> list[dict]:
    cur = duckdb.connect().execute(
        f"SELECT * FROM read_parquet('{output}/{table}/*/*.parquet', hive_partitioning = true)")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def test_rows_are_written_per_window_in_the_batch_layout(runner_clock, tmp_path):
    scores = [image("s1", v) for v in FOUR_VIEWS]
    exam = aggregate_exam("s1", scores, POLICY)
    rejection = Rejection("gs://b/x.dcm#3", Reason.NOT_DICOM, Stage.ACCEPT, "text")
    stream = (ScriptedStream()
              .add_elements([to_table_row(s, "r1") for s in scores[:2]])
              .advance_processing_time(3)   # window 1 (0-2 s) flushed
              .add_elements([to_table_row(s, "r1") for s in scores[2:]] + [to_table_row(exam, "r1"),
                                                                          to_table_row(rejection, "r1")])
              .advance_processing_time(3).advance_watermark_to_infinity())
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        _ = p | stream | WriteStreamTables(str(tmp_path), "r1", window_seconds=2, clock=runner_clock)
    image_files = sorted(p.name for p in tmp_path.glob("images/scored_date=*/*.parquet"))
    assert image_files == ["stream-r1-19700101T000000-000.parquet", "stream-r1-19700101T000002-000.parquet"]
    assert not list(tmp_path.rglob("*.tmp"))
    assert len(read(tmp_path, "images")) == 4
    [row] = read(tmp_path, "exams")
    assert row["exam_id"] == "s1" and row["status"] == "COMPLETE" and row["run_id"] == "r1"
    assert [r["reason"] for r in read(tmp_path, "rejections")] == ["NOT_DICOM"]
    assert list(tmp_path.glob("rejections/rejected_date=*/stream-r1-*.parquet"))


def test_history_continues_from_the_latest_row_and_its_current_images(tmp_path):
    scores = [image("h1", v, score=0.2) for v in FOUR_VIEWS]
    newer = image("h1", "L-CC", score=0.6, generation=2)
    rows = {"images": [to_table_row(s, "r1")[1] for s in scores],
            "exams": [to_table_row(aggregate_exam("h1", scores, POLICY, revision=0), "r1")[1]]}
    for table, table_rows in rows.items():
        write_table_file(str(tmp_path), table, table_rows, "stream-r1-a-000.parquet")
    later = {"images": [to_table_row(newer, "r1")[1]],
             "exams": [to_table_row(aggregate_exam("h1", scores[1:] + [newer], POLICY, revision=1), "r1")[1]]}
    for table, table_rows in later.items():
        write_table_file(str(tmp_path), table, table_rows, "stream-r1-b-000.parquet")

    prior = ParquetExamHistory(str(tmp_path), model_version="1").latest("h1")
    assert prior.revision == 1
    assert len(prior.images) == 4
    by_view = {s.record.exam_view: s for s in prior.images}
    assert by_view["L-CC"].score == 0.6 and by_view["L-CC"].record.source_uri.endswith("#2")
    assert aggregate_exam("h1", prior.images, POLICY).left_score == 0.6
    assert ParquetExamHistory(str(tmp_path), model_version="1").latest("unknown") is None
    assert ParquetExamHistory(str(tmp_path / "empty"), model_version="1").latest("h1") is None
