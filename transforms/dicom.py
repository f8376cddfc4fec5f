"""Reading and checking DICOM headers: plain functions, no Beam, no pixels.

`read_header(data, source_uri, pseudonymizer, options)` parses a file's header (stopping before the
pixel data), bounds what it claims, turns it into an ImageRecord whose identifiers are keyed
pseudonyms, and decides acceptance. It never raises for a bad file: every problem becomes a coded
Reason (schemas/reasons.py). A rejected file still carries whatever laterality and view could be read.

Acceptance, in order (the first failing check names the reason):
size bounds -> parseable DICOM -> identifiers -> tomosynthesis / multi-frame -> modality and SOP class
(digitised film) -> For Processing -> synthesized 2D -> laterality -> view and view modifiers ->
transfer syntax (unsupported, lossy) -> pseudonym key policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from typing import BinaryIO, Optional, Union

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from mammobeam.schemas import codes
from mammobeam.schemas.reasons import Reason, Stage
from mammobeam.schemas.records import ImageRecord, Rejection
from mammobeam.transforms.pseudonyms import DemoKeyRefused, Pseudonymizer

# pydicom's reading validation warns with the offending value quoted, and a malformed PatientName
# or PatientID would then reach the worker logs. Values are checked here, not by warnings.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

MiB = 1024 * 1024
EXAM_KEYS = ("study", "accession", "patient-date")


@dataclasses.dataclass(frozen=True)
class ReaderOptions:
    """How files are read and which are accepted. Defaults suit a screening programme."""

    exam_key: str = "study"
    accept_digitized_film: bool = False
    accept_lossy: bool = False
    pseudonymize_paths: bool = False
    # Bounds checked before any pixel is decoded (untrusted input).
    max_file_bytes: int = 512 * MiB
    max_pixel_bytes: int = 256 * MiB  # rows x columns x frames x samples x bytes per sample
    max_dimension: int = 16384

    def __post_init__(self):
        if self.exam_key not in EXAM_KEYS:
            raise ValueError(f"exam key must be one of {EXAM_KEYS}, not {self.exam_key!r}")


@dataclasses.dataclass(frozen=True)
class HeaderResult:
    """The record, and the rejection if the file is not to be scored."""

    record: ImageRecord
    rejection: Optional[Rejection] = None

    @property
    def accepted(self) -> bool:
        return self.rejection is None


def read_header(data: Union[bytes, BinaryIO], source_uri: str, pseudonymizer: Pseudonymizer,
                options: ReaderOptions = ReaderOptions(), file_size: Optional[int] = None) -> HeaderResult:
    """Parse and check one file's header. `data` is the file's bytes or a binary file object."""
    shown_uri = pseudonymizer.path(source_uri) if options.pseudonymize_paths else source_uri
    bare = ImageRecord(source_uri=shown_uri, file_size=file_size)
    if isinstance(data, (bytes, bytearray, memoryview)):
        file_size = len(data) if file_size is None else file_size
        bare = dataclasses.replace(bare, file_size=file_size)
        fp: BinaryIO = io.BytesIO(data)
    else:
        fp = data
    if file_size is not None and file_size > options.max_file_bytes:
        return _reject(bare, Reason.IMAGE_TOO_LARGE, Stage.READ,
                       f"file is {file_size} bytes, limit {options.max_file_bytes}")
    ds, problem = _parse(fp)
    if ds is None:
        return _reject(bare, problem[0], Stage.READ, problem[1])
    record = _record(ds, bare, pseudonymizer, options)
    reason = _acceptance(ds, record, options)
    if reason is None:
        try:
            pseudonymizer.check_allowed(record.synthetic)
        except DemoKeyRefused as e:
            reason = (Reason.DEMO_KEY_REFUSED, str(e))
    if reason is not None:
        return _reject(record, reason[0], Stage.ACCEPT, reason[1])
    return HeaderResult(record)


def _reject(record: ImageRecord, reason: Reason, stage: Stage, detail: str) -> HeaderResult:
    return HeaderResult(record, Rejection.of(record, reason, stage, detail))


def _parse(fp: BinaryIO) -> tuple[Optional[Dataset], Optional[tuple[Reason, str]]]:
    """Header only. A file with a DICM preamble that fails to parse is TRUNCATED or DECODE_FAILED."""
    start = fp.tell()
    preamble = fp.read(132)
    fp.seek(start)
    has_dicm = len(preamble) == 132 and preamble[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not has_dicm)
        # Touch every element so deferred parsing errors surface here, not later.
        for _ in ds.iterall():
            pass
    except (InvalidDicomError, EOFError) as e:
        if has_dicm:
            return None, (Reason.TRUNCATED, f"header ends early: {type(e).__name__}")
        return None, (Reason.NOT_DICOM, "no DICM preamble and not a DICOM dataset")
    except Exception as e:  # pydicom raises many types on garbage
        if has_dicm:
            truncated = isinstance(e, (EOFError, OSError)) or "end of file" in str(e).lower()
            return None, (Reason.TRUNCATED if truncated else Reason.DECODE_FAILED,
                          f"header unreadable: {type(e).__name__}")
        return None, (Reason.NOT_DICOM, f"not a DICOM dataset: {type(e).__name__}")
    if not has_dicm and ("SOPClassUID" not in ds or "SOPInstanceUID" not in ds):
        return None, (Reason.NOT_DICOM, "no DICM preamble and no SOP class/instance")
    # pydicom stops silently at the end of a cut file; a header that declares an image must be
    # followed by pixel data, so ending before it means the file is truncated.
    position = fp.tell()
    next_tag = fp.read(4)
    fp.seek(position)
    if next_tag not in _PIXEL_TAGS and len(next_tag) < 4 and ("Rows" in ds or _text(ds, "Modality") in (None, "MG")):
        return None, (Reason.TRUNCATED, "file ends before its pixel data")
    return ds, None


# (7FE0,0010) Pixel Data, (7FE0,0008) Float and (7FE0,0009) Double Float Pixel Data, LE and BE.
_PIXEL_TAGS = frozenset({b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10", b"\xe0\x7f\x08\x00",
                         b"\xe0\x7f\x09\x00"})


# --- Typed record -------------------------------------------------------------------------------

def _text(ds: Dataset, keyword: str) -> Optional[str]:
    """A string attribute, stripped; None when absent, empty or unreadable."""
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _multi(ds: Dataset, keyword: str) -> tuple[str, ...]:
    try:
        value = ds.get(keyword)
    except Exception:
        return ()
    if value is None or value == "":
        return ()
    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        return tuple(str(v).strip().upper() for v in value)
    return tuple(p.strip().upper() for p in str(value).split("\\"))


def _int(ds: Dataset, keyword: str) -> Optional[int]:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except Exception:
        return None


def _floats(ds: Dataset, keyword: str) -> tuple[float, ...]:
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return ()
        if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
            return tuple(float(v) for v in value)
        return (float(value),)
    except Exception:
        return ()


def _iso_date(value: Optional[str]) -> Optional[dt.date]:
    if not value or not re.fullmatch(r"\d{8}", value):
        return None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def age_at_exam(ds: Dataset) -> Optional[int]:
    """Whole years at StudyDate from PatientBirthDate, else PatientAge ('056Y'). Not the date itself."""
    study, born = _iso_date(_text(ds, "StudyDate")), _iso_date(_text(ds, "PatientBirthDate"))
    if study and born and born <= study:
        return study.year - born.year - ((study.month, study.day) < (born.month, born.day))
    match = re.fullmatch(r"(\d{3})Y", _text(ds, "PatientAge") or "")
    return int(match.group(1)) if match else None


def _is_synthetic(ds: Dataset) -> bool:
    try:
        block = ds.private_block(codes.SYNTHETIC_PRIVATE_GROUP, codes.SYNTHETIC_PRIVATE_CREATOR)
        value = block[codes.SYNTHETIC_MARKER_ELEMENT].value
        if isinstance(value, bytes):  # implicit VR: private values arrive as UN bytes
            value = value.decode("ascii", "replace")
        return str(value).strip(" \x00") == codes.SYNTHETIC_MARKER_VALUE
    except (KeyError, ValueError, Exception):
        return False


def _first_item(ds: Dataset, keyword: str) -> Optional[Dataset]:
    try:
        seq = ds.get(keyword)
        return seq[0] if seq else None
    except Exception:
        return None


def _code_value(item: Dataset) -> Optional[str]:
    return _text(item, "CodeValue") or _text(item, "LongCodeValue") or _text(item, "URNCodeValue")


def laterality_of(ds: Dataset) -> tuple[Optional[str], Optional[str]]:
    """(laterality as found, source). Values other than L/R (B, U) are returned as found."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(ds, keyword)
        if value:
            return value.upper(), keyword
    frame = _first_item(ds, "SharedFunctionalGroupsSequence")
    if frame is not None:
        anatomy = _first_item(frame, "FrameAnatomySequence")
        if anatomy is not None and _text(anatomy, "FrameLaterality"):
            return _text(anatomy, "FrameLaterality").upper(), "FrameAnatomySequence"
    region = _first_item(ds, "AnatomicRegionSequence")
    if region is not None:
        for modifier in region.get("AnatomicRegionModifierSequence", []) or []:
            meaning = (_text(modifier, "CodeMeaning") or "").lower()
            if meaning in ("left", "right"):
                return meaning[0].upper(), "AnatomicRegionModifierSequence"
    for keyword in ("SeriesDescription", "ProtocolName", "PerformedProcedureStepDescription"):
        parsed = _text_view(_text(ds, keyword))
        if parsed and parsed[0]:
            return parsed[0], keyword
    return None, None


