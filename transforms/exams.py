"""From image scores to exam rows: breast and exam scores, category, operating-point flags, scope.

`aggregate_exam` is the one place where image scores become breast and exam scores; batch
(AssembleExams: group by exam) and streaming (stateful assembly with timers) both call it.

Aggregation (`--aggregation`):
  max            breast = max over the breast's images; exam = max over breasts (default)
  mean-of-views  breast = mean over its views of each view's max (retakes count once); exam = max
Operating points come from the thresholds file for the exam's site. An INCOMPLETE exam is never
normal-triaged (a missing view may hide the finding); an out-of-scope exam is scored, flagged with
its scope_reason, and never normal-triaged either.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence

import apache_beam as beam

from mammobeam.schemas import codes
from mammobeam.schemas.records import ExamResult, ImageScore
from mammobeam.schemas.thresholds import ModelScope, Thresholds

AGGREGATIONS = ("max", "mean-of-views")


@dataclasses.dataclass(frozen=True)
class ExamPolicy:
    """Everything that turns scores into decisions; passed whole so batch and streaming agree."""

    thresholds: Thresholds
    scope: ModelScope
    aggregation: str = "max"

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")


def breast_score(scores: Sequence[ImageScore], aggregation: str) -> Optional[float]:
    if not scores:
        return None
    if aggregation == "max":
        return max(s.score for s in scores)
    per_view: dict[str, float] = {}
    for s in scores:
        per_view[s.record.view] = max(per_view.get(s.record.view, 0.0), s.score)
    return sum(per_view.values()) / len(per_view)


def aggregate_exam(exam_id: str, scores: Iterable[ImageScore], policy: ExamPolicy,
                   revision: int = 0) -> ExamResult:
    """One exam row from its images' scores (any order; retakes allowed)."""
    images = sorted(scores, key=lambda s: (s.record.sop_instance_uid or "", s.record.source_uri))
    if not images:
        raise ValueError(f"exam {exam_id} has no scored images")
    first = images[0].record
    present = sorted({s.record.exam_view for s in images if s.record.exam_view in codes.STANDARD_EXAM_VIEWS})
    missing = [v for v in codes.STANDARD_EXAM_VIEWS if v not in present]
    left = breast_score([s for s in images if s.record.laterality == "L"], policy.aggregation)
    right = breast_score([s for s in images if s.record.laterality == "R"], policy.aggregation)
    exam_score = max(x for x in (left, right) if x is not None)
    point = policy.thresholds.for_site(first.site)
    scope_reason = policy.scope.out_of_scope_reason(
        manufacturers=[s.record.manufacturer for s in images],
        views=[s.record.view for s in images],
        implant_present=any(s.record.implant_present for s in images),
        age=first.age_at_exam,
        pixel_spacings=[s.record.pixel_spacing_mm[0] if s.record.pixel_spacing_mm else None for s in images])
    complete = not missing
    return ExamResult(
        exam_id=exam_id,
        study_instance_uid=first.study_instance_uid,
        accession_key=first.accession_key,
        patient_key=first.patient_key,
        age_at_exam=first.age_at_exam,
        site=first.site,
        manufacturer=first.manufacturer,
        manufacturer_model=first.manufacturer_model,
        study_date=first.study_date,
        status="COMPLETE" if complete else "INCOMPLETE",
        views=tuple(present),
        missing_views=tuple(missing),
        left_score=left,
        right_score=right,
        exam_score=exam_score,
        category=point.category(exam_score),
        recall=exam_score >= point.recall_threshold,
        normal_triage=(complete and scope_reason is None and exam_score < point.normal_triage_threshold),
        in_scope=scope_reason is None,
        scope_reason=scope_reason,
        model_name=images[0].model_name,
        model_version=images[0].model_version,
        preprocessing_version=images[0].preprocessing_version,
        thresholds_version=policy.thresholds.version,
        revision=revision,
    )


class AssembleExams(beam.PTransform):
    """Batch exam assembly: group small score records by exam, aggregate each exam once.

    Input: ImageScore. Output: ExamResult. Pixels never reach this step. The policy (thresholds and
    scope) arrives as a singleton side input, read from its files when the pipeline runs.
    """

    def __init__(self, policy):
        super().__init__()
        self.policy = policy  # PCollection holding one ExamPolicy

    def expand(self, scores):
        return (scores
                | "KeyByExam" >> beam.Map(lambda s: (s.record.exam_id, s))
                | "GroupByExam" >> beam.GroupByKey()
                | "Aggregate" >> beam.Map(_aggregate_group, beam.pvalue.AsSingleton(self.policy)))


def _aggregate_group(keyed, policy: ExamPolicy) -> ExamResult:
    exam_id, group = keyed
    return aggregate_exam(exam_id, group, policy)


def load_policy(thresholds_path: str, scope_path: str, aggregation: str) -> ExamPolicy:
    """Read the thresholds and scope files (used as the side input's source)."""
    return ExamPolicy(Thresholds.load(thresholds_path), ModelScope.load(scope_path), aggregation)
