"""GCS object notifications on Pub/Sub: parsing, redelivery dedupe, and reading the notified
generation through Beam's GCS filesystem.

A notification (https://cloud.google.com/storage/docs/pubsub-notifications) carries its facts in
the message attributes (eventType, bucketId, objectId, objectGeneration, payloadFormat, and
overwroteGeneration on an overwrite) and the object's JSON resource in the payload. Only
OBJECT_FINALIZE means new content; the other event types are counted, not written.

Identity: an object's content is (object, generation). `source_uri` is `gs://bucket/object#generation`
everywhere downstream, so a redelivered notification and an overwrite are told apart, and the
accounting invariant (each file in exactly one of images and rejections) holds per generation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Optional, Union

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration

from mammobeam.schemas.reasons import Reason, Stage
from mammobeam.schemas.records import Rejection
from mammobeam.transforms.dicom import ReaderOptions
from mammobeam.transforms.exam_state import Clock, WallClock, with_generation
from mammobeam.transforms.pseudonyms import Pseudonymizer
from mammobeam.transforms.steps import REJECTIONS, ReadFile, read_one

log = logging.getLogger(__name__)

# Event types of GCS Pub/Sub notifications (JSON_API_V1 payload format).
OBJECT_FINALIZE = "OBJECT_FINALIZE"
EVENT_TYPES = ("OBJECT_FINALIZE", "OBJECT_METADATA_UPDATE", "OBJECT_DELETE", "OBJECT_ARCHIVE")
MALFORMED = "malformed"
OTHER_EVENTS = "other_events"


@dataclasses.dataclass(frozen=True)
class ObjectEvent:
    """One GCS notification, reduced to what the pipeline needs."""

    event_type: str
    bucket: str
    name: str
    generation: int
    size: Optional[int] = None
    overwrote_generation: Optional[int] = None
    event_time: Optional[str] = None

    @property
    def object_uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    @property
    def source_uri(self) -> str:
        return with_generation(self.object_uri, self.generation)


class NotificationError(ValueError):
    """A Pub/Sub message that is not a GCS notification."""


def parse_notification(attributes: dict[str, str], data: bytes = b"") -> ObjectEvent:
    """An ObjectEvent from a notification's attributes (the payload fills gaps: size)."""
    try:
        event_type = attributes["eventType"]
        bucket = attributes["bucketId"]
        name = attributes["objectId"]
        generation = int(attributes["objectGeneration"])
    except (KeyError, TypeError, ValueError) as e:
        raise NotificationError(f"not a GCS notification: {type(e).__name__} {e}") from None
    size = None
    if data and attributes.get("payloadFormat", "JSON_API_V1") == "JSON_API_V1":
        try:
            body: dict[str, Any] = json.loads(data)
            size = int(body["size"]) if "size" in body else None
        except (ValueError, TypeError):
            pass  # the attributes are what counts; a payload we cannot read is not fatal
    overwrote = attributes.get("overwroteGeneration")
    return ObjectEvent(event_type, bucket, name, generation, size,
                       int(overwrote) if overwrote and overwrote.isdigit() else None,
                       attributes.get("eventTime"))


class _ParseFn(beam.DoFn):
    def __init__(self):
        self.malformed = beam.metrics.Metrics.counter("mammobeam", "notifications_malformed")
        self.by_type = {t: beam.metrics.Metrics.counter("mammobeam", f"notifications_{t.lower()}")
                        for t in EVENT_TYPES}

    def process(self, message):
        try:
            event = parse_notification(dict(message.attributes or {}), message.data or b"")
        except NotificationError as e:
            # Not a file: nothing to put in the rejections table; counted and logged.
            self.malformed.inc()
            log.warning("dropping a Pub/Sub message that is not a GCS notification: %s", e)
            yield beam.pvalue.TaggedOutput(MALFORMED, str(e))
            return
        counter = self.by_type.get(event.event_type)
        if counter is not None:
            counter.inc()
        if event.event_type == OBJECT_FINALIZE:
            yield event
        else:
            yield beam.pvalue.TaggedOutput(OTHER_EVENTS, event)


class ParseNotifications(beam.PTransform):
    """PubsubMessage -> ObjectEvent of OBJECT_FINALIZE; tagged `other_events` and `malformed`."""

    def expand(self, messages):
        return messages | "Parse" >> beam.ParDo(_ParseFn()).with_outputs(OTHER_EVENTS, MALFORMED,
                                                                            main="finalized")


