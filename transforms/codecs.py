"""Decoding the first frame of a DICOM image with the fastest codec for its transfer syntax.

pydicom 3 has no imagecodecs plugin, so encapsulated frames are handed to imagecodecs directly; the
choice per syntax comes from measurements (../shared/FACTS.md and benchmarks/bench_preprocess.py):

  syntax                          codec call                 why
  JPEG baseline/extended (.50/.51) imagecodecs.jpeg8_decode    libjpeg-turbo, 8 and 12 bit
  JPEG lossless P14 / SV1 (.57/.70) imagecodecs.jpeg8_decode   libjpeg-turbo 3 lossless: ~2x liblj92
  JPEG-LS (.80/.81)                imagecodecs.jpegls_decode   CharLS, 2x pydicom's default
  JPEG 2000 (.90/.91)              imagecodecs.jpeg2k_decode   OpenJPEG with explicit numthreads
  HTJ2K (.201/.202/.203)           imagecodecs.htj2k_decode    OpenJPH, 2.5x pydicom's default
  RLE (.5)                         imagecodecs.dicomrle_decode into a buffer of the declared size
  native                           numpy view on the Pixel Data bytes (no copy)

Anything else (colour, bit-packed, 32-bit, float) and any codec error falls back to pydicom's own
decoder, so a file pydicom can read is never rejected because of the fast path.

Two layers:
- `decode_raw` returns the codec's output as is (2-D, native byte order) plus what is needed to read it:
  the bit pattern may still carry unused high bits or the codestream's signedness. The preprocessing
  step folds that correction into its lookup table, where it costs nothing.
- `decode_frame` applies pydicom's corrections (unused-bit masking and sign extension to Bits Stored,
  JPEG 2000 and JPEG-LS sign correction) so its result equals pydicom's `pixel_array` for frame 0.

Bounds: before any codec allocates, the codestream's own header (JPEG SOF, JPEG 2000 SIZ, RLE header)
is compared with the declared Rows x Columns; a mismatch is DECODE_FAILED. RLE decodes into a buffer of
the declared size, and every decoded array is checked against the declared shape.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Callable, Optional

import numpy as np
import pydicom
from pydicom.encaps import generate_frames

from mammobeam.schemas import codes
from mammobeam.schemas.reasons import Reason

try:  # imagecodecs is a hard dependency; the guard keeps pydicom's path usable if a wheel breaks.
    import imagecodecs
except ImportError:  # pragma: no cover
    imagecodecs = None


class PixelError(Exception):
    """A pixel step failed for one image. `reason` is the rejection code, `detail` has no PHI."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


JPEG_FAMILY = frozenset({
    codes.JPEG_BASELINE, codes.JPEG_EXTENDED, codes.JPEG_LOSSLESS_P14, codes.JPEG_LOSSLESS_SV1,
})
JPEG_LS_FAMILY = frozenset({codes.JPEG_LS_LOSSLESS, codes.JPEG_LS_NEAR_LOSSLESS})
JPEG2000_FAMILY = frozenset({codes.JPEG2000_LOSSLESS, codes.JPEG2000})
HTJ2K_FAMILY = frozenset({codes.HTJ2K_LOSSLESS, codes.HTJ2K_LOSSLESS_RPCL, codes.HTJ2K})


@dataclasses.dataclass(frozen=True)
class Codestream:
    """What a frame's own header declares (JPEG SOF / JPEG 2000 SIZ)."""

    rows: int
    columns: int
    components: int
    precision: int
    signed: Optional[bool] = None  # JPEG 2000 only; JPEG and JPEG-LS carry no signedness


@dataclasses.dataclass(frozen=True)
class RawFrame:
    """The first frame as the codec returned it, and how to read its bit patterns.

    `pixels` is 2-D (rows, columns) for one sample per pixel, in native byte order except for the
    native big-endian syntax (a read-only view then). `codec` names the path taken, e.g.
    "imagecodecs.jpeg8" or "pydicom" (fallback); `corrected` is True when `pixels` already holds
    pydicom's corrected stored values (the fallback and 'no correction needed' cases).
    """

    pixels: np.ndarray
    codec: str
    corrected: bool
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    codestream: Optional[Codestream] = None
    transfer_syntax: str = ""


# ----------------------------------------------------------------------------------------------
# Codestream headers: checked before decoding so no codec allocates beyond the declared size.
# The parsers raise ValueError (or struct.error) on a header they cannot read; the caller then leaves
# the frame to pydicom's decoder rather than rejecting it on the strength of our parser alone.

