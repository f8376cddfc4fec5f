"""`mammobeam stream --output bq://...`: the streaming data flow writes its rows to BigQuery with
streaming inserts, and the one-row-per-key views show them.

The flow is the real one (build_stream: notifications -> GCS objects on fake-gcs-server -> scoring ->
exam assembly -> WriteTablesToBigQuery on bqemulator), fed by a TestStream on the
BundleBasedDirectRunner whose processing time moves past the quiet period.
"""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as ScriptedStream

from bqemu import bqemulator  # noqa: F401  (fixture)
from emulators import environment, fake_gcs  # noqa: F401  (fixture)
from mammobeam.pipelines.batch import ScoringSetup
from mammobeam.pipelines.bigquery_io import WriteTablesToBigQuery, prepare_dataset
from mammobeam.pipelines.streaming import build_stream
from mammobeam.serving.contract import resolve_model
from mammobeam.serving.inprocess import InProcessModelHandler
from mammobeam.transforms.dicom import ReaderOptions
from mammobeam.transforms.exam_state import AssemblyTiming
from mammobeam.transforms.exams import load_policy
from mammobeam.transforms.pseudonyms import Pseudonymizer
from test_exam_state import runner_clock  # noqa: F401  (fixture)

pytestmark = pytest.mark.emulator


def notification(bucket: str, name: str, generation: int) -> PubsubMessage:
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": bucket, "objectId": name,
                  "objectGeneration": str(generation), "payloadFormat": "JSON_API_V1"}
    payload = {"kind": "storage#object", "bucket": bucket, "name": name, "generation": str(generation)}
    return PubsubMessage(json.dumps(payload).encode(), attributes)


def test_stream_rows_reach_the_bigquery_views(synth_set, reference_model, small_spec, fake_gcs, bqemulator,
                                              runner_clock):
    bucket = "stream-to-bq"
    fake_gcs.create_bucket(bucket)
    exam = next(iter(synth_set.exam_files.values()))
    files = list(exam.values()) + [synth_set.edge_case_files["not_dicom"]]
    messages = []
    for path in files:
        name = "/".join(Path(path).parts[-2:])
        messages.append(notification(bucket, name, fake_gcs.upload(bucket, name, path)))
    messages.append(messages[0])  # Pub/Sub redelivers: never written twice

    ref = resolve_model(reference_model.model_root)
    setup = ScoringSetup(InProcessModelHandler(ref), ref.name, ref.version, small_spec,
                         str(ref.thresholds_path), str(ref.scope_path), "max")
    policy = load_policy(setup.thresholds_path, setup.scope_path, setup.aggregation)
    output = f"bq://{bqemulator.project}.live"
    dataset = prepare_dataset(output, client=bqemulator.client())
    writer = WriteTablesToBigQuery(output, run_id="stream-run", test_client=bqemulator.beam_client(),
                                   ignore_insert_ids=True)
    with environment(**fake_gcs.env()):
        from mammobeam.pipelines import cloud_auth
        cloud_auth.prepare()
        options = PipelineOptions(runner="BundleBasedDirectRunner")
        options.view_as(StandardOptions).streaming = True
        script = (ScriptedStream().add_elements(messages).advance_processing_time(40)
                  .advance_watermark_to(1000).advance_processing_time(40).advance_watermark_to_infinity())
        with beam.Pipeline(options=options) as pipeline:
            build_stream(pipeline, pipeline | script, setup, policy, ReaderOptions(),
                         Pseudonymizer.from_config(), AssemblyTiming(5, 30, 60), output, "stream-run",
                         5.0, clock=runner_clock, table_writer=writer)

    images = bqemulator.rows(f"SELECT source_uri, laterality, view FROM `{dataset.table_id('images_current')}`")
    rejections = bqemulator.rows(f"SELECT source_uri, reason FROM `{dataset.table_id('rejections_current')}`")
    exams = bqemulator.rows(f"SELECT status, revision, run_id FROM `{dataset.table_id('exams_current')}`")
    raw_images = bqemulator.rows(f"SELECT source_uri FROM `{dataset.table_id('images')}`")
    assert len(raw_images) == len(exam)  # the redelivered notification was dropped, not written
    scored = {r["source_uri"].split("#")[0] for r in images}
    assert len(images) == len(exam) and len(scored) == len(exam)
    assert [r["reason"] for r in rejections] == ["NOT_DICOM"]
    assert exams == [{"status": "COMPLETE" if len(exam) == 4 else "INCOMPLETE", "revision": 0,
                      "run_id": "stream-run"}]
    assert all("#" in r["source_uri"] for r in images + rejections)  # the generation is part of the key


def test_revisions_after_cleanup_continue_from_the_bigquery_views(bqemulator):
    """The exam history a stream reads once an exam's state was cleaned up: latest committed row."""
    import datetime as dt
    import pickle

    from mammobeam.pipelines.bigquery_io import BigQueryExamHistory
    from mammobeam.pipelines.tables_io import exam_row, image_row
    from mammobeam.schemas.records import ExamResult, ImageRecord, ImageScore

    output = f"bq://{bqemulator.project}.history"
    dataset = prepare_dataset(output, client=bqemulator.client())
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    record = ImageRecord(source_uri="gs://b/e1/L_CC.dcm#5", sop_instance_uid="1.2.3", exam_id="e1",
                         laterality="L", view="CC", site="north", study_date="2026-11-30")
    image = image_row(ImageScore(record, 0.4, "demo", "1", "pp"), "S", t0, "w1")

    def exam(revision, at):
        return exam_row(ExamResult("e1", None, None, None, 61, "north", None, None, "2026-11-30", "INCOMPLETE",
                                   ("L-CC",), ("L-MLO", "R-CC", "R-MLO"), 0.4, None, 0.4, 5, False, False,
                                   True, None, "demo", "1", "pp", "t1", revision), "S", at, "w1")
    dataset.commit_chunk("S", "w1", {"images": [image], "exams": [exam(0, t0), exam(2, t0 + dt.timedelta(hours=1))],
                                     "rejections": []}, files=1)
    with environment(**bqemulator.env()):
        history = pickle.loads(pickle.dumps(BigQueryExamHistory(output, "1")))  # as a worker gets it
        prior = history.latest("e1")
        assert history.latest("unknown") is None
    assert prior.revision == 2
    assert [(s.record.sop_instance_uid, s.score, s.record.exam_view) for s in prior.images] == [("1.2.3", 0.4, "L-CC")]
