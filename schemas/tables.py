"""The one definition of every output table.

Arrow schemas (Parquet), BigQuery JSON schemas, BigQuery DDL and the one-row-per-key SQL are all
derived from the column lists here; nothing else spells a column twice.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str  # STRING, INT64, FLOAT64, BOOL, TIMESTAMP, DATE, STRING_LIST
    description: str
    required: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    partition_column: str  # a DATE column; Hive partition folder for Parquet, partitioning for BigQuery
    cluster_by: tuple[str, ...]
    key: tuple[str, ...]  # what "one row per key" means for readers
    description: str

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _ARROW_TYPES[c.type], nullable=not c.required)
                          for c in self.columns])

    def bigquery_schema(self) -> list[dict]:
        fields = []
        for c in self.columns:
            if c.type == "STRING_LIST":
                fields.append({"name": c.name, "type": "STRING", "mode": "REPEATED",
                               "description": c.description})
            else:
                fields.append({"name": c.name, "type": c.type,
                               "mode": "REQUIRED" if c.required else "NULLABLE",
                               "description": c.description})
        return fields

    def bigquery_ddl(self, dataset: str) -> str:
        cols = ",\n  ".join(
            f"{c.name} {_BQ_DDL_TYPES[c.type]}{' NOT NULL' if c.required and c.type != 'STRING_LIST' else ''}"
            f" OPTIONS(description={_sql_string(c.description)})" for c in self.columns)
        cluster = f"\nCLUSTER BY {', '.join(self.cluster_by)}" if self.cluster_by else ""
        return (f"CREATE TABLE IF NOT EXISTS `{dataset}.{self.name}` (\n  {cols}\n)\n"
                f"PARTITION BY {self.partition_column}{cluster}\n"
                f"OPTIONS(description={_sql_string(self.description)});")


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_ARROW_TYPES = {
    "STRING": pa.string(), "INT64": pa.int64(), "FLOAT64": pa.float64(), "BOOL": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(), "STRING_LIST": pa.list_(pa.string()),
}
_BQ_DDL_TYPES = {
    "STRING": "STRING", "INT64": "INT64", "FLOAT64": "FLOAT64", "BOOL": "BOOL",
    "TIMESTAMP": "TIMESTAMP", "DATE": "DATE", "STRING_LIST": "ARRAY<STRING>",
}

_S, _I, _F, _B, _T, _D, _L = "STRING", "INT64", "FLOAT64", "BOOL", "TIMESTAMP", "DATE", "STRING_LIST"

_VERSIONS = (
    Column("model_name", _S, "model that scored", True),
    Column("model_version", _S, "model version number (TF Serving layout)", True),
    Column("preprocessing_version", _S, "preprocessing spec version that made the model input", True),
)
_RUN = (
    Column("run_id", _S, "the run that wrote the row", True),
    Column("chunk_id", _S, "commit unit within the run (batch chunk, streaming window); a row counts "
                           "once its (run_id, chunk_id) has a commit record"),
)

IMAGES = Table(
    name="images",
    description="One row per scored image (SOP instance).",
    partition_column="scored_date",
    cluster_by=("site",),
    key=("sop_instance_uid", "model_version"),
    columns=(
        Column("sop_instance_uid", _S, "SOP Instance UID", True),
        Column("exam_id", _S, "exam pseudonym (keyed HMAC of the exam key)", True),
        Column("study_instance_uid", _S, "Study Instance UID"),
        Column("source_uri", _S, "where the file was read (or its keyed hash with --pseudonymize-paths)", True),
        Column("site", _S, "InstitutionName"),
        Column("laterality", _S, "L or R", True),
        Column("laterality_source", _S, "attribute the laterality came from"),
        Column("view", _S, "CC or MLO", True),
        Column("view_source", _S, "attribute the view came from"),
        Column("flip_applied", _B, "image was mirrored to the common orientation"),
        Column("orientation_check", _S, "chest-wall side from pixels vs header: agrees, disagrees, "
                                        "header_only, pixels_only"),
        Column("row_direction", _S, "PatientOrientation's row direction against the convention: "
                                    "expected, reversed, unknown (recorded, never used to flip)"),
        Column("image_score", _F, "model malignancy probability for the image", True),
        Column("manufacturer", _S, "Manufacturer"),
        Column("manufacturer_model", _S, "ManufacturerModelName"),
        Column("transfer_syntax_uid", _S, "Transfer Syntax UID of the file"),
        *_VERSIONS,
        *_RUN,
        Column("scored_at", _T, "when the image was scored", True),
        Column("scored_date", _D, "partition: date of scored_at", True),
    ),
)

EXAMS = Table(
    name="exams",
    description="One row per exam and model version (latest revision wins, see one_row_per_key_sql).",
    partition_column="scored_date",
    cluster_by=("site",),
    key=("exam_id", "model_version"),
    columns=(
        Column("exam_id", _S, "exam pseudonym (keyed HMAC of the exam key)", True),
        Column("study_instance_uid", _S, "Study Instance UID"),
        Column("accession_key", _S, "accession number pseudonym"),
        Column("patient_key", _S, "patient pseudonym"),
        Column("age_at_exam", _I, "age in whole years at the study date"),
        Column("site", _S, "InstitutionName"),
        Column("manufacturer", _S, "Manufacturer"),
        Column("manufacturer_model", _S, "ManufacturerModelName"),
        Column("study_date", _D, "StudyDate"),
        Column("status", _S, "COMPLETE (all four standard views) or INCOMPLETE", True),
        Column("views", _L, "standard views present: L-CC, L-MLO, R-CC, R-MLO"),
        Column("missing_views", _L, "standard views absent"),
        Column("left_score", _F, "left breast score"),
        Column("right_score", _F, "right breast score"),
        Column("exam_score", _F, "exam score"),
        Column("category", _I, "1-10 category from the thresholds file's cut points"),
        Column("recall", _B, "exam score at or above the site's recall threshold", True),
        Column("normal_triage", _B, "exam score below the normal-triage threshold and in scope", True),
        Column("in_scope", _B, "exam within the model's validated scope", True),
        Column("scope_reason", _S, "why the exam is out of scope"),
        *_VERSIONS,
        Column("thresholds_version", _S, "thresholds file version applied"),
        Column("revision", _I, "0 for the first emission; later images raise it", True),
        *_RUN,
        Column("scored_at", _T, "when the row was written", True),
        Column("scored_date", _D, "partition: date of scored_at", True),
    ),
)

REJECTIONS = Table(
    name="rejections",
    description="One row per file that was not scored, with a coded reason (schemas/reasons.py).",
    partition_column="rejected_date",
    cluster_by=("site",),
    key=("source_uri",),
    columns=(
        Column("source_uri", _S, "where the file was read", True),
        Column("sop_instance_uid", _S, "SOP Instance UID if readable"),
        Column("exam_id", _S, "exam pseudonym if readable"),
        Column("site", _S, "InstitutionName if readable"),
        Column("manufacturer", _S, "Manufacturer if readable"),
        Column("manufacturer_model", _S, "ManufacturerModelName if readable"),
        Column("laterality", _S, "laterality that could be read"),
        Column("view", _S, "view that could be read"),
        Column("reason", _S, "reason code (schemas/reasons.py)", True),
        Column("detail", _S, "what exactly was wrong; never PHI"),
        Column("stage", _S, "step that rejected: read, accept, decode, preprocess, score, assemble", True),
        *_RUN,
        Column("rejected_at", _T, "when the file was rejected", True),
        Column("rejected_date", _D, "partition: date of rejected_at", True),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (IMAGES, EXAMS, REJECTIONS)}

# Commit records: a chunk's rows count only once its commit record exists.
COMMITS = Table(
    name="commits",
    description="One row per committed chunk of a run.",
    partition_column="committed_date",
    cluster_by=(),
    key=("run_id", "chunk_id"),
    columns=(
        Column("run_id", _S, "run identifier", True),
        Column("chunk_id", _S, "chunk identifier within the run", True),
        Column("files", _I, "input files in the chunk", True),
        Column("committed_at", _T, "commit time", True),
        Column("committed_date", _D, "partition: date of committed_at", True),
    ),
)


def one_row_per_key_sql(table: str, source: Optional[str] = None) -> str:
    """The readers' rule, written once: the latest row per key by scored_at, revision breaking ties.

    `source` is the FROM expression (a DuckDB read_parquet call or a BigQuery table name); the SQL
    is plain enough to run on both DuckDB and BigQuery.
    """
    spec = TABLES[table]
    source = source or spec.name
    keys = ", ".join(spec.key)
    if table == "rejections":
        order = "rejected_at DESC"
    elif table == "exams":
        order = "scored_at DESC, revision DESC"
    else:
        order = "scored_at DESC"
    # QUALIFY needs a WHERE clause on BigQuery; DuckDB accepts the same text.
    return (f"SELECT * FROM {source} WHERE TRUE\n"
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {order}) = 1")
