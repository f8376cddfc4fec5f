"""Mammography preprocessing: decode, window, orient, crop, resize. Plain functions, no Beam.

    decode_raw (codecs.py)      fastest codec per transfer syntax, pydicom as fallback
    greyscale LUT (voi.py)      bit pattern -> stored value -> Modality LUT -> VOI -> MONOCHROME1 inverted
                                -> uint16, one exact table per image applied with one np.take
    orient                      chest wall on the LEFT for every image: PatientOrientation first,
                                the tissue-mass side of the image as check (or as the only source)
    crop                        largest tissue component on a subsampled grid (burnt-in labels and
                                markers are separate, smaller components), then its bounding box
    resize + pad                cv2 INTER_AREA keeping the aspect ratio, chest wall on the left edge,
                                vertically centred, padded with black to spec.height x spec.width

The output is uint16 on the full 0..65535 scale (the window's fraction of full scale); normalisation
to the model's input range belongs to the model. Every parameter that can change a pixel is a field of
PreprocessingSpec, and `spec.version` (which goes on every scored row) changes with any of them.

Orientation convention (PS3.3 C.7.6.1.1.1 Patient Orientation; agreed with synthetic/): the first value
of Patient Orientation is the patient direction of increasing column index. "A" (anterior, towards the
nipple) means the chest wall is on the image's left; "P" means it is on the right and the image is
flipped horizontally. Real units store L-CC "A\\R", L-MLO "A\\F", R-CC "P\\L", R-MLO "P\\F"; a
mirrored left breast ("P\\R") is flipped too. FieldOfViewHorizontalFlip (0018,7034) describes the
stored image relative to the detector, not to the patient, so it is recorded on the ImageRecord and
never used to flip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pydicom

from mammobeam.schemas.reasons import Reason
from mammobeam.schemas.records import ImageRecord, PreprocessedImage
from mammobeam.transforms.codecs import PixelError, RawFrame, decode_frame, decode_raw
from mammobeam.transforms.voi import (
    OUTPUT_MAX, GreyscaleTransform, VoiError, build_lut, presentation, stored_values,
    transform_from_header,
)

__all__ = [
    "PreprocessingSpec", "PixelError", "decode_frame", "preprocess_dataset", "to_display_png",
    "preprocess_pixels", "header_chest_wall_side", "pixel_chest_wall_side", "row_direction_check",
]

# Bump when the algorithm changes in a way the spec's fields do not capture.
PREPROCESSING_REVISION = "pp1"

_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}

ORIENTATION_CHECKS = ("agrees", "disagrees", "header_only", "pixels_only")


@dataclasses.dataclass(frozen=True)
class PreprocessingSpec:
    """Every parameter that can change a preprocessed pixel. `version` names the combination."""

    height: int = 1024
    width: int = 832
    # A pixel is tissue when its presentation value exceeds this fraction of full scale.
    crop_threshold: float = 0.04
    # Crop and orientation analysis run on a grid subsampled to about this many rows.
    analysis_rows: int = 512
    # Grid cells of margin kept around the breast's bounding box.
    crop_margin_cells: int = 1
    # Side of the square structuring element (grid cells) that opens the tissue mask: removes noise
    # specks and thin lines so they neither join the breast nor become the largest component.
    mask_opening_cells: int = 3
    interpolation: str = "area"
    vertical_align: str = "center"  # or "top"
    pad_value: int = 0
    # Tissue-mass ratio between the image halves below which pixels give no orientation verdict.
    orientation_min_ratio: float = 1.25
    # How frames are decoded. Only "full" exists; a reduced-resolution JPEG 2000 decode would be a
    # different value here, hence a different version, never a silent substitute.
    decode_path: str = "full"

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError("output size too small")
        if not 0.0 <= self.crop_threshold < 1.0:
            raise ValueError("crop_threshold must be in [0, 1)")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}")
        if self.vertical_align not in ("center", "top"):
            raise ValueError("vertical_align must be 'center' or 'top'")
        if not 0 <= self.pad_value <= OUTPUT_MAX:
            raise ValueError("pad_value must fit uint16")
        if self.decode_path != "full":
            raise ValueError("only decode_path='full' is implemented")
        if self.analysis_rows < 32:
            raise ValueError("analysis_rows too small")

    @property
    def version(self) -> str:
        """e.g. 'pp1-1024x832-3f2a9c1d': revision, size, and a hash of every parameter."""
        fields = dataclasses.asdict(self)
        payload = json.dumps({"revision": PREPROCESSING_REVISION, **fields}, sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
        return f"{PREPROCESSING_REVISION}-{self.height}x{self.width}-{digest}"


# ----------------------------------------------------------------------------------------------
# Orientation.

def header_chest_wall_side(patient_orientation: tuple[str, ...]) -> Optional[str]:
    """'left' or 'right' from Patient Orientation's first value, None when it does not say."""
    if not patient_orientation:
        return None
    first = str(patient_orientation[0]).upper()
    if "A" in first and "P" not in first:
        return "left"
    if "P" in first and "A" not in first:
        return "right"
    return None


