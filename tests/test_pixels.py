"""Preprocessing: same image, same array, whatever the syntax, photometric or stored orientation."""

from __future__ import annotations

import dataclasses
import warnings

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mammobeam.schemas.reasons import Reason
from mammobeam.transforms.pixels import (
    PixelError, PreprocessingSpec, header_chest_wall_side, preprocess_dataset, row_direction_check,
    to_display_png,
)
from test_pixels_support import LOSSLESS_TEST_SYNTAXES, breast_image, make_dataset, record_for

SPEC = PreprocessingSpec(height=256, width=208)
TOP = 4095


@pytest.fixture(scope="module")
def breast() -> np.ndarray:
    return breast_image(640, 520, seed=7)


def _run(ds, spec=SPEC, **record_changes):
    record = dataclasses.replace(record_for(ds), **record_changes)
    return preprocess_dataset(ds, record, spec)


@pytest.fixture(scope="module")
def reference(breast):
    return _run(make_dataset(breast))


def _tissue_left_of_right(pixels: np.ndarray) -> bool:
    """More signal in the left than in the right half of the image area (padding excluded)."""
    width = int(np.flatnonzero(pixels.any(axis=0))[-1]) + 1
    half = width // 2
    return pixels[:, :half].astype(np.int64).sum() > pixels[:, width - half:width].astype(np.int64).sum()


def test_output_is_uint16_at_the_spec_size_with_its_version(reference):
    assert reference.pixels.dtype == np.uint16
    assert reference.pixels.shape == (SPEC.height, SPEC.width)
    assert reference.preprocessing_version == SPEC.version
    assert reference.flip_applied is False and reference.orientation_check == "agrees"
    assert reference.pixels.max() > 30000  # windowed onto the 16-bit scale, not left at 12 bits
    assert _tissue_left_of_right(reference.pixels)


def test_the_same_image_in_every_lossless_syntax_gives_the_identical_array(breast, reference):
    for syntax in LOSSLESS_TEST_SYNTAXES:
        np.testing.assert_array_equal(_run(make_dataset(breast, syntax)).pixels, reference.pixels,
                                      err_msg=str(syntax))


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_monochrome1_with_inverted_pixels_and_mirrored_window_matches_within_one_level(breast, function):
    center, width = 1800.0, 3000.0
    m2 = _run(make_dataset(breast, window=(center, width), voi_function=function))
    # LINEAR centres its ramp at center - 0.5 (PS3.3 C.11.2.1.2.1): the mirror of that is TOP - c + 1.
    mirrored_center = TOP - center + (1 if function == "LINEAR" else 0)
    m1 = _run(make_dataset(TOP - breast, photometric="MONOCHROME1", window=(mirrored_center, width),
                           voi_function=function))
    assert np.abs(m1.pixels.astype(np.int64) - m2.pixels.astype(np.int64)).max() <= 1


def test_monochrome1_without_inversion_would_differ(breast, reference):
    # Guards the test above: the same stored values read as MONOCHROME1 must look inverted.
    m1 = _run(make_dataset(breast, photometric="MONOCHROME1"))
    assert np.abs(m1.pixels.astype(np.int64) - reference.pixels.astype(np.int64)).max() > 10000


@pytest.mark.parametrize("laterality,view,normal,mirrored", [
    ("L", "CC", ("A", "R"), ("P", "R")),
    ("L", "MLO", ("A", "F"), ("P", "F")),
])
def test_mirrored_storage_declared_in_patient_orientation_gives_the_same_array(
        breast, laterality, view, normal, mirrored):
    a = _run(make_dataset(breast, laterality=laterality, view=view, patient_orientation=normal))
    b = _run(make_dataset(breast[:, ::-1], laterality=laterality, view=view, patient_orientation=mirrored))
    assert (a.flip_applied, b.flip_applied) == (False, True)
    assert b.orientation_check == "agrees"
    np.testing.assert_array_equal(a.pixels, b.pixels)


@pytest.mark.parametrize("view,orientation", [("CC", ("P", "L")), ("MLO", ("P", "F"))])
def test_right_breast_is_flipped_to_chest_wall_left(breast, reference, view, orientation):
    right = _run(make_dataset(breast[:, ::-1], laterality="R", view=view, patient_orientation=orientation))
    assert right.flip_applied and right.orientation_check == "agrees"
    np.testing.assert_array_equal(right.pixels, reference.pixels)


def test_without_patient_orientation_the_pixels_decide(breast, reference):
    stored_right = _run(make_dataset(breast[:, ::-1], laterality="R", patient_orientation=None))
    assert stored_right.orientation_check == "pixels_only" and stored_right.flip_applied
    np.testing.assert_array_equal(stored_right.pixels, reference.pixels)
    stored_left = _run(make_dataset(breast, patient_orientation=None))
    assert stored_left.orientation_check == "pixels_only" and not stored_left.flip_applied


