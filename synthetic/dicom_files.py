"""From pixels to DICOM files: UIDs, orientation, the mammography header, encoding, writing.

The header carries what real screening files carry (issue 3) and the synthetic-data marker of
schemas/codes.py. Everything that varies is a function of the run's seed, never of the clock, so the
same seed gives the same bytes.

Transfer syntaxes are encoded with imagecodecs (JPEG 2000, HTJ2K, JPEG-LS, JPEG lossless SV1 and
JPEG baseline) and pydicom's RLE encoder (pylibjpeg-rle when installed, else pydicom's own; both write
the same bytes), encapsulated with pydicom.encaps.encapsulate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from typing import Optional, Sequence

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.sequence import Sequence as DicomSequence

from mammobeam.schemas import codes
from mammobeam.synthetic.profiles import VendorProfile

# SNOMED CT code for the breast (PS3.16 CID 4031 Common Anatomic Regions).
BREAST_REGION = ("76752008", "SCT", "Breast")
# Code meanings of CID 4014 / CID 4015 entries the generator writes (PS3.16); codes.py maps the
# code values to names, the meanings are what the files show a human.
VIEW_MEANINGS = {"CC": "cranio-caudal", "MLO": "medio-lateral oblique"}
VIEW_MODIFIER_MEANINGS = {"MAGNIFICATION": "magnification", "SPOT_COMPRESSION": "spot compression",
                          "IMPLANT_DISPLACED": "implant displaced"}
# Secondary Capture Image Storage (PS3.4 Table B.5-1), the SOP class digitised film archives use.
SECONDARY_CAPTURE_IMAGE = "1.2.840.10008.5.1.4.1.1.7"

# Lossless syntaxes rotated over the files of a run, in this order (file k gets entry k mod 7).
LOSSLESS_ROTATION = (
    codes.EXPLICIT_VR_LE, codes.JPEG2000_LOSSLESS, codes.IMPLICIT_VR_LE, codes.JPEG_LS_LOSSLESS,
    codes.RLE_LOSSLESS, codes.JPEG_LOSSLESS_SV1, codes.HTJ2K_LOSSLESS,
)


def available_syntaxes(candidates: Sequence[str] = LOSSLESS_ROTATION) -> tuple[str, ...]:
    """The candidate syntaxes this installation can encode (HTJ2K needs an imagecodecs with OpenJPH)."""
    out = []
    for ts in candidates:
        if ts in (codes.HTJ2K_LOSSLESS, codes.HTJ2K_LOSSLESS_RPCL) and not imagecodecs.HTJ2K.available:
            continue
        out.append(ts)
    return tuple(out)


def make_uid(seed: int, *parts: object) -> str:
    """A UID under the synthetic root, a pure function of the seed and what it names."""
    text = "|".join([str(seed), *map(str, parts)]).encode()
    number = int.from_bytes(hashlib.sha256(text).digest()[:16], "big")
    return f"{codes.SYNTHETIC_UID_ROOT}.{number}"


def view_code_value(view: str, scheme: str) -> str:
    """The CID 4014 code of a view in SNOMED CT ("SCT", numeric) or legacy SNOMED-RT ("SRT")."""
    for value, name in codes.VIEW_CODES.items():
        if name == view and (value.isdigit() == (scheme == "SCT")):
            return value
    raise KeyError(view)


def view_modifier_code_value(modifier: str, scheme: str) -> str:
    for value, name in codes.VIEW_MODIFIER_CODES.items():
        if name == modifier and (value.isdigit() == (scheme == "SCT")):
            return value
    raise KeyError(modifier)


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def view_code_sequence(view: str, scheme: str, modifiers: Sequence[str] = ()) -> DicomSequence:
    """ViewCodeSequence with its (Type 2, possibly empty) nested ViewModifierCodeSequence."""
    item = code_item(view_code_value(view, scheme), scheme, VIEW_MEANINGS[view])
    item.ViewModifierCodeSequence = DicomSequence([
        code_item(view_modifier_code_value(m, scheme), scheme, VIEW_MODIFIER_MEANINGS[m]) for m in modifiers
    ])
    return DicomSequence([item])


def patient_orientation(laterality: str, view: str, mirrored: bool) -> tuple[str, str]:
    """PatientOrientation (PS3.3 C.7.6.1.1.1) as units write it.

    Unmirrored, the left breast has the chest wall on the image's left (rows run anterior, "A") and
    the right breast on the right ("P"); a mirrored unit inverts the first value. Down the columns:
    towards the other breast in CC (R for the left breast, L for the right), towards the feet in MLO.
    """
    nipple_right = (laterality == "L") != mirrored
    row_direction = "A" if nipple_right else "P"
    column_direction = ("R" if laterality == "L" else "L") if view == "CC" else "F"
    return row_direction, column_direction


def orient(canonical: np.ndarray, laterality: str, mirrored: bool) -> np.ndarray:
    """Flip a canonical-frame image (nipple to the right) into the stored orientation."""
    nipple_right = (laterality == "L") != mirrored
    return canonical if nipple_right else np.ascontiguousarray(canonical[:, ::-1])


def add_synthetic_marker(ds: Dataset) -> None:
    block = ds.private_block(codes.SYNTHETIC_PRIVATE_GROUP, codes.SYNTHETIC_PRIVATE_CREATOR, create=True)
    block.add_new(codes.SYNTHETIC_MARKER_ELEMENT, "LO", codes.SYNTHETIC_MARKER_VALUE)


def has_synthetic_marker(ds: Dataset) -> bool:
    """True if `ds` carries the marker. In implicit VR files the private element reads back as UN
    bytes (pydicom does not know the creator's dictionary), so bytes are decoded before comparing."""
    try:
        block = ds.private_block(codes.SYNTHETIC_PRIVATE_GROUP, codes.SYNTHETIC_PRIVATE_CREATOR)
        value = block[codes.SYNTHETIC_MARKER_ELEMENT].value
    except KeyError:
        return False
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace").rstrip(" \0")
    return value == codes.SYNTHETIC_MARKER_VALUE


@dataclasses.dataclass(frozen=True)
class StudyContext:
    """The patient and study every file of one exam shares (fake PHI included on purpose)."""

    seed: int
    study_key: str  # names the study in UIDs: "exam-12", "edge-3"
    accession_number: str
    patient_id: str
    patient_name: str
    birth_date: dt.date
    study_date: dt.date
    study_time: str  # HHMMSS
    site: str

    @property
    def study_uid(self) -> str:
        return make_uid(self.seed, self.study_key, "study")

    @property
    def age_years(self) -> int:
        b, s = self.birth_date, self.study_date
        return s.year - b.year - ((s.month, s.day) < (b.month, b.day))


ISSUER_OF_PATIENT_ID = "MAMMOBEAM-SYNTHETIC"


def window_for(stored: np.ndarray, mask: np.ndarray, bits_stored: int, photometric: str,
               presets: Sequence[str]) -> tuple[list[float], list[float]]:
    """Window centre/width over the breast, as units compute them; mirrored for MONOCHROME1.

    `stored` is in MONOCHROME2 sense. The first preset spans the 0.5th-99.9th percentile of the breast;
    HARDER narrows and SOFTER widens it.
    """
    tissue = stored[mask] if mask.any() else stored.ravel()
    lo, hi = np.percentile(tissue[:: max(1, tissue.size // 200_000)], [0.5, 99.9])
    centre, width = (lo + hi) / 2.0, max(hi - lo, 16.0) * 1.15
    factors = {"NORMAL": 1.0, "HARDER": 0.75, "SOFTER": 1.35}
    top = (1 << bits_stored) - 1
    centres, widths = [], []
    for preset in presets:
        c = top - centre if photometric == "MONOCHROME1" else centre
        centres.append(round(float(c), 1))
        widths.append(round(float(width * factors.get(preset, 1.0)), 1))
    return centres, widths


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """One mammogram's identity and geometry (the pixels are passed separately)."""

    laterality: str
    view: str
    instance_key: str  # names the image in UIDs: "L-CC", "edge:magnification"
    instance_number: int
    series_number: int
    pixel_spacing_mm: float
    sop_class_uid: str = codes.DM_FOR_PRESENTATION
    presentation_intent: str = "FOR PRESENTATION"
    view_modifiers: tuple[str, ...] = ()
    implant_present: bool = False
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY")
    series_description: Optional[str] = None  # default "L CC"
    magnification_factor: float = 1.0


def mammography_dataset(study: StudyContext, profile: VendorProfile, spec: ImageSpec, stored: np.ndarray,
                        mask: np.ndarray, rng: np.random.Generator) -> Dataset:
    """The full header of a digital mammogram, pixel data excluded. `stored` is MONOCHROME2-sense."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(spec.image_type)
    ds.SOPClassUID = spec.sop_class_uid
    ds.SOPInstanceUID = make_uid(study.seed, study.study_key, spec.instance_key, "sop")
    date = study.study_date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = study.study_time
    content_time = f"{study.study_time[:4]}{(int(study.study_time[4:6]) + spec.instance_number) % 60:02d}"
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = content_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = "MG"
    ds.PresentationIntentType = spec.presentation_intent
    ds.Manufacturer = profile.manufacturer
    ds.InstitutionName = study.site
    ds.ReferringPhysicianName = ""
    ds.StationName = f"{profile.name.upper()}01"
    ds.StudyDescription = "SCREENING MAMMOGRAPHY"
    ds.SeriesDescription = spec.series_description or f"{spec.laterality} {spec.view}"
    ds.ManufacturerModelName = profile.model_name
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.IssuerOfPatientID = ISSUER_OF_PATIENT_ID
    ds.PatientBirthDate = study.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "F"
    ds.PatientAge = f"{study.age_years:03d}Y"
    ds.BodyPartExamined = "BREAST"
    ds.DeviceSerialNumber = f"{profile.name.upper()}-0001"
    ds.SoftwareVersions = profile.software_version
    # Acquisition physics, plausible ranges (not used by the pipeline, present as in real files).
    thickness = int(rng.integers(35, 75))
    ds.KVP = str(int(rng.integers(26, 34)))
    ds.BodyPartThickness = str(thickness)
    ds.CompressionForce = str(int(rng.integers(60, 140)))
    ds.ExposureTime = str(int(rng.integers(600, 1800)))
    ds.XRayTubeCurrent = str(int(rng.integers(80, 200)))
    ds.DistanceSourceToDetector = "660"
    ds.EstimatedRadiographicMagnificationFactor = f"{spec.magnification_factor:.2f}"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [spec.pixel_spacing_mm, spec.pixel_spacing_mm]
    ds.ViewPosition = spec.view
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = make_uid(study.seed, study.study_key, spec.instance_key, "series")
    ds.StudyID = study.accession_number[-8:]
    ds.SeriesNumber = spec.series_number
    ds.InstanceNumber = spec.instance_number
    ds.PatientOrientation = list(patient_orientation(spec.laterality, spec.view, profile.mirrored))
    ds.ImageLaterality = spec.laterality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = profile.photometric
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    ds.BitsAllocated = 16
    ds.BitsStored = profile.bits_stored
    ds.HighBit = profile.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    # PS3.3 C.8.11.3: -1 when higher values mean less X-ray intensity (dense is bright, MONOCHROME2).
    ds.PixelIntensityRelationshipSign = -1 if profile.photometric == "MONOCHROME2" else 1
    centres, widths = window_for(stored, mask, profile.bits_stored, profile.photometric,
                                 profile.window_presets)
    ds.WindowCenter = centres if len(centres) > 1 else centres[0]
    ds.WindowWidth = widths if len(widths) > 1 else widths[0]
    ds.WindowCenterWidthExplanation = (list(profile.window_presets) if len(centres) > 1
                                       else profile.window_presets[0])
    ds.VOILUTFunction = profile.voi_lut_function
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    # PS3.3 C.8.11.1.1.1: INVERSE for MONOCHROME1, IDENTITY for MONOCHROME2.
    ds.PresentationLUTShape = "INVERSE" if profile.photometric == "MONOCHROME1" else "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.BreastImplantPresent = "YES" if spec.implant_present else "NO"
    ds.AnatomicRegionSequence = DicomSequence([code_item(*BREAST_REGION)])
    ds.ViewCodeSequence = view_code_sequence(spec.view, profile.view_coding_scheme, spec.view_modifiers)
    ds.OrganDose = f"{rng.uniform(0.8, 2.5):.3f}"
    ds.EntranceDoseInmGy = f"{rng.uniform(3.0, 9.0):.3f}"
    add_synthetic_marker(ds)
    return ds


def stored_for_profile(stored_m2: np.ndarray, bits_stored: int, photometric: str) -> np.ndarray:
    """MONOCHROME2-sense values as the profile stores them (inverted for MONOCHROME1)."""
    if photometric == "MONOCHROME1":
        return ((1 << bits_stored) - 1 - stored_m2).astype(np.uint16)
    return stored_m2


def encode_frame(pixels: np.ndarray, syntax: str, bits_stored: int, jpeg_quality: int = 90) -> bytes:
    """One frame's encoded bitstream for an encapsulated syntax."""
    if syntax == codes.JPEG2000_LOSSLESS:
        return bytes(imagecodecs.jpeg2k_encode(pixels, level=0, codecformat="J2K", reversible=True,
                                               bitspersample=bits_stored))
    if syntax == codes.HTJ2K_LOSSLESS:
        return bytes(imagecodecs.htj2k_encode(pixels, reversible=True))
    if syntax == codes.JPEG_LS_LOSSLESS:
        return bytes(imagecodecs.jpegls_encode(pixels, level=0))
    if syntax == codes.JPEG_LOSSLESS_SV1:
        # libjpeg-turbo's lossless mode with predictor 1 is Selection Value 1 (PS3.5 A.4.3).
        return bytes(imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1, bitspersample=bits_stored))
    if syntax == codes.JPEG_BASELINE:
        return bytes(imagecodecs.jpeg8_encode(pixels, level=jpeg_quality))
    if syntax == codes.RLE_LOSSLESS:
        plugins = RLELosslessEncoder.available_plugins
        plugin = "pylibjpeg" if "pylibjpeg" in plugins else "pydicom"
        return bytes(RLELosslessEncoder.encode(
            pixels, encoding_plugin=plugin, rows=pixels.shape[0], columns=pixels.shape[1],
            samples_per_pixel=1, bits_allocated=8 * pixels.dtype.itemsize, bits_stored=bits_stored,
            pixel_representation=0, photometric_interpretation="MONOCHROME2", number_of_frames=1))
    raise ValueError(f"no encoder for transfer syntax {syntax}")


def set_pixel_data(ds: Dataset, pixels: np.ndarray, syntax: str) -> None:
    """Store pixels (2-D, or 3-D frames) in `ds` in one transfer syntax; sets file meta accordingly."""
    frames = pixels if pixels.ndim == 3 else pixels[None]
    if syntax in codes.NATIVE_SYNTAXES:
        vr = "OB" if pixels.dtype.itemsize == 1 else "OW"
        data = np.ascontiguousarray(frames, dtype=pixels.dtype.newbyteorder("<")).tobytes()
        if len(data) % 2:
            data += b"\0"
        ds.add_new(0x7FE00010, vr, data)
    else:
        bitstreams = [encode_frame(f, syntax, int(ds.BitsStored)) for f in frames]
        ds.add_new(0x7FE00010, "OB", encapsulate(bitstreams))
    set_file_meta(ds, syntax)


def set_file_meta(ds: Dataset, syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta


def write(ds: Dataset, path: str) -> str:
    """Write a Part 10 file; the file meta's transfer syntax decides implicit or explicit VR."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
