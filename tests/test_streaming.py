"""`mammobeam stream` end to end against the Pub/Sub emulator and fake-gcs-server.

fake-gcs-server publishes OBJECT_FINALIZE notifications in the real GCS format; the stream reads the
objects through Beam's GCS filesystem, scores them with a real SavedModel, assembles exams with
timers and writes the Parquet tables while it runs. One test (the emulator's 30 s blocking pull
makes each phase slow); the assembly rules themselves are pinned fast in test_exam_state.py.
"""

from __future__ import annotations

import collections
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pydicom
import pytest
from pydicom.uid import generate_uid

from emulators import gcs_notifications, pubsub_emulator  # noqa: F401  (fixtures)
from mammobeam.pipelines.gcs_events import parse_notification
from mammobeam.schemas.tables import one_row_per_key_sql

pytestmark = [pytest.mark.slow, pytest.mark.emulator]
MAMMOBEAM = str(Path(sys.executable).parent / "mammobeam")
BUCKET = "screening-intake"
QUIET, MAX_WAIT, WINDOW = 3, 12, 2
PULL_BLOCK = 30  # the DirectRunner's Pub/Sub pull waits this long when nothing arrives (FACTS.md)
STARTUP = 90     # process start, TensorFlow import and model load on a busy 2-core machine


