"""`mammobeam score`: score an archive into the exams, images and rejections tables.

How a run goes:
1. Start-up checks: the model matches the contract, the thresholds match the model and the
   preprocessing version, the output is writable. Anything wrong stops here with a clear message.
2. Header pass (threads, headers only): every input file is read up to its pixel data and checked;
   duplicates of a SOP instance are decided (the first file by path is scored, the others are
   DUPLICATE); files are grouped by exam key into chunks of whole exams. The result is the run's
   manifest (_runs/<run_id>/manifest.jsonl), so `--resume` does not redo it.
3. Waves: chunks are scored by Beam pipelines of `--wave-exams` exams each:
   ReadDicom -> Preprocess -> ScoreImages -> AssembleExams -> CommitChunks. Each chunk's rows are
   committed together (tables_io.ParquetDataset), with a commit record.
4. Summary from what was committed: files seen, images scored, rejections by reason, exams complete
   and incomplete.
After a kill, the same command with `--resume` redoes only chunks without a commit record.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from mammobeam.pipelines.options import add_reader_arguments, pseudonymizer_from, reader_options_from
from mammobeam.pipelines.progress import Progress
from mammobeam.pipelines.tables_io import (RUNS_DIR, exam_row, image_row, open_output, rejection_row,
                                           utcnow)
from mammobeam.schemas.reasons import Reason, Stage
from mammobeam.schemas.records import Rejection
from mammobeam.schemas.thresholds import Thresholds, ThresholdsError
from mammobeam.transforms.dicom import ReaderOptions, read_header
from mammobeam.transforms.exams import AGGREGATIONS, AssembleExams, load_policy
from mammobeam.transforms.pseudonyms import Pseudonymizer
from mammobeam.transforms.steps import REJECTIONS, FileTask, Preprocess, ReadDicom, ScoreImages

log = logging.getLogger(__name__)
PASSES_PIPELINE_OPTIONS = True
HEADER_READ_BYTES = 1 << 20  # headers beyond 1 MiB are read in full by the scoring pass
# Test hook for the resume drill: the process kills itself (SIGKILL) after this many chunk commits.
KILL_AFTER_COMMITS_ENV = "MAMMOBEAM_FAULT_KILL_AFTER_COMMITS"


class StartupError(RuntimeError):
    """A problem found before any file is scored; the message says what to change."""


# --- Command line -------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN",
                        help="file pattern on any Beam filesystem (repeatable), e.g. 'archive/**.dcm'")
    parser.add_argument("--output", required=True,
                        help="Parquet folder for the tables, or bq://PROJECT.DATASET")
    parser.add_argument("--state-dir", help="folder for run manifests (default: --output; required for bq://)")
    add_model_arguments(parser)
    parser.add_argument("--chunk-exams", type=int, default=25,
                        help="exams per commit unit (default 25)")
    parser.add_argument("--wave-exams", type=int, default=200,
                        help="exams per Beam pipeline run (default 200: a few minutes on 2 cores, ~5 s "
                             "fixed cost each); a wave's chunks commit when it ends, and progress "
                             "advances per wave. On Dataflow each wave is a job: use tens of thousands")
    parser.add_argument("--resume", action="store_true",
                        help="continue the latest unfinished run into --output with the same inputs")
    parser.add_argument("--header-threads", type=int, default=8, help="threads for the header pass")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    add_reader_arguments(parser)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model and operating points")
    group.add_argument("--model", help="model folder <name>/ or <name>/<version>/ (default: the demo model)")
    group.add_argument("--model-version", help="version to load (default: the highest)")
    group.add_argument("--serving-address", help="TF Serving host:port (production); else in process")
    group.add_argument("--serving-model", help="model name on TF Serving")
    pin = group.add_mutually_exclusive_group()
    pin.add_argument("--serving-version", type=int, help="pin a version on TF Serving")
    pin.add_argument("--serving-label", help="resolve a version label (stable, canary) once at start")
    group.add_argument("--serving-root-certs", help="PEM root certificates for TLS to TF Serving")
    group.add_argument("--serving-token-file", help="file holding a bearer token for TF Serving")
    group.add_argument("--thresholds", help="thresholds file (default: the model's thresholds.json)")
    group.add_argument("--scope", help="scope file (default: the model's scope.json)")
    group.add_argument("--aggregation", choices=AGGREGATIONS, default="max",
                       help="breast score from image scores: max (default) or mean-of-views")
    group.add_argument("--image-size", default=None,
                       help="preprocessing size HxW (default: the model's input size)")
    group.add_argument("--batch-size", type=int, default=16, help="largest inference batch (default 16)")
    group.add_argument("--threads", type=int, default=1, help="codec/OpenCV threads per worker thread")


# --- Model set-up (shared with streaming) -------------------------------------------------------

@dataclasses.dataclass
class ScoringSetup:
    handler: object
    model_name: str
    model_version: str
    spec: object
    thresholds_path: str
    scope_path: str
    aggregation: str


def default_model_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "serving" / "demo_model" / "demo"


def build_scoring(args: argparse.Namespace) -> ScoringSetup:
    """Resolve the model, check the contract and the thresholds; fail fast with a clear message."""
    from mammobeam.serving.contract import ContractError, check_input_size, resolve_model
    from mammobeam.transforms.preprocess_step import spec_from_size

    try:
        if args.serving_address:
            from mammobeam.serving.tfserving import TFServingModelHandler
            if not args.serving_model:
                raise StartupError("--serving-address needs --serving-model")
            if not args.image_size:
                raise StartupError("--serving-address needs --image-size (the model's input HxW)")
            spec = spec_from_size(args.image_size)
            token = Path(args.serving_token_file).read_text().strip() if args.serving_token_file else None
            certs = Path(args.serving_root_certs).read_bytes() if args.serving_root_certs else None
            handler = TFServingModelHandler(
                args.serving_address, args.serving_model, version=args.serving_version,
                label=args.serving_label, image_height=spec.height, image_width=spec.width,
                max_batch_size=args.batch_size, root_certificates=certs, bearer_token=token)
            model_name, version = handler.resolve()
            model_name, model_version = str(model_name), str(version)
            model_root = Path(args.model) if args.model else None
        else:
            from mammobeam.serving.inprocess import InProcessModelHandler, load_and_check
            model_dir = args.model or default_model_dir()
            ref = resolve_model(model_dir, args.model_version)
            _, _, info = load_and_check(ref)
            spec = spec_from_size(args.image_size or f"{info.height}x{info.width}")
            check_input_size(info, spec.height, spec.width)
            handler = InProcessModelHandler(ref, max_batch_size=args.batch_size)
            model_name, model_version, model_root = ref.name, ref.version, Path(ref.model_root)
    except ContractError as e:
        raise StartupError(f"model does not match the contract: {e}") from None
    thresholds_path = args.thresholds or (str(model_root / "thresholds.json") if model_root else None)
    scope_path = args.scope or (str(model_root / "scope.json") if model_root else None)
    if not thresholds_path or not os.path.exists(thresholds_path):
        raise StartupError(f"no thresholds file ({thresholds_path}); pass --thresholds")
    if not scope_path or not os.path.exists(scope_path):
        raise StartupError(f"no scope file ({scope_path}); pass --scope")
    try:
        Thresholds.load(thresholds_path).check_matches(model_name, model_version, spec.version)
        load_policy(thresholds_path, scope_path, args.aggregation)
    except (ThresholdsError, ValueError) as e:
        raise StartupError(str(e)) from None
    return ScoringSetup(handler, model_name, model_version, spec, thresholds_path, scope_path,
                        args.aggregation)


def pipeline_options(pipeline_args: list[str], default_runner: str = "FnApiRunner") -> PipelineOptions:
    """Beam options passed through; the runner is always named (the default one downloads Prism)."""
    args = list(pipeline_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args += ["--runner", default_runner]
    return PipelineOptions(args)


# --- Header pass and manifest -------------------------------------------------------------------

@dataclasses.dataclass
class ManifestEntry:
    uri: str
    shown_uri: str
    exam_id: Optional[str]
    sop_instance_uid: Optional[str]
    rejection: Optional[Rejection]
    chunk_id: str = ""
    # What a later rejection (DUPLICATE) of this file reports: site, device, laterality, view.
    facts: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        rej = self.rejection
        return {"uri": self.uri, "shown_uri": self.shown_uri, "exam_id": self.exam_id,
                "sop": self.sop_instance_uid, "chunk": self.chunk_id, "facts": self.facts,
                "rejection": None if rej is None else {
                    **{k: getattr(rej, k) for k in ("source_uri", "detail", "sop_instance_uid", "exam_id",
                                                    "site", "manufacturer", "manufacturer_model",
                                                    "laterality", "view")},
                    "reason": str(rej.reason), "stage": str(rej.stage)}}

    @classmethod
    def from_json(cls, body: dict) -> "ManifestEntry":
        rej = body["rejection"]
        if rej is not None:
            rej = Rejection(**{**rej, "reason": Reason(rej["reason"]), "stage": Stage(rej["stage"])})
        return cls(body["uri"], body["shown_uri"], body["exam_id"], body["sop"], rej, body["chunk"],
                   body.get("facts") or {})


def expand_inputs(patterns: list[str]) -> dict[str, int]:
    """Every file the patterns match, sorted, with its size (from the listing: no call per file)."""
    sizes: dict[str, int] = {}
    for pattern in patterns:
        matched = FileSystems.match([pattern])[0].metadata_list
        if not matched:
            raise StartupError(f"--input {pattern!r} matches no file")
        sizes.update((m.path, m.size_in_bytes) for m in matched)
    return dict(sorted(sizes.items()))


# What a later rejection (DUPLICATE) of a file reports of it.
_FACTS = ("site", "manufacturer", "manufacturer_model", "laterality", "view")


def _header_of(uri: str, size: int, options: ReaderOptions, pseudonymizer: Pseudonymizer) -> ManifestEntry:
    shown = pseudonymizer.path(uri) if options.pseudonymize_paths else uri
    try:
        with FileSystems.open(uri, compression_type="uncompressed") as f:
            head = f.read(HEADER_READ_BYTES)
    except Exception as e:
        rej = Rejection(shown, Reason.SOURCE_NOT_FOUND, Stage.READ, type(e).__name__)
        return ManifestEntry(uri, shown, None, None, rej)
    result = read_header(head, uri, pseudonymizer, options, file_size=size)
    if result.rejection is not None and result.rejection.reason == Reason.TRUNCATED and size > len(head):
        # The header is longer than what the pass reads; the scoring pass reads the whole file.
        with FileSystems.open(uri, compression_type="uncompressed") as f:
            data = f.read(options.max_file_bytes + 1)
        result = read_header(data, uri, pseudonymizer, options, file_size=size)
    record = result.record
    facts = {k: getattr(record, k) for k in _FACTS}
    return ManifestEntry(uri, shown, record.exam_id, record.sop_instance_uid, result.rejection, facts=facts)


def header_pass(sizes: dict[str, int], options: ReaderOptions, pseudonymizer: Pseudonymizer, threads: int,
                progress: Optional[Progress] = None) -> list[ManifestEntry]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        entries = []
        for entry in pool.map(lambda item: _header_of(*item, options, pseudonymizer), sizes.items()):
            entries.append(entry)
            if progress:
                progress.advance(1)
    return entries


def mark_duplicates(entries: list[ManifestEntry]) -> int:
    """The first accepted file (by path) holding a SOP instance is scored; the others are DUPLICATE."""
    first: dict[str, str] = {}
    count = 0
    for entry in sorted(entries, key=lambda e: e.uri):
        if entry.rejection is not None or not entry.sop_instance_uid:
            continue
        if entry.sop_instance_uid in first:
            entry.rejection = Rejection(entry.shown_uri, Reason.DUPLICATE, Stage.READ,
                                        "SOP instance already held by an earlier file",
                                        sop_instance_uid=entry.sop_instance_uid, exam_id=entry.exam_id,
                                        **entry.facts)
            count += 1
        else:
            first[entry.sop_instance_uid] = entry.uri
    return count


def assign_chunks(entries: list[ManifestEntry], chunk_exams: int) -> list[str]:
    """Whole exams per chunk; files with no exam go to chunks of their own. Returns chunk ids."""
    by_exam: dict[str, list[ManifestEntry]] = collections.defaultdict(list)
    for entry in entries:
        by_exam[entry.exam_id or f"~file:{entry.uri}"].append(entry)
    chunk_ids = []
    for index, exam in enumerate(sorted(by_exam)):
        chunk_id = f"c{index // max(1, chunk_exams):06d}"
        for entry in by_exam[exam]:
            entry.chunk_id = chunk_id
        if not chunk_ids or chunk_ids[-1] != chunk_id:
            chunk_ids.append(chunk_id)
    return chunk_ids


# --- Run state ----------------------------------------------------------------------------------

def _inputs_fingerprint(patterns: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(patterns)).encode()).hexdigest()[:16]


def find_resumable_run(output: Path, patterns: list[str]) -> Optional[str]:
    runs = output / RUNS_DIR
    if not runs.is_dir():
        return None
    fingerprint = _inputs_fingerprint(patterns)
    candidates = []
    for run_file in runs.glob("*/run.json"):
        body = json.loads(run_file.read_text())
        if body.get("inputs_fingerprint") == fingerprint and body.get("status") != "finished":
            candidates.append((body.get("started_at", ""), body["run_id"]))
    return max(candidates)[1] if candidates else None


def _write_run(output: Path, run_id: str, body: dict) -> None:
    path = output / RUNS_DIR / run_id / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, path)


def _write_manifest(output: Path, run_id: str, entries: list[ManifestEntry]) -> None:
    path = output / RUNS_DIR / run_id / "manifest.jsonl"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for entry in entries:
            f.write(json.dumps(entry.to_json()) + "\n")
    os.replace(tmp, path)


def _read_manifest(output: Path, run_id: str) -> list[ManifestEntry]:
    path = output / RUNS_DIR / run_id / "manifest.jsonl"
    with open(path) as f:
        return [ManifestEntry.from_json(json.loads(line)) for line in f]


# --- The scoring pipeline -----------------------------------------------------------------------

class _CommitChunkFn(beam.DoFn):
    """Writes one chunk's rows (all three tables) and its commit record."""

    def __init__(self, output: str, run_id: str, chunk_files: dict[str, int], total_files: int):
        self.output, self.run_id = output, run_id
        self.chunk_files, self.total_files = chunk_files, total_files

    def setup(self):
        self.dataset = open_output(self.output)
        self.commits = 0
        self.kill_after = int(os.environ.get(KILL_AFTER_COMMITS_ENV, "0") or 0)

    def process(self, element):
        chunk_id, grouped = element
        at = utcnow()
        rows = {"images": [image_row(s, self.run_id, at, chunk_id) for s in grouped["images"]],
                "exams": [exam_row(e, self.run_id, at, chunk_id) for e in grouped["exams"]],
                "rejections": [rejection_row(r, self.run_id, at, chunk_id) for r in grouped["rejections"]]}
        files = len(rows["images"]) + len(rows["rejections"])
        expected = self.chunk_files.get(chunk_id)
        if expected is not None and files != expected:
            raise RuntimeError(f"chunk {chunk_id}: {files} rows for {expected} files; not committing")
        self.dataset.commit_chunk(self.run_id, chunk_id, rows, files)
        self.commits += 1
        done = self.dataset.committed_files(self.run_id)
        log.info("committed chunk %s (%d files); %d/%d files committed", chunk_id, files, done,
                 self.total_files)
        if self.kill_after and self.commits >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        yield chunk_id


