"""The BigQuery dataset, derived from the table definitions in tables.py: tables, commit records and
the views readers use.

A dataset holds the three tables, the `commits` table and one view per table, `<table>_current`:

    <table>_current = one_row_per_key_sql(<table>, rows of committed chunks only)

- Rows of a chunk count once its (run_id, chunk_id) has a commit record. A batch run commits chunk by
  chunk (pipelines/batch.py), so the rows of a chunk that was loaded but never committed (a run
  killed between the two) stay invisible, and `--resume` deletes and redoes them.
- A streaming run has no chunk boundaries worth waiting for: every row it writes is final for its
  revision. It writes one commit record with chunk_id RUN_COMMIT_CHUNK ("*") when it starts, which
  makes all its rows count as they arrive.
- Delivery is at least once (retried bundles, Pub/Sub redelivery; BigQuery's insert-id deduplication
  is best effort), so a row may be stored twice: the one-row-per-key rule in the view hides that.

The view text is the same SQL DuckDB runs over the Parquet dataset (tables.one_row_per_key_sql); only
the table references differ, so `view_sql` takes a function that names a table. Nothing here talks to
BigQuery: pipelines/bigquery_io.py creates the dataset, infra/bigquery/dataset.sql is generated from
`dataset_ddl` (infra/bigquery/make_ddl.py).
"""

from __future__ import annotations

from typing import Callable, Optional

from mammobeam.schemas.tables import COMMITS, TABLES, Table, _sql_string, one_row_per_key_sql

VIEW_SUFFIX = "_current"
RUN_COMMIT_CHUNK = "*"  # a commit record with this chunk_id commits every chunk of its run
ALL_TABLES: dict[str, Table] = {**TABLES, COMMITS.name: COMMITS}


def view_name(table: str) -> str:
    return f"{table}{VIEW_SUFFIX}"


def bigquery_ref(project: str, dataset: str) -> Callable[[str], str]:
    """Table naming for BigQuery: `project.dataset.table`."""
    return lambda table: f"`{project}.{dataset}.{table}`"


def committed_rows_sql(table: str, ref: Callable[[str], str] = str) -> str:
    """Rows of `table` whose chunk (or whole run) has a commit record."""
    return (f"SELECT t.* FROM {ref(table)} AS t WHERE EXISTS (\n"
            f"  SELECT 1 FROM {ref(COMMITS.name)} AS c\n"
            f"  WHERE c.run_id = t.run_id AND (c.chunk_id = t.chunk_id OR c.chunk_id = '{RUN_COMMIT_CHUNK}'))")


def view_sql(table: str, ref: Callable[[str], str] = str) -> str:
    """What `<table>_current` selects: one row per key among committed rows."""
    return one_row_per_key_sql(table, f"(\n{committed_rows_sql(table, ref)}\n) AS committed")


def view_ddl(project: str, dataset: str, table: str) -> str:
    ref = bigquery_ref(project, dataset)
    return (f"CREATE OR REPLACE VIEW {ref(view_name(table))}\n"
            f"OPTIONS(description={_sql_string(view_description(table))})\nAS\n{view_sql(table, ref)};")


def view_description(table: str) -> str:
    keys = ", ".join(TABLES[table].key)
    return (f"{table}: one row per ({keys}) from committed chunks; read this, not the table "
            "(rows may be stored more than once, and interrupted runs are not committed)")


def table_resource(table: str) -> dict:
    """The REST `Table` body (schema, partitioning, clustering, description) for tables.insert."""
    spec = ALL_TABLES[table]
    body = {"schema": {"fields": spec.bigquery_schema()},
            "timePartitioning": {"type": "DAY", "field": spec.partition_column},
            "description": spec.description}
    if spec.cluster_by:
        body["clustering"] = {"fields": list(spec.cluster_by)}
    return body


def dataset_ddl(project: str, dataset: str, location: Optional[str] = None) -> str:
    """The whole dataset as one BigQuery script: schema, tables, commit records, views."""
    options = f"\nOPTIONS(location={_sql_string(location)})" if location else ""
    parts = [f"CREATE SCHEMA IF NOT EXISTS `{project}.{dataset}`{options};"]
    parts += [spec.bigquery_ddl(f"{project}.{dataset}") for spec in ALL_TABLES.values()]
    parts += [view_ddl(project, dataset, name) for name in TABLES]
    return "\n\n".join(parts) + "\n"
