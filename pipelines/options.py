"""Command-line options shared by the subcommands that read DICOM, and their translation into the
typed option objects of transforms/."""

from __future__ import annotations

import argparse

from mammobeam.transforms.dicom import EXAM_KEYS, ReaderOptions
from mammobeam.transforms.pseudonyms import Pseudonymizer


def add_reader_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reading and acceptance")
    group.add_argument("--exam-key", choices=EXAM_KEYS, default="study",
                       help="what groups images into an exam: StudyInstanceUID (default), accession "
                            "number, or patient + study date (for archives with per-image UIDs)")
    group.add_argument("--accept-digitized-film", action="store_true",
                       help="score MG stored as Secondary Capture (only for a model validated on film)")
    group.add_argument("--accept-lossy", action="store_true",
                       help="score lossy-compressed images (rejected as LOSSY_COMPRESSION by default)")
    group.add_argument("--pseudonymize-paths", action="store_true",
                       help="replace source_uri with a keyed hash in every output")
    group.add_argument("--pseudonym-key-file",
                       help="file holding the pseudonym key (else $MAMMOBEAM_PSEUDONYM_KEY[_FILE]; "
                            "without any, the public demo key, which only synthetic data may use)")
    group.add_argument("--allow-demo-key-on-real-data", action="store_true",
                       help="force the public demo key on real data (pseudonyms then protect nothing)")
    group.add_argument("--max-file-mb", type=int, default=512, help="reject larger files (default 512)")
    group.add_argument("--max-pixel-mb", type=int, default=256,
                       help="reject images declaring more pixel bytes (default 256)")


def reader_options_from(args: argparse.Namespace) -> ReaderOptions:
    return ReaderOptions(exam_key=args.exam_key, accept_digitized_film=args.accept_digitized_film,
                         accept_lossy=args.accept_lossy, pseudonymize_paths=args.pseudonymize_paths,
                         max_file_bytes=args.max_file_mb * 1024 * 1024,
                         max_pixel_bytes=args.max_pixel_mb * 1024 * 1024)


def pseudonymizer_from(args: argparse.Namespace) -> Pseudonymizer:
    return Pseudonymizer.from_config(args.pseudonym_key_file,
                                     allow_demo_key_on_real_data=args.allow_demo_key_on_real_data)
