"""`mammobeam stream`: score DICOM objects as they land in GCS, from the bucket's Pub/Sub
notifications, into the same exams, images and rejections tables as `mammobeam score`.

    Pub/Sub ─► ParseNotifications ─► DropRedeliveries ─► ReadNotifiedObjects ─► Preprocess ─► ScoreImages
    (GCS        OBJECT_FINALIZE;       (object,            Beam's GCS filesystem,   (batch's       (batch's
     notices)   others counted)        generation) once    the notified generation  transform)     transform)
                                                                                                     │
    WriteStreamTables ◄── rows ◄── AssembleExamsStreaming (state + timers: quiet period, maximum ◄───┘
    (Parquet per window)           wait, revisions, cleanup) ◄── every step's rejections too

Every step that can fail for one object gives a coded rejection instead of raising: on Dataflow a
raising bundle is retried forever and blocks the stream.

Runner: the BundleBasedDirectRunner locally (the only local runner with streaming timers,
FACTS.md); pass `--runner DataflowRunner ...` for production. With STORAGE_EMULATOR_HOST /
PUBSUB_EMULATOR_HOST set it talks to the emulators with anonymous credentials.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
import time
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions

from mammobeam.pipelines import cloud_auth
from mammobeam.pipelines.batch import StartupError, add_model_arguments, build_scoring, pipeline_options
from mammobeam.pipelines.gcs_events import DropRedeliveries, ParseNotifications, ReadNotifiedObjects
from mammobeam.pipelines.options import add_reader_arguments, pseudonymizer_from, reader_options_from
from mammobeam.pipelines.stream_sink import ParquetExamHistory, WriteStreamTables, to_table_row
from mammobeam.transforms.exam_state import REJECTIONS as EXAM_REJECTIONS
from mammobeam.transforms.exam_state import AssembleExamsStreaming, AssemblyTiming, Clock, WallClock
from mammobeam.transforms.exams import load_policy
from mammobeam.transforms.steps import REJECTIONS, Preprocess, ScoreImages

log = logging.getLogger(__name__)
PASSES_PIPELINE_OPTIONS = True
DEFAULT_RUNNER = "BundleBasedDirectRunner"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscription", required=True, metavar="projects/P/subscriptions/S",
                        help="Pub/Sub subscription receiving the bucket's GCS notifications")
    parser.add_argument("--output", required=True,
                        help="output folder (or gs:// prefix) for the tables, or bq://PROJECT.DATASET")
    group = parser.add_argument_group("exam assembly and output")
    group.add_argument("--exam-quiet-seconds", type=float, default=60.0,
                       help="emit a complete exam after this long without a new image (default 60)")
    group.add_argument("--exam-max-wait-seconds", type=float, default=600.0,
                       help="emit an exam (INCOMPLETE if views are missing) this long after its "
                            "first pending image (default 600)")
    group.add_argument("--exam-retention-seconds", type=float, default=86400.0,
                       help="clear an exam's state this long after its last image; later images "
                            "continue from the table's latest row (default 86400)")
    group.add_argument("--window-seconds", type=float, default=60.0,
                       help="a Parquet file per table per window of this length (default 60)")
    group.add_argument("--sink-shards", type=int, default=1, help="files per table per window")
    group.add_argument("--run-seconds", type=float, default=None,
                       help="stop after this long (benchmarks, smoke tests); default: run until stopped")
    add_model_arguments(parser)
    add_reader_arguments(parser)


def build_stream(pipeline: beam.Pipeline, messages, setup, policy, reader_options, pseudonymizer,
                 timing: AssemblyTiming, output: str, run_id: str, window_seconds: float,
                 shards: int = 1, threads: int = 1, clock: Clock = None, history=None, table_writer=None):
    """The data flow from Pub/Sub messages (PubsubMessage with attributes) to table rows.

    Rows go to windowed Parquet files under `output`, or to `table_writer` when given (for
    bq://PROJECT.DATASET: bigquery_io.WriteTablesToBigQuery, streaming inserts).
    """
    clock = clock or WallClock()
    events = messages | "ParseNotifications" >> ParseNotifications()
    fresh = events.finalized | "DropRedeliveries" >> DropRedeliveries(timing.retention_seconds, clock)
    read = fresh | "ReadNotifiedObjects" >> ReadNotifiedObjects(reader_options, pseudonymizer)
    pre = read.files | "Preprocess" >> Preprocess(setup.spec, threads)
    scores, score_rejections = pre.images | "ScoreImages" >> ScoreImages(
        setup.handler, setup.model_name, setup.model_version)
    assembled = scores | "AssembleExams" >> AssembleExamsStreaming(policy, timing, clock, history)
    return ((assembled.exams, assembled.images, assembled[EXAM_REJECTIONS], read[REJECTIONS],
             pre[REJECTIONS], score_rejections)
            | "AllRows" >> beam.Flatten()
            | "ToTableRows" >> beam.Map(to_table_row, run_id)
            | "WriteTables" >> (table_writer or WriteStreamTables(output, run_id, window_seconds, shards, clock)))


def _timing(args) -> AssemblyTiming:
    try:
        return AssemblyTiming(args.exam_quiet_seconds, args.exam_max_wait_seconds,
                              args.exam_retention_seconds)
    except ValueError as e:
        raise StartupError(str(e)) from None


def stream(args: argparse.Namespace) -> int:
    auth = cloud_auth.prepare()
    log.info("credentials: %s", auth)
    timing = _timing(args)
    if args.window_seconds <= 0:
        raise StartupError("--window-seconds must be positive")
    setup = build_scoring(args)
    policy = load_policy(setup.thresholds_path, setup.scope_path, setup.aggregation)
    run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    options = pipeline_options(getattr(args, "pipeline_args", []), default_runner=DEFAULT_RUNNER)
    options.view_as(StandardOptions).streaming = True
    output = args.output.rstrip("/")
    pipeline = beam.Pipeline(options=options)
    messages = pipeline | "ReadNotifications" >> beam.io.ReadFromPubSub(
        subscription=args.subscription, with_attributes=True)
    if output.startswith("bq://"):
        from mammobeam.pipelines.bigquery_io import (BigQueryExamHistory, WriteTablesToBigQuery,
                                                     prepare_dataset)
        prepare_dataset(output)  # tables, commits and the one-row-per-key views, if absent
        history = BigQueryExamHistory(output, setup.model_version)
        writer = WriteTablesToBigQuery(output, run_id=run_id)
    else:
        history, writer = ParquetExamHistory(output, setup.model_version), None
    build_stream(pipeline, messages, setup, policy, reader_options_from(args), pseudonymizer_from(args),
                 timing, output, run_id, args.window_seconds, args.sink_shards, args.threads,
                 history=history, table_writer=writer)
    log.info("stream run %s: %s -> %s (quiet %.0f s, max wait %.0f s, window %.0f s)", run_id,
             args.subscription, output, timing.quiet_seconds, timing.max_wait_seconds, args.window_seconds)
    print(f"mammobeam stream: run {run_id} reading {args.subscription} into {output}", flush=True)
    result = pipeline.run()
    _wait(result, args.run_seconds)
    return 0


def _wait(result, run_seconds) -> None:
    """Until --run-seconds pass, SIGTERM/SIGINT arrives, or the pipeline fails."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def waiter():
        try:
            result.wait_until_finish()
        except BaseException as e:  # the pipeline failed
            failure.append(e)
        stop.set()

    threading.Thread(target=waiter, daemon=True, name="wait-pipeline").start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    deadline = None if run_seconds is None else time.monotonic() + run_seconds
    while not stop.is_set():
        stop.wait(0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic())))
        if deadline is not None and time.monotonic() >= deadline:
            break
    if failure:
        raise failure[0]
    # On the DirectRunner rows still buffered for the current window are not written: messages
    # were acknowledged on receipt (its Pub/Sub reader auto-acks). Dataflow's drain flushes them.
    log.info("stopping the stream")
    result.cancel()


def run(args: argparse.Namespace) -> int:
    try:
        return stream(args)
    except StartupError as e:
        print(f"mammobeam stream: {e}", file=sys.stderr)
        return 2
