"""Acceptance on mammograms: every edge case of a real feed gets its code; `mammobeam inspect`
answers "why was this file not scored?"; laterality and view come from the right sources."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mammobeam.pipelines.cli import main
from mammobeam.schemas import codes
from mammobeam.schemas.reasons import Reason
from mammobeam.transforms.dicom import ReaderOptions, laterality_of, read_header, view_of
from mammobeam.transforms.pseudonyms import DEMO_KEY, Pseudonymizer

DEMO = Pseudonymizer(DEMO_KEY, is_demo_key=True)
KEY = Pseudonymizer(b"a-test-key-of-sufficient-length")


def inspect(capsys, *args) -> list[dict]:
    code = main(["inspect", *args])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, lines


def test_inspect_gives_every_edge_case_its_reason(synth_set, capsys):
    paths = sorted(p for p in synth_set.files if p.endswith(".dcm"))
    code, lines = inspect(capsys, *paths, "--image-size", "128x104")
    assert code == 0 and len(lines) == len(paths)
    by_path = {line["path"]: line for line in lines}
    for path, reason in synth_set.expected_rejections.items():
        assert by_path[path]["accepted"] is False and by_path[path]["reason"] == reason, by_path[path]
    accepted = [line for line in lines if line["accepted"]]
    assert accepted and all(line["reason"] is None for line in accepted)
    assert all(line["laterality"] in ("L", "R") and line["view"] in ("CC", "MLO") for line in accepted)
    # A rejected file still says what laterality and view could be read.
    magnification = by_path[synth_set.edge_case_files["magnification"]]
    assert magnification["reason"] == "NON_STANDARD_VIEW" and magnification["view"] == "CC"
    assert "MAGNIFICATION" in magnification["detail"]


def test_laterality_only_in_laterality_and_view_only_in_view_code_sequence(synth_set, capsys):
    name = next(n for n in synth_set.edge_case_files if "laterality_only" in n or "laterality_attr" in n)
    _, (line,) = inspect(capsys, synth_set.edge_case_files[name], "--image-size", "128x104")
    assert line["accepted"] is True
    assert line["laterality_source"] == "Laterality" and line["view_source"] == "ViewCodeSequence"


def test_preview_shows_the_breast_with_the_chest_wall_on_the_left(synth_set, tmp_path, capsys):
    right_cc = next(views["R-CC"] for views in synth_set.exam_files.values() if "R-CC" in views)
    out = tmp_path / "preview.png"
    _, (line,) = inspect(capsys, right_cc, "--preview", str(out), "--image-size", "256x208")
    assert line["flip_applied"] is True and line["preview"] == str(out)
    image = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (256, 208)
    assert image[:, :52].mean() > image[:, -52:].mean() + 10  # tissue hugs the left edge


def test_options_accept_digitized_film_and_lossy(synth_set, capsys):
    film, lossy = synth_set.edge_case_files["digitized_film"], synth_set.edge_case_files["lossy_jpeg"]
    _, lines = inspect(capsys, film, lossy, "--image-size", "128x104")
    assert [l["reason"] for l in lines] == ["DIGITIZED_FILM", "LOSSY_COMPRESSION"]
    _, lines = inspect(capsys, film, lossy, "--accept-digitized-film", "--accept-lossy", "--image-size", "128x104")
    assert [l["accepted"] for l in lines] == [True, True], lines


def _unmarked_copy(path: str, tmp_path: Path) -> Path:
    ds = pydicom.dcmread(path)
    del ds[(codes.SYNTHETIC_PRIVATE_GROUP, 0x0010)]
    for element in list(ds.group_dataset(codes.SYNTHETIC_PRIVATE_GROUP)):
        del ds[element.tag]
    out = tmp_path / "real.dcm"
    ds.save_as(out)
    return out


def test_demo_key_is_refused_on_real_data_and_a_configured_key_works(synth_set, tmp_path, monkeypatch, capsys):
    original = next(iter(next(iter(synth_set.exam_files.values())).values()))
    real = _unmarked_copy(original, tmp_path)
    _, (line,) = inspect(capsys, str(real), "--image-size", "128x104")
    assert line["reason"] == "DEMO_KEY_REFUSED"
    monkeypatch.setenv("MAMMOBEAM_PSEUDONYM_KEY", "a-real-programme-key-0123456789")
    _, (line,) = inspect(capsys, str(real), "--image-size", "128x104")
    assert line["accepted"] is True


def test_pseudonyms_replace_every_identifier_in_the_record(synth_set):
    path = next(iter(next(iter(synth_set.exam_files.values())).values()))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    record = read_header(Path(path).read_bytes(), path, DEMO).record
    assert record.exam_id == DEMO.exam(f"study:{ds.StudyInstanceUID}")
    assert record.patient_key == DEMO.patient(ds.PatientID, ds.get("IssuerOfPatientID"))
    assert record.accession_key == DEMO.accession(ds.AccessionNumber, ds.InstitutionName)
    # Paths are kept as given (see --pseudonymize-paths) and UIDs are long digit strings: skip both.
    text = repr({k: v for k, v in vars(record).items() if k != "source_uri" and not k.endswith("_uid")})
    for phi in (ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.AccessionNumber):
        assert phi not in text
    assert 40 <= record.age_at_exam <= 90 and record.synthetic


def test_exam_key_modes_group_the_same_exam(synth_set):
    views = next(iter(synth_set.exam_files.values()))
    for mode in ("study", "accession", "patient-date"):
        ids = {read_header(Path(p).read_bytes(), p, DEMO, ReaderOptions(exam_key=mode)).record.exam_id
               for p in views.values()}
        assert len(ids) == 1 and None not in ids, mode
    one = next(iter(views.values()))
    modes = {read_header(Path(one).read_bytes(), one, DEMO, ReaderOptions(exam_key=m)).record.exam_id
             for m in ("study", "accession", "patient-date")}
    assert len(modes) == 3


def _dataset(**attributes) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _code(value: str, scheme: str = "SCT", meaning: str = "") -> Dataset:
    return _dataset(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def test_view_codes_snomed_legacy_srt_position_and_text_in_priority_order():
    assert view_of(_dataset(ViewCodeSequence=Sequence([_code("399368009")]), ViewPosition="CC"))[:2] == \
        ("MLO", "ViewCodeSequence")
    assert view_of(_dataset(ViewCodeSequence=Sequence([_code("R-10242", "SRT")])))[0] == "CC"
    assert view_of(_dataset(ViewPosition="MLO"))[:2] == ("MLO", "ViewPosition")
    assert view_of(_dataset(SeriesDescription="R MLO"))[:2] == ("MLO", "SeriesDescription")
    assert view_of(_dataset(SeriesDescription="LCCID"))[2] == ("IMPLANT_DISPLACED",)
    assert view_of(_dataset())[0] is None


def test_modifiers_nested_in_the_view_item_make_the_view_non_standard():
    item = _code("399162004")
    item.ViewModifierCodeSequence = Sequence([_code("R-102D7", "SRT", "Spot Compression")])
    assert view_of(_dataset(ViewCodeSequence=Sequence([item])))[2] == ("SPOT_COMPRESSION",)
    top = _dataset(ViewCodeSequence=Sequence([_code("399162004")]),
                   ViewModifierCodeSequence=Sequence([_code("399163009")]))
    assert view_of(top)[2] == ("MAGNIFICATION",)


def test_laterality_sources_and_b_or_u_are_not_a_single_breast(synth_set, tmp_path):
    assert laterality_of(_dataset(ImageLaterality="L", Laterality="R")) == ("L", "ImageLaterality")
    assert laterality_of(_dataset(Laterality="R")) == ("R", "Laterality")
    assert laterality_of(_dataset(SeriesDescription="L CC")) == ("L", "SeriesDescription")
    path = next(iter(next(iter(synth_set.exam_files.values())).values()))
    ds = pydicom.dcmread(path)
    ds.ImageLaterality = "B"
    out = tmp_path / "b.dcm"
    ds.save_as(out)
    rejection = read_header(out.read_bytes(), str(out), DEMO).rejection
    assert rejection.reason == Reason.UNKNOWN_LATERALITY and "B" in rejection.detail


def test_declared_dimensions_are_bounded_before_decoding(synth_set, tmp_path):
    path = next(iter(next(iter(synth_set.exam_files.values())).values()))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 60000, 60000
    out = tmp_path / "huge.dcm"
    ds.save_as(out)
    assert read_header(out.read_bytes(), str(out), DEMO).rejection.reason == Reason.IMAGE_TOO_LARGE


def test_a_malformed_birth_date_is_not_quoted_in_warnings(synth_set, tmp_path, recwarn):
    path = next(iter(next(iter(synth_set.exam_files.values())).values()))
    ds = pydicom.dcmread(path)
    ds.PatientBirthDate = "1961-07-04 SECRET"  # not a DA value: pydicom's validation would quote it
    out = tmp_path / "bad-date.dcm"
    ds.save_as(out)
    record = read_header(out.read_bytes(), str(out), DEMO).record
    assert record.patient_key and "SECRET" not in repr(record)
    assert not [w for w in recwarn.list if "SECRET" in str(w.message)]