_JPEG_SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
)  # ITU T.81 Table B.1; 0xF7 is SOF55 of JPEG-LS (ITU T.87)
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def jpeg_codestream(data: bytes | memoryview) -> Codestream:
    """Frame header (SOFn / SOF55) of a JPEG or JPEG-LS codestream."""
    buf = memoryview(data)
    if len(buf) < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        raise ValueError("JPEG codestream has no SOI marker")
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            raise ValueError("JPEG marker expected")
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", buf, pos + 2)
        if marker in _JPEG_SOF_MARKERS:
            if pos + 10 > len(buf):
                break
            precision, rows, columns, components = struct.unpack_from(">BHHB", buf, pos + 4)
            return Codestream(rows, columns, components, precision)
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise ValueError("JPEG codestream has no frame header")


def j2k_codestream(data: bytes | memoryview) -> Codestream:
    """Image and tile size marker (SIZ) of a JPEG 2000 / HTJ2K codestream (ITU T.800 A.5.1)."""
    buf = bytes(data[:4096]) if not isinstance(data, bytes) else data[:4096]
    start = buf.find(b"\xff\x4f\xff\x51")  # SOC then SIZ; also finds it inside a (non-conformant) JP2
    if start < 0 or start + 4 + 38 + 3 > len(buf):
        raise ValueError("JPEG 2000 codestream has no SIZ marker")
    (_lsiz, _rsiz, xsiz, ysiz, xosiz, yosiz, _xt, _yt, _xto, _yto, csiz) = struct.unpack_from(
        ">HHIIIIIIIIH", buf, start + 4
    )
    ssiz = buf[start + 4 + 38]
    return Codestream(
        rows=ysiz - yosiz, columns=xsiz - xosiz, components=csiz,
        precision=(ssiz & 0x7F) + 1, signed=bool(ssiz & 0x80),
    )


# ----------------------------------------------------------------------------------------------
# Frame extraction.