_TEXT_VIEW = re.compile(
    r"(?<![A-Z])(?:(?P<lat>[LR])[\s_-]?)?(?P<view>XCCL|XCCM|MLO|CC|ML|LM|LMO|FB|SIO)"
    r"(?:[\s_-]?(?P<mod>ID|MAG|M|SPOT|S))?(?![A-Z])")


def _text_view(text: Optional[str]) -> Optional[tuple[Optional[str], str, tuple[str, ...]]]:
    """'L CC', 'RMLO', 'LCCID', 'R MLO MAG' -> (laterality, view, modifiers); lowest priority."""
    if not text:
        return None
    upper = text.upper()
    match = _TEXT_VIEW.search(upper)
    if not match:
        return None
    mods = []
    mod = match.group("mod")
    if mod == "ID" or "IMPLANT DISPLACED" in upper:
        mods.append("IMPLANT_DISPLACED")
    if mod in ("MAG", "M") or "MAGNIF" in upper:
        mods.append("MAGNIFICATION")
    if mod in ("SPOT", "S") or "SPOT" in upper:
        mods.append("SPOT_COMPRESSION")
    return match.group("lat"), match.group("view"), tuple(mods)


def _modifiers_in(item: Dataset) -> list[str]:
    found = []
    for modifier in item.get("ViewModifierCodeSequence", []) or []:
        code = _code_value(modifier)
        name = codes.VIEW_MODIFIER_CODES.get(code or "")
        if name is None:
            meaning = (_text(modifier, "CodeMeaning") or code or "UNKNOWN_MODIFIER")
            name = re.sub(r"\W+", "_", meaning.upper()).strip("_")
        found.append(name)
    return found