class _DropRedeliveriesFn(beam.DoFn):
    """Keyed by object URI; remembers the generations seen until `retention` after the last one."""

    SEEN = ReadModifyWriteStateSpec("generations", PickleCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.REAL_TIME)

    def __init__(self, retention_seconds: float, clock: Clock):
        self.retention_seconds = retention_seconds
        self.clock = clock
        self.dropped = beam.metrics.Metrics.counter("mammobeam", "redeliveries_dropped")

    def process(self, element, seen=beam.DoFn.StateParam(SEEN), expiry=beam.DoFn.TimerParam(EXPIRY)):
        _, event = element
        generations = seen.read() or frozenset()
        if event.generation in generations:
            self.dropped.inc()
            return
        seen.write(generations | {event.generation})
        expiry.set(self.clock.now() + Duration.of(self.retention_seconds))
        yield event

    @on_timer(EXPIRY)
    def expire(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()


class DropRedeliveries(beam.PTransform):
    """Pub/Sub delivers at least once: pass each (object, generation) once within the retention."""

    def __init__(self, retention_seconds: float, clock: Optional[Clock] = None):
        super().__init__()
        self.retention_seconds = retention_seconds
        self.clock = clock or WallClock()

    def expand(self, events):
        return (events
                | "KeyByObject" >> beam.Map(lambda e: (e.object_uri, e)).with_output_types(tuple[str, Any])
                | "FirstDelivery" >> beam.ParDo(_DropRedeliveriesFn(self.retention_seconds, self.clock)))


# --- Reading the notified generation ------------------------------------------------------------

def current_generation(object_uri: str) -> Optional[int]:
    """The live generation of a gs:// object (None when it does not exist), via Beam's GcsIO."""
    from apache_beam.io.gcp.gcsio import GcsIO, parse_gcs_path
    bucket, name = parse_gcs_path(object_uri)
    blob = _gcsio().client.bucket(bucket).get_blob(name)
    return None if blob is None else int(blob.generation)


_GCSIO = None


def _gcsio():
    global _GCSIO
    if _GCSIO is None:
        from apache_beam.io.gcp.gcsio import GcsIO
        _GCSIO = GcsIO()
    return _GCSIO


def read_generation(event: ObjectEvent, options: ReaderOptions,
                    pseudonymizer: Pseudonymizer) -> Union[ReadFile, Rejection]:
    """Read and check the notified generation of an object through Beam's filesystems.

    Beam reads the live generation; the notified one is read only if it is live before and after
    the read (generations only grow, so equal numbers mean nothing changed in between). An object
    deleted or overwritten before it was read is SOURCE_NOT_FOUND: without object versioning that
    generation no longer exists; its successor has its own notification.
    """
    shown_object = pseudonymizer.path(event.object_uri) if options.pseudonymize_paths else event.object_uri
    shown = with_generation(shown_object, event.generation)

    def gone(detail: str) -> Rejection:
        return Rejection(shown, Reason.SOURCE_NOT_FOUND, Stage.READ, detail)

    try:
        live = current_generation(event.object_uri)
        if live != event.generation:
            return gone("object deleted before it was read" if live is None
                        else f"generation replaced by {live} before it was read")
        result = read_one(event.object_uri, options, pseudonymizer)
        after = current_generation(event.object_uri)
    except Exception as e:  # storage errors must not block the stream
        return Rejection(shown, Reason.SOURCE_NOT_FOUND if "404" in str(e) else Reason.DECODE_FAILED,
                         Stage.READ, f"read failed: {type(e).__name__}")
    if after != event.generation:
        return gone(f"generation replaced by {after} while it was read")
    if isinstance(result, Rejection):
        return dataclasses.replace(result, source_uri=shown)
    return ReadFile(dataclasses.replace(result.record, source_uri=shown), result.data)


class _ReadGenerationFn(beam.DoFn):
    def __init__(self, options: ReaderOptions, pseudonymizer: Pseudonymizer):
        self.options = options
        self.pseudonymizer = pseudonymizer
        self.read_counter = beam.metrics.Metrics.counter("mammobeam", "files_read")
        self.rejected_counter = beam.metrics.Metrics.counter("mammobeam", "files_rejected_at_read")

    def process(self, event: ObjectEvent):
        self.read_counter.inc()
        result = read_generation(event, self.options, self.pseudonymizer)
        if isinstance(result, Rejection):
            self.rejected_counter.inc()
            yield beam.pvalue.TaggedOutput(REJECTIONS, result)
        else:
            yield result


class ReadNotifiedObjects(beam.PTransform):
    """ObjectEvent -> ReadFile (same as ReadDicom's main output, source_uri with the generation);
    tagged `rejections` (header checks of transforms/dicom.py, SOURCE_NOT_FOUND, read errors)."""

    def __init__(self, options: ReaderOptions, pseudonymizer: Pseudonymizer):
        super().__init__()
        self.options = options
        self.pseudonymizer = pseudonymizer

    def expand(self, events):
        return events | "ReadAndCheck" >> beam.ParDo(
            _ReadGenerationFn(self.options, self.pseudonymizer)).with_outputs(REJECTIONS, main="files")