def row_direction_check(record: ImageRecord) -> str:
    """'expected', 'reversed' or 'unknown': Patient Orientation's second value (direction of
    increasing row index) against the convention: MLO towards the feet (F); CC towards the side
    opposite the breast (L-CC "R", R-CC "L"). Recorded only; images are never flipped vertically.
    """
    po = record.patient_orientation
    if len(po) < 2 or record.laterality not in ("L", "R") or not record.view:
        return "unknown"
    second = str(po[1]).upper()
    if record.view == "MLO":
        if "F" in second and "H" not in second:
            return "expected"
        if "H" in second and "F" not in second:
            return "reversed"
        return "unknown"
    if record.view == "CC":
        other = "R" if record.laterality == "L" else "L"
        if other in second and record.laterality not in second:
            return "expected"
        if record.laterality in second and other not in second:
            return "reversed"
    return "unknown"


def pixel_chest_wall_side(tissue: np.ndarray, min_ratio: float) -> Optional[str]:
    """The side holding more tissue (the breast is widest at the chest wall and touches that edge);
    None when the halves are within `min_ratio` of each other."""
    half = tissue.shape[1] // 2
    left = float(np.count_nonzero(tissue[:, :half]))
    right = float(np.count_nonzero(tissue[:, tissue.shape[1] - half:]))
    if left >= right * min_ratio and left > 0:
        return "left"
    if right >= left * min_ratio and right > 0:
        return "right"
    return None


# ----------------------------------------------------------------------------------------------
# Crop.

