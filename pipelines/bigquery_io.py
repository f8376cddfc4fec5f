"""BigQuery as the table destination: `--output bq://PROJECT.DATASET`.

Two writers, one dataset layout (schemas/bigquery.py):

- Batch (`mammobeam score`): `BigQueryDataset`, the same interface as tables_io.ParquetDataset.
  Each chunk's rows go in by load jobs (one per table, atomic each), then its commit record by one
  more; `--resume` deletes the rows of chunks that have no commit record and redoes them.
- Streaming (`mammobeam stream`): `WriteTablesToBigQuery`, a PTransform around Beam's WriteToBigQuery
  with streaming inserts, and one run-wide commit record.

Readers use the `<table>_current` views: one row per key among committed rows.

Clients are injectable for tests: BigQueryDataset takes a google-cloud-bigquery Client, and
WriteTablesToBigQuery passes `test_client` to Beam (an `EndpointBigQueryClient` points both of Beam's
client roles at an emulator). Without injection, `bigquery_client` honours BIGQUERY_EMULATOR_HOST
(google-cloud-bigquery reads it) and otherwise uses Application Default Credentials.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import logging
import os
from typing import Iterable, Optional

import apache_beam as beam

from mammobeam.schemas.bigquery import (ALL_TABLES, RUN_COMMIT_CHUNK, bigquery_ref, committed_rows_sql,
                                        table_resource, view_ddl, view_name)
from mammobeam.pipelines.stream_sink import TableExamHistory
from mammobeam.schemas.tables import COMMITS, TABLES

log = logging.getLogger(__name__)

EMULATOR_HOST_ENV = "BIGQUERY_EMULATOR_HOST"  # google-cloud-bigquery's own variable
URI_SCHEME = "bq://"


def parse_uri(uri: str) -> tuple[str, str]:
    """`bq://PROJECT.DATASET` -> (project, dataset)."""
    if not uri.startswith(URI_SCHEME):
        raise ValueError(f"not a BigQuery output: {uri!r} (expected bq://PROJECT.DATASET)")
    project, _, dataset = uri[len(URI_SCHEME):].rstrip("/").partition(".")
    if not project or not dataset or "." in dataset:
        raise ValueError(f"bad BigQuery output {uri!r}: expected bq://PROJECT.DATASET")
    return project, dataset


def bigquery_client(project: str):
    """A google-cloud-bigquery Client; anonymous against an emulator (BIGQUERY_EMULATOR_HOST)."""
    from google.cloud import bigquery
    if os.environ.get(EMULATOR_HOST_ENV):
        from google.auth.credentials import AnonymousCredentials
        return bigquery.Client(project=project, credentials=AnonymousCredentials())
    return bigquery.Client(project=project)


def json_row(row: dict) -> dict:
    """A table row as BigQuery's JSON wants it: dates and timestamps as ISO strings."""
    out = {}
    for name, value in row.items():
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.timezone.utc).isoformat() if value.tzinfo else value.isoformat()
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def commit_row(run_id: str, chunk_id: str, files: int, at: Optional[dt.datetime] = None) -> dict:
    at = at or dt.datetime.now(dt.timezone.utc)
    return {"run_id": run_id, "chunk_id": chunk_id, "files": files, "committed_at": at,
            "committed_date": at.date()}


# --- The dataset ----------------------------------------------------------------------------------