def _keyed(element, chunk_of: dict, attr: str):
    value = element
    for part in attr.split("."):
        value = getattr(value, part)
    return chunk_of[value], element


def build_wave(pipeline: beam.Pipeline, tasks: list[FileTask], setup: ScoringSetup,
               options: ReaderOptions, pseudonymizer: Pseudonymizer, output: str, run_id: str,
               chunk_of_uri: dict[str, str], chunk_of_exam: dict[str, str],
               chunk_files: dict[str, int], total_files: int, threads: int):
    """One wave: the whole data flow from file tasks to committed chunks."""
    files = (pipeline
             | "Files" >> beam.Create(tasks, reshuffle=False)
             | "Distribute" >> beam.Reshuffle())
    read = files | "ReadDicom" >> ReadDicom(options, pseudonymizer)
    pre = read.files | "Preprocess" >> Preprocess(setup.spec, threads)
    scores, score_rejections = pre.images | "ScoreImages" >> ScoreImages(
        setup.handler, setup.model_name, setup.model_version)
    policy = (pipeline
              | "PolicyFiles" >> beam.Create([(setup.thresholds_path, setup.scope_path, setup.aggregation)])
              | "LoadPolicy" >> beam.MapTuple(load_policy))
    exams = scores | "AssembleExams" >> AssembleExams(policy)
    rejections = ((read[REJECTIONS], pre[REJECTIONS], score_rejections)
                  | "AllRejections" >> beam.Flatten())
    keyed = {
        "images": scores | "ImageChunk" >> beam.Map(_keyed, chunk_of_uri, "record.source_uri"),
        "exams": exams | "ExamChunk" >> beam.Map(_keyed, chunk_of_exam, "exam_id"),
        "rejections": rejections | "RejectionChunk" >> beam.Map(_keyed, chunk_of_uri, "source_uri"),
    }
    return (keyed
            | "GroupByChunk" >> beam.CoGroupByKey()
            | "CommitChunks" >> beam.ParDo(_CommitChunkFn(output, run_id, chunk_files, total_files)))


