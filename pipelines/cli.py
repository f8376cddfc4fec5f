"""The `mammobeam` command line: one subcommand per job.

Each subcommand lives in the module that owns it, which provides ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so `inspect` does not
pay for TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Optional, Sequence

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("mammobeam.pipelines.demo", "synthesise exams, score them on the embedded default, report"),
    "inspect": ("mammobeam.pipelines.inspect_cmd", "say, per DICOM file, whether and why it is (not) scored"),
    "synth": ("mammobeam.synthetic.cli", "write synthetic screening exams as DICOM files"),
    "score": ("mammobeam.pipelines.batch", "score an archive into exams, images and rejections tables"),
    "preprocess": ("mammobeam.pipelines.preprocess_cmd", "write preprocessed model inputs (TFRecord/Parquet)"),
    "stream": ("mammobeam.pipelines.streaming", "score GCS notifications from Pub/Sub continuously"),
    "serve-local": ("mammobeam.serving.serve_local", "serve a SavedModel over TF Serving's gRPC API"),
    "report": ("mammobeam.analytics.report", "write the programme dashboard (one HTML file)"),
    "calibrate": ("mammobeam.analytics.calibrate", "choose operating points; write a thresholds file"),
    "strategies": ("mammobeam.analytics.strategies", "compare reading strategies with and without AI"),
}


def _parser_for(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"mammobeam {name}", description=help_text)
    module.add_arguments(parser)
    return parser, module


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mammobeam COMMAND [options]\n\ncommands:")
        for name, (_, help_text) in SUBCOMMANDS.items():
            print(f"  {name:<12} {help_text}")
        print("\n`mammobeam COMMAND --help` for a command's options.")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"mammobeam: unknown command {name!r}; see `mammobeam --help`", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # runner internals, per bundle
    try:
        parser, module = _parser_for(name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("mammobeam"):
            print(f"mammobeam {name}: not available in this build ({e.name})", file=sys.stderr)
            return 2
        raise
    # Subcommands that run Beam pass unknown --options through as pipeline options.
    if getattr(module, "PASSES_PIPELINE_OPTIONS", False):
        args, extra = parser.parse_known_args(rest)
        args.pipeline_args = extra
    else:
        args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