class BigQueryDataset:
    """A BigQuery dataset holding the tables; the interface of tables_io.ParquetDataset.

    The dataset, tables and views are created if absent on first use (`ensure`). Writes are load
    jobs (batch file loads): no streaming buffer, so `clear_uncommitted` can delete at once.
    Load jobs count against BigQuery's per-table daily quota (1,500): keep chunks large enough
    (`--chunk-exams`, infra/README.md).
    """

    def __init__(self, project: str, dataset: str, client=None, location: Optional[str] = None):
        self.project, self.dataset, self.location = project, dataset, location
        self._client = client
        self._ensured = False

    @classmethod
    def from_uri(cls, uri: str, client=None) -> "BigQueryDataset":
        project, dataset = parse_uri(uri)
        return cls(project, dataset, client=client, location=os.environ.get("MAMMOBEAM_BQ_LOCATION"))

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}{self.project}.{self.dataset}"

    @property
    def client(self):
        if self._client is None:
            self._client = bigquery_client(self.project)
        return self._client

    def table_id(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"

    # Creating ----------------------------------------------------------------------------------
    def ensure(self) -> "BigQueryDataset":
        """Create the dataset, the four tables and the views where absent (idempotent)."""
        if self._ensured:
            return self
        from google.cloud import bigquery
        from google.api_core.exceptions import NotFound
        dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
        if self.location:
            dataset.location = self.location
        self.client.create_dataset(dataset, exists_ok=True)
        for name in ALL_TABLES:
            table = bigquery.Table.from_api_repr({
                "tableReference": {"projectId": self.project, "datasetId": self.dataset, "tableId": name},
                **table_resource(name)})
            self.client.create_table(table, exists_ok=True)
        for name in TABLES:
            try:
                self.client.get_table(self.table_id(view_name(name)))
            except NotFound:
                self.client.query(view_ddl(self.project, self.dataset, name)).result()
        self._ensured = True
        return self

    # Writing -----------------------------------------------------------------------------------
    def load_rows(self, name: str, rows: list[dict]) -> None:
        """Append rows to one table with a load job (atomic: all rows or none)."""
        from google.cloud import bigquery
        if not rows:
            return
        body = "\n".join(json.dumps(json_row(r)) for r in rows).encode()
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema=[bigquery.SchemaField.from_api_repr(f) for f in ALL_TABLES[name].bigquery_schema()])
        # No `size`: a resumable upload, which every BigQuery endpoint (and bqemulator) accepts.
        job = self.client.load_table_from_file(io.BytesIO(body), self.table_id(name), job_config=config)
        job.result()
        if job.errors:
            raise RuntimeError(f"load into {self.table_id(name)} failed: {job.errors[:3]}")

    def commit_chunk(self, run_id: str, chunk_id: str, rows: dict[str, list[dict]], files: int) -> None:
        """Load every table's rows of one chunk, then its commit record."""
        self.ensure()
        for name, table_rows in rows.items():
            self.load_rows(name, table_rows)
        self.load_rows(COMMITS.name, [commit_row(run_id, chunk_id, files)])

    def commit_run(self, run_id: str) -> None:
        """Make every row of a (streaming) run count as it is written."""
        self.ensure()
        self.load_rows(COMMITS.name, [commit_row(run_id, RUN_COMMIT_CHUNK, 0)])

    # Reading back ------------------------------------------------------------------------------
    def _query(self, sql: str, **params) -> list:
        return list(self.client.query(sql, job_config=_string_params(**params)).result())

    def committed_chunks(self, run_id: str) -> set[str]:
        self.ensure()
        return {row[0] for row in self._query(
            f"SELECT DISTINCT chunk_id FROM `{self.table_id(COMMITS.name)}` WHERE run_id = @run_id",
            run_id=run_id)}

    def committed_files(self, run_id: str) -> int:
        # A chunk committed twice (a retried bundle) counts once.
        self.ensure()
        return int(sum(row[1] for row in self._query(
            f"SELECT chunk_id, MAX(files) FROM `{self.table_id(COMMITS.name)}` "
            "WHERE run_id = @run_id GROUP BY chunk_id", run_id=run_id)))

    def clear_uncommitted(self, run_id: str, chunk_ids: Iterable[str]) -> int:
        """Delete the rows of chunks that have no commit record (loaded before a kill)."""
        self.ensure()
        chunk_ids = sorted(set(chunk_ids))
        if not chunk_ids:
            return 0
        removed = 0
        for name in TABLES:
            job = self.client.query(
                f"DELETE FROM `{self.table_id(name)}` WHERE run_id = @run_id AND chunk_id IN UNNEST(@chunks)",
                job_config=_string_params(run_id=run_id, chunks=chunk_ids))
            job.result()
            removed += job.num_dml_affected_rows or 0
        return removed

    def run_counts(self, run_id: str) -> tuple[int, dict[str, int], dict[str, int]]:
        """(images scored, rejections by reason, exams by status) committed by one run, one row per key."""
        self.ensure()

        def grouped(name: str, column: str) -> dict[str, int]:
            return {row[0]: row[1] for row in self._query(
                f"SELECT {column}, COUNT(*) FROM `{self.table_id(view_name(name))}` "
                f"WHERE run_id = @run_id GROUP BY {column}", run_id=run_id)}
        scored = sum(grouped("images", "run_id").values())
        return scored, grouped("rejections", "reason"), grouped("exams", "status")

    def read_view(self, name: str):
        """One table's view (one row per key, committed rows) as an Arrow table (creates nothing)."""
        result = self.client.query(f"SELECT * FROM `{self.table_id(view_name(name))}`").result()
        # The Storage Read API is faster on BigQuery; the emulator's REST endpoint is all there is.
        return result.to_arrow(create_bqstorage_client=not os.environ.get(EMULATOR_HOST_ENV))

    def committed_rows_sql(self, name: str) -> str:
        return committed_rows_sql(name, bigquery_ref(self.project, self.dataset))


