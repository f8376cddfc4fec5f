"""What a real feed holds besides clean 4-view screening exams (`--edge-cases`).

Each edge case has one defect and is otherwise a well-formed, marked synthetic file, so the reason
it must be rejected is unambiguous; EDGE_CASES says which Reason code the acceptance checker should
give (None: the file must be accepted).

Most edge cases are standalone studies of their own (own patient, accession and study UID, written
under DIR/edge_cases/). Three live inside ordinary exams, because that is where they bite:
- laterality_only_in_0020_0060: one view of the first exam keeps laterality only in Laterality
  (0020,0060) and view only in ViewCodeSequence (PatientOrientation stays, it orients the pixels);
- duplicate_sop_instance: a second file of an exam view with the same SOP Instance UID, re-encoded
  in another transfer syntax, named so it sorts after the original (the original is accepted);
- missing_view: the last exam has no R-MLO file (its path entry is the exam's folder).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from mammobeam.schemas import codes
from mammobeam.schemas.reasons import Reason
from mammobeam.synthetic import anatomy, dicom_files, exams
from mammobeam.synthetic.profiles import ImageGeometry, VendorProfile


@dataclasses.dataclass(frozen=True)
class EdgeCase:
    name: str
    expected: Optional[Reason]  # None: must be accepted
    description: str


EDGE_CASES: dict[str, EdgeCase] = {e.name: e for e in (
    EdgeCase("ct", Reason.NOT_MAMMOGRAPHY, "CT Image Storage, Modality CT (a chest slice)"),
    EdgeCase("for_processing", Reason.FOR_PROCESSING,
             "Digital Mammography For Processing, PresentationIntentType FOR PROCESSING"),
    EdgeCase("tomosynthesis", Reason.TOMOSYNTHESIS, "Breast Tomosynthesis Image Storage, 6 frames"),
    EdgeCase("synthesized_2d", Reason.SYNTHESIZED_2D,
             "DM For Presentation with ImageType GENERATED_2D and SeriesDescription C-View"),
    EdgeCase("magnification", Reason.NON_STANDARD_VIEW,
             "CC with a magnification modifier in ViewCodeSequence > ViewModifierCodeSequence"),
    EdgeCase("spot_compression", Reason.NON_STANDARD_VIEW,
             "CC with a spot compression modifier in ViewCodeSequence > ViewModifierCodeSequence"),
    EdgeCase("implant_displaced", Reason.NON_STANDARD_VIEW,
             "MLO with an implant displaced modifier, BreastImplantPresent YES"),
    EdgeCase("digitized_film", Reason.DIGITIZED_FILM,
             "Modality MG stored as Secondary Capture Image Storage, ConversionType DF"),
    EdgeCase("lossy_jpeg", Reason.LOSSY_COMPRESSION,
             "8-bit mammogram in JPEG baseline (1.2.840.10008.1.2.4.50), LossyImageCompression 01"),
    EdgeCase("no_laterality", Reason.UNKNOWN_LATERALITY,
             "no ImageLaterality, Laterality, PatientOrientation or laterality in descriptions"),
    EdgeCase("truncated", Reason.TRUNCATED, "explicit VR file cut off inside its pixel data"),
    EdgeCase("not_dicom", Reason.NOT_DICOM, "a text file named .dcm"),
    EdgeCase("laterality_only_in_0020_0060", None,
             "exam view with laterality only in Laterality (0020,0060), view only in ViewCodeSequence"),
    EdgeCase("duplicate_sop_instance", Reason.DUPLICATE,
             "second file with an already used SOP Instance UID, other transfer syntax, later name"),
    EdgeCase("missing_view", None, "an exam without its R-MLO file (path: the exam's folder)"),
)}

EDGE_DIR = "edge_cases"
MISSING_VIEW = "R-MLO"
LATERALITY_ONLY_VIEW = "R-CC"
DUPLICATED_VIEW = "L-MLO"
TOMO_FRAMES = 6


# --- Changes to ordinary exams -------------------------------------------------------------------

def keep_laterality_only_in_laterality_attribute(ds: Dataset) -> None:
    """Move laterality to (0020,0060) Laterality and leave the view only in ViewCodeSequence."""
    ds.Laterality = ds.ImageLaterality
    del ds.ImageLaterality
    del ds.ViewPosition
    del ds.SeriesDescription  # "R CC" would be another source


def duplicate_syntax(original_syntax: str) -> str:
    """Another lossless syntax for the duplicate, so only the SOP Instance UID gives it away."""
    return codes.IMPLICIT_VR_LE if original_syntax != codes.IMPLICIT_VR_LE else codes.EXPLICIT_VR_LE


def duplicate_path(original_path: str) -> str:
    stem, ext = os.path.splitext(original_path)
    return f"{stem}_copy{ext}"  # "L_MLO.dcm" < "L_MLO_copy.dcm": the original sorts first


# --- Standalone edge-case studies ------------------------------------------------------------------

@dataclasses.dataclass
class _Context:
    seed: int
    index: int
    profile: VendorProfile
    geometry: ImageGeometry
    study: dicom_files.StudyContext
    rng: np.random.Generator


def _context(seed: int, index: int, profile: VendorProfile, size: str) -> _Context:
    rng = np.random.default_rng([seed, exams.STREAM_EDGE, index])
    number = index + 1
    study = exams.fake_study(rng, seed, f"edge-{index}", f"{seed % 10000:04d}E{number:05d}",
                             f"SYNE{number:03d}", f"SYNTH^EDGECASE{number:03d}", profile.site)
    return _Context(seed, index, profile, profile.geometry(size), study, rng)


def _mammogram(ctx: _Context, laterality: str, view: str, *, geometry: Optional[ImageGeometry] = None,
               **spec_fields) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """(header, pixels as stored, MONOCHROME2-sense pixels) of one rendered view."""
    geometry = geometry or ctx.geometry
    breast = anatomy.sample_anatomy(ctx.rng, geometry, float(ctx.rng.beta(2.0, 2.5)))
    stored_m2, mask = exams.render_view(ctx.rng, breast, view, laterality, geometry, ctx.profile, None)
    spec = dicom_files.ImageSpec(laterality=laterality, view=view, instance_key=f"edge-image-{ctx.index}",
                                 instance_number=1, series_number=1,
                                 pixel_spacing_mm=geometry.pixel_spacing_mm, **spec_fields)
    ds = dicom_files.mammography_dataset(ctx.study, ctx.profile, spec, stored_m2, mask, ctx.rng)
    stored = dicom_files.stored_for_profile(stored_m2, ctx.profile.bits_stored, ctx.profile.photometric)
    return ds, stored, stored_m2


def _write(ds: Dataset, pixels: np.ndarray, syntax: str, path: str) -> str:
    dicom_files.set_pixel_data(ds, pixels, syntax)
    return dicom_files.write(ds, path)


def _ct(ctx: _Context, path: str) -> str:
    size = 256
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    body = (xx / 110) ** 2 + (yy / 80) ** 2 < 1
    lungs = ((np.abs(xx) - 45) / 32) ** 2 + (yy / 50) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0)
    hu = np.where(body & lungs, -850.0, hu) + ctx.rng.normal(0, 12, (size, size))
    pixels = np.clip(np.rint(hu + 1024), 0, 4095).astype(np.int16)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = codes.CT_IMAGE
    ds.SOPInstanceUID = dicom_files.make_uid(ctx.seed, ctx.study.study_key, "ct", "sop")
    ds.StudyDate = ds.ContentDate = ctx.study.study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = ctx.study.study_time
    ds.AccessionNumber = ctx.study.accession_number
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHVENDOR CT"
    ds.InstitutionName = ctx.study.site
    ds.ReferringPhysicianName = ""
    ds.PatientName = ctx.study.patient_name
    ds.PatientID = ctx.study.patient_id
    ds.IssuerOfPatientID = dicom_files.ISSUER_OF_PATIENT_ID
    ds.PatientBirthDate = ctx.study.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "F"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.StudyInstanceUID = ctx.study.study_uid
    ds.SeriesInstanceUID = dicom_files.make_uid(ctx.seed, ctx.study.study_key, "ct", "series")
    ds.StudyID = ctx.study.accession_number[-8:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImagePositionPatient = [-175.0, -175.0, -120.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = dicom_files.make_uid(ctx.seed, ctx.study.study_key, "ct", "for")
    ds.PixelSpacing = [1.367, 1.367]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    dicom_files.add_synthetic_marker(ds)
    return _write(ds, pixels, codes.IMPLICIT_VR_LE, path)


def _for_processing(ctx: _Context, path: str) -> str:
    ds, _, stored_m2 = _mammogram(ctx, "L", "CC", sop_class_uid=codes.DM_FOR_PROCESSING,
                                  presentation_intent="FOR PROCESSING")
    # Raw detector signal: bright where X-rays got through, lower contrast, no VOI.
    top = (1 << ctx.profile.bits_stored) - 1
    raw = np.clip(top - stored_m2.astype(np.int32) * 0.7, 0, top).astype(np.uint16)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "INVERSE"
    for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"):
        if keyword in ds:
            delattr(ds, keyword)
    return _write(ds, raw, codes.EXPLICIT_VR_LE, path)


def _tomosynthesis(ctx: _Context, path: str) -> str:
    geometry = ctx.profile.geometry("small")  # a rejected object: kept small at every size
    ds, stored, _ = _mammogram(ctx, "R", "CC", geometry=geometry, sop_class_uid=codes.BREAST_TOMOSYNTHESIS,
                               image_type=("ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"))
    top = (1 << ctx.profile.bits_stored) - 1
    frames = np.stack([
        np.clip(stored.astype(np.int32) + ctx.rng.integers(-20, 21, stored.shape), 0, top).astype(np.uint16)
        for _ in range(TOMO_FRAMES)
    ])
    ds.NumberOfFrames = TOMO_FRAMES
    measures = Dataset()
    measures.PixelSpacing = [geometry.pixel_spacing_mm] * 2
    measures.SliceThickness = "1.0"
    anatomy_item = Dataset()
    anatomy_item.FrameLaterality = "R"
    anatomy_item.AnatomicRegionSequence = DicomSequence([dicom_files.code_item(*dicom_files.BREAST_REGION)])
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.FrameAnatomySequence = DicomSequence([anatomy_item])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for i in range(TOMO_FRAMES):
        content = Dataset()
        content.FrameAcquisitionNumber = 1
        content.DimensionIndexValues = [i + 1]
        item = Dataset()
        item.FrameContentSequence = DicomSequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    return _write(ds, frames, codes.EXPLICIT_VR_LE, path)


def _synthesized_2d(ctx: _Context, path: str) -> str:
    ds, stored, _ = _mammogram(ctx, "L", "MLO", image_type=("DERIVED", "PRIMARY", "TOMOSYNTHESIS",
                                                            "GENERATED_2D"), series_description="C-View")
    ds.DerivationDescription = "2D image synthesized from the tomosynthesis acquisition"
    return _write(ds, stored, codes.JPEG2000_LOSSLESS, path)


def _modified_view(modifier: str, laterality: str, view: str, syntax: str, **fields) -> Callable:
    def build(ctx: _Context, path: str) -> str:
        ds, stored, _ = _mammogram(ctx, laterality, view, view_modifiers=(modifier,), **fields)
        return _write(ds, stored, syntax, path)
    return build


def _magnification(ctx: _Context, path: str) -> str:
    factor = 1.8
    g = ctx.geometry
    magnified = ImageGeometry(g.rows, g.columns, round(g.pixel_spacing_mm / factor, 6))
    ds, stored, _ = _mammogram(ctx, "L", "CC", geometry=magnified, view_modifiers=("MAGNIFICATION",),
                               magnification_factor=factor, series_description="L CC MAG")
    return _write(ds, stored, codes.JPEG_LS_LOSSLESS, path)


def _digitized_film(ctx: _Context, path: str) -> str:
    ds, stored, _ = _mammogram(ctx, "R", "MLO", sop_class_uid=dicom_files.SECONDARY_CAPTURE_IMAGE,
                               image_type=("DERIVED", "SECONDARY"))
    ds.ConversionType = "DF"
    ds.SecondaryCaptureDeviceManufacturer = "SYNTHETIC FILM DIGITIZER"
    ds.PixelSpacing = ds.ImagerPixelSpacing
    del ds.ImagerPixelSpacing
    del ds.PresentationIntentType
    return _write(ds, stored, codes.EXPLICIT_VR_LE, path)


def _lossy_jpeg(ctx: _Context, path: str) -> str:
    ds, _, stored_m2 = _mammogram(ctx, "R", "CC")
    shift = ctx.profile.bits_stored - 8
    eight_bit_m2 = (stored_m2 >> shift).astype(np.uint8)
    pixels = (255 - eight_bit_m2) if ctx.profile.photometric == "MONOCHROME1" else eight_bit_m2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    mask = eight_bit_m2 > (anatomy.AIR_LEVEL * 2 * 255)
    centres, widths = dicom_files.window_for(eight_bit_m2, mask, 8, ctx.profile.photometric,
                                             ctx.profile.window_presets)
    ds.WindowCenter = centres if len(centres) > 1 else centres[0]
    ds.WindowWidth = widths if len(widths) > 1 else widths[0]
    dicom_files.set_pixel_data(ds, pixels, codes.JPEG_BASELINE)
    ratio = pixels.size / max(1, len(ds.PixelData))
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{ratio:.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    return dicom_files.write(ds, path)


def _no_laterality(ctx: _Context, path: str) -> str:
    ds, stored, _ = _mammogram(ctx, "L", "MLO", series_description="MLO")
    del ds.ImageLaterality
    del ds.PatientOrientation  # it would give laterality away (A/P against the stored side)
    return _write(ds, stored, codes.IMPLICIT_VR_LE, path)


def _truncated(ctx: _Context, path: str) -> str:
    ds, stored, _ = _mammogram(ctx, "R", "MLO")
    _write(ds, stored, codes.EXPLICIT_VR_LE, path)
    with open(path, "rb") as f:
        data = f.read()
    pixel_start = len(data) - stored.nbytes
    with open(path, "wb") as f:
        f.write(data[: pixel_start + int(stored.nbytes * 0.6)])
    return path


def _not_dicom(ctx: _Context, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="ascii") as f:
        f.write("Scanned referral letter placeholder.\n"
                "Written by mammobeam synth as a non-DICOM edge case; synthetic data, not a patient.\n")
    return path


_STANDALONE: tuple[tuple[str, Callable[[_Context, str], str]], ...] = (
    ("ct", _ct),
    ("for_processing", _for_processing),
    ("tomosynthesis", _tomosynthesis),
    ("synthesized_2d", _synthesized_2d),
    ("magnification", _magnification),
    ("spot_compression", _modified_view("SPOT_COMPRESSION", "R", "CC", codes.RLE_LOSSLESS,
                                        series_description="R CC SPOT")),
    ("implant_displaced", _modified_view("IMPLANT_DISPLACED", "L", "MLO", codes.JPEG2000_LOSSLESS,
                                         implant_present=True, series_description="L MLO ID")),
    ("digitized_film", _digitized_film),
    ("lossy_jpeg", _lossy_jpeg),
    ("no_laterality", _no_laterality),
    ("truncated", _truncated),
    ("not_dicom", _not_dicom),
)


def write_standalone(seed: int, output_dir: str, size: str,
                     profiles: Sequence[VendorProfile]) -> dict[str, str]:
    """Write every standalone edge case; name -> path."""
    written = {}
    for index, (name, build) in enumerate(_STANDALONE):
        ctx = _context(seed, index, profiles[index % len(profiles)], size)
        written[name] = build(ctx, os.path.join(output_dir, EDGE_DIR, f"{name}.dcm"))
    return written
