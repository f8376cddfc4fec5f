"""One file's bytes -> model input or coded rejection; plain function, shared by every pipeline.

`preprocess_bytes` parses the whole dataset once (the header was already checked by
transforms/dicom.py), hands it to transforms/pixels.py and turns every failure into a Rejection: a
bad file never raises out of here.
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Optional

import pydicom

from mammobeam.schemas.reasons import Reason, Stage
from mammobeam.schemas.records import ImageRecord, PreprocessedImage, Rejection


_PIXEL_TAG_LE, _PIXEL_TAG_BE = b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10"


@dataclasses.dataclass(frozen=True)
class PreprocessOutcome:
    image: Optional[PreprocessedImage] = None
    rejection: Optional[Rejection] = None


def spec_from_size(size: str, **overrides):
    """'1024x832' -> PreprocessingSpec(height=1024, width=832)."""
    from mammobeam.transforms.pixels import PreprocessingSpec
    match = re.fullmatch(r"(\d+)x(\d+)", size.strip())
    if not match:
        raise ValueError(f"image size must be HxW, e.g. 1024x832, not {size!r}")
    return PreprocessingSpec(height=int(match.group(1)), width=int(match.group(2)), **overrides)


def preprocess_bytes(data: bytes, record: ImageRecord, spec, threads: int = 1) -> PreprocessOutcome:
    from mammobeam.transforms.pixels import PixelError, preprocess_dataset
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as e:
        return PreprocessOutcome(rejection=Rejection.of(
            record, Reason.TRUNCATED if isinstance(e, EOFError) else Reason.DECODE_FAILED,
            Stage.DECODE, f"dataset unreadable: {type(e).__name__}"))
    if "PixelData" not in ds:
        # pydicom drops an element cut short by the end of the file: tell that from a missing one.
        if _PIXEL_TAG_LE in data or _PIXEL_TAG_BE in data:
            return PreprocessOutcome(rejection=Rejection.of(record, Reason.TRUNCATED, Stage.DECODE,
                                                            "file ends inside its pixel data"))
        return PreprocessOutcome(rejection=Rejection.of(record, Reason.EMPTY_IMAGE, Stage.DECODE,
                                                        "no PixelData element"))
    try:
        return PreprocessOutcome(image=preprocess_dataset(ds, record, spec, threads=threads))
    except PixelError as e:
        return PreprocessOutcome(rejection=Rejection.of(record, e.reason, Stage.DECODE, e.detail))
    except MemoryError:
        return PreprocessOutcome(rejection=Rejection.of(record, Reason.IMAGE_TOO_LARGE, Stage.DECODE,
                                                        "out of memory while decoding"))
    except Exception as e:  # a codec bug must not take the worker down
        return PreprocessOutcome(rejection=Rejection.of(record, Reason.DECODE_FAILED, Stage.PREPROCESS,
                                                        f"{type(e).__name__}: {str(e)[:200]}"))