def view_of(ds: Dataset) -> tuple[Optional[str], Optional[str], tuple[str, ...]]:
    """(view, source, modifiers). Modifiers come from ViewModifierCodeSequence, nested in the view
    item (PS3.3 C.8.11.7) or, in older files, at the top level."""
    modifiers = _modifiers_in(ds)
    item = _first_item(ds, "ViewCodeSequence")
    if item is not None:
        modifiers += _modifiers_in(item)
        code = _code_value(item)
        view = codes.VIEW_CODES.get(code or "")
        if view is None and code:
            meaning = (_text(item, "CodeMeaning") or "").lower().replace("-", " ")
            view = {"cranio caudal": "CC", "medio lateral oblique": "MLO"}.get(meaning, f"CODE:{code}")
        if view:
            return view, "ViewCodeSequence", tuple(dict.fromkeys(modifiers))
    position = _text(ds, "ViewPosition")
    if position:
        view = codes.VIEW_POSITION_TERMS.get(position.upper(), position.upper())
        return view, "ViewPosition", tuple(dict.fromkeys(modifiers))
    for keyword in ("SeriesDescription", "ProtocolName", "PerformedProcedureStepDescription",
                    "AcquisitionDeviceProcessingDescription"):
        parsed = _text_view(_text(ds, keyword))
        if parsed:
            return parsed[1], keyword, tuple(dict.fromkeys(modifiers + list(parsed[2])))
    return None, None, tuple(dict.fromkeys(modifiers))


