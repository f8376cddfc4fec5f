"""Builders shared by the pixel tests and benchmarks/bench_preprocess.py (no tests in this file).

A breast-like image (a half ellipse against one edge, smooth texture, skin falloff, noise, and a
burnt-in label in a corner) is encoded with pydicom + imagecodecs into a real DICOM file in memory and
read back the way the pipeline reads files: pydicom.dcmread(..., defer_size=None).
"""

from __future__ import annotations

import io
from typing import Optional

import cv2
import imagecodecs
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from mammobeam.schemas import codes
from mammobeam.schemas.records import ImageRecord


def breast_image(rows: int = 1024, columns: int = 832, bits: int = 12, seed: int = 0,
                 label: bool = True, noise: float = 0.002) -> np.ndarray:
    """uint16 MONOCHROME2 stored values, chest wall on the left (column 0), label top right."""
    rng = np.random.default_rng(seed)
    top = 2 ** bits - 1
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float32)
    d = (xx / (columns * 0.62)) ** 2 + ((yy - rows * 0.5) / (rows * 0.42)) ** 2
    coarse = cv2.resize(rng.random((max(rows // 128, 2), max(columns // 128, 2)), dtype=np.float32),
                        (columns, rows), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.random((max(rows // 16, 2), max(columns // 16, 2)), dtype=np.float32),
                      (columns, rows), interpolation=cv2.INTER_LINEAR)
    # Denser tissue towards the chest wall: what the pixel-based orientation check relies on.
    tissue = (0.35 + 0.3 * coarse + 0.1 * fine + 0.15 * (1 - xx / columns)) * np.clip((1 - d) * 8, 0, 1)
    img = np.where(d < 1, tissue * top, 0.03 * top)
    img = img + rng.normal(0, top * noise, (rows, columns)).astype(np.float32)
    if label:
        img[rows // 20: rows // 20 + rows // 40, int(columns * 0.75): int(columns * 0.95)] = top * 0.95
    return np.clip(img, 0, top).astype(np.uint16)


def encode_frame(image: np.ndarray, syntax: str, bits_stored: int) -> bytes:
    """One frame encoded losslessly for `syntax` with imagecodecs (RLE: see make_dataset)."""
    if syntax == codes.JPEG_LS_LOSSLESS:
        return imagecodecs.jpegls_encode(image)
    if syntax == codes.JPEG_LOSSLESS_SV1:
        return imagecodecs.jpeg8_encode(image, lossless=True, predictor=1, bitspersample=bits_stored)
    if syntax == codes.JPEG_LOSSLESS_P14:
        return imagecodecs.jpeg8_encode(image, lossless=True, predictor=6, bitspersample=bits_stored)
    if syntax == codes.JPEG2000_LOSSLESS:
        return imagecodecs.jpeg2k_encode(image, level=0, codecformat="J2K", reversible=True,
                                         bitspersample=bits_stored)
    if syntax == codes.HTJ2K_LOSSLESS:
        return imagecodecs.htj2k_encode(image, reversible=True)
    raise ValueError(syntax)


LOSSLESS_TEST_SYNTAXES = (
    ExplicitVRLittleEndian, RLELossless, codes.JPEG_LS_LOSSLESS, codes.JPEG_LOSSLESS_SV1,
    codes.JPEG_LOSSLESS_P14, codes.JPEG2000_LOSSLESS, codes.HTJ2K_LOSSLESS,
)


def make_dataset(image: np.ndarray, syntax: str = ExplicitVRLittleEndian, *, bits_stored: int = 12,
                 laterality: str = "L", view: str = "CC",
                 patient_orientation: Optional[tuple[str, str]] = ("A", "R"),
                 photometric: str = "MONOCHROME2", window: Optional[tuple[float, float]] = (2048, 4096),
                 voi_function: Optional[str] = "LINEAR", fov_horizontal_flip: Optional[str] = None,
                 frame: Optional[bytes] = None) -> pydicom.Dataset:
    """A Digital Mammography For Presentation file in `syntax`, written and read back."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = codes.DM_FOR_PRESENTATION
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(prefix="2.25.")
    ds.SOPClassUID = codes.DM_FOR_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    if patient_orientation is not None:
        ds.PatientOrientation = list(patient_orientation)
    if fov_horizontal_flip is not None:
        ds.FieldOfViewHorizontalFlip = fov_horizontal_flip
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    image = np.ascontiguousarray(image, dtype=np.uint16)
    if syntax == RLELossless:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = image.tobytes()
        ds.compress(RLELossless, image, encoding_plugin="pylibjpeg")
    elif syntax in codes.NATIVE_SYNTAXES:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = image.tobytes()
    else:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([frame if frame is not None else encode_frame(image, syntax, bits_stored)])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()), defer_size=None)


def record_for(ds: pydicom.Dataset, source_uri: str = "mem://synthetic") -> ImageRecord:
    """What the header reader would put on the ImageRecord for these tests' files."""
    def floats(name: str) -> tuple[float, ...]:
        value = ds.get(name)
        if value is None:
            return ()
        return tuple(float(v) for v in (value if isinstance(value, (list, tuple, pydicom.multival.MultiValue))
                                       else [value]))

    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return ImageRecord(
        source_uri=source_uri,
        laterality=ds.get("ImageLaterality"), view=ds.get("ViewPosition"),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        rows=int(ds.Rows), columns=int(ds.Columns), bits_allocated=int(ds.BitsAllocated),
        bits_stored=int(ds.BitsStored), pixel_representation=int(ds.PixelRepresentation),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1)),
        photometric=str(ds.PhotometricInterpretation),
        rescale_slope=None if slope is None else float(slope),
        rescale_intercept=None if intercept is None else float(intercept),
        window_center=floats("WindowCenter"), window_width=floats("WindowWidth"),
        voi_lut_function=ds.get("VOILUTFunction"),
        has_voi_lut_sequence=bool(ds.get("VOILUTSequence")),
        patient_orientation=tuple(str(v) for v in ds.get("PatientOrientation", []) or []),
        fov_horizontal_flip=ds.get("FieldOfViewHorizontalFlip"),
    )
