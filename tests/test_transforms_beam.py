"""Each composite PTransform alone, on a real runner: ReadDicom, Preprocess, ScoreImages, AssembleExams."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.testing.util import assert_that, equal_to

from mammobeam.schemas.records import ImageRecord, ImageScore
from mammobeam.schemas.thresholds import ModelScope, OperatingPoint, Thresholds
from mammobeam.serving.contract import resolve_model
from mammobeam.serving.export import DEFAULT_CUTS
from mammobeam.serving.inprocess import InProcessModelHandler
from mammobeam.transforms.dicom import ReaderOptions
from mammobeam.transforms.exams import AssembleExams, ExamPolicy
from mammobeam.transforms.pseudonyms import Pseudonymizer
from mammobeam.transforms.steps import REJECTIONS, Preprocess, ReadDicom, ScoreImages


def pipeline():
    return beam.Pipeline(runner="FnApiRunner")


def test_read_dicom_splits_accepted_files_from_coded_rejections(synth_set):
    header_rejections = {p: r for p, r in synth_set.expected_rejections.items()
                         if r not in ("DUPLICATE", "TRUNCATED")}
    files = [p for p in synth_set.files if p.endswith(".dcm")]
    with pipeline() as p:
        read = (p | beam.Create(files + ["/no/such/file.dcm"])
                | ReadDicom(ReaderOptions(), Pseudonymizer.from_config()))
        assert_that(read.files | beam.Map(lambda f: f.record.source_uri),
                    equal_to([f for f in files if f not in header_rejections]), label="accepted")
        assert_that(read[REJECTIONS] | beam.Map(lambda r: (r.source_uri, str(r.reason))),
                    equal_to(sorted(header_rejections.items()) + [("/no/such/file.dcm", "SOURCE_NOT_FOUND")]),
                    label="rejected")


def test_preprocess_rejects_truncated_pixels_and_makes_model_inputs(synth_set, small_spec):
    truncated = synth_set.edge_case_files["truncated"]
    files = [truncated] + list(next(iter(synth_set.exam_files.values())).values())
    with pipeline() as p:
        read = p | beam.Create(files) | ReadDicom(ReaderOptions(), Pseudonymizer.from_config())
        pre = read.files | Preprocess(small_spec)
        assert_that(pre.images | beam.Map(lambda i: (i.pixels.shape, i.pixels.dtype.name,
                                                     i.preprocessing_version)),
                    equal_to([((small_spec.height, small_spec.width), "uint16", small_spec.version)] * 4),
                    label="images")
        assert_that(pre[REJECTIONS] | beam.Map(lambda r: (r.source_uri, str(r.reason))),
                    equal_to([(truncated, "TRUNCATED")]), label="rejections")


class _Failing(ModelHandler):
    """A handler whose model fails for batches holding a bright image (stands in for a bad server)."""

    def load_model(self):
        return None

    def run_inference(self, batch, model, inference_args=None):
        if any(x.max() > 60000 for x in batch):
            raise RuntimeError("device lost")
        return [PredictionResult(x, 0.25) for x in batch]

    def batch_elements_kwargs(self):
        return {"max_batch_size": 1}


def _image(sop: str, value: int):
    from mammobeam.schemas.records import PreprocessedImage
    record = ImageRecord(source_uri=f"/x/{sop}", sop_instance_uid=sop, exam_id="e", laterality="L", view="CC")
    return PreprocessedImage(record, np.full((8, 6), value, np.uint16), "pp")


def test_score_images_turns_a_failing_batch_into_scoring_failed_rejections():
    with pipeline() as p:
        scores, rejected = (p | beam.Create([_image("a", 100), _image("b", 65000)])
                            | ScoreImages(_Failing(), "m", "7"))
        assert_that(scores | beam.Map(lambda s: (s.record.sop_instance_uid, s.score, s.model_version)),
                    equal_to([("a", 0.25, "7")]), label="scores")
        assert_that(rejected | beam.Map(lambda r: (r.sop_instance_uid, str(r.reason))),
                    equal_to([("b", "SCORING_FAILED")]), label="rejected")


def test_score_images_batches_a_real_saved_model(reference_model):
    handler = InProcessModelHandler(resolve_model(reference_model.model_root), max_batch_size=4)
    images = [_image(f"s{i}", 1000 * i) for i in range(6)]
    for image in images:
        object.__setattr__(image, "pixels", np.full((128, 104), image.pixels[0, 0], np.uint16))
    with pipeline() as p:
        scores, _ = p | beam.Create(images) | ScoreImages(handler, reference_model.name, reference_model.version)
        assert_that(scores | beam.Map(lambda s: 0.0 < s.score < 1.0), equal_to([True] * 6))


def test_assemble_exams_reads_its_policy_as_a_side_input():
    thresholds = Thresholds("t-side", "m", "1", "pp", OperatingPoint(0.5, 0.1, DEFAULT_CUTS))
    policy = ExamPolicy(thresholds, ModelScope())

    def score(exam, view, value):
        lat, pos = view.split("-")
        record = ImageRecord(source_uri=f"/{exam}/{view}", sop_instance_uid=f"{exam}{view}", exam_id=exam,
                             laterality=lat, view=pos)
        return ImageScore(record, value, "m", "1", "pp")

    scores = [score("e1", v, 0.2) for v in ("L-CC", "L-MLO", "R-CC", "R-MLO")] + [score("e2", "L-CC", 0.9)]
    with pipeline() as p:
        policy_pc = p | "Policy" >> beam.Create([policy])
        exams = p | beam.Create(scores) | AssembleExams(policy_pc)
        assert_that(exams | beam.Map(lambda e: (e.exam_id, e.status, e.exam_score, e.recall, e.thresholds_version)),
                    equal_to([("e1", "COMPLETE", 0.2, False, "t-side"), ("e2", "INCOMPLETE", 0.9, True, "t-side")]))