def _issuer(ds: Dataset, keyword: str) -> Optional[str]:
    item = _first_item(ds, keyword)
    if item is None:
        return None
    return _text(item, "LocalNamespaceEntityID") or _text(item, "UniversalEntityID")


def _record(ds: Dataset, bare: ImageRecord, pseudonymizer: Pseudonymizer, options: ReaderOptions
            ) -> ImageRecord:
    site = _text(ds, "InstitutionName")
    patient_id = _text(ds, "PatientID")
    patient_key = pseudonymizer.patient(patient_id, _text(ds, "IssuerOfPatientID")) if patient_id else None
    accession = _text(ds, "AccessionNumber")
    accession_key = (pseudonymizer.accession(accession, _issuer(ds, "IssuerOfAccessionNumberSequence") or site)
                     if accession else None)
    exam_key = exam_key_of(ds, options.exam_key)
    laterality, laterality_source = laterality_of(ds)
    view, view_source, modifiers = view_of(ds)
    syntax = None
    if getattr(ds, "file_meta", None) is not None:
        syntax = _text(ds.file_meta, "TransferSyntaxUID")
    lossy = _text(ds, "LossyImageCompression") == "01" or (syntax in codes.LOSSY_SYNTAXES)
    spacing = _floats(ds, "ImagerPixelSpacing") or _floats(ds, "PixelSpacing")
    implant = _text(ds, "BreastImplantPresent")
    study_date = _iso_date(_text(ds, "StudyDate"))
    return dataclasses.replace(
        bare,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        modality=(_text(ds, "Modality") or "").upper() or None,
        presentation_intent=(_text(ds, "PresentationIntentType") or "").upper() or None,
        image_type=_multi(ds, "ImageType"),
        exam_id=pseudonymizer.exam(exam_key) if exam_key else None,
        patient_key=patient_key, accession_key=accession_key, site=site,
        laterality=laterality, laterality_source=laterality_source,
        view=view, view_source=view_source, view_modifiers=modifiers,
        implant_present=None if implant is None else implant.upper() == "YES",
        manufacturer=_text(ds, "Manufacturer"), manufacturer_model=_text(ds, "ManufacturerModelName"),
        transfer_syntax_uid=syntax,
        rows=_int(ds, "Rows"), columns=_int(ds, "Columns"), frames=_int(ds, "NumberOfFrames") or 1,
        bits_allocated=_int(ds, "BitsAllocated"), bits_stored=_int(ds, "BitsStored"),
        pixel_representation=_int(ds, "PixelRepresentation"),
        samples_per_pixel=_int(ds, "SamplesPerPixel"),
        photometric=(_text(ds, "PhotometricInterpretation") or "").upper() or None,
        lossy=lossy,
        rescale_slope=(_floats(ds, "RescaleSlope") or (None,))[0],
        rescale_intercept=(_floats(ds, "RescaleIntercept") or (None,))[0],
        window_center=_floats(ds, "WindowCenter"), window_width=_floats(ds, "WindowWidth"),
        voi_lut_function=(_text(ds, "VOILUTFunction") or "").upper() or None,
        has_voi_lut_sequence="VOILUTSequence" in ds,
        pixel_spacing_mm=(spacing[0], spacing[1]) if len(spacing) >= 2 else None,
        patient_orientation=_multi(ds, "PatientOrientation"),
        fov_horizontal_flip=_text(ds, "FieldOfViewHorizontalFlip"),
        study_date=study_date.isoformat() if study_date else None,
        age_at_exam=age_at_exam(ds),
        synthetic=_is_synthetic(ds),
    )


def exam_key_of(ds: Dataset, mode: str) -> Optional[str]:
    """The raw exam key (pseudonymised by the caller): configurable because some archives give every
    image its own StudyInstanceUID (FACTS.md)."""
    if mode == "study":
        uid = _text(ds, "StudyInstanceUID")
        return f"study:{uid}" if uid else None
    if mode == "accession":
        accession = _text(ds, "AccessionNumber")
        if not accession:
            return None
        issuer = _issuer(ds, "IssuerOfAccessionNumberSequence") or _text(ds, "InstitutionName") or ""
        return f"accession:{issuer}|{accession}"
    patient, date = _text(ds, "PatientID"), _text(ds, "StudyDate")
    if not patient or not date:
        return None
    return f"patient-date:{_text(ds, 'IssuerOfPatientID') or ''}|{patient}|{date}"


