"""`mammobeam score` end to end on real (synthetic) DICOM files with a real SavedModel.

The accounting invariant is the heart of it: every input file appears in exactly one of the images
and rejections tables, with the expected reason, and no SOP instance is scored twice, also after a
kill -9 and `--resume`, and on two workers in either Beam running mode.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pydicom
import pytest

from mammobeam.pipelines.cli import main
from mammobeam.schemas.tables import one_row_per_key_sql

pytestmark = pytest.mark.slow
MAMMOBEAM = str(Path(sys.executable).parent / "mammobeam")


def score_args(synth_set, model, output, *extra):
    return ["score", "--input", os.path.join(synth_set.output_dir, "**"), "--output", str(output),
            "--model", model.model_root, "--quiet", "--chunk-exams", "2", *extra]


def table(output, name):
    con = duckdb.connect()
    glob = f"{output}/{name}/*/*.parquet"
    if not list(Path(output, name).glob("*/*.parquet")):
        return []
    cur = con.execute(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def input_files(synth_set):
    """Every file under the synthetic folder that the pattern matches (incl. outcomes/manifest)."""
    return sorted(str(p) for p in Path(synth_set.output_dir).rglob("*") if p.is_file())


def check_accounting(synth_set, output):
    images, rejections = table(output, "images"), table(output, "rejections")
    scored = collections.Counter(r["source_uri"] for r in images)
    rejected = collections.Counter(r["source_uri"] for r in rejections)
    assert max(scored.values()) == 1 and max(rejected.values()) == 1
    assert not set(scored) & set(rejected)
    assert set(scored) | set(rejected) == set(input_files(synth_set))
    sops = collections.Counter(r["sop_instance_uid"] for r in images)
    assert max(sops.values()) == 1, "a SOP instance was scored twice"
    return images, rejections


@pytest.fixture(scope="module")
def scored(synth_set, reference_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("scored")
    assert main(score_args(synth_set, reference_model, output)) == 0
    return output


def test_every_file_is_in_exactly_one_table_with_the_expected_reason(synth_set, scored):
    images, rejections = check_accounting(synth_set, scored)
    reasons = {r["source_uri"]: r["reason"] for r in rejections}
    for path, reason in synth_set.expected_rejections.items():
        assert reasons.get(path) == reason, (path, reasons.get(path), reason)
    # Every regular exam image is scored, including the laterality-only-in-Laterality file.
    for views in synth_set.exam_files.values():
        for path in views.values():
            if path not in synth_set.expected_rejections:
                assert path in {r["source_uri"] for r in images}, path
    # A duplicate still says where it came from.
    duplicate = next(r for r in rejections if r["reason"] == "DUPLICATE")
    assert duplicate["site"] and duplicate["manufacturer"] and duplicate["laterality"] in ("L", "R")
    # Files that are not images (outcomes.csv, manifest) are rejected, not lost.
    assert reasons[synth_set.outcomes_csv] == "NOT_DICOM"


def test_exam_rows_carry_scores_status_and_every_version(synth_set, scored, reference_model):
    exams = table(scored, "exams")
    images = table(scored, "images")
    assert len({e["exam_id"] for e in exams}) == len(exams) == len({i["exam_id"] for i in images})
    incomplete = [e for e in exams if e["status"] == "INCOMPLETE"]
    assert incomplete and all(e["missing_views"] for e in incomplete)
    assert sorted(m for e in incomplete for m in e["missing_views"]) == sorted(
        m for views in synth_set.missing_views.values() for m in views)
    for exam in exams:
        assert exam["model_name"] == reference_model.name and exam["model_version"] == reference_model.version
        assert exam["preprocessing_version"] and exam["thresholds_version"]
        assert 1 <= exam["category"] <= 10
        assert exam["exam_score"] == max(s for s in (exam["left_score"], exam["right_score"]) if s is not None)
        mine = [i for i in images if i["exam_id"] == exam["exam_id"]]
        left = [i["image_score"] for i in mine if i["laterality"] == "L"]
        if left:
            assert exam["left_score"] == pytest.approx(max(left))
    for image in images:
        assert image["laterality"] in ("L", "R") and image["view"] in ("CC", "MLO")
        assert image["row_direction"] == "expected"  # the synthetic units follow the convention
        assert image["model_version"] == reference_model.version


def test_one_row_per_key_sql_reads_the_tables(scored):
    con = duckdb.connect()
    source = f"read_parquet('{scored}/exams/*/*.parquet', hive_partitioning = true)"
    rows = con.execute(one_row_per_key_sql("exams", source)).fetchall()
    assert len(rows) == len(table(scored, "exams"))


def _phi_values(synth_set):
    values = set()
    for path in synth_set.files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 4:
                values.add(value)
    return values


def test_no_names_birth_dates_or_raw_ids_reach_any_output(synth_set, reference_model, tmp_path):
    output = tmp_path / "out"
    assert main(score_args(synth_set, reference_model, output, "--pseudonymize-paths")) == 0
    phi = _phi_values(synth_set)
    assert len(phi) > 10
    blobs = []
    for path in output.rglob("*"):
        if path.is_file() and "_runs" not in path.parts:  # the run manifest keeps paths for resume
            blobs.append(path.read_bytes())
    for name in ("images", "exams", "rejections"):
        blobs.append(json.dumps(table(output, name), default=str).encode())
    text = b"\n".join(blobs)
    leaked = [v for v in phi if v.encode() in text]
    assert not leaked, leaked[:5]
    assert all(r["source_uri"].startswith("path:") for r in table(output, "images"))


def test_resume_after_kill_redoes_only_uncommitted_chunks(synth_set, reference_model, tmp_path):
    output = tmp_path / "out"
    args = score_args(synth_set, reference_model, output)
    env = dict(os.environ, MAMMOBEAM_FAULT_KILL_AFTER_COMMITS="2")
    killed = subprocess.run([MAMMOBEAM, *args, "--wave-exams", "100"], env=env, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_id = next((output / "_runs").iterdir()).name
    committed_before = {p.stem for p in (output / "_commits" / run_id).glob("*.json")}
    manifest = [json.loads(line) for line in open(output / "_runs" / run_id / "manifest.jsonl")]
    all_chunks = {m["chunk"] for m in manifest}
    assert len(committed_before) == 2 < len(all_chunks)
    before = {r["source_uri"]: r["scored_at"] for r in table(output, "images")}

    resumed = subprocess.run([MAMMOBEAM, *args, "--resume"], capture_output=True, text=True,
                             env=dict(os.environ))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run {run_id}" in resumed.stdout
    images, rejections = check_accounting(synth_set, output)
    assert {r["run_id"] for r in images + rejections} == {run_id}
    # Rows committed before the kill were not rewritten.
    after = {r["source_uri"]: r["scored_at"] for r in images}
    assert all(after[uri] == at for uri, at in before.items())


@pytest.mark.parametrize("mode", ["multi_threading", "multi_processing"])
def test_two_workers_give_the_same_rows(synth_set, reference_model, scored, tmp_path, mode):
    output = tmp_path / mode
    assert main(score_args(synth_set, reference_model, output, "--direct_num_workers=2",
                           f"--direct_running_mode={mode}")) == 0
    images, _ = check_accounting(synth_set, output)
    single = {r["sop_instance_uid"]: r["image_score"] for r in table(scored, "images")}
    assert {r["sop_instance_uid"]: r["image_score"] for r in images} == pytest.approx(single)
