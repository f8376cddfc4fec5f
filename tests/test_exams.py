"""Image scores -> breast and exam scores, category, flags and scope: the one aggregation."""

from __future__ import annotations

import pytest

from mammobeam.schemas.records import ImageRecord, ImageScore
from mammobeam.schemas.thresholds import ModelScope, OperatingPoint, Thresholds, ThresholdsError
from mammobeam.transforms.exams import ExamPolicy, aggregate_exam

CUTS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8)
THRESHOLDS = Thresholds("t1", "m", "1", "pp", OperatingPoint(0.5, 0.1, CUTS),
                        sites={"STRICT": OperatingPoint(0.3, 0.05, CUTS)})


def score(view: str, value: float, sop: str = None, site="A", manufacturer="ACME", implant=False,
          age=60) -> ImageScore:
    laterality, position = view.split("-")
    record = ImageRecord(source_uri=f"/x/{sop or view}", sop_instance_uid=sop or view, exam_id="e1",
                         laterality=laterality, view=position, site=site, manufacturer=manufacturer,
                         implant_present=implant, age_at_exam=age, study_date="2026-01-02")
    return ImageScore(record, value, "m", "1", "pp")


def four(values=(0.1, 0.2, 0.3, 0.4), **kw):
    return [score(v, x, **kw) for v, x in zip(("L-CC", "L-MLO", "R-CC", "R-MLO"), values)]


POLICY = ExamPolicy(THRESHOLDS, ModelScope())


def test_breast_is_max_of_its_images_and_exam_is_max_of_breasts():
    exam = aggregate_exam("e1", four((0.1, 0.2, 0.3, 0.45)), POLICY)
    assert exam.left_score == 0.2 and exam.right_score == 0.45 and exam.exam_score == 0.45
    assert exam.status == "COMPLETE" and exam.missing_views == ()
    assert exam.views == ("L-CC", "L-MLO", "R-CC", "R-MLO")


def test_mean_of_views_counts_a_retake_once_at_its_max():
    scores = four((0.2, 0.4, 0.1, 0.1)) + [score("L-CC", 0.6, sop="retake")]
    exam = aggregate_exam("e1", scores, ExamPolicy(THRESHOLDS, ModelScope(), "mean-of-views"))
    assert exam.left_score == pytest.approx((0.6 + 0.4) / 2)
    assert aggregate_exam("e1", scores, POLICY).left_score == 0.6


def test_category_and_flags_follow_the_sites_operating_point():
    exam = aggregate_exam("e1", four((0.01, 0.02, 0.35, 0.05)), POLICY)
    assert exam.category == 6 and not exam.recall and not exam.normal_triage
    strict = aggregate_exam("e1", four((0.01, 0.02, 0.35, 0.05), site="STRICT"), POLICY)
    assert strict.recall
    low = aggregate_exam("e1", four((0.01, 0.02, 0.03, 0.04)), POLICY)
    assert low.category == 1 and low.normal_triage and not low.recall
    assert low.thresholds_version == "t1"


def test_incomplete_exam_lists_missing_views_and_is_never_normal_triaged():
    exam = aggregate_exam("e1", four((0.01, 0.01, 0.01, 0.01))[:3], POLICY)
    assert exam.status == "INCOMPLETE" and exam.missing_views == ("R-MLO",)
    assert not exam.normal_triage


def test_out_of_scope_exam_is_scored_but_never_normal_triaged():
    policy = ExamPolicy(THRESHOLDS, ModelScope(manufacturers=("GOOD",), implants=False))
    exam = aggregate_exam("e1", four((0.01,) * 4, manufacturer="OTHER"), policy)
    assert not exam.in_scope and "OTHER" in exam.scope_reason and not exam.normal_triage
    assert exam.exam_score == 0.01
    implant = aggregate_exam("e1", four((0.01,) * 4, manufacturer="GOOD", implant=True), policy)
    assert implant.scope_reason == "breast implant present"
    fine = aggregate_exam("e1", four((0.01,) * 4, manufacturer="good"), policy)
    assert fine.in_scope and fine.normal_triage


def test_order_of_arrival_does_not_change_the_row():
    scores = four((0.3, 0.1, 0.2, 0.4)) + [score("R-CC", 0.9, sop="retake")]
    assert aggregate_exam("e1", scores, POLICY) == aggregate_exam("e1", list(reversed(scores)), POLICY)


def test_thresholds_for_another_model_or_preprocessing_are_refused(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(THRESHOLDS.to_json())
    loaded = Thresholds.load(path)
    assert loaded == THRESHOLDS
    loaded.check_matches("m", "1", "pp")
    with pytest.raises(ThresholdsError, match="calibrate again"):
        loaded.check_matches("m", "2", "pp")
    with pytest.raises(ThresholdsError):
        loaded.check_matches("m", "1", "pp-other")


def test_cut_points_must_be_nine_and_increasing():
    with pytest.raises(ThresholdsError):
        OperatingPoint(0.5, 0.1, CUTS[:8])
    with pytest.raises(ThresholdsError):
        OperatingPoint(0.5, 0.1, (0.1,) * 9)