def _number_of_frames(ds: pydicom.Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames", 1) or 1), 1)
    except (TypeError, ValueError):
        return 1


def first_frame_bytes(ds: pydicom.Dataset) -> bytes:
    """The encoded bytes of frame 0 of encapsulated Pixel Data (fragments joined as needed)."""
    try:
        frames = generate_frames(ds.PixelData, number_of_frames=_number_of_frames(ds))
        return next(frames)
    except StopIteration:
        raise PixelError(Reason.EMPTY_IMAGE, "encapsulated pixel data holds no frame") from None
    except (ValueError, struct.error) as exc:
        text = str(exc).lower()
        reason = Reason.TRUNCATED if ("end" in text or "insufficient" in text or "unpack" in text) \
            else Reason.DECODE_FAILED
        raise PixelError(reason, f"encapsulated pixel data: {type(exc).__name__}") from None


# ----------------------------------------------------------------------------------------------
# The codecs, one per transfer-syntax family.

def _check_codestream(cs: Codestream, rows: int, columns: int, bits_allocated: int) -> None:
    if (cs.rows, cs.columns) != (rows, columns):
        raise PixelError(
            Reason.DECODE_FAILED,
            f"codestream declares {cs.rows}x{cs.columns}, header {rows}x{columns}",
        )
    if cs.precision > bits_allocated:
        raise PixelError(
            Reason.DECODE_FAILED,
            f"codestream precision {cs.precision} exceeds Bits Allocated {bits_allocated}",
        )


def _decode_jpeg(frame: bytes, threads: int) -> np.ndarray:
    return imagecodecs.jpeg8_decode(frame)


def _decode_jpegls(frame: bytes, threads: int) -> np.ndarray:
    return imagecodecs.jpegls_decode(frame)


def _decode_j2k(frame: bytes, threads: int) -> np.ndarray:
    return imagecodecs.jpeg2k_decode(frame, numthreads=threads)


def _decode_htj2k(frame: bytes, threads: int) -> np.ndarray:
    return imagecodecs.htj2k_decode(frame)  # OpenJPH decodes on the calling thread only


_ENCAPSULATED_CODECS: dict[str, tuple[str, Callable[[bytes, int], np.ndarray]]] = {}
for _ts in JPEG_FAMILY:
    _ENCAPSULATED_CODECS[_ts] = ("imagecodecs.jpeg8", _decode_jpeg)
for _ts in JPEG_LS_FAMILY:
    _ENCAPSULATED_CODECS[_ts] = ("imagecodecs.jpegls", _decode_jpegls)
for _ts in JPEG2000_FAMILY:
    _ENCAPSULATED_CODECS[_ts] = ("imagecodecs.jpeg2k", _decode_j2k)
for _ts in HTJ2K_FAMILY:
    _ENCAPSULATED_CODECS[_ts] = ("imagecodecs.htj2k", _decode_htj2k)


def _decode_rle(frame: bytes, rows: int, columns: int, bits_allocated: int) -> np.ndarray:
    """DICOM RLE (PS3.5 Annex G) into a buffer of exactly the declared size."""
    if len(frame) < 64:
        raise PixelError(Reason.TRUNCATED, "RLE header incomplete")
    (segments,) = struct.unpack_from("<I", frame, 0)
    if segments != bits_allocated // 8:
        raise PixelError(
            Reason.DECODE_FAILED, f"RLE has {segments} segments, expected {bits_allocated // 8}"
        )
    dtype = np.dtype("<u2") if bits_allocated == 16 else np.dtype("u1")
    out = np.empty(rows * columns * dtype.itemsize, np.uint8)
    try:
        imagecodecs.dicomrle_decode(frame, dtype, out=out)
    except Exception as exc:  # noqa: BLE001
        if "OUTPUT_TOO_SMALL" in str(exc):
            raise PixelError(Reason.DECODE_FAILED, "RLE data larger than declared") from None
        raise
    return out.view(dtype).reshape(rows, columns)


# ----------------------------------------------------------------------------------------------
# pydicom's corrections (pydicom/pixels/decoders/base.py: _apply_sign_correction,
# _correct_unused_bits), applied to a raw frame.

def stored_dtype(bits_allocated: int, pixel_representation: int) -> np.dtype:
    return np.dtype(("u" if pixel_representation == 0 else "i") + str(bits_allocated // 8))


def _as_stored_dtype(pixels: np.ndarray, bits_allocated: int, pixel_representation: int) -> np.ndarray:
    """Reinterpret (same size) or widen (codec gave 8 bits for 16 allocated) as pydicom does."""
    target = stored_dtype(bits_allocated, pixel_representation)
    if pixels.dtype.itemsize == target.itemsize:
        return pixels.view(target.newbyteorder(pixels.dtype.byteorder)) if pixels.dtype != target \
            else pixels
    own = stored_dtype(pixels.dtype.itemsize * 8, pixel_representation)
    return pixels.view(own).astype(target)


def correct_raw(raw: RawFrame) -> np.ndarray:
    """Stored values of `raw` exactly as pydicom's decoders return them for frame 0."""
    if raw.corrected:
        return raw.pixels
    arr = _as_stored_dtype(raw.pixels, raw.bits_allocated, raw.pixel_representation)
    if not arr.flags.writeable or arr is raw.pixels:
        arr = arr.copy()
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    ts = raw.transfer_syntax
    if ts in JPEG2000_FAMILY or ts in HTJ2K_FAMILY:
        cs = raw.codestream
        signed = cs.signed if cs and cs.signed is not None else bool(raw.pixel_representation)
        precision = cs.precision if cs else raw.bits_stored
        shift = 8 * arr.dtype.itemsize - precision
        if shift and signed != bool(raw.pixel_representation):
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)
    elif ts in JPEG_LS_FAMILY:
        if raw.pixel_representation == 1:  # JPEG-LS has no signedness: pydicom sign-extends
            precision = raw.codestream.precision if raw.codestream else raw.bits_stored
            shift = 8 * arr.dtype.itemsize - precision
            if shift:
                np.left_shift(arr, shift, out=arr)
                np.right_shift(arr, shift, out=arr)
    elif raw.bits_allocated > raw.bits_stored:
        shift = raw.bits_allocated - raw.bits_stored
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


# ----------------------------------------------------------------------------------------------
# The entry points.

def _pixel_module(ds: pydicom.Dataset) -> tuple[int, int, int, int, int, int, str]:
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        bits_allocated, bits_stored = int(ds.BitsAllocated), int(ds.BitsStored)
        pixel_representation = int(ds.get("PixelRepresentation", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "") or "")
    except (AttributeError, TypeError, ValueError):
        raise PixelError(Reason.DECODE_FAILED, "image pixel module incomplete") from None
    if rows <= 0 or columns <= 0:
        raise PixelError(Reason.EMPTY_IMAGE, "zero rows or columns")
    return rows, columns, bits_allocated, bits_stored, pixel_representation, samples, photometric


def _fast_path_applies(bits_allocated: int, bits_stored: int, samples: int, photometric: str) -> bool:
    return (
        samples == 1
        and bits_allocated in (8, 16)
        and 1 <= bits_stored <= bits_allocated
        and photometric in ("MONOCHROME1", "MONOCHROME2")
    )


def _decode_with_pydicom(ds: pydicom.Dataset, ts: str) -> np.ndarray:
    from pydicom.pixels import get_decoder

    try:
        arr, _ = get_decoder(ts).as_array(ds, index=0)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - plugins raise many types, pyo3 panics included
        text = str(exc).lower()
        if "insufficient" in text or "shorter than" in text or "truncat" in text:
            raise PixelError(Reason.TRUNCATED, f"pydicom: {type(exc).__name__}") from None
        raise PixelError(Reason.DECODE_FAILED, f"pydicom: {type(exc).__name__}") from None
    return arr


def decode_raw(ds: pydicom.Dataset, threads: int = 1) -> RawFrame:
    """Frame 0 as the fastest codec returns it; see the module docstring for the two layers."""
    try:
        ts = str(ds.file_meta.TransferSyntaxUID)
    except AttributeError:
        raise PixelError(Reason.UNSUPPORTED_TRANSFER_SYNTAX, "no transfer syntax") from None
    if ts not in codes.SUPPORTED_SYNTAXES:
        raise PixelError(Reason.UNSUPPORTED_TRANSFER_SYNTAX, ts)
    if "PixelData" not in ds:
        raise PixelError(Reason.EMPTY_IMAGE, "no Pixel Data element")
    rows, columns, ba, bs, pr, samples, photometric = _pixel_module(ds)
    common = dict(bits_allocated=ba, bits_stored=bs, pixel_representation=pr, transfer_syntax=ts)

    if not _fast_path_applies(ba, bs, samples, photometric) or imagecodecs is None:
        return RawFrame(_decode_with_pydicom(ds, ts), "pydicom", True, **common)

    if ts in codes.NATIVE_SYNTAXES:
        data = ds.PixelData
        frame_bytes = rows * columns * (ba // 8)
        if data is None or len(data) < frame_bytes:
            raise PixelError(Reason.TRUNCATED, f"native pixel data {len(data or b'')} < {frame_bytes} bytes")
        dtype = np.dtype("u1") if ba == 8 else np.dtype("<u2" if ts != codes.EXPLICIT_VR_BE else ">u2")
        if ba == 8 and ts == codes.EXPLICIT_VR_BE and ds["PixelData"].VR == "OW":
            return RawFrame(_decode_with_pydicom(ds, ts), "pydicom", True, **common)  # swapped OW bytes
        pixels = np.frombuffer(data, dtype=dtype, count=rows * columns).reshape(rows, columns)
        return RawFrame(pixels, "numpy", ba == bs and pr == 0, **common)

    frame = first_frame_bytes(ds)
    codestream: Optional[Codestream] = None
    try:
        if ts == codes.RLE_LOSSLESS:
            name = "imagecodecs.dicomrle"
            pixels = _decode_rle(frame, rows, columns, ba)
        else:
            name, codec = _ENCAPSULATED_CODECS[ts]
            if ts in JPEG2000_FAMILY or ts in HTJ2K_FAMILY:
                codestream = j2k_codestream(frame)
            else:
                codestream = jpeg_codestream(frame)
            _check_codestream(codestream, rows, columns, ba)
            if codestream.components != 1:
                raise PixelError(Reason.DECODE_FAILED, f"{codestream.components} components, 1 declared")
            pixels = codec(frame, threads)
    except PixelError:
        raise  # a header mismatch is a property of the file: no fallback would make it right
    except Exception:  # noqa: BLE001 - codec error: pydicom's own decoder gets its chance
        return RawFrame(_decode_with_pydicom(ds, ts), "pydicom", True, **common)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.shape != (rows, columns) or pixels.dtype.itemsize > ba // 8:
        raise PixelError(
            Reason.DECODE_FAILED, f"decoded {pixels.shape} {pixels.dtype}, declared {rows}x{columns}"
        )
    return RawFrame(pixels, name, False, codestream=codestream, **common)


def decode_frame(ds: pydicom.Dataset, threads: int = 1) -> np.ndarray:
    """First frame's stored values, equal to pydicom's `pixel_array` of frame 0.

    Raises PixelError with DECODE_FAILED, UNSUPPORTED_TRANSFER_SYNTAX, TRUNCATED or EMPTY_IMAGE.
    """
    raw = decode_raw(ds, threads=threads)
    return correct_raw(raw)
