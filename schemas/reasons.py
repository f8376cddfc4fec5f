"""Every rejection reason code, defined once.

A file that is not scored gets exactly one of these on the rejections table. The stage says which
step decided (read, accept, decode, preprocess, score, assemble).
"""

from __future__ import annotations

import enum


class Reason(str, enum.Enum):
    """Why a file was not scored. The value is what the tables and `inspect` show."""

    NOT_DICOM = "NOT_DICOM"
    NOT_MAMMOGRAPHY = "NOT_MAMMOGRAPHY"
    FOR_PROCESSING = "FOR_PROCESSING"
    TOMOSYNTHESIS = "TOMOSYNTHESIS"
    SYNTHESIZED_2D = "SYNTHESIZED_2D"
    NON_STANDARD_VIEW = "NON_STANDARD_VIEW"
    UNKNOWN_LATERALITY = "UNKNOWN_LATERALITY"
    UNKNOWN_VIEW = "UNKNOWN_VIEW"
    DIGITIZED_FILM = "DIGITIZED_FILM"
    LOSSY_COMPRESSION = "LOSSY_COMPRESSION"
    UNSUPPORTED_TRANSFER_SYNTAX = "UNSUPPORTED_TRANSFER_SYNTAX"
    DECODE_FAILED = "DECODE_FAILED"
    TRUNCATED = "TRUNCATED"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    EMPTY_IMAGE = "EMPTY_IMAGE"
    DUPLICATE = "DUPLICATE"
    SUPERSEDED = "SUPERSEDED"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    DEMO_KEY_REFUSED = "DEMO_KEY_REFUSED"
    MISSING_IDENTIFIERS = "MISSING_IDENTIFIERS"
    SCORING_FAILED = "SCORING_FAILED"

    def __str__(self) -> str:  # so f-strings and JSON show the bare code
        return self.value


DESCRIPTIONS: dict[Reason, str] = {
    Reason.NOT_DICOM: "not a DICOM file (no DICM preamble and not parseable as a dataset)",
    Reason.NOT_MAMMOGRAPHY: "Modality is not MG or the SOP class is not a mammography image",
    Reason.FOR_PROCESSING: "For Processing (raw detector) image; only For Presentation is scored",
    Reason.TOMOSYNTHESIS: "tomosynthesis or breast projection object, or a multi-frame image",
    Reason.SYNTHESIZED_2D: "2D image synthesized from tomosynthesis (C-View, V-Preview, ...)",
    Reason.NON_STANDARD_VIEW: "not a standard screening view (CC/MLO without modifiers)",
    Reason.UNKNOWN_LATERALITY: "no single-breast laterality in any source",
    Reason.UNKNOWN_VIEW: "no view in any source",
    Reason.DIGITIZED_FILM: "digitised film (MG stored as Secondary Capture); see --accept-digitized-film",
    Reason.LOSSY_COMPRESSION: "lossy compressed; see --accept-lossy",
    Reason.UNSUPPORTED_TRANSFER_SYNTAX: "transfer syntax the decoder cannot read",
    Reason.DECODE_FAILED: "pixel data could not be decoded",
    Reason.TRUNCATED: "file ends before its declared content",
    Reason.IMAGE_TOO_LARGE: "declared size exceeds the configured bounds",
    Reason.EMPTY_IMAGE: "no pixel data, or pixels carry no signal",
    Reason.DUPLICATE: "another file holding this SOP instance was scored",
    Reason.SUPERSEDED: "an older generation of an object whose newer generation is already scored",
    Reason.SOURCE_NOT_FOUND: "the source object no longer exists",
    Reason.DEMO_KEY_REFUSED: "real (unmarked) data with the built-in demo pseudonym key",
    Reason.MISSING_IDENTIFIERS: "SOP instance or exam identifiers missing",
    Reason.SCORING_FAILED: "the model could not score this image",
}


class Stage(str, enum.Enum):
    """The pipeline step that produced a rejection."""

    READ = "read"
    ACCEPT = "accept"
    DECODE = "decode"
    PREPROCESS = "preprocess"
    SCORE = "score"
    ASSEMBLE = "assemble"

    def __str__(self) -> str:
        return self.value
