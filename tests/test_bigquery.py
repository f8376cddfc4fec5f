"""BigQuery output: tables and views derived from schemas/, batch load jobs, streaming inserts, and
readers that see one row per key from committed chunks only.

bqemulator supports views (QUALIFY and correlated EXISTS included), so the views are checked there
and, with the same SQL text, on DuckDB.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from bqemu import bqemulator  # noqa: F401  (fixture)
from mammobeam.schemas.bigquery import (ALL_TABLES, RUN_COMMIT_CHUNK, dataset_ddl, view_name, view_sql)
from mammobeam.schemas.tables import TABLES

REPO = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
_DEFAULTS = {"STRING": "x", "INT64": 0, "FLOAT64": 0.5, "BOOL": False, "TIMESTAMP": T0, "DATE": T0.date(),
             "STRING_LIST": []}


def make_row(table: str, **values) -> dict:
    """A row with every required column filled, `values` on top."""
    row = {c.name: _DEFAULTS[c.type] if c.required else None for c in ALL_TABLES[table].columns}
    row.update(values)
    return row


def exam(exam_id, run_id, chunk_id, score, at=T0, revision=0):
    return make_row("exams", exam_id=exam_id, run_id=run_id, chunk_id=chunk_id, exam_score=score,
                    scored_at=at, scored_date=at.date(), revision=revision, site="north",
                    views=["L-CC", "R-CC"], status="COMPLETE", model_version="1")


def commit(run_id, chunk_id, files=1):
    return make_row("commits", run_id=run_id, chunk_id=chunk_id, files=files)


# The story every view test tells: run A commits chunk c1 (with one exam row stored twice, as a
# retried bundle would) and loads chunk c2 but is killed before committing it; streaming run S
# commits itself once and writes a later revision of e1.
LATER = T0 + dt.timedelta(hours=1)
EXAMS = [exam("e1", "A", "c1", 0.2), exam("e1", "A", "c1", 0.2), exam("e2", "A", "c1", 0.3),
         exam("e3", "A", "c2", 0.9),
         exam("e1", "S", "w7", 0.6, at=LATER, revision=1), exam("e4", "S", "w8", 0.1, at=LATER)]
COMMITS = [commit("A", "c1", 3), commit("S", RUN_COMMIT_CHUNK, 0)]
EXPECTED = {"e1": 0.6, "e2": 0.3, "e4": 0.1}  # e3's chunk never committed


def duckdb_view_rows(exams: list[dict], commits: list[dict]) -> dict:
    import pyarrow as pa
    con = duckdb.connect()
    con.register("exams", pa.Table.from_pylist(exams, schema=TABLES["exams"].arrow_schema()))
    con.register("commits", pa.Table.from_pylist(commits, schema=ALL_TABLES["commits"].arrow_schema()))
    return {r[0]: r[1] for r in con.execute(f"SELECT exam_id, exam_score FROM ({view_sql('exams')})").fetchall()}


def test_view_sql_on_duckdb_keeps_one_row_per_key_from_committed_chunks():
    assert duckdb_view_rows(EXAMS, COMMITS) == EXPECTED
    # Without any commit record nothing counts.
    assert duckdb_view_rows(EXAMS, []) == {}


def test_dataset_ddl_covers_every_table_partitioning_clustering_and_view():
    ddl = dataset_ddl("proj", "screening", location="EU")
    assert "CREATE SCHEMA IF NOT EXISTS `proj.screening`\nOPTIONS(location='EU');" in ddl
    for name, spec in ALL_TABLES.items():
        assert f"CREATE TABLE IF NOT EXISTS `proj.screening.{name}`" in ddl
        assert f"PARTITION BY {spec.partition_column}" in ddl
    assert ddl.count("CLUSTER BY site") == 3
    for name in TABLES:
        assert f"CREATE OR REPLACE VIEW `proj.screening.{view_name(name)}`" in ddl
    assert "c.chunk_id = '*'" in ddl


def test_infra_dataset_sql_is_the_generated_one():
    """infra/bigquery/dataset.sql is regenerated from schemas/ (make_ddl.py --check fails if stale)."""
    result = subprocess.run([sys.executable, str(REPO / "infra" / "bigquery" / "make_ddl.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- On bqemulator ------------------------------------------------------------------------------


@pytest.fixture
def dataset(bqemulator, request):
    from mammobeam.pipelines.bigquery_io import BigQueryDataset
    name = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:60]
    return BigQueryDataset(bqemulator.project, name, client=bqemulator.client()).ensure()


@pytest.mark.emulator
def test_tables_are_created_with_schemas_partitioning_and_clustering_from_schemas(dataset):
    client = dataset.client
    for name, spec in ALL_TABLES.items():
        table = client.get_table(dataset.table_id(name))
        assert [f.name for f in table.schema] == spec.column_names
        assert [f.mode for f in table.schema] == [f["mode"] for f in spec.bigquery_schema()]
        assert table.time_partitioning.field == spec.partition_column
        assert (table.clustering_fields or []) == list(spec.cluster_by)
    for name in TABLES:
        assert client.get_table(dataset.table_id(view_name(name))).table_type == "VIEW"
    dataset._ensured = False
    dataset.ensure()  # idempotent: a second run against the same dataset changes nothing


@pytest.mark.emulator
def test_views_on_bqemulator_match_duckdb_with_a_duplicate_and_an_interrupted_chunk(dataset):
    dataset.load_rows("exams", EXAMS)  # the duplicate is written on purpose
    dataset.load_rows("commits", COMMITS)
    rows = dataset.client.query(
        f"SELECT exam_id, exam_score FROM `{dataset.table_id(view_name('exams'))}`").result()
    assert {r[0]: r[1] for r in rows} == EXPECTED == duckdb_view_rows(EXAMS, COMMITS)
    raw = dataset.client.query(f"SELECT COUNT(*) FROM `{dataset.table_id('exams')}`").result()
    assert next(iter(raw))[0] == len(EXAMS)


@pytest.mark.emulator
def test_commit_and_resume_bookkeeping_on_bigquery(dataset):
    rows = {"exams": [exam("e1", "R", "c1", 0.4)],
            "images": [make_row("images", run_id="R", chunk_id="c1", sop_instance_uid="1.2", exam_id="e1",
                                model_version="1")],
            "rejections": [make_row("rejections", run_id="R", chunk_id="c1", source_uri="gs://b/x",
                                    reason="NOT_DICOM")]}
    dataset.commit_chunk("R", "c1", rows, files=2)
    dataset.commit_chunk("R", "c1", rows, files=2)  # a retried bundle commits twice
    # Chunk c2 is loaded, then the run is killed before its commit record.
    dataset.load_rows("exams", [exam("e9", "R", "c2", 0.5)])
    assert dataset.committed_chunks("R") == {"c1"}
    assert dataset.committed_files("R") == 2
    assert dataset.run_counts("R") == (1, {"NOT_DICOM": 1}, {"COMPLETE": 1})
    assert dataset.clear_uncommitted("R", ["c2"]) == 1
    left = dataset.client.query(f"SELECT DISTINCT chunk_id FROM `{dataset.table_id('exams')}`").result()
    assert {r[0] for r in left} == {"c1"}


@pytest.mark.emulator
def test_streaming_inserts_from_beam_with_a_duplicate_read_back_once(bqemulator):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from mammobeam.pipelines.bigquery_io import WriteTablesToBigQuery, prepare_dataset
    output = f"bq://{bqemulator.project}.streamed"
    dataset = prepare_dataset(output, client=bqemulator.client())
    image = make_row("images", run_id="S", chunk_id="w1", sop_instance_uid="1.2.3", exam_id="e1",
                     model_version="1", site="north")
    elements = [("exams", exam("e1", "S", "w1", 0.2)), ("exams", exam("e1", "S", "w1", 0.2)),
                ("exams", exam("e1", "S", "w2", 0.7, at=LATER, revision=1)), ("images", image),
                ("images", image), ("rejections", make_row("rejections", run_id="S", chunk_id="w1",
                                                           source_uri="gs://b/y.dcm", reason="NOT_DICOM"))]
    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        _ = (p | beam.Create(elements)
             | WriteTablesToBigQuery(output, run_id="S", test_client=bqemulator.beam_client(),
                                     ignore_insert_ids=True))
    raw = bqemulator.rows(f"SELECT exam_id, exam_score FROM `{dataset.table_id('exams')}`")
    assert len(raw) == 3
    current = bqemulator.rows(f"SELECT exam_id, exam_score, revision FROM `{dataset.table_id('exams_current')}`")
    assert current == [{"exam_id": "e1", "exam_score": 0.7, "revision": 1}]
    assert len(bqemulator.rows(f"SELECT * FROM `{dataset.table_id('images_current')}`")) == 1
    assert len(bqemulator.rows(f"SELECT * FROM `{dataset.table_id('rejections_current')}`")) == 1
    assert bqemulator.rows(f"SELECT chunk_id FROM `{dataset.table_id('commits')}`") == [
        {"chunk_id": RUN_COMMIT_CHUNK}]