def rows(output: Path, name: str, latest: bool = False) -> list[dict]:
    if not list(output.glob(f"{name}/*/*.parquet")):
        return []
    source = f"read_parquet('{output}/{name}/*/*.parquet', hive_partitioning = true, union_by_name = true)"
    sql = one_row_per_key_sql(name, source) if latest else f"SELECT * FROM {source}"
    cur = duckdb.connect().execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def poll(condition, deadline_seconds: float, what: str, stream: subprocess.Popen, log_path: Path):
    """Wait until condition() returns something truthy; fail with the stream's log tail if not."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if stream.poll() is not None:
            pytest.fail(f"the stream exited ({stream.returncode}) while waiting for {what}:\n"
                        f"{log_path.read_text()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {what} after {deadline_seconds:.0f} s:\n{log_path.read_text()[-4000:]}")


def source_uri(name: str, generation: int) -> str:
    return f"gs://{BUCKET}/{name}#{generation}"


def retake_of(path: str) -> bytes:
    """The same image as a new SOP instance (a retake), as DICOM bytes."""
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def stream_env(gcs_notifications):
    return {**os.environ, **gcs_notifications.env(), "NO_GCE_CHECK": "True", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_stream_scores_notified_objects_assembles_exams_and_revises_late_ones(
        gcs_notifications, stream_env, synth_set, reference_model, tmp_path):
    gcs, pubsub = gcs_notifications.gcs, gcs_notifications.pubsub
    gcs.create_bucket(BUCKET)
    subscription = gcs_notifications.subscribe("stream-e2e")
    root = Path(synth_set.output_dir)

    # --- Everything lands before the stream starts (the subscription keeps it) --------------------
    uploaded: dict[str, int] = {}  # object name -> generation
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        uploaded[name] = gcs.upload(BUCKET, name, path)
    expected_uris = {source_uri(n, g) for n, g in uploaded.items()}
    # An overwritten object: its first generation is gone before the stream reads it.
    incomplete_accession = synth_set.incomplete_exams[0]
    duplicate_copy = synth_set.edge_case_files["duplicate_sop_instance"]
    complete = [a for a in synth_set.exam_files
                if a not in synth_set.incomplete_exams
                and all(p != duplicate_copy.replace("_copy", "") for p in synth_set.exam_files[a].values())]
    overwritten_name = Path(synth_set.exam_files[complete[0]]["L-CC"]).relative_to(root).as_posix()
    first_generation = uploaded[overwritten_name]
    uploaded[overwritten_name] = gcs.upload(BUCKET, overwritten_name, root / overwritten_name)
    expected_uris.add(source_uri(overwritten_name, uploaded[overwritten_name]))
    # An object deleted before it is read.
    gcs.upload(BUCKET, "incoming/deleted.dcm", root / overwritten_name)
    deleted_generation = gcs.generation(BUCKET, "incoming/deleted.dcm")
    gcs.delete(BUCKET, "incoming/deleted.dcm")
    expected_uris.add(source_uri("incoming/deleted.dcm", deleted_generation))
    # A redelivered notification (at-least-once delivery): same object, same generation.
    redelivered = next(n for n in uploaded if n.endswith(".dcm") and n != overwritten_name)
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": BUCKET, "objectId": redelivered,
                  "objectGeneration": str(uploaded[redelivered]), "payloadFormat": "JSON_API_V1"}
    assert parse_notification(attributes).generation == uploaded[redelivered]
    pubsub.publish(gcs_notifications.topic, json.dumps({"name": redelivered}).encode(), **attributes)
    # A notification of another kind is counted, not written.
    pubsub.publish(gcs_notifications.topic, b"{}", **{**attributes, "eventType": "OBJECT_METADATA_UPDATE"})

    output = tmp_path / "tables"
    log_path = tmp_path / "stream.log"
    command = [MAMMOBEAM, "stream", "--subscription", subscription, "--output", str(output),
               "--model", reference_model.model_root, "--exam-quiet-seconds", str(QUIET),
               "--exam-max-wait-seconds", str(MAX_WAIT), "--exam-retention-seconds", "3600",
               "--window-seconds", str(WINDOW), "--runner", "BundleBasedDirectRunner"]
    with open(log_path, "wb") as log:
        stream = subprocess.Popen(command, env=stream_env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        # --- Phase 1: every generation accounted for, every exam emitted --------------------------
        def accounted():
            images, rejections = rows(output, "images"), rows(output, "rejections")
            seen = {r["source_uri"] for r in images + rejections}
            exams = rows(output, "exams")
            if expected_uris <= seen and {i["exam_id"] for i in images} <= {e["exam_id"] for e in exams}:
                return images, rejections, exams
            return None

        started = time.monotonic()
        images, rejections, exams = poll(accounted, STARTUP + MAX_WAIT + PULL_BLOCK + WINDOW + 30,
                                         "complete accounting", stream, log_path)
        print(f"phase 1 (start-up, scoring, assembly): {time.monotonic() - started:.1f} s")
        scored = collections.Counter(r["source_uri"] for r in images)
        rejected = collections.Counter(r["source_uri"] for r in rejections)
        assert set(scored) | set(rejected) == expected_uris
        assert not set(scored) & set(rejected), "a generation is in both tables"
        assert max(scored.values()) == 1 and max(rejected.values()) == 1, "written twice (redelivery?)"
        reasons = {r["source_uri"]: r["reason"] for r in rejections}
        by_name = {u.split("#")[0].removeprefix(f"gs://{BUCKET}/"): u for u in expected_uris}
        for path, reason in synth_set.expected_rejections.items():
            name = Path(path).relative_to(root).as_posix()
            if reason == "DUPLICATE":  # streaming: whichever of the pair arrives second
                original = by_name[name.replace("_copy", "")]
                assert sorted([reasons.get(by_name[name]), reasons.get(original)], key=str) == [
                    "DUPLICATE", None], (name, reasons.get(by_name[name]), reasons.get(original))
            else:
                assert reasons.get(by_name[name]) == reason, (name, reasons.get(by_name[name]), reason)
        assert reasons[by_name["outcomes.csv"]] == "NOT_DICOM"
        assert reasons[source_uri("incoming/deleted.dcm", deleted_generation)] == "SOURCE_NOT_FOUND"
        assert reasons[source_uri(overwritten_name, first_generation)] == "SOURCE_NOT_FOUND"
        assert source_uri(overwritten_name, uploaded[overwritten_name]) in scored

        exam_of = {}
        for accession, views in synth_set.exam_files.items():
            ids = {i["exam_id"] for i in images if i["source_uri"].split("#")[0].endswith(
                tuple(Path(p).relative_to(root).as_posix() for p in views.values()))}
            assert len(ids) == 1, accession
            exam_of[accession] = ids.pop()
        status = {e["exam_id"]: (e["status"], e["revision"], list(e["missing_views"])) for e in exams}
        assert len(exams) == len(synth_set.exam_files)
        assert status[exam_of[incomplete_accession]] == (
            "INCOMPLETE", 0, synth_set.missing_views[incomplete_accession])
        assert all(status[exam_of[a]][:2] == ("COMPLETE", 0) for a in complete)

        # --- Phase 2: a late retake and a new generation revise emitted exams --------------------
        late_name = Path(synth_set.exam_files[incomplete_accession]["L-CC"]).relative_to(root).as_posix()
        late_name = late_name.replace(".dcm", "_retake.dcm")
        late_generation = gcs.upload(BUCKET, late_name, retake_of(str(root / late_name.replace("_retake", ""))))
        second_generation = gcs.upload(BUCKET, overwritten_name, root / overwritten_name)

        def revised():
            latest = {e["exam_id"]: e for e in rows(output, "exams", latest=True)}
            wanted = (exam_of[incomplete_accession], exam_of[complete[0]])
            if all(latest.get(x, {}).get("revision") == 1 for x in wanted):
                return latest
            return None

        started = time.monotonic()
        latest = poll(revised, QUIET + PULL_BLOCK + WINDOW + 45, "revision 1 rows", stream, log_path)
        print(f"phase 2 (late image to revised rows): {time.monotonic() - started:.1f} s")
        late_exam = latest[exam_of[incomplete_accession]]
        assert late_exam["status"] == "INCOMPLETE"  # a retake does not bring the missing view
        images = rows(output, "images")
        assert source_uri(late_name, late_generation) in {i["source_uri"] for i in images}
        current = {i["sop_instance_uid"]: i["source_uri"] for i in rows(output, "images", latest=True)}
        assert source_uri(overwritten_name, second_generation) in current.values()
        assert len(rows(output, "exams")) == len(synth_set.exam_files) + 2
        # The report's reader sees one row per exam.
        assert len(latest) == len(synth_set.exam_files)
    finally:
        os.killpg(stream.pid, signal.SIGTERM)
        try:
            stream.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(stream.pid, signal.SIGKILL)
            stream.wait()
    log_text = log_path.read_text()
    assert "credentials: anonymous" in log_text
