"""Streaming exam assembly under TestStream on the BundleBasedDirectRunner.

The runner's processing-time clock starts at 0 under TestStream and moves only with
advance_processing_time; the DoFn reads the same clock (RunnerClock), so the quiet period, the
maximum wait and the cleanup are driven exactly by the test.
"""

from __future__ import annotations

import collections
import threading
from typing import Optional

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct import direct_runner
from apache_beam.testing.test_stream import TestStream as ScriptedStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from mammobeam.schemas.records import ImageRecord, ImageScore
from mammobeam.schemas.thresholds import ModelScope, OperatingPoint, Thresholds
from mammobeam.transforms.exam_state import (AssembleExamsStreaming, AssemblyTiming, PriorExam,
                                             split_generation)
from mammobeam.transforms.exams import ExamPolicy

QUIET, MAX_WAIT, RETENTION = 5.0, 30.0, 100.0
TIMING = AssemblyTiming(QUIET, MAX_WAIT, RETENTION)
POLICY = ExamPolicy(
    Thresholds(version="test-thresholds", model_name="m", model_version="1", preprocessing_version="p",
               default=OperatingPoint(0.5, 0.1, tuple(0.1 * i for i in range(1, 10)))),
    ModelScope())
FOUR_VIEWS = ("L-CC", "L-MLO", "R-CC", "R-MLO")


# --- The runner's test clock, shared with the DoFn (one process: the BundleBasedDirectRunner) -----

_RUNNER_CLOCKS: list = []


class _RecordingTestClock(direct_runner.TestClock):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _RUNNER_CLOCKS.append(self)


class RunnerClock:
    """The processing time of the TestStream pipeline that is running."""

    def now(self) -> Timestamp:
        return Timestamp.of(_RUNNER_CLOCKS[-1].time()) if _RUNNER_CLOCKS else Timestamp(0)


@pytest.fixture
def runner_clock(monkeypatch):
    monkeypatch.setattr(direct_runner, "TestClock", _RecordingTestClock)
    return RunnerClock()


# --- Helpers -----------------------------------------------------------------------------------

def image(exam: str, exam_view: str, score: float = 0.2, generation: int = 1, sop: Optional[str] = None,
          name: Optional[str] = None) -> ImageScore:
    laterality, view = exam_view.split("-")
    name = name or exam_view
    record = ImageRecord(source_uri=f"gs://bucket/{exam}/{name}.dcm#{generation}",
                         sop_instance_uid=sop or f"{exam}.{name}", study_instance_uid=f"study-{exam}",
                         exam_id=exam, laterality=laterality, view=view, site="site-a",
                         manufacturer="ACME", study_date="2024-05-01", age_at_exam=55)
    return ImageScore(record=record, score=score, model_name="m", model_version="1",
                      preprocessing_version="p")


_OUTPUTS: dict[str, list] = collections.defaultdict(list)
_LOCK = threading.Lock()


def _collect(element, tag):
    with _LOCK:
        _OUTPUTS[tag].append((float(RunnerClock().now()), element))


class Stream:
    """A TestStream script: arrivals at processing times, in the order given."""

    def __init__(self):
        self.stream = ScriptedStream()
        self.at = 0.0

    def arrive(self, *scores: ImageScore, event_time: float = 0.0) -> "Stream":
        self.stream.add_elements([TimestampedValue(s, event_time) for s in scores])
        return self

    def wait(self, seconds: float) -> "Stream":
        self.stream.advance_processing_time(seconds)
        self.at += seconds
        return self

    def watermark(self, to: float) -> "Stream":
        self.stream.advance_watermark_to(to)
        return self


def run(stream: Stream, clock, history=None, timing: AssemblyTiming = TIMING) -> dict[str, list]:
    _OUTPUTS.clear()
    _HISTORY_CALLS[0] = 0
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        out = (p | stream.stream.advance_watermark_to_infinity()
               | AssembleExamsStreaming(POLICY, timing, clock=clock, history=history))
        for tag in ("exams", "images", "rejections"):
            _ = out[tag] | f"Collect{tag}" >> beam.Map(_collect, tag)
    return {tag: list(_OUTPUTS[tag]) for tag in ("exams", "images", "rejections")}


def exams_of(outputs):
    return [e for _, e in outputs["exams"]]


# --- Behaviour ---------------------------------------------------------------------------------

def test_complete_exam_is_emitted_once_after_the_quiet_period(runner_clock):
    s = Stream()
    for view in FOUR_VIEWS:
        s.arrive(image("e1", view)).wait(1)
    s.wait(QUIET + 2)
    out = run(s, runner_clock)
    [(at, exam)] = out["exams"]
    assert exam.status == "COMPLETE" and exam.revision == 0 and not exam.missing_views
    last_arrival = len(FOUR_VIEWS) - 1
    assert last_arrival + QUIET <= at < MAX_WAIT  # quiet period, not the maximum wait
    assert len(out["images"]) == 4 and not out["rejections"]


def test_incomplete_exam_waits_for_the_maximum_and_names_its_missing_view(runner_clock):
    s = Stream().arrive(image("e2", "L-CC"), image("e2", "L-MLO"), image("e2", "R-CC"))
    for _ in range(8):
        s.wait(5)
    out = run(s, runner_clock)
    [(at, exam)] = out["exams"]
    assert exam.status == "INCOMPLETE" and exam.missing_views == ("R-MLO",)
    assert at >= MAX_WAIT
    assert not exam.normal_triage


