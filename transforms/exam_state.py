"""Streaming exam assembly: a stateful DoFn per exam, with a quiet period, a maximum wait,
revisions after emission and an explicit state cleanup.

Input: ImageScore records (small; pixels never enter state). Outputs:
  exams       ExamResult, one per emission; `revision` counts emissions of the exam (0, 1, ...)
  images      ImageScore of every image accepted into its exam (the images table's rows)
  rejections  Rejection DUPLICATE for a second object holding a SOP instance the exam already has,
              or for an older generation of an object that arrives after a newer one

When an exam is emitted:
  - quiet period: the four standard views are present and no image arrived for `quiet_seconds`;
  - maximum wait: `max_wait_seconds` after the first image of a pending change, the exam is emitted
    whatever it holds (INCOMPLETE with its missing views if views are missing).
An image arriving after an emission ("late" means after emission, not behind the watermark) starts a
new pending change, emitted after the quiet period as the next revision, complete or not. Several
images per view are kept (retakes); a new generation of an object replaces its earlier generation.

State is cleared `retention_seconds` after the exam's last image. A later image then continues from
the table: `history.latest(exam_id)` gives the latest row's revision and images (the one-row-per-key
rule), so the revision keeps counting up.

Timers run in processing time. The clock is a parameter (`clock.now()`), because under TestStream
the runner's processing-time clock starts at 0, not at the wall clock.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional, Protocol

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from mammobeam.schemas import codes
from mammobeam.schemas.reasons import Reason, Stage
from mammobeam.schemas.records import ExamResult, ImageScore, Rejection
from mammobeam.transforms.exams import ExamPolicy, aggregate_exam

log = logging.getLogger(__name__)

EXAMS = "exams"
IMAGES = "images"
REJECTIONS = "rejections"
GENERATION_SEPARATOR = "#"  # gs://bucket/object#generation, as gsutil and GCS object ids write it


class Clock(Protocol):
    def now(self) -> Timestamp: ...


class WallClock:
    """Processing time on a real runner."""

    def now(self) -> Timestamp:
        return Timestamp.now()


@dataclasses.dataclass(frozen=True)
class PriorExam:
    """What the exams table already holds for an exam whose state was cleaned up."""

    revision: int
    images: tuple[ImageScore, ...] = ()


class ExamHistory(Protocol):
    def latest(self, exam_id: str) -> Optional[PriorExam]: ...


def split_generation(source_uri: str) -> tuple[str, int]:
    """('gs://b/o', 123) from 'gs://b/o#123'; a URI without a generation has generation 0."""
    head, sep, tail = source_uri.rpartition(GENERATION_SEPARATOR)
    if sep and tail.isdigit():
        return head, int(tail)
    return source_uri, 0


def with_generation(object_uri: str, generation: Optional[int]) -> str:
    return f"{object_uri}{GENERATION_SEPARATOR}{generation}" if generation else object_uri


@dataclasses.dataclass(frozen=True)
class AssemblyTiming:
    quiet_seconds: float = 60.0
    max_wait_seconds: float = 600.0
    retention_seconds: float = 86400.0

    def __post_init__(self):
        if min(self.quiet_seconds, self.max_wait_seconds) <= 0:
            raise ValueError("the quiet period and the maximum wait must be positive")
        if self.retention_seconds < self.max_wait_seconds:
            raise ValueError("state retention must be at least the maximum wait "
                             f"({self.retention_seconds} < {self.max_wait_seconds})")


@dataclasses.dataclass
class _ExamState:
    """Everything held per exam: score records by object (without generation), and progress."""

    images: dict[str, ImageScore] = dataclasses.field(default_factory=dict)
    next_revision: int = 0
    pending_since: Optional[Timestamp] = None  # first image of a change not yet emitted

    @property
    def emitted_before(self) -> bool:
        return self.next_revision > 0

    def views(self) -> set[str]:
        return {s.record.exam_view for s in self.images.values()}

    def complete(self) -> bool:
        return all(v in self.views() for v in codes.STANDARD_EXAM_VIEWS)


def _admit(state: _ExamState, score: ImageScore):
    """Decide one arriving image: ('accept' | 'replace' | 'duplicate' | 'superseded' | 'redelivered',
    detail)."""
    object_uri, generation = split_generation(score.record.source_uri)
    held = state.images.get(object_uri)
    if held is not None:
        _, held_generation = split_generation(held.record.source_uri)
        if generation > held_generation:
            return "replace", f"replaces generation {held_generation}"
        if generation == held_generation:
            return "redelivered", ""
        return "superseded", f"generation {held_generation} of the object is already held"
    sop = score.record.sop_instance_uid
    for other_uri, other in state.images.items():
        if sop and other.record.sop_instance_uid == sop:
            return "duplicate", "SOP instance already held by an earlier file of the exam"
    return "accept", ""


class _AssembleExamFn(beam.DoFn):
    STATE = ReadModifyWriteStateSpec("exam", PickleCoder())
    QUIET = TimerSpec("quiet", TimeDomain.REAL_TIME)
    MAX_WAIT = TimerSpec("max_wait", TimeDomain.REAL_TIME)
    CLEANUP = TimerSpec("cleanup", TimeDomain.REAL_TIME)

    def __init__(self, policy: ExamPolicy, timing: AssemblyTiming, clock: Clock,
                 history: Optional[ExamHistory]):
        self.policy = policy
        self.timing = timing
        self.clock = clock
        self.history = history
        counter = beam.metrics.Metrics.counter
        self.emitted = counter("mammobeam", "exam_rows_emitted")
        self.revisions = counter("mammobeam", "exam_revisions_emitted")
        self.duplicates = counter("mammobeam", "duplicate_images_rejected")
        self.replaced = counter("mammobeam", "images_replaced_by_new_generation")
        self.redelivered = counter("mammobeam", "images_redelivered_dropped")
        self.cleaned = counter("mammobeam", "exam_states_cleaned_up")
        self.restored = counter("mammobeam", "exams_continued_from_table")
        self.failed = counter("mammobeam", "exam_aggregation_failed")

    def process(self, element, state=beam.DoFn.StateParam(STATE),
                quiet=beam.DoFn.TimerParam(QUIET), max_wait=beam.DoFn.TimerParam(MAX_WAIT),
                cleanup=beam.DoFn.TimerParam(CLEANUP)):
        exam_id, score = element
        now = self.clock.now()
        exam = state.read() or self._start(exam_id)
        verdict, detail = _admit(exam, score)
        if verdict == "redelivered":
            self.redelivered.inc()
            return
        if verdict in ("duplicate", "superseded"):
            self.duplicates.inc()
            reason = Reason.DUPLICATE if verdict == "duplicate" else Reason.SUPERSEDED
            yield beam.pvalue.TaggedOutput(
                REJECTIONS, Rejection.of(score.record, reason, Stage.ASSEMBLE, detail))
            return
        if verdict == "replace":
            self.replaced.inc()
        exam.images[split_generation(score.record.source_uri)[0]] = score
        if exam.pending_since is None:
            exam.pending_since = now
            max_wait.set(now + Duration.of(self.timing.max_wait_seconds))
        quiet.set(now + Duration.of(self.timing.quiet_seconds))
        cleanup.set(now + Duration.of(self.timing.retention_seconds))
        state.write(exam)
        yield beam.pvalue.TaggedOutput(IMAGES, score)

    def _start(self, exam_id: str) -> _ExamState:
        prior = self.history.latest(exam_id) if self.history is not None else None
        if prior is None:
            return _ExamState()
        self.restored.inc()
        images = {split_generation(s.record.source_uri)[0]: s for s in prior.images}
        return _ExamState(images=images, next_revision=prior.revision + 1)

    @on_timer(QUIET)
    def on_quiet(self, key=beam.DoFn.KeyParam, state=beam.DoFn.StateParam(STATE)):
        exam = state.read()
        if exam is not None and exam.pending_since is not None and (exam.complete() or exam.emitted_before):
            yield from self._emit(key, exam, state)

    @on_timer(MAX_WAIT)
    def on_max_wait(self, key=beam.DoFn.KeyParam, state=beam.DoFn.StateParam(STATE)):
        exam = state.read()
        if exam is not None and exam.pending_since is not None:
            yield from self._emit(key, exam, state)

    @on_timer(CLEANUP)
    def on_cleanup(self, key=beam.DoFn.KeyParam, state=beam.DoFn.StateParam(STATE)):
        exam = state.read()
        if exam is not None and exam.pending_since is not None:  # never drop an unemitted change
            yield from self._emit(key, exam, state)
        state.clear()
        self.cleaned.inc()

    def _emit(self, exam_id: str, exam: _ExamState, state):
        revision = exam.next_revision
        exam.pending_since = None
        exam.next_revision += 1
        state.write(exam)
        try:
            result = aggregate_exam(exam_id, exam.images.values(), self.policy, revision=revision)
        except Exception:  # a bad record must not stop the stream; its images are on the table
            self.failed.inc()
            log.exception("exam %s: aggregation failed; no row for revision %d", exam_id, revision)
            return
        self.emitted.inc()
        if revision:
            self.revisions.inc()
        yield result


class AssembleExamsStreaming(beam.PTransform):
    """ImageScore -> exams (ExamResult), with tagged `images` and `rejections` outputs."""

    def __init__(self, policy: ExamPolicy, timing: AssemblyTiming, clock: Optional[Clock] = None,
                 history: Optional[ExamHistory] = None):
        super().__init__()
        self.policy = policy
        self.timing = timing
        self.clock = clock or WallClock()
        self.history = history

    def expand(self, scores):
        return (scores
                | "KeyByExam" >> beam.Map(lambda s: (s.record.exam_id, s)).with_output_types(
                    tuple[str, Any])
                | "AssembleWithTimers" >> beam.ParDo(
                    _AssembleExamFn(self.policy, self.timing, self.clock, self.history))
                .with_outputs(IMAGES, REJECTIONS, main=EXAMS))

