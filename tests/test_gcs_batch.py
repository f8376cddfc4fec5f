"""`mammobeam score --input 'gs://bucket/prefix/**.dcm'` against fake-gcs-server (the real GCS JSON API
on loopback): every object the pattern matches is in exactly one of images and rejections, with the
expected reason, and a run killed after two chunk commits resumes against the bucket.

The run state (--output Parquet folder with its manifests) stays local; only the inputs are on gs://.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from emulators import fake_gcs  # noqa: F401  (fixture)
from mammobeam.pipelines.cli import main
from test_batch import table

pytestmark = [pytest.mark.slow, pytest.mark.emulator]
MAMMOBEAM = str(Path(sys.executable).parent / "mammobeam")
BUCKET = "screening-archive"
PREFIX = "site-north/2026"


@pytest.fixture(scope="module")
def bucket(fake_gcs, synth_set):
    """The synthetic set (edge cases included) under gs://BUCKET/PREFIX/, plus objects the pattern
    must not match: the outcomes CSV, and a .dcm outside the prefix."""
    fake_gcs.create_bucket(BUCKET)
    uris = {}
    for path in synth_set.files:
        rel = os.path.relpath(path, synth_set.output_dir)
        fake_gcs.upload(BUCKET, f"{PREFIX}/{rel}", path)
        uris[path] = f"gs://{BUCKET}/{PREFIX}/{rel}"
    fake_gcs.upload(BUCKET, f"{PREFIX}/outcomes.csv", synth_set.outcomes_csv)
    fake_gcs.upload(BUCKET, "elsewhere/stray.dcm", synth_set.files[0])
    return uris


def score_args(model, output, *extra):
    return ["score", "--input", f"gs://{BUCKET}/{PREFIX}/**.dcm", "--output", str(output),
            "--model", model.model_root, "--quiet", "--chunk-exams", "2", *extra]


def check_accounting(uris: dict[str, str], output):
    images, rejections = table(output, "images"), table(output, "rejections")
    scored = collections.Counter(r["source_uri"] for r in images)
    rejected = collections.Counter(r["source_uri"] for r in rejections)
    assert max(scored.values()) == 1 and max(rejected.values()) == 1
    assert not set(scored) & set(rejected)
    assert set(scored) | set(rejected) == set(uris.values())
    assert max(collections.Counter(r["sop_instance_uid"] for r in images).values()) == 1
    return images, rejections


def test_every_object_of_the_pattern_is_in_exactly_one_table(bucket, synth_set, reference_model, tmp_path):
    output = tmp_path / "tables"
    assert main(score_args(reference_model, output)) == 0
    images, rejections = check_accounting(bucket, output)
    reasons = {r["source_uri"]: r["reason"] for r in rejections}
    for path, reason in synth_set.expected_rejections.items():
        assert reasons.get(bucket[path]) == reason, (path, reasons.get(bucket[path]), reason)
    assert {r["run_id"] for r in images + rejections} == {next((output / "_runs").iterdir()).name}


def test_resume_after_kill_against_a_bucket_redoes_only_uncommitted_chunks(bucket, fake_gcs, reference_model,
                                                                           tmp_path):
    output = tmp_path / "tables"
    args = score_args(reference_model, output, "--wave-exams", "100")
    env = {**os.environ, **fake_gcs.env()}
    killed = subprocess.run([MAMMOBEAM, *args], env={**env, "MAMMOBEAM_FAULT_KILL_AFTER_COMMITS": "2"},
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_id = next((output / "_runs").iterdir()).name
    manifest = [json.loads(line) for line in open(output / "_runs" / run_id / "manifest.jsonl")]
    committed = {p.stem for p in (output / "_commits" / run_id).glob("*.json")}
    assert len(committed) == 2 < len({m["chunk"] for m in manifest})
    assert all(m["uri"].startswith(f"gs://{BUCKET}/{PREFIX}/") for m in manifest)
    before = {r["source_uri"]: r["scored_at"] for r in table(output, "images")}

    resumed = subprocess.run([MAMMOBEAM, *args, "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"run {run_id}" in resumed.stdout
    images, rejections = check_accounting(bucket, output)
    assert {r["run_id"] for r in images + rejections} == {run_id}
    after = {r["source_uri"]: r["scored_at"] for r in images}
    assert all(after[uri] == at for uri, at in before.items())