def _string_params(**params):
    from google.cloud import bigquery
    return bigquery.QueryJobConfig(query_parameters=[
        bigquery.ArrayQueryParameter(k, "STRING", list(v)) if isinstance(v, (list, tuple))
        else bigquery.ScalarQueryParameter(k, "STRING", v) for k, v in params.items()])


# --- Streaming writes -----------------------------------------------------------------------------

class EndpointBigQueryClient:
    """Beam's `test_client` for WriteToBigQuery, pointed at a BigQuery endpoint (an emulator).

    Beam's BigQueryWrapper uses one object in two roles: the apitools client (`tables`, `datasets`,
    `jobs`, `tabledata` services) and google-cloud-bigquery's `insert_rows_json`. This serves both,
    anonymously. It pickles as its endpoint and project, since Beam ships it inside the DoFns.
    """

    def __init__(self, endpoint: str, project: str):
        self.endpoint, self.project = endpoint.rstrip("/"), project

    def __getstate__(self):
        return {"endpoint": self.endpoint, "project": self.project}

    def __setstate__(self, state):
        self.__dict__.update(state)

    @functools.cached_property
    def _apitools(self):
        import httplib2
        from apache_beam.io.gcp.internal.clients.bigquery import BigqueryV2
        return BigqueryV2(url=f"{self.endpoint}/bigquery/v2/", get_credentials=False, http=httplib2.Http())

    @functools.cached_property
    def _cloud(self):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery
        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=self.endpoint))

    tables = property(lambda self: self._apitools.tables)
    datasets = property(lambda self: self._apitools.datasets)
    jobs = property(lambda self: self._apitools.jobs)
    tabledata = property(lambda self: self._apitools.tabledata)

    def insert_rows_json(self, *args, **kwargs):
        return self._cloud.insert_rows_json(*args, **kwargs)


