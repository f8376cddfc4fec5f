"""Decoding: our codec per transfer syntax gives pydicom's reference pixels, and bad input is coded."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pydicom.uid import ExplicitVRLittleEndian

from mammobeam.schemas import codes
from mammobeam.schemas.reasons import Reason
from mammobeam.transforms.codecs import PixelError, decode_frame, decode_raw
from test_pixels_support import LOSSLESS_TEST_SYNTAXES, breast_image, encode_frame, make_dataset

# Real grey-scale files from pydicom's wheel and pydicom-data, by transfer syntax; each must take the
# fast (imagecodecs / numpy) path. Colour and unusual files are below; they take pydicom's path.
GREYSCALE_FILES = {
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "MR_small.dcm": "1.2.840.10008.1.2.1",
    "CT_small.dcm": "1.2.840.10008.1.2.1",
    "MR2_UNCR.dcm": "1.2.840.10008.1.2.1",
    "RG1_UNCI.dcm": "1.2.840.10008.1.2.1",
    "693_UNCR.dcm": "1.2.840.10008.1.2.1",
    "emri_small.dcm": "1.2.840.10008.1.2.1",
    "image_dfl.dcm": "1.2.840.10008.1.2.1.99",
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "emri_small_big_endian.dcm": "1.2.840.10008.1.2.2",
    "JPGExtended.dcm": "1.2.840.10008.1.2.4.51",
    "JPEG-LL.dcm": "1.2.840.10008.1.2.4.70",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "1.2.840.10008.1.2.4.70",
    "bad_sequence.dcm": "1.2.840.10008.1.2.4.70",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "emri_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "JPEGLSNearLossless_08.dcm": "1.2.840.10008.1.2.4.81",
    "JPEGLSNearLossless_16.dcm": "1.2.840.10008.1.2.4.81",
    "J2K_pixelrep_mismatch.dcm": "1.2.840.10008.1.2.4.90",
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
    "RG3_J2KR.dcm": "1.2.840.10008.1.2.4.90",
    "693_J2KR.dcm": "1.2.840.10008.1.2.4.90",
    "emri_small_jpeg_2k_lossless.dcm": "1.2.840.10008.1.2.4.90",
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
    "693_J2KI.dcm": "1.2.840.10008.1.2.4.91",
    "RG3_J2KI.dcm": "1.2.840.10008.1.2.4.91",
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "emri_small_RLE.dcm": "1.2.840.10008.1.2.5",
}
# DCT-based lossy JPEG: the standard bounds IDCT accuracy but does not fix it (ITU T.81 A.3.3), so
# libjpeg-turbo (ours) and libjpeg (pydicom's pylibjpeg plugin) may differ by one grey level.
IDCT_TOLERANCE = {"1.2.840.10008.1.2.4.50": 1, "1.2.840.10008.1.2.4.51": 1}

FALLBACK_FILES = ["SC_rgb_jpeg.dcm", "SC_rgb_rle.dcm", "US1_J2KR.dcm", "SC_rgb_jpeg_gdcm.dcm",
                  "liver_1frame.dcm", "rtdose_1frame.dcm", "SC_rgb_dcmtk_+eb+cy+s4.dcm"]


def _read(name: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file(name)  # local stores only; a file that needs a download is None
    if path is None:
        pytest.skip(f"{name} is not in pydicom's or pydicom-data's local files (download needed)")
    return pydicom.dcmread(path, defer_size=None)


def _reference(ds: pydicom.Dataset) -> np.ndarray:
    return get_decoder(ds.file_meta.TransferSyntaxUID).as_array(ds, index=0)[0]


def test_every_syntax_of_the_real_test_files_is_covered():
    covered = set(GREYSCALE_FILES.values())
    # pydicom's and pydicom-data's grey-scale files cover these; .50 has colour files only (see the
    # fallback test), .57 and HTJ2K have none offline (synthetic tests below).
    assert {codes.IMPLICIT_VR_LE, codes.EXPLICIT_VR_LE, codes.DEFLATED_EXPLICIT_VR_LE, codes.EXPLICIT_VR_BE,
            codes.JPEG_EXTENDED, codes.JPEG_LOSSLESS_SV1, codes.JPEG_LS_LOSSLESS,
            codes.JPEG_LS_NEAR_LOSSLESS, codes.JPEG2000_LOSSLESS, codes.JPEG2000,
            codes.RLE_LOSSLESS} <= covered


@pytest.mark.parametrize("name", sorted(GREYSCALE_FILES))
def test_real_greyscale_file_decodes_to_pydicoms_pixels_on_the_fast_path(name):
    ds = _read(name)
    assert str(ds.file_meta.TransferSyntaxUID) == GREYSCALE_FILES[name]
    ours = decode_frame(ds)
    reference = _reference(ds)
    assert decode_raw(ds).codec != "pydicom"
    assert ours.shape == reference.shape
    assert ours.dtype.kind == reference.dtype.kind and ours.dtype.itemsize == reference.dtype.itemsize
    tolerance = IDCT_TOLERANCE.get(GREYSCALE_FILES[name], 0)
    assert np.abs(ours.astype(np.int64) - reference.astype(np.int64)).max() <= tolerance


@pytest.mark.parametrize("name", FALLBACK_FILES)
def test_colour_and_unusual_files_fall_back_to_pydicom(name):
    ds = _read(name)
    assert decode_raw(ds).codec == "pydicom"
    np.testing.assert_array_equal(decode_frame(ds), _reference(ds))


@pytest.fixture(scope="module")
def small_breast() -> np.ndarray:
    return breast_image(256, 208, seed=3)


@pytest.mark.parametrize("syntax", LOSSLESS_TEST_SYNTAXES)
def test_synthetic_lossless_file_decodes_to_the_image_and_to_pydicoms_pixels(small_breast, syntax):
    # HTJ2K and JPEG lossless process 14 have no offline real test files: these are their tests.
    ds = make_dataset(small_breast, syntax)
    ours = decode_frame(ds)
    np.testing.assert_array_equal(ours, small_breast)
    np.testing.assert_array_equal(ours, _reference(ds))
    assert decode_raw(ds).codec != "pydicom"


def test_signed_jpeg_ls_is_read_as_signed_like_pydicom():
    # JPEG-LS has no signedness; pydicom reinterprets (and sign-extends from the codestream's precision).
    image = (breast_image(64, 64, bits=12, seed=4).astype(np.int16) - 2048)
    ds = make_dataset(image.view(np.uint16), codes.JPEG_LS_LOSSLESS, bits_stored=16)
    ds.PixelRepresentation = 1
    np.testing.assert_array_equal(decode_frame(ds), _reference(ds))
    np.testing.assert_array_equal(decode_frame(ds), image)


def test_native_unused_high_bits_are_masked_like_pydicom(small_breast):
    ds = make_dataset(small_breast | 0xF000, ExplicitVRLittleEndian)  # garbage above Bits Stored 12
    np.testing.assert_array_equal(decode_frame(ds), small_breast)
    np.testing.assert_array_equal(decode_frame(ds), _reference(ds))


def test_truncated_native_pixel_data_is_truncated(small_breast):
    ds = make_dataset(small_breast)
    ds.PixelData = ds.PixelData[:-100]
    with pytest.raises(PixelError) as info:
        decode_frame(ds)
    assert info.value.reason == Reason.TRUNCATED


def test_unknown_transfer_syntax_is_unsupported(small_breast):
    ds = make_dataset(small_breast)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2
    with pytest.raises(PixelError) as info:
        decode_frame(ds)
    assert info.value.reason == Reason.UNSUPPORTED_TRANSFER_SYNTAX


def test_missing_pixel_data_is_empty(small_breast):
    ds = make_dataset(small_breast)
    del ds.PixelData
    with pytest.raises(PixelError) as info:
        decode_frame(ds)
    assert info.value.reason == Reason.EMPTY_IMAGE


@pytest.mark.parametrize("syntax", [codes.JPEG_LS_LOSSLESS, codes.JPEG2000_LOSSLESS, codes.HTJ2K_LOSSLESS,
                                    codes.JPEG_LOSSLESS_SV1, codes.RLE_LOSSLESS])
def test_codestream_larger_than_declared_is_rejected_before_decoding(syntax):
    big = breast_image(128, 104, seed=5)
    ds = make_dataset(big, syntax)
    ds.Rows = 64  # header now declares half the codestream's size
    with pytest.raises(PixelError) as info:
        decode_frame(ds)
    assert info.value.reason == Reason.DECODE_FAILED
    assert "pydicom" not in info.value.detail


def test_corrupt_codestream_falls_back_and_then_fails_coded(small_breast):
    frame = bytearray(encode_frame(small_breast, codes.JPEG_LS_LOSSLESS, 12))
    frame[40:] = b"\x00" * (len(frame) - 40)  # keep SOI/SOF, destroy the scan
    ds = make_dataset(small_breast, codes.JPEG_LS_LOSSLESS, frame=bytes(frame))
    try:
        decoded = decode_frame(ds)
    except PixelError as exc:
        assert exc.reason in (Reason.DECODE_FAILED, Reason.TRUNCATED)
    else:  # a decoder that tolerates the damage must not return the original image
        assert not np.array_equal(decoded, small_breast)


def test_decode_threads_give_the_same_pixels(small_breast):
    ds = make_dataset(small_breast, codes.JPEG2000_LOSSLESS)
    np.testing.assert_array_equal(decode_frame(ds, threads=1), decode_frame(ds, threads=2))
