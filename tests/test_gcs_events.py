"""GCS notifications: the real message format, event types, and at-least-once redelivery."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as ScriptedStream
from apache_beam.testing.util import assert_that, equal_to

from mammobeam.pipelines.gcs_events import (DropRedeliveries, NotificationError, ParseNotifications,
                                            parse_notification)
from test_exam_state import runner_clock  # noqa: F401  (fixture)

# As fake-gcs-server (and GCS) publish it for an overwrite: attributes carry the facts.
OVERWRITE_ATTRIBUTES = {
    "payloadFormat": "JSON_API_V1", "overwroteGeneration": "1796404039978379",
    "eventTime": "2026-12-04T17:07:20Z", "objectGeneration": "1796404039990408",
    "bucketId": "probe-bucket", "eventType": "OBJECT_FINALIZE", "objectId": "a/b.dcm"}
OVERWRITE_PAYLOAD = json.dumps({
    "kind": "storage#object", "id": "probe-bucket/a/b.dcm#1796404039990408", "name": "a/b.dcm",
    "bucket": "probe-bucket", "generation": "1796404039990408", "size": "11"}).encode()


def test_notification_gives_the_object_and_its_generation():
    event = parse_notification(OVERWRITE_ATTRIBUTES, OVERWRITE_PAYLOAD)
    assert event.event_type == "OBJECT_FINALIZE"
    assert event.object_uri == "gs://probe-bucket/a/b.dcm"
    assert event.source_uri == "gs://probe-bucket/a/b.dcm#1796404039990408"
    assert event.overwrote_generation == 1796404039978379 and event.size == 11


@pytest.mark.parametrize("missing", ["eventType", "bucketId", "objectId", "objectGeneration"])
def test_a_message_without_the_notification_attributes_is_refused(missing):
    attributes = {k: v for k, v in OVERWRITE_ATTRIBUTES.items() if k != missing}
    with pytest.raises(NotificationError):
        parse_notification(attributes, OVERWRITE_PAYLOAD)


def test_an_unreadable_payload_does_not_lose_the_event():
    assert parse_notification(OVERWRITE_ATTRIBUTES, b"not json").generation == 1796404039990408


def _options():
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    return options


def message(event_type="OBJECT_FINALIZE", name="x/1.dcm", generation="7", **extra):
    return PubsubMessage(b"{}", {"eventType": event_type, "bucketId": "b", "objectId": name,
                                 "objectGeneration": generation, **extra})


def test_only_finalize_events_go_on_and_the_rest_is_counted_not_written():
    messages = [message(), message("OBJECT_DELETE"), message("OBJECT_METADATA_UPDATE"),
                PubsubMessage(b"hello", {"foo": "bar"})]
    with beam.Pipeline(options=PipelineOptions(runner="FnApiRunner")) as p:
        parsed = p | beam.Create(messages) | ParseNotifications()
        assert_that(parsed.finalized | "F" >> beam.Map(lambda e: e.source_uri),
                    equal_to(["gs://b/x/1.dcm#7"]), label="finalized")
        assert_that(parsed.other_events | "O" >> beam.Map(lambda e: e.event_type),
                    equal_to(["OBJECT_DELETE", "OBJECT_METADATA_UPDATE"]), label="other")
        assert_that(parsed.malformed | beam.combiners.Count.Globally(), equal_to([1]), label="malformed")
    metrics = p.result.metrics().query()["counters"]
    counts = {m.key.metric.name: m.committed for m in metrics}
    assert counts["notifications_object_finalize"] == 1 and counts["notifications_object_delete"] == 1
    assert counts["notifications_malformed"] == 1


def test_a_redelivered_generation_is_dropped_and_a_new_generation_is_not(runner_clock):
    events = [parse_notification(dict(m.attributes)) for m in (
        message(generation="1"), message(generation="1"), message(generation="2"),
        message(name="x/2.dcm", generation="1"), message(name="x/3.dcm", generation="1"))]
    stream = (ScriptedStream().add_elements(events[:2]).advance_processing_time(5)
              .add_elements(events[2:4]).advance_processing_time(5)
              .add_elements([events[0]]).advance_processing_time(5)
              .add_elements([events[4]]).advance_processing_time(5).advance_watermark_to_infinity())
    with beam.Pipeline(options=_options()) as p:
        passed = (p | stream | DropRedeliveries(retention_seconds=3600, clock=runner_clock)
                  | beam.Map(lambda e: e.source_uri))
        assert_that(passed, equal_to(["gs://b/x/1.dcm#1", "gs://b/x/1.dcm#2", "gs://b/x/2.dcm#1",
                                     "gs://b/x/3.dcm#1"]))