class WriteTablesToBigQuery(beam.PTransform):
    """Streams table rows into `bq://PROJECT.DATASET` with streaming inserts.

    Input: a PCollection of `(table_name, row)` tuples, table_name one of "exams", "images",
    "rejections" and row a dict as tables_io.image_row / exam_row / rejection_row make it (datetimes
    and dates are converted here). Rows must carry `run_id` (and a `chunk_id`, e.g. the window).

    Tables are created if absent with the schemas, partitioning and clustering of schemas/; when
    `run_id` is given, one commit record for the whole run (chunk_id "*") is written too, so the
    `<table>_current` views show the rows as they arrive. Views are not created by Beam: call
    `prepare_dataset(output)` once at launch (the stream command does; it also creates the tables).

    Output: a dict of Beam's WriteResult per table; their `failed_rows_with_errors` are rows
    BigQuery refused after Beam's retries (dead letters).

    test_client: passed to Beam (e.g. EndpointBigQueryClient for bqemulator). ignore_insert_ids:
    Beam's per-row insert ids give best-effort deduplication on BigQuery; bqemulator needs them off.
    The views deduplicate on read either way.
    """

    def __init__(self, output: str, run_id: Optional[str] = None, test_client=None,
                 ignore_insert_ids: bool = False, batch_size: int = 500):
        super().__init__()
        self.project, self.dataset = parse_uri(output)
        self.run_id, self.test_client = run_id, test_client
        self.ignore_insert_ids, self.batch_size = ignore_insert_ids, batch_size

    def _write(self, name: str):
        from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
        resource = table_resource(name)
        extra = {"timePartitioning": resource["timePartitioning"]}
        if "clustering" in resource:
            extra["clustering"] = resource["clustering"]
        return WriteToBigQuery(
            table=f"{self.project}:{self.dataset}.{name}", schema=resource["schema"],
            method=WriteToBigQuery.Method.STREAMING_INSERTS,
            create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=BigQueryDisposition.WRITE_APPEND,
            additional_bq_parameters=extra, batch_size=self.batch_size,
            ignore_insert_ids=self.ignore_insert_ids, test_client=self.test_client)

    def expand(self, rows):
        by_table = rows | "ByTable" >> beam.Partition(_table_index, len(TABLES))
        results = {}
        for name, part in zip(TABLES, by_table):
            results[name] = (part
                             | f"{name}Json" >> beam.MapTuple(lambda _, row: json_row(row))
                             | f"Write{name.capitalize()}" >> self._write(name))
        if self.run_id:
            results[COMMITS.name] = (
                rows.pipeline
                | "RunCommit" >> beam.Create([self.run_id])
                | "CommitRow" >> beam.Map(lambda run_id: json_row(commit_row(run_id, RUN_COMMIT_CHUNK, 0)))
                | "WriteCommit" >> self._write(COMMITS.name))
        return results


_TABLE_INDEX = {name: i for i, name in enumerate(TABLES)}


def _table_index(element, partitions: int) -> int:
    name = element[0]
    if name not in _TABLE_INDEX:
        raise ValueError(f"unknown table {name!r}; expected one of {sorted(_TABLE_INDEX)}")
    return _TABLE_INDEX[name]


def prepare_dataset(output: str, client=None) -> BigQueryDataset:
    """Create the dataset, tables and views for `output` (bq://PROJECT.DATASET) if absent."""
    return BigQueryDataset.from_uri(output, client=client).ensure()


class BigQueryExamHistory(TableExamHistory):
    """TableExamHistory on the `<table>_current` views (the one-row-per-key rule over committed
    rows): streaming revisions after a state cleanup continue from BigQuery. Pickles as its URI and
    model version; each worker makes its own client (BIGQUERY_EMULATOR_HOST or ADC)."""

    def __init__(self, output: str, model_version: str):
        self.output = output
        self.model_version = model_version
        self._dataset = None

    def __reduce__(self):
        return (BigQueryExamHistory, (self.output, self.model_version))

    def _query(self, table: str, exam_id: str) -> list[dict]:
        from google.cloud import bigquery
        if self._dataset is None:
            self._dataset = BigQueryDataset.from_uri(self.output)
        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter("exam_id", "STRING", exam_id),
            bigquery.ScalarQueryParameter("model_version", "STRING", self.model_version)])
        sql = (f"SELECT * FROM `{self._dataset.table_id(table + '_current')}` "
               "WHERE exam_id = @exam_id AND model_version = @model_version")
        return [dict(row.items()) for row in self._dataset.client.query(sql, job_config=config).result()]