def test_header_contradicted_by_pixels_is_trusted_and_flagged(breast):
    wrong = _run(make_dataset(breast, patient_orientation=("P", "R")))  # says mirrored, is not
    assert wrong.flip_applied and wrong.orientation_check == "disagrees"
    assert not _tissue_left_of_right(wrong.pixels)


def test_field_of_view_horizontal_flip_is_recorded_not_used(breast, reference):
    flagged = _run(make_dataset(breast, fov_horizontal_flip="YES"))
    assert flagged.record.fov_horizontal_flip == "YES"
    assert not flagged.flip_applied
    np.testing.assert_array_equal(flagged.pixels, reference.pixels)


def test_burnt_in_label_does_not_move_the_crop(breast, reference):
    clean = breast_image(640, 520, seed=7, label=False)
    np.testing.assert_array_equal(_run(make_dataset(clean)).pixels, reference.pixels)


def test_crop_removes_the_background_beyond_the_nipple(reference):
    # The breast spans ~62% of the stored width; after the crop it fills the output's height or width.
    columns_with_tissue = np.flatnonzero((reference.pixels > 0.1 * 65535).any(axis=0))
    rows_with_tissue = np.flatnonzero((reference.pixels > 0.1 * 65535).any(axis=1))
    assert columns_with_tissue[0] == 0
    assert columns_with_tissue[-1] >= SPEC.width - 8 or rows_with_tissue.size >= SPEC.height - 8
    # ... whereas without the crop the breast would span at most ~62% of both.
    assert rows_with_tissue.size > 0.9 * SPEC.height


def test_aspect_ratio_is_kept_and_the_padding_is_black(reference):
    # A tall narrow input fills the height; padding on the right (away from the chest wall) is 0.
    tall = np.zeros((600, 150), np.uint16)
    tall[20:580, :120] = 3000
    out = _run(make_dataset(tall, patient_orientation=("A", "R"))).pixels
    filled = np.flatnonzero(out.any(axis=0))
    assert filled[0] == 0 and filled[-1] < SPEC.width - 50
    assert (out[:, filled[-1] + 1:] == 0).all()


def test_every_pixel_changing_parameter_changes_the_version():
    base = PreprocessingSpec()
    assert base.version.startswith("pp1-1024x832-")
    assert base.version == PreprocessingSpec().version
    changes = dict(height=512, width=416, crop_threshold=0.05, analysis_rows=256, crop_margin_cells=2,
                   mask_opening_cells=5, interpolation="linear", vertical_align="top", pad_value=1,
                   orientation_min_ratio=1.5)
    versions = {dataclasses.replace(base, **{k: v}).version for k, v in changes.items()}
    assert len(versions) == len(changes) and base.version not in versions
    with pytest.raises(ValueError):
        PreprocessingSpec(decode_path="j2k_reduced")  # a faster path would be its own version


def test_configurable_size(breast):
    out = _run(make_dataset(breast), spec=PreprocessingSpec(height=128, width=96))
    assert out.pixels.shape == (128, 96)


def test_constant_image_is_empty():
    with pytest.raises(PixelError) as info:
        _run(make_dataset(np.full((64, 64), 100, np.uint16)))
    assert info.value.reason == Reason.EMPTY_IMAGE


def test_header_orientation_rules():
    assert header_chest_wall_side(("A", "R")) == "left"
    assert header_chest_wall_side(("P", "F")) == "right"
    assert header_chest_wall_side(()) is None and header_chest_wall_side(("F", "A")) is None


def test_row_direction_is_checked(breast):
    record = record_for(make_dataset(breast[:8, :8], laterality="R", view="MLO", patient_orientation=("P", "F")))
    assert row_direction_check(record) == "expected"
    assert row_direction_check(dataclasses.replace(record, patient_orientation=("P", "H"))) == "reversed"
    assert row_direction_check(dataclasses.replace(record, view="CC", patient_orientation=("P", "L"))) == "expected"
    assert row_direction_check(dataclasses.replace(record, patient_orientation=())) == "unknown"


def test_display_png_is_eight_bit_and_shows_the_image(reference, tmp_path):
    path = tmp_path / "preview.png"
    to_display_png(reference, path)
    png = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and png.shape == reference.pixels.shape
    np.testing.assert_array_equal(png, (reference.pixels >> 8).astype(np.uint8))


def test_real_monochrome1_radiograph_preprocesses():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file("RG1_J2KR.dcm")  # CR, MONOCHROME1, 15-bit, JPEG 2000 lossless
    if path is None:
        pytest.skip("RG1_J2KR.dcm not available offline")
    ds = pydicom.dcmread(path, defer_size=None)
    result = _run(ds, laterality="L", view="CC")
    assert result.pixels.shape == (SPEC.height, SPEC.width) and result.pixels.max() > 0
    assert result.orientation_check in ("pixels_only", "header_only", "agrees", "disagrees")