# --- The run ------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunSummary:
    run_id: str
    output: str
    files_seen: int
    images_scored: int
    rejections: dict[str, int]
    exams_complete: int
    exams_incomplete: int
    seconds: float

    def lines(self) -> list[str]:
        out = [f"run {self.run_id}: {self.files_seen} files in {self.seconds:.1f} s",
               f"  images scored:   {self.images_scored}",
               f"  exams:           {self.exams_complete} complete, {self.exams_incomplete} incomplete",
               f"  rejections:      {sum(self.rejections.values())}"]
        out += [f"    {reason:<28} {count}" for reason, count in sorted(self.rejections.items())]
        if self.output.startswith("bq://"):
            project_dataset = self.output[len("bq://"):]
            out.append(f"  tables:          {self.output} (BigQuery; read the views: "
                       f"SELECT * FROM `{project_dataset}.exams_current`)")
        else:
            out.append(f"  tables:          {self.output}/{{exams,images,rejections}} (Parquet; DuckDB: "
                       f"SELECT * FROM read_parquet('{self.output}/exams/*/*.parquet', hive_partitioning=true))")
        return out


def summarise(dataset, output: str, run_id: str, files_seen: int, seconds: float) -> RunSummary:
    """Counts read back from the committed tables, not from memory: what a reader will see."""
    scored, by_reason, status = dataset.run_counts(run_id)
    return RunSummary(run_id, output, files_seen, scored, by_reason, status.get("COMPLETE", 0),
                      status.get("INCOMPLETE", 0), seconds)


