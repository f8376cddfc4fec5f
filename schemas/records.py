"""The elements that flow between transforms: small, typed, picklable.

ImageRecord      header facts of one file (no pixels, no PHI: identifiers are already pseudonyms)
PreprocessedImage  record + the model-input uint16 array (lives only between Preprocess and Score)
ImageScore       record + the model's score and the versions that produced it
ExamResult       one row of the exams table
Rejection        one row of the rejections table
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from mammobeam.schemas.reasons import Reason, Stage


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """What the header of one DICOM file says, with identifiers replaced by keyed pseudonyms."""

    source_uri: str
    sop_instance_uid: Optional[str] = None
    study_instance_uid: Optional[str] = None
    series_instance_uid: Optional[str] = None
    sop_class_uid: Optional[str] = None
    modality: Optional[str] = None
    presentation_intent: Optional[str] = None
    image_type: tuple[str, ...] = ()
    # Pseudonyms (keyed HMAC); the raw identifiers never leave the reader.
    exam_id: Optional[str] = None
    patient_key: Optional[str] = None
    accession_key: Optional[str] = None
    site: Optional[str] = None
    # Laterality and view, with the attribute each was read from.
    laterality: Optional[str] = None
    laterality_source: Optional[str] = None
    view: Optional[str] = None
    view_source: Optional[str] = None
    view_modifiers: tuple[str, ...] = ()
    implant_present: Optional[bool] = None
    manufacturer: Optional[str] = None
    manufacturer_model: Optional[str] = None
    # Pixel geometry and encoding.
    transfer_syntax_uid: Optional[str] = None
    rows: Optional[int] = None
    columns: Optional[int] = None
    frames: int = 1
    bits_allocated: Optional[int] = None
    bits_stored: Optional[int] = None
    pixel_representation: Optional[int] = None
    samples_per_pixel: Optional[int] = None
    photometric: Optional[str] = None
    lossy: bool = False
    # Grey-scale transforms as found.
    rescale_slope: Optional[float] = None
    rescale_intercept: Optional[float] = None
    window_center: tuple[float, ...] = ()
    window_width: tuple[float, ...] = ()
    voi_lut_function: Optional[str] = None
    has_voi_lut_sequence: bool = False
    pixel_spacing_mm: Optional[tuple[float, float]] = None
    # Orientation as found; FieldOfViewHorizontalFlip describes the detector, not the patient.
    patient_orientation: tuple[str, ...] = ()
    fov_horizontal_flip: Optional[str] = None
    study_date: Optional[str] = None  # ISO yyyy-mm-dd
    age_at_exam: Optional[int] = None
    synthetic: bool = False
    file_size: Optional[int] = None

    @property
    def exam_view(self) -> Optional[str]:
        """'L-CC', 'R-MLO', ... or None when laterality or view is unknown."""
        if self.laterality in ("L", "R") and self.view:
            return f"{self.laterality}-{self.view}"
        return None


@dataclasses.dataclass(frozen=True)
class Rejection:
    """One file that is not scored, and why. No PHI in `detail`."""

    source_uri: str
    reason: Reason
    stage: Stage
    detail: str = ""
    sop_instance_uid: Optional[str] = None
    exam_id: Optional[str] = None
    site: Optional[str] = None
    manufacturer: Optional[str] = None
    manufacturer_model: Optional[str] = None
    laterality: Optional[str] = None
    view: Optional[str] = None

    @classmethod
    def of(cls, record: ImageRecord, reason: Reason, stage: Stage, detail: str = "") -> "Rejection":
        """A rejection carrying what is known of the image."""
        return cls(
            source_uri=record.source_uri, reason=reason, stage=stage, detail=detail,
            sop_instance_uid=record.sop_instance_uid, exam_id=record.exam_id, site=record.site,
            manufacturer=record.manufacturer, manufacturer_model=record.manufacturer_model,
            laterality=record.laterality, view=record.view,
        )


@dataclasses.dataclass(frozen=True)
class PreprocessedImage:
    """A model-ready image: uint16 [H, W] at the spec's size, plus how it was made."""

    record: ImageRecord
    pixels: np.ndarray
    preprocessing_version: str
    flip_applied: bool = False
    orientation_check: str = "not_checked"


@dataclasses.dataclass(frozen=True)
class ImageScore:
    """The model's malignancy score for one image. Small: what exams are assembled from."""

    record: ImageRecord
    score: float
    model_name: str
    model_version: str
    preprocessing_version: str
    flip_applied: bool = False
    orientation_check: str = "not_checked"


@dataclasses.dataclass(frozen=True)
class ExamResult:
    """One row of the exams table (see schemas/tables.py for column meanings)."""

    exam_id: str
    study_instance_uid: Optional[str]
    accession_key: Optional[str]
    patient_key: Optional[str]
    age_at_exam: Optional[int]
    site: Optional[str]
    manufacturer: Optional[str]
    manufacturer_model: Optional[str]
    study_date: Optional[str]
    status: str
    views: tuple[str, ...]
    missing_views: tuple[str, ...]
    left_score: Optional[float]
    right_score: Optional[float]
    exam_score: Optional[float]
    category: Optional[int]
    recall: bool
    normal_triage: bool
    in_scope: bool
    scope_reason: Optional[str]
    model_name: str
    model_version: str
    preprocessing_version: str
    thresholds_version: Optional[str]
    revision: int = 0

    def as_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["views"] = list(self.views)
        row["missing_views"] = list(self.missing_views)
        return row