def breast_mask(presented: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """Largest connected tissue component of a (subsampled) presentation image, as uint8 0/1."""
    tissue = (presented > spec.crop_threshold * OUTPUT_MAX).astype(np.uint8)
    if spec.mask_opening_cells > 1:
        kernel = np.ones((spec.mask_opening_cells, spec.mask_opening_cells), np.uint8)
        tissue = cv2.morphologyEx(tissue, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(tissue, connectivity=8)
    if count <= 1:
        return np.zeros_like(tissue)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == largest).astype(np.uint8)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


# ----------------------------------------------------------------------------------------------
# The step.

def _unsigned_view(pixels: np.ndarray) -> np.ndarray:
    order = pixels.dtype.byteorder if pixels.dtype.byteorder in "<>" else "="
    return pixels.view(np.dtype(f"u{pixels.dtype.itemsize}").newbyteorder(order))


def _greyscale(raw: RawFrame, transform: GreyscaleTransform, grid: np.ndarray):
    """A function mapping raw pixels (any region) to uint16 presentation values, built once."""
    pixels = raw.pixels
    image_range = None
    if transform.uses == "none":  # stretch the image's own range (sampled on the analysis grid)
        sample = stored_values(_unsigned_view(grid), transform.bits_stored,
                               transform.pixel_representation) if pixels.dtype.itemsize <= 2 \
            else grid.astype(np.int64)
        image_range = (float(sample.min()), float(sample.max()))
    if pixels.dtype.kind in "ui" and pixels.dtype.itemsize <= 2:
        lut = build_lut(transform, 8 * pixels.dtype.itemsize, image_range)
        return lambda region: np.take(lut, _unsigned_view(region))
    # 32-bit and float pixels (pydicom fallback only; not seen in mammography): direct arithmetic.
    return lambda region: presentation(region.astype(np.float64), transform, image_range)


def preprocess_pixels(raw: RawFrame, record: ImageRecord, transform: GreyscaleTransform,
                      spec: PreprocessingSpec) -> tuple[np.ndarray, bool, str]:
    """Everything after decoding: (uint16 [height, width], flip_applied, orientation_check)."""
    pixels = raw.pixels
    if pixels.ndim != 2:
        raise PixelError(Reason.DECODE_FAILED, f"{pixels.shape[-1]} samples per pixel, 1 expected")
    rows, columns = pixels.shape
    step = max(1, math.ceil(rows / spec.analysis_rows))
    grid = pixels[::step, ::step]
    present = _greyscale(raw, transform, grid)

    small = present(grid)
    if int(small.max()) == int(small.min()):
        raise PixelError(Reason.EMPTY_IMAGE, "constant image")
    mask = breast_mask(small, spec)
    if not mask.any():
        raise PixelError(Reason.EMPTY_IMAGE, "no tissue above the crop threshold")

    header_side = header_chest_wall_side(record.patient_orientation)
    pixel_side = pixel_chest_wall_side(mask, spec.orientation_min_ratio)
    if header_side is not None:
        chest_wall = header_side
        check = "header_only" if pixel_side is None else (
            "agrees" if pixel_side == header_side else "disagrees")
    else:
        chest_wall = pixel_side or (
            "left" if np.count_nonzero(mask[:, : mask.shape[1] // 2]) * 2 >= np.count_nonzero(mask)
            else "right")
        check = "pixels_only"
    flip = chest_wall == "right"

    if flip:  # analyse on the canonical (flipped) grid so a mirrored file gives the same crop
        canonical = pixels[:, ::-1]
        mask = breast_mask(present(canonical[::step, ::step]), spec)
    g_top, g_bottom, g_left, g_right = _bounding_box(mask)
    margin = spec.crop_margin_cells
    top = max(0, (g_top - margin) * step)
    bottom = min(rows, (g_bottom + 1 + margin) * step)
    left = max(0, (g_left - margin) * step)
    right = min(columns, (g_right + 1 + margin) * step)

    if flip:  # window the stored region (contiguous rows), then mirror: same as canonical[...]
        region = present(pixels[top:bottom, columns - right: columns - left])
        region = cv2.flip(region, 1)
    else:
        region = present(pixels[top:bottom, left:right])

    height, width = region.shape
    scale = min(spec.height / height, spec.width / width)
    new_h = max(1, min(spec.height, round(height * scale)))
    new_w = max(1, min(spec.width, round(width * scale)))
    resized = cv2.resize(region, (new_w, new_h), interpolation=_INTERPOLATIONS[spec.interpolation])
    out = np.full((spec.height, spec.width), spec.pad_value, dtype=np.uint16)
    y0 = (spec.height - new_h) // 2 if spec.vertical_align == "center" else 0
    out[y0:y0 + new_h, :new_w] = resized
    return out, flip, check


def preprocess_dataset(ds: pydicom.Dataset, record: ImageRecord, spec: PreprocessingSpec,
                       threads: int = 1) -> PreprocessedImage:
    """Decode, window, orient, crop and resize one image. Raises PixelError (coded, no PHI).

    `threads` bounds the decoder's and OpenCV's threads (OpenCV's setting is process-wide).
    """
    if cv2.getNumThreads() != threads:
        cv2.setNumThreads(threads)
    raw = decode_raw(ds, threads=threads)
    try:
        transform = transform_from_header(record, ds)
    except (VoiError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PixelError(Reason.DECODE_FAILED, f"grey-scale transform: {type(exc).__name__}") from None
    try:
        pixels, flip, check = preprocess_pixels(raw, record, transform, spec)
    except VoiError as exc:
        raise PixelError(Reason.DECODE_FAILED, f"VOI: {exc}") from None
    return PreprocessedImage(
        record=record, pixels=pixels, preprocessing_version=spec.version,
        flip_applied=flip, orientation_check=check,
    )


def to_display_png(image: PreprocessedImage, path) -> None:
    """8-bit PNG of a preprocessed image (for `mammobeam inspect --preview`)."""
    display = (np.asarray(image.pixels, dtype=np.uint16) >> 8).astype(np.uint8)
    if not cv2.imwrite(str(Path(path)), display):
        raise OSError(f"could not write PNG to {path}")