# --- Acceptance ---------------------------------------------------------------------------------

def _bytes_per_sample(record: ImageRecord) -> int:
    return max(1, ((record.bits_allocated or 16) + 7) // 8)


def _acceptance(ds: Dataset, record: ImageRecord, options: ReaderOptions) -> Optional[tuple[Reason, str]]:
    rows, columns = record.rows or 0, record.columns or 0
    if rows > options.max_dimension or columns > options.max_dimension:
        return Reason.IMAGE_TOO_LARGE, f"{rows}x{columns} exceeds {options.max_dimension} per side"
    declared = rows * columns * max(1, record.frames) * max(1, record.samples_per_pixel or 1) \
        * _bytes_per_sample(record)
    if declared > options.max_pixel_bytes:
        return Reason.IMAGE_TOO_LARGE, f"declares {declared} pixel bytes, limit {options.max_pixel_bytes}"
    if not record.sop_instance_uid:
        return Reason.MISSING_IDENTIFIERS, "no SOPInstanceUID"
    sop_class = record.sop_class_uid or ""
    if sop_class in codes.TOMOSYNTHESIS_CLASSES:
        return Reason.TOMOSYNTHESIS, f"SOP class {sop_class}"
    if record.modality != "MG":
        return Reason.NOT_MAMMOGRAPHY, f"Modality {record.modality or 'missing'}"
    if record.frames > 1:
        return Reason.TOMOSYNTHESIS, f"{record.frames} frames"
    if sop_class in codes.SECONDARY_CAPTURE_CLASSES:
        if not options.accept_digitized_film:
            return Reason.DIGITIZED_FILM, "MG stored as Secondary Capture"
    elif sop_class == codes.DM_FOR_PROCESSING or record.presentation_intent == "FOR PROCESSING":
        return Reason.FOR_PROCESSING, "For Processing"
    elif sop_class != codes.DM_FOR_PRESENTATION:
        return Reason.NOT_MAMMOGRAPHY, f"SOP class {sop_class or 'missing'} is not Digital Mammography"
    synthesized = _synthesized_2d(ds, record)
    if synthesized:
        return Reason.SYNTHESIZED_2D, synthesized
    if record.laterality is None:
        return Reason.UNKNOWN_LATERALITY, "no laterality in any source"
    if record.laterality not in codes.LATERALITIES:
        return Reason.UNKNOWN_LATERALITY, f"laterality {record.laterality} is not a single breast"
    if record.view is None:
        return Reason.UNKNOWN_VIEW, "no view in any source"
    if record.view not in codes.STANDARD_VIEWS:
        return Reason.NON_STANDARD_VIEW, f"view {record.view}"
    if record.view_modifiers:
        return Reason.NON_STANDARD_VIEW, f"view modifiers {', '.join(record.view_modifiers)}"
    syntax = record.transfer_syntax_uid or ""
    if syntax not in codes.SUPPORTED_SYNTAXES:
        return Reason.UNSUPPORTED_TRANSFER_SYNTAX, f"transfer syntax {syntax or 'missing'}"
    if record.lossy and not options.accept_lossy:
        return Reason.LOSSY_COMPRESSION, f"lossy ({syntax})"
    if (record.samples_per_pixel or 1) != 1:
        return Reason.NOT_MAMMOGRAPHY, f"{record.samples_per_pixel} samples per pixel (colour image)"
    if not rows or not columns:
        return Reason.EMPTY_IMAGE, "no rows or columns"
    return None


def _synthesized_2d(ds: Dataset, record: ImageRecord) -> Optional[str]:
    marked = set(record.image_type) & codes.SYNTHESIZED_2D_IMAGE_TYPES
    if marked:
        return f"ImageType {sorted(marked)[0]}"
    for keyword in ("SeriesDescription", "DerivationDescription", "AcquisitionDeviceProcessingDescription"):
        text = (_text(ds, keyword) or "").upper()
        for marker in codes.SYNTHESIZED_2D_DESCRIPTIONS:
            if marker in text:
                return f"{keyword} says {marker}"
    return None
