"""Grey-scale LUTs: our exact integer tables agree with pydicom's apply_modality_lut / apply_voi_lut."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from mammobeam.transforms.voi import OUTPUT_MAX, VoiError, build_lut, presentation, transform_from_header
from test_pixels_support import record_for


def _dataset(bits_stored: int, signed: bool, center: float, width: float, function: str,
             slope=None, intercept=None, photometric: str = "MONOCHROME2") -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.Rows, ds.Columns = 1, 1
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 16, bits_stored, int(signed)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.ImageLaterality, ds.ViewPosition = "L", "CC"
    return ds


def _pydicom_on_16_bits(stored: np.ndarray, ds: pydicom.Dataset, y_range: tuple[float, float]) -> np.ndarray:
    """pydicom's output in [y_min, y_max] mapped to our 0..65535 scale, before rounding."""
    y = apply_voi_lut(apply_modality_lut(stored, ds), ds)
    y_min, y_max = y_range
    return (y - y_min) / (y_max - y_min) * OUTPUT_MAX


CASES = [
    # bits, signed, center, width, slope, intercept
    (12, False, 2048, 4096, None, None),
    (12, False, 1500.5, 801, None, None),
    (14, False, 9000, 3000, None, None),
    (12, False, 2, 1, None, None),  # narrowest LINEAR window
    (16, True, -200, 1500, None, None),
    (12, False, 100, 900, 0.5, -300.0),
    (15, False, 12000, 5000.5, 1.0, 0.0),
]


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("bits,signed,center,width,slope,intercept", CASES)
def test_window_lut_matches_pydicom_apply_voi_lut(function, bits, signed, center, width, slope, intercept):
    if function != "LINEAR" and width <= 1:
        width = 1.5
    ds = _dataset(bits, signed, center, width, function, slope, intercept)
    transform = transform_from_header(record_for(ds), ds)
    stored = np.arange(-(2 ** (bits - 1)) if signed else 0, 2 ** (bits - 1) if signed else 2 ** bits)
    ours = presentation(stored, transform).astype(np.float64)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    if slope is not None:
        lo, hi = lo * slope + intercept, hi * slope + intercept
    theirs = _pydicom_on_16_bits(stored, ds, (lo, hi))
    tolerance = 1.0 if function == "SIGMOID" else 0.5 + 1e-6  # SIGMOID: within one grey level
    assert np.abs(ours - theirs).max() <= tolerance
    assert ours.min() >= 0 and ours.max() <= OUTPUT_MAX


def test_lut_by_bit_pattern_masks_and_sign_extends_like_the_decoders():
    ds = _dataset(12, True, 0, 4000, "LINEAR")
    transform = transform_from_header(record_for(ds), ds)
    lut = build_lut(transform, 16)
    values = np.array([-2048, -1, 0, 1, 2047])
    patterns = values.astype(np.int16).view(np.uint16)
    dirty = patterns | 0xF000 * (values >= 0)  # garbage above Bits Stored on the positive ones
    np.testing.assert_array_equal(lut[dirty], presentation(values, transform))


def test_monochrome1_is_inverted():
    m2 = _dataset(12, False, 2048, 4096, "LINEAR_EXACT")
    m1 = _dataset(12, False, 2048, 4096, "LINEAR_EXACT", photometric="MONOCHROME1")
    stored = np.arange(4096)
    a = presentation(stored, transform_from_header(record_for(m2), m2)).astype(int)
    b = presentation(stored, transform_from_header(record_for(m1), m1)).astype(int)
    np.testing.assert_array_equal(a + b, OUTPUT_MAX)
    assert b[0] == OUTPUT_MAX and (np.diff(b) <= 0).all() and b[-1] < 100


def test_zero_width_window_is_an_error():
    ds = _dataset(12, False, 2048, 0, "SIGMOID")
    with pytest.raises(VoiError):
        presentation(np.arange(10), transform_from_header(record_for(ds), ds))


def _real(name: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available offline")
    return pydicom.dcmread(path, defer_size=None)


def test_voi_lut_sequence_matches_pydicom_apply_voi_lut():
    ds = _real("vlut_04.dcm")  # pydicom-data: 8-bit image with a VOI LUT Sequence
    record = record_for(ds)
    assert record.has_voi_lut_sequence
    transform = transform_from_header(record, ds)
    stored = ds.pixel_array
    depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    theirs = apply_voi_lut(apply_modality_lut(stored, ds), ds).astype(np.float64)
    theirs = theirs / (2 ** depth - 1) * OUTPUT_MAX
    ours = presentation(stored, transform).astype(np.float64)
    assert transform.uses == "voi_lut"
    assert np.abs(ours - theirs).max() <= 0.5 + 1e-6


def test_modality_lut_sequence_matches_pydicom_apply_modality_lut():
    ds = _real("mlut_18.dcm")  # pydicom-data: signed 12-bit image with a Modality LUT Sequence
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2000, 3000, "LINEAR"
    transform = transform_from_header(record_for(ds), ds)
    assert transform.modality_lut is not None
    stored = ds.pixel_array
    depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
    theirs = _pydicom_on_16_bits(stored, ds, (0, 2 ** depth - 1))
    ours = presentation(stored, transform).astype(np.float64)
    assert np.abs(ours - theirs).max() <= 0.5 + 1e-6
