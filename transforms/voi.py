"""Grey-scale display pipeline as exact integer lookup tables: bit pattern -> uint16 presentation value.

Decoded pixels are integers with at most 16 bits, so the whole chain

    raw bit pattern -> stored value (mask / sign-extend to Bits Stored, pydicom's correction)
                    -> Modality LUT (Modality LUT Sequence, else Rescale Slope/Intercept)
                    -> VOI LUT (VOI LUT Sequence, else Window Center/Width with VOILUTFunction
                       LINEAR, LINEAR_EXACT or SIGMOID; PS3.3 C.11.2.1.2)
                    -> MONOCHROME1 inverted
                    -> uint16 0..65535

is computed once per image for every possible bit pattern (256 or 65536 entries, about a millisecond)
and then applied with one `np.take`. The float arithmetic is pydicom's (pydicom.pixels.processing.
apply_modality_lut / apply_voi / apply_windowing), so the table is exact: pydicom's float output y in
[y_min, y_max] maps to round((y - y_min) / (y_max - y_min) * 65535), i.e. the output is the window's
fraction of full scale on 16 bits. A VOI LUT Sequence's entries are scaled from their declared bit
depth (LUT Descriptor, third value) to 16 bits.

Without any VOI transform the image's own range (min..max of the stored values, after the Modality
LUT) is stretched linearly to 0..65535.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import pydicom

OUTPUT_MAX = 65535  # uint16 full scale; normalisation to the model's range belongs to the model

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")  # PS3.3 C.11.2.1.3 VOI LUT Function


class VoiError(ValueError):
    """The header's grey-scale transform cannot be applied (e.g. window width 0)."""


@dataclasses.dataclass(frozen=True)
class LutTable:
    """A LUT as DICOM stores it: first mapped input value, entries, declared bits per entry."""

    first_mapped: int
    data: np.ndarray
    bits: int

    @classmethod
    def from_item(cls, item: pydicom.Dataset, little_endian: bool = True) -> "LutTable":
        descriptor = [int(v) for v in item.LUTDescriptor]
        entries = descriptor[0] or 65536
        first = descriptor[1]
        bits = descriptor[2]
        elem = item["LUTData"]
        if elem.VR == "OW" or isinstance(elem.value, (bytes, bytearray)):
            data = np.frombuffer(elem.value, dtype="<u2" if little_endian else ">u2", count=entries)
        else:
            values = elem.value if isinstance(elem.value, (list, tuple, pydicom.multival.MultiValue)) \
                else [elem.value]
            data = np.asarray(values, dtype=np.int64)[:entries]
        if data.size == 0:
            raise VoiError("empty LUT Data")
        # pydicom stores signed first-mapped values as US; a value >= 2**15 with signed pixels wraps.
        return cls(first_mapped=first, data=np.asarray(data, dtype=np.float64), bits=bits)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """pydicom's semantics: index = clip(value - first, 0, n - 1); values below first -> entry 0."""
        index = np.clip(np.floor(values).astype(np.int64) - self.first_mapped, 0, self.data.size - 1)
        return self.data[index]


@dataclasses.dataclass(frozen=True)
class GreyscaleTransform:
    """Everything that maps a stored value to a presentation value, from one image's header."""

    bits_stored: int
    pixel_representation: int
    monochrome1: bool
    rescale_slope: Optional[float] = None
    rescale_intercept: Optional[float] = None
    modality_lut: Optional[LutTable] = None
    voi_lut: Optional[LutTable] = None
    window_center: Optional[float] = None
    window_width: Optional[float] = None
    voi_function: str = "LINEAR"

    @property
    def uses(self) -> str:
        """Which VOI transform applies: 'voi_lut', 'window' or 'none'."""
        if self.voi_lut is not None:
            return "voi_lut"
        if self.window_center is not None and self.window_width is not None:
            return "window"
        return "none"


def stored_values(patterns: np.ndarray, bits_stored: int, pixel_representation: int) -> np.ndarray:
    """Unsigned bit patterns -> stored values: mask to Bits Stored, sign-extend when signed."""
    patterns = patterns.astype(np.int64)
    masked = patterns & ((1 << bits_stored) - 1)
    if pixel_representation == 1:
        sign = 1 << (bits_stored - 1)
        return (masked ^ sign) - sign
    return masked


def _stored_range(t: GreyscaleTransform) -> tuple[float, float]:
    if t.pixel_representation == 0:
        return 0.0, float(2 ** t.bits_stored - 1)
    return float(-(2 ** (t.bits_stored - 1))), float(2 ** (t.bits_stored - 1) - 1)


def modality(values: np.ndarray, t: GreyscaleTransform) -> np.ndarray:
    """Modality LUT (PS3.3 C.11.1) as pydicom's apply_modality_lut."""
    if t.modality_lut is not None:
        return t.modality_lut.apply(values)
    if t.rescale_slope is not None and t.rescale_intercept is not None:
        return values * t.rescale_slope + t.rescale_intercept
    return values.astype(np.float64)


