"""`mammobeam score --output bq://PROJECT.DATASET` into bqemulator, read back with google-cloud-bigquery,
and `mammobeam report --tables bq://PROJECT.DATASET` reading the dataset's views."""

from __future__ import annotations

import collections
import os
import re

import pytest

from bqemu import bqemulator  # noqa: F401  (fixture)
from mammobeam.pipelines.cli import main
from test_batch import input_files

pytestmark = [pytest.mark.slow, pytest.mark.emulator]
DATASET = "screening"


@pytest.fixture(scope="module")
def scored(bqemulator, synth_set, reference_model, tmp_path_factory):
    output = f"bq://{bqemulator.project}.{DATASET}"
    state = tmp_path_factory.mktemp("state")
    assert main(["score", "--input", os.path.join(synth_set.output_dir, "**"), "--output", output,
                 "--state-dir", str(state), "--model", reference_model.model_root, "--quiet",
                 "--chunk-exams", "2"]) == 0
    return output, state


def view(bqemulator, name):
    return bqemulator.rows(f"SELECT * FROM `{bqemulator.project}.{DATASET}.{name}_current`")


def test_every_file_is_in_exactly_one_bigquery_table_with_the_expected_reason(bqemulator, synth_set, scored):
    images, rejections = view(bqemulator, "images"), view(bqemulator, "rejections")
    scored_uris = collections.Counter(r["source_uri"] for r in images)
    rejected = {r["source_uri"]: r["reason"] for r in rejections}
    assert max(scored_uris.values()) == 1 and not set(scored_uris) & set(rejected)
    assert set(scored_uris) | set(rejected) == set(input_files(synth_set))
    for path, reason in synth_set.expected_rejections.items():
        assert rejected.get(path) == reason, path
    runs = {r["run_id"] for r in images + rejections}
    assert runs == {p.name for p in (scored[1] / "_runs").iterdir()}
    # Every chunk the run made has exactly one commit record's worth of files.
    commits = bqemulator.rows(f"SELECT chunk_id, files FROM `{bqemulator.project}.{DATASET}.commits`")
    assert sum(c["files"] for c in commits) == len(input_files(synth_set))
    exams = view(bqemulator, "exams")
    assert len(exams) == len({i["exam_id"] for i in images})
    assert all(e["scored_date"] == e["scored_at"].date() for e in exams)


def test_report_reads_the_bigquery_views(bqemulator, scored, tmp_path):
    output, _ = scored
    page = tmp_path / "report.html"
    assert main(["report", "--tables", output, "--output", str(page), "--bootstrap", "50"]) == 0
    html = page.read_text()
    exams = len(view(bqemulator, "exams"))
    assert re.search(rf'data-metric="exams"[^>]*data-value="{exams}"', html), html[:2000]
    assert output in html


def test_score_to_bigquery_without_state_dir_says_what_to_pass(bqemulator, synth_set, reference_model, capsys):
    assert main(["score", "--input", os.path.join(synth_set.output_dir, "**"), "--output",
                 f"bq://{bqemulator.project}.{DATASET}", "--model", reference_model.model_root, "--quiet"]) == 2
    assert "--state-dir" in capsys.readouterr().err