def score_archive(args: argparse.Namespace) -> RunSummary:
    started = time.monotonic()
    from mammobeam.pipelines import cloud_auth
    cloud_auth.prepare()  # with emulators: anonymous at once, not after Beam's ~28 s credential retries
    if args.output.startswith("bq://") and not args.state_dir:
        raise StartupError("--output bq://... needs --state-dir (a folder for run manifests, for --resume)")
    output = Path(args.state_dir or args.output)  # run state: manifests and commit bookkeeping
    options = reader_options_from(args)
    pseudonymizer = pseudonymizer_from(args)
    setup = build_scoring(args)
    output.mkdir(parents=True, exist_ok=True)
    dataset = open_output(args.output)
    progress = Progress(enabled=not args.quiet)

    run_id = find_resumable_run(output, args.input) if args.resume else None
    if run_id:
        entries = _read_manifest(output, run_id)
        log.info("resuming run %s (%d files)", run_id, len(entries))
    else:
        if args.resume:
            log.info("--resume: no unfinished run with these inputs in %s; starting a new run", output)
        run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        sizes = expand_inputs(args.input)
        progress.start("headers", len(sizes))
        entries = header_pass(sizes, options, pseudonymizer, args.header_threads, progress)
        progress.finish()
        refused = [e for e in entries if e.rejection and e.rejection.reason == Reason.DEMO_KEY_REFUSED]
        if refused:
            raise StartupError(
                f"{len(refused)} of {len(entries)} files are real (not synthetic) data and no pseudonym "
                "key is configured: set MAMMOBEAM_PSEUDONYM_KEY or MAMMOBEAM_PSEUDONYM_KEY_FILE, or pass "
                "--pseudonym-key-file (nothing was written)")
        duplicates = mark_duplicates(entries)
        assign_chunks(entries, args.chunk_exams)
        _write_run(output, run_id, {"run_id": run_id, "inputs": args.input,
                                    "inputs_fingerprint": _inputs_fingerprint(args.input),
                                    "started_at": utcnow().isoformat(), "status": "running",
                                    "model_name": setup.model_name, "model_version": setup.model_version,
                                    "preprocessing_version": setup.spec.version, "files": len(entries),
                                    "duplicates": duplicates})
        _write_manifest(output, run_id, entries)

    committed = dataset.committed_chunks(run_id)
    pending = [e for e in entries if e.chunk_id not in committed]
    pending_chunks = sorted({e.chunk_id for e in pending})
    removed = dataset.clear_uncommitted(run_id, pending_chunks)
    if committed:
        log.info("%d chunks already committed; %d to do (removed %d partial files)", len(committed),
                 len(pending_chunks), removed)

    by_chunk: dict[str, list[ManifestEntry]] = collections.defaultdict(list)
    for entry in pending:
        by_chunk[entry.chunk_id].append(entry)
    waves, current, exams_in_wave = [], [], 0
    for chunk_id in pending_chunks:
        current.append(chunk_id)
        exams_in_wave += len({e.exam_id for e in by_chunk[chunk_id]})
        if exams_in_wave >= args.wave_exams:
            waves.append(current)
            current, exams_in_wave = [], 0
    if current:
        waves.append(current)

    progress.start("files", len(entries), done=len(entries) - len(pending))
    for wave in waves:
        wave_entries = [e for c in wave for e in by_chunk[c]]
        tasks = [FileTask(e.uri, e.rejection) for e in wave_entries]
        chunk_of_uri = {e.shown_uri: e.chunk_id for e in wave_entries}
        chunk_of_exam = {e.exam_id: e.chunk_id for e in wave_entries if e.exam_id}
        chunk_files = collections.Counter(e.chunk_id for e in wave_entries)
        with beam.Pipeline(options=pipeline_options(getattr(args, "pipeline_args", []))) as pipeline:
            build_wave(pipeline, tasks, setup, options, pseudonymizer, args.output, run_id, chunk_of_uri,
                       chunk_of_exam, dict(chunk_files), len(entries), args.threads)
        progress.advance(len(wave_entries))
    progress.finish()

    missing = {e.chunk_id for e in entries} - dataset.committed_chunks(run_id)
    if missing:
        raise RuntimeError(f"run {run_id}: chunks {sorted(missing)[:5]} were not committed")
    body = json.loads((output / RUNS_DIR / run_id / "run.json").read_text())
    body.update(status="finished", finished_at=utcnow().isoformat())
    _write_run(output, run_id, body)
    return summarise(dataset, args.output, run_id, len(entries), time.monotonic() - started)


def run(args: argparse.Namespace) -> int:
    try:
        summary = score_archive(args)
    except StartupError as e:
        print(f"mammobeam score: {e}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0
