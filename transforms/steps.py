"""The composite PTransforms of the data flow: ReadDicom -> Preprocess -> ScoreImages.

Each has a main output and a tagged `rejections` output of Rejection records, so a file is never
dropped: it is either carried on or rejected with a code. Beam code here is thin; the logic lives
in transforms/dicom.py, transforms/preprocess_step.py and the model handler.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Union

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from mammobeam.schemas.reasons import Reason, Stage
from mammobeam.schemas.records import ImageRecord, ImageScore, PreprocessedImage, Rejection
from mammobeam.transforms.dicom import HeaderResult, ReaderOptions, read_header
from mammobeam.transforms.preprocess_step import preprocess_bytes
from mammobeam.transforms.pseudonyms import Pseudonymizer

log = logging.getLogger(__name__)
REJECTIONS = "rejections"


@dataclasses.dataclass(frozen=True)
class FileTask:
    """A file to read. `rejection` is set when an earlier pass (header pass, dedupe) already decided."""

    source_uri: str
    rejection: Optional[Rejection] = None


@dataclasses.dataclass(frozen=True)
class ReadFile:
    """A file whose header was accepted, with its bytes (only until Preprocess)."""

    record: ImageRecord
    data: bytes


def read_bounded(uri: str, max_bytes: int) -> bytes:
    """The whole object, refusing to hold more than `max_bytes` (+1 to detect the overflow)."""
    with FileSystems.open(uri, compression_type="uncompressed") as f:
        data = f.read(max_bytes + 1)
    return data


class _ReadDicomFn(beam.DoFn):
    def __init__(self, options: ReaderOptions, pseudonymizer: Pseudonymizer):
        self.options = options
        self.pseudonymizer = pseudonymizer
        self.read_counter = beam.metrics.Metrics.counter("mammobeam", "files_read")
        self.rejected_counter = beam.metrics.Metrics.counter("mammobeam", "files_rejected_at_read")

    def process(self, element: Union[str, FileTask]):
        task = element if isinstance(element, FileTask) else FileTask(element)
        self.read_counter.inc()
        if task.rejection is not None:
            self.rejected_counter.inc()
            yield beam.pvalue.TaggedOutput(REJECTIONS, task.rejection)
            return
        result = read_one(task.source_uri, self.options, self.pseudonymizer)
        if isinstance(result, Rejection):
            self.rejected_counter.inc()
            yield beam.pvalue.TaggedOutput(REJECTIONS, result)
        else:
            yield result


def read_one(uri: str, options: ReaderOptions, pseudonymizer: Pseudonymizer) -> Union[ReadFile, Rejection]:
    """Read and check one file; every failure is a Rejection."""
    shown = pseudonymizer.path(uri) if options.pseudonymize_paths else uri
    try:
        data = read_bounded(uri, options.max_file_bytes)
    except FileNotFoundError:
        return Rejection(shown, Reason.SOURCE_NOT_FOUND, Stage.READ, "object not found")
    except Exception as e:  # storage errors of any filesystem
        if "not found" in str(e).lower() or "404" in str(e):
            return Rejection(shown, Reason.SOURCE_NOT_FOUND, Stage.READ, type(e).__name__)
        return Rejection(shown, Reason.DECODE_FAILED, Stage.READ, f"read failed: {type(e).__name__}")
    if len(data) > options.max_file_bytes:
        return Rejection(shown, Reason.IMAGE_TOO_LARGE, Stage.READ,
                         f"file exceeds {options.max_file_bytes} bytes")
    header: HeaderResult = read_header(data, uri, pseudonymizer, options)
    if header.rejection is not None:
        return header.rejection
    return ReadFile(header.record, data)


class ReadDicom(beam.PTransform):
    """URIs (or FileTasks) -> ReadFile of accepted files; tagged `rejections` for the rest."""

    def __init__(self, options: ReaderOptions, pseudonymizer: Pseudonymizer):
        super().__init__()
        self.options = options
        self.pseudonymizer = pseudonymizer

    def expand(self, uris):
        return uris | "ReadAndCheck" >> beam.ParDo(
            _ReadDicomFn(self.options, self.pseudonymizer)).with_outputs(REJECTIONS, main="files")


class _PreprocessFn(beam.DoFn):
    def __init__(self, spec, threads: int):
        self.spec = spec
        self.threads = threads

    def setup(self):
        import cv2
        cv2.setNumThreads(self.threads)

    def process(self, element: ReadFile):
        outcome = preprocess_bytes(element.data, element.record, self.spec, threads=self.threads)
        if outcome.rejection is not None:
            yield beam.pvalue.TaggedOutput(REJECTIONS, outcome.rejection)
        else:
            yield outcome.image


class Preprocess(beam.PTransform):
    """ReadFile -> PreprocessedImage (uint16 model input); tagged `rejections`."""

    def __init__(self, spec, threads: int = 1):
        super().__init__()
        self.spec = spec
        self.threads = threads

    def expand(self, files):
        return files | "DecodeWindowOrientCropResize" >> beam.ParDo(
            _PreprocessFn(self.spec, self.threads)).with_outputs(REJECTIONS, main="images")


@dataclasses.dataclass(frozen=True)
class _ScoreKey:
    record: ImageRecord
    preprocessing_version: str
    flip_applied: bool
    orientation_check: str


def _split(image: PreprocessedImage):
    return (_ScoreKey(image.record, image.preprocessing_version, image.flip_applied,
                      image.orientation_check), image.pixels)


def _to_score(keyed, model_name: str, model_version: str) -> ImageScore:
    key, result = keyed
    return ImageScore(record=key.record, score=float(result.inference), model_name=model_name,
                      model_version=model_version, preprocessing_version=key.preprocessing_version,
                      flip_applied=key.flip_applied, orientation_check=key.orientation_check)


def _failed_batch_rejections(failed):
    batch, error = failed
    for key, _ in batch:
        yield Rejection.of(key.record, Reason.SCORING_FAILED, Stage.SCORE,
                           f"{type(error).__name__}: {str(error)[:200]}")


class ScoreImages(beam.PTransform):
    """PreprocessedImage -> (ImageScore, rejections) with RunInference, batched across exams (no
    state), so the model sees full batches. Images of a batch that fails are rejected as
    SCORING_FAILED. Returns a (scores, rejections) pair of PCollections."""

    def __init__(self, handler: ModelHandler, model_name: str, model_version: str):
        super().__init__()
        self.handler = handler
        self.model_name = model_name
        self.model_version = model_version

    def expand(self, images):
        main, failed = (images
                        | "SplitPixels" >> beam.Map(_split)
                        | "RunInference" >> RunInference(KeyedModelHandler(self.handler))
                        .with_exception_handling())
        scores = main | "ToImageScore" >> beam.Map(_to_score, self.model_name, self.model_version)
        rejected = failed.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch_rejections)
        return scores, rejected
