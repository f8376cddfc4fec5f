"""`mammobeam preprocess --input PATTERN --output DIR --format tfrecord|parquet`.

Writes model inputs (transforms/model_inputs.py) for training and audit, with the same reading,
acceptance and preprocessing as `score`. Rejected files go to DIR/rejections (Parquet), so every
input is accounted for: DIR/inputs-*.{tfrecord,parquet} or DIR/rejections.
"""

from __future__ import annotations

import argparse
import os
import sys

import apache_beam as beam

from mammobeam.pipelines.batch import StartupError, expand_inputs, pipeline_options
from mammobeam.pipelines.options import add_reader_arguments, pseudonymizer_from, reader_options_from
from mammobeam.pipelines.tables_io import rejection_row, to_arrow, utcnow
from mammobeam.schemas.tables import REJECTIONS as REJECTIONS_TABLE
from mammobeam.transforms import model_inputs
from mammobeam.transforms.preprocess_step import spec_from_size
from mammobeam.transforms.steps import REJECTIONS, Preprocess, ReadDicom

PASSES_PIPELINE_OPTIONS = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", action="append", required=True, metavar="PATTERN")
    parser.add_argument("--output", required=True)
    parser.add_argument("--format", choices=("tfrecord", "parquet"), default="tfrecord")
    parser.add_argument("--image-size", default="1024x832", help="preprocessing size HxW")
    parser.add_argument("--shards", type=int, default=0, help="output shards (0: let the runner choose)")
    add_reader_arguments(parser)


def _rejections_table(rejections, run_id: str):
    at = utcnow()
    return to_arrow(REJECTIONS_TABLE, [rejection_row(r, run_id, at) for r in rejections])


class _WriteRejections(beam.DoFn):
    def __init__(self, output: str):
        self.output = output

    def process(self, element):
        import pyarrow.parquet as pq
        _, rejections = element
        rejections = list(rejections)
        if rejections:
            os.makedirs(os.path.join(self.output, "rejections"), exist_ok=True)
            pq.write_table(_rejections_table(rejections, "preprocess"),
                           os.path.join(self.output, "rejections", "rejections.parquet"))
        yield len(rejections)


def build(pipeline, uris, args, options, pseudonymizer, spec):
    files = pipeline | "Files" >> beam.Create(uris) | "Distribute" >> beam.Reshuffle()
    read = files | "ReadDicom" >> ReadDicom(options, pseudonymizer)
    pre = read.files | "Preprocess" >> Preprocess(spec)
    prefix = os.path.join(args.output, "inputs")
    if args.format == "tfrecord":
        _ = (pre.images | "ToExample" >> beam.Map(model_inputs.to_example_bytes)
             | "WriteTFRecord" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".tfrecord",
                                                          num_shards=args.shards))
    else:
        _ = (pre.images | "ToRow" >> beam.Map(model_inputs.as_row)
             | "WriteParquet" >> beam.io.WriteToParquet(prefix, model_inputs.ARROW_SCHEMA,
                                                        file_name_suffix=".parquet",
                                                        num_shards=args.shards))
    _ = ((read[REJECTIONS], pre[REJECTIONS]) | "AllRejections" >> beam.Flatten()
         | "OneGroup" >> beam.Map(lambda r: (None, r)) | "Gather" >> beam.GroupByKey()
         | "WriteRejections" >> beam.ParDo(_WriteRejections(args.output)))


def run(args: argparse.Namespace) -> int:
    try:
        uris = list(expand_inputs(args.input))
    except StartupError as e:
        print(f"mammobeam preprocess: {e}", file=sys.stderr)
        return 2
    spec = spec_from_size(args.image_size)
    os.makedirs(args.output, exist_ok=True)
    with beam.Pipeline(options=pipeline_options(getattr(args, "pipeline_args", []))) as pipeline:
        build(pipeline, uris, args, reader_options_from(args), pseudonymizer_from(args), spec)
    print(f"preprocessed {len(uris)} files ({spec.version}) into {args.output}")
    return 0
