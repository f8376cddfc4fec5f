"""`mammobeam inspect FILE...`: for the person asking "why was this file not scored?".

One JSON object per file on stdout. With `--preview OUT.png`, also writes what the model will see
(the preprocessed image) for visual QC of orientation and crop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mammobeam.pipelines.options import add_reader_arguments, pseudonymizer_from, reader_options_from
from mammobeam.transforms.dicom import HeaderResult, read_header


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="DICOM files to check")
    parser.add_argument("--preview", metavar="OUT.png",
                        help="write the preprocessed image (OUT-<n>.png when several files are given)")
    parser.add_argument("--image-size", default="1024x832", help="preprocessing size HxW for --preview")
    add_reader_arguments(parser)


def describe(result: HeaderResult, path: str) -> dict:
    record, rejection = result.record, result.rejection
    return {
        "path": path,
        "accepted": result.accepted,
        "reason": str(rejection.reason) if rejection else None,
        "detail": rejection.detail if rejection else None,
        "laterality": record.laterality,
        "view": record.view,
        "view_source": record.view_source,
        "laterality_source": record.laterality_source,
        "view_modifiers": list(record.view_modifiers),
        "sop_instance_uid": record.sop_instance_uid,
        "study_instance_uid": record.study_instance_uid,
        "transfer_syntax_uid": record.transfer_syntax_uid,
        "rows": record.rows,
        "columns": record.columns,
    }


def _preview_path(base: str, index: int, count: int) -> str:
    if count == 1:
        return base
    stem, ext = os.path.splitext(base)
    return f"{stem}-{index}{ext or '.png'}"


def _read(path: str, options, pseudonymizer) -> tuple[bytes, HeaderResult]:
    size = os.path.getsize(path)
    data = Path(path).read_bytes() if size <= options.max_file_bytes else b""
    return data, read_header(data, path, pseudonymizer, options, file_size=size)


def run(args: argparse.Namespace) -> int:
    options = reader_options_from(args)
    pseudonymizer = pseudonymizer_from(args)
    # As `score` decides: the first file by path holding a SOP instance is scored, others are DUPLICATE.
    first_holder: dict[str, str] = {}
    for path in sorted(args.files):
        try:
            result = _read(path, options, pseudonymizer)[1]
        except OSError:
            continue
        if result.accepted and result.record.sop_instance_uid:
            first_holder.setdefault(result.record.sop_instance_uid, path)
    failures = 0
    for index, path in enumerate(args.files):
        try:
            data, result = _read(path, options, pseudonymizer)
        except OSError as e:
            print(json.dumps({"path": path, "accepted": False, "reason": "SOURCE_NOT_FOUND",
                              "detail": e.strerror}))
            failures += 1
            continue
        line = describe(result, path)
        holder = first_holder.get(result.record.sop_instance_uid or "", path)
        if result.accepted and holder != path:
            line.update(accepted=False, reason="DUPLICATE", detail=f"SOP instance also held by {holder}")
        if line["accepted"]:
            # Decoding is part of the answer: a file can pass its header and fail on its pixels.
            from mammobeam.transforms.preprocess_step import preprocess_bytes, spec_from_size
            outcome = preprocess_bytes(data, result.record, spec_from_size(args.image_size))
            if outcome.rejection is not None:
                line.update(accepted=False, reason=str(outcome.rejection.reason),
                            detail=outcome.rejection.detail)
            else:
                line.update(flip_applied=outcome.image.flip_applied,
                            orientation_check=outcome.image.orientation_check,
                            preprocessing_version=outcome.image.preprocessing_version)
                if args.preview:
                    from mammobeam.transforms.pixels import to_display_png
                    out = _preview_path(args.preview, index, len(args.files))
                    to_display_png(outcome.image, out)
                    line["preview"] = out
        print(json.dumps(line))
    sys.stdout.flush()
    return 1 if failures else 0