def test_out_of_order_arrival_behind_the_watermark_still_assembles(runner_clock):
    s = Stream().watermark(1000)
    # Event times far behind the watermark and in reverse view order: not "late" for assembly.
    for i, view in enumerate(reversed(FOUR_VIEWS)):
        s.arrive(image("e3", view), event_time=10 - i).wait(1)
    s.wait(QUIET + 1)
    exams = exams_of(run(s, runner_clock))
    assert [(e.status, e.revision) for e in exams] == [("COMPLETE", 0)]


def test_retakes_are_kept_and_the_breast_takes_the_higher_score(runner_clock):
    s = (Stream().arrive(*(image("e4", v, score=0.2) for v in FOUR_VIEWS))
         .arrive(image("e4", "L-CC", score=0.7, name="L-CC-retake")).wait(QUIET + 1))
    out = run(s, runner_clock)
    [exam] = exams_of(out)
    assert exam.left_score == pytest.approx(0.7) and exam.right_score == pytest.approx(0.2)
    assert len(out["images"]) == 5 and not out["rejections"]


def test_duplicate_sop_instance_is_rejected_once_as_duplicate(runner_clock):
    s = (Stream().arrive(*(image("e5", v) for v in FOUR_VIEWS))
         .arrive(image("e5", "R-CC", sop="e5.R-CC", name="R-CC-copy")).wait(QUIET + 1))
    out = run(s, runner_clock)
    [(_, rejection)] = out["rejections"]
    assert rejection.reason == "DUPLICATE" and rejection.source_uri.endswith("R-CC-copy.dcm#1")
    assert len(out["images"]) == 4
    assert [e.status for e in exams_of(out)] == ["COMPLETE"]


def test_image_after_emission_produces_the_next_revision(runner_clock):
    s = (Stream().arrive(*(image("e6", v, score=0.2) for v in FOUR_VIEWS[:3])).wait(MAX_WAIT + 1)
         .arrive(image("e6", "R-MLO", score=0.9)).wait(QUIET + 1))
    out = run(s, runner_clock)
    first, second = exams_of(out)
    assert (first.status, first.revision, first.missing_views) == ("INCOMPLETE", 0, ("R-MLO",))
    assert (second.status, second.revision) == ("COMPLETE", 1)
    assert second.right_score == pytest.approx(0.9)
    late_at = out["exams"][1][0]
    assert late_at >= MAX_WAIT + 1 + QUIET  # a revision also waits for the quiet period


def test_new_generation_replaces_the_image_and_redeliveries_and_old_generations_do_not(runner_clock):
    s = (Stream().arrive(*(image("e7", v, score=0.2) for v in FOUR_VIEWS)).wait(QUIET + 1)
         .arrive(image("e7", "L-MLO", score=0.8, generation=2))   # overwritten object
         .arrive(image("e7", "L-MLO", score=0.8, generation=2))   # redelivered: dropped
         .arrive(image("e7", "L-MLO", score=0.3, generation=1))   # stale generation arriving late
         .wait(QUIET + 1))
    out = run(s, runner_clock)
    first, second = exams_of(out)
    assert (first.revision, second.revision) == (0, 1)
    assert first.left_score == pytest.approx(0.2) and second.left_score == pytest.approx(0.8)
    generations = sorted(split_generation(i.record.source_uri)[1] for _, i in out["images"])
    assert generations == [1, 1, 1, 1, 2]
    [(_, stale)] = out["rejections"]
    assert stale.reason == "SUPERSEDED" and stale.source_uri.endswith("L-MLO.dcm#1")


_HISTORY_CALLS = [0]


class _History:
    """The exams table as the DoFn would find it: `prior` is there from processing time `since`."""

    def __init__(self, prior: dict[str, PriorExam], since: float = 0.0):
        self.prior = prior
        self.since = since

    @property
    def calls(self) -> int:  # the DoFn holds a copy of this object: count in the module
        return _HISTORY_CALLS[0]

    def latest(self, exam_id):
        _HISTORY_CALLS[0] += 1
        return self.prior.get(exam_id) if float(RunnerClock().now()) >= self.since else None


def test_cleanup_clears_state_and_later_images_continue_from_the_table(runner_clock):
    table_images = tuple(image("e8", v, score=0.3) for v in FOUR_VIEWS)
    # The row of revision 0 is on the table once it was emitted (after the quiet period).
    history = _History({"e8": PriorExam(revision=0, images=table_images)}, since=QUIET + 1)
    s = (Stream().arrive(*(image("e8", v, score=0.3) for v in FOUR_VIEWS)).wait(QUIET + 1)
         .wait(RETENTION).wait(1)   # cleanup timer fires: state is gone
         .arrive(image("e8", "R-CC", score=0.95, name="R-CC-retake")).wait(QUIET + 1))
    out = run(s, runner_clock, history=history)
    first, second = exams_of(out)
    assert first.revision == 0
    # After cleanup the state restarted from the table's latest row (revision 0 and its images).
    assert second.revision == 1 and second.status == "COMPLETE"
    assert second.right_score == pytest.approx(0.95) and second.left_score == pytest.approx(0.3)
    assert history.calls == 2  # once for the new exam, once after the cleanup


def test_without_cleanup_later_images_are_assembled_from_state(runner_clock):
    s = (Stream().arrive(*(image("e9", v) for v in FOUR_VIEWS)).wait(QUIET + 1)
         .arrive(image("e9", "L-CC", name="L-CC-retake")).wait(QUIET + 1))
    history = _History({})
    out = run(s, runner_clock, history=history)
    assert [e.revision for e in exams_of(out)] == [0, 1]
    assert history.calls == 1


def test_timing_refuses_a_retention_shorter_than_the_maximum_wait():
    with pytest.raises(ValueError):
        AssemblyTiming(quiet_seconds=5, max_wait_seconds=60, retention_seconds=30)