def window_fraction(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2/C.11.2.1.3.1 windowing as a fraction of full scale in [0, 1].

    The arithmetic follows pydicom's apply_windowing step by step so the results agree exactly.
    """
    function = (function or "LINEAR").upper()
    x = np.asarray(x, dtype=np.float64)
    if function in ("LINEAR", "LINEAR_EXACT"):
        if function == "LINEAR":
            if width < 1:
                raise VoiError("Window Width < 1 for LINEAR")
            center -= 0.5
            width -= 1
        elif width <= 0:
            raise VoiError("Window Width <= 0 for LINEAR_EXACT")
        below = x <= (center - width / 2)
        above = x > (center + width / 2)
        out = np.empty_like(x)
        out[below] = 0.0
        out[above] = 1.0
        between = ~(below | above)
        out[between] = (x[between] - center) / width + 0.5
        return out
    if function == "SIGMOID":
        if width <= 0:
            raise VoiError("Window Width <= 0 for SIGMOID")
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    raise VoiError(f"unsupported VOI LUT Function {function!r}")


def presentation(stored: np.ndarray, t: GreyscaleTransform,
                 image_range: Optional[tuple[float, float]] = None) -> np.ndarray:
    """Stored values (any integer array) -> uint16 presentation values (dark = low, as MONOCHROME2).

    `image_range` (min, max stored value) is only used when the header has no VOI transform; without
    it the stored range from Bits Stored is stretched.
    """
    y = modality(np.asarray(stored), t)
    if t.uses == "voi_lut":
        out = t.voi_lut.apply(y) * (OUTPUT_MAX / float(2 ** t.voi_lut.bits - 1))
    elif t.uses == "window":
        # pydicom returns fraction * (y_max - y_min) + y_min; normalising that back to full scale
        # is the identity up to float rounding, so the fraction itself is scaled to 16 bits.
        out = window_fraction(y, float(t.window_center), float(t.window_width), t.voi_function)
        out = out * OUTPUT_MAX
    else:
        lo, hi = image_range if image_range is not None else _stored_range(t)
        ends = modality(np.array([lo, hi], dtype=np.float64), t)
        ylo, yhi = float(ends.min()), float(ends.max())
        out = (y - ylo) * (OUTPUT_MAX / (yhi - ylo)) if yhi > ylo else np.zeros(y.shape)
    out = np.clip(np.floor(out + 0.5), 0, OUTPUT_MAX)
    if t.monochrome1:
        out = OUTPUT_MAX - out
    return out.astype(np.uint16)


def build_lut(t: GreyscaleTransform, pattern_bits: int,
              image_range: Optional[tuple[float, float]] = None) -> np.ndarray:
    """uint16 table indexed by the raw unsigned bit pattern (2**pattern_bits entries)."""
    patterns = np.arange(2 ** pattern_bits, dtype=np.int64)
    return presentation(stored_values(patterns, t.bits_stored, t.pixel_representation), t,
                        image_range)


def _first(values: Sequence[float]) -> Optional[float]:
    return float(values[0]) if values else None


def transform_from_header(record, ds: pydicom.Dataset) -> GreyscaleTransform:
    """The image's grey-scale transform: decisions from the ImageRecord, LUT tables from the dataset.

    The first window and the first VOI LUT item apply (pydicom's default index 0); a VOI LUT Sequence
    wins over a window, as in pydicom's apply_voi_lut(prefer_lut=True).
    """
    little_endian = True
    try:
        little_endian = not str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.2"
    except AttributeError:
        pass
    modality_lut = None
    if ds.get("ModalityLUTSequence"):
        modality_lut = LutTable.from_item(ds.ModalityLUTSequence[0], little_endian)
    voi_lut = None
    if record.has_voi_lut_sequence and ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        if item.get("LUTDescriptor") is not None and item.get("LUTData") is not None:
            voi_lut = LutTable.from_item(item, little_endian)
    bits_stored = int(record.bits_stored if record.bits_stored else ds.BitsStored)
    pixel_representation = int(record.pixel_representation
                               if record.pixel_representation is not None
                               else ds.get("PixelRepresentation", 0))
    photometric = record.photometric or str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    return GreyscaleTransform(
        bits_stored=bits_stored,
        pixel_representation=pixel_representation,
        monochrome1=photometric == "MONOCHROME1",
        rescale_slope=record.rescale_slope,
        rescale_intercept=record.rescale_intercept,
        modality_lut=modality_lut,
        voi_lut=voi_lut,
        window_center=_first(record.window_center),
        window_width=_first(record.window_width),
        voi_function=(record.voi_lut_function or "LINEAR").upper(),
    )
