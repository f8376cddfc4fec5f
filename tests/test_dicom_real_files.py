"""The header reader on real files from other projects: never raises, codes every rejection."""

from __future__ import annotations

from mammobeam.schemas.reasons import Reason
from mammobeam.transforms.dicom import ReaderOptions, read_header
from mammobeam.transforms.pseudonyms import Pseudonymizer
from realfiles import pydicom_data_files, pydicom_test_files, real_file

KEY = Pseudonymizer(b"a-test-key-of-sufficient-length")


def test_every_real_file_gets_a_record_or_a_coded_rejection_and_none_is_accepted():
    files = pydicom_test_files() + pydicom_data_files()
    assert len(files) > 100
    reasons = {}
    for path in files:
        result = read_header(path.read_bytes(), str(path), KEY)
        # None of these is a For Presentation digital mammogram: all must be rejected, with a code.
        assert result.rejection is not None, path
        assert isinstance(result.rejection.reason, Reason)
        reasons[result.rejection.reason] = reasons.get(result.rejection.reason, 0) + 1
    assert reasons[Reason.NOT_MAMMOGRAPHY] > 50
    assert Reason.NOT_DICOM in reasons


def test_ct_image_is_not_mammography_and_keeps_its_identifiers():
    result = read_header(real_file("CT_small.dcm").read_bytes(), "ct.dcm", KEY)
    assert result.rejection.reason == Reason.NOT_MAMMOGRAPHY
    assert result.rejection.sop_instance_uid == result.record.sop_instance_uid
    assert result.record.sop_instance_uid


def test_text_file_is_not_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("not an image\n" * 50)
    assert read_header(path.read_bytes(), str(path), KEY).rejection.reason == Reason.NOT_DICOM


def test_real_file_cut_inside_its_header_is_truncated():
    data = real_file("CT_small.dcm").read_bytes()
    result = read_header(data[:400], "cut.dcm", KEY)
    assert result.rejection.reason in (Reason.TRUNCATED, Reason.DECODE_FAILED)


def test_file_size_bound_is_checked_before_parsing():
    data = real_file("CT_small.dcm").read_bytes()
    options = ReaderOptions(max_file_bytes=1000)
    assert read_header(data, "big.dcm", KEY, options).rejection.reason == Reason.IMAGE_TOO_LARGE


def test_age_is_computed_and_birth_date_and_names_never_appear_in_the_record():
    path = real_file("CT_small.dcm")
    import pydicom
    ds = pydicom.dcmread(path)
    result = read_header(path.read_bytes(), str(path), KEY)
    text = repr(result.record) + repr(result.rejection)
    for phi in (str(ds.PatientName), str(ds.PatientID)):
        if phi:
            assert phi not in text
    if ds.get("PatientBirthDate"):
        assert ds.PatientBirthDate not in text
