"""mammobeam synth: synthetic screening exams (issue 3).

One small archive with edge cases is generated per module; pixel checks decode with pydicom and the
pylibjpeg plugins (real decoders, independent of the imagecodecs encoders that wrote the files).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import os

import numpy as np
import pydicom
import pytest

from mammobeam.schemas import codes
from mammobeam.schemas.reasons import Reason
from mammobeam.synthetic import generate
from mammobeam.synthetic import cli, dicom_files, exams, lesions, profiles
from mammobeam.synthetic.edge_cases import EDGE_CASES

SEED = 11
N_EXAMS = 8  # two per profile, and more than 7 files so every syntax of the rotation appears


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return generate(str(out), exams=N_EXAMS, seed=SEED, size="small", edge_cases=True)


def _headers(archive):
    return {path: pydicom.dcmread(path, stop_before_pixels=True)
            for paths in archive.exam_files.values() for path in paths.values()}


def _digests(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_same_seed_writes_identical_bytes(tmp_path):
    generate(str(tmp_path / "a"), exams=3, seed=5, edge_cases=True)
    generate(str(tmp_path / "b"), exams=3, seed=5, edge_cases=True)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(a) > 20
    # manifest.json names its own folder; everything else must match byte for byte.
    a.pop("manifest.json"), b.pop("manifest.json")
    assert a == b


def test_different_seed_writes_different_images(tmp_path):
    generate(str(tmp_path / "a"), exams=2, seed=5)
    generate(str(tmp_path / "b"), exams=2, seed=6)
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    a_images = {h for name, h in a.items() if name.endswith(".dcm")}
    b_images = {h for name, h in b.items() if name.endswith(".dcm")}
    assert len(a_images) == 8 and not a_images & b_images


def test_every_syntax_round_trips_to_the_generated_pixels(archive):
    seen = set()
    chosen = profiles.select_profiles(None)
    for index, accession in enumerate(archive.exam_files):
        plan = exams.plan_exam(SEED, index, profiles.profile_for_exam(index, chosen), "small", 0.3)
        assert plan.study.accession_number == accession
        for exam_view, path in archive.exam_files[accession].items():
            _, expected = exams.build_exam_view(SEED, plan, exam_view)
            ds = pydicom.dcmread(path)
            syntax = ds.file_meta.TransferSyntaxUID
            seen.add(syntax)
            assert syntax == archive.transfer_syntaxes[path]
            decoded = ds.pixel_array
            assert decoded.shape == expected.shape
            assert np.array_equal(decoded, expected), f"{exam_view} in {syntax} does not round-trip"
    assert seen == set(dicom_files.available_syntaxes())
    assert codes.HTJ2K_LOSSLESS in seen  # imagecodecs here has OpenJPH


def test_implicit_vr_files_are_written_implicit(archive):
    implicit = [p for p, ts in archive.transfer_syntaxes.items() if ts == codes.IMPLICIT_VR_LE]
    assert implicit
    for path in implicit:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.original_encoding == (True, True)
        with open(path, "rb") as f:
            data = f.read()
        # First dataset element after the file meta: (0008,0005) with a 4-byte length, no "CS" VR.
        start = 132 + 12 + int.from_bytes(data[140:144], "little")
        assert data[start:start + 4] == b"\x08\x00\x05\x00"
        assert data[start + 4:start + 6] != b"CS"


def test_compressed_files_are_smaller_like_real_lossless_data(archive):
    for path, syntax in archive.transfer_syntaxes.items():
        if syntax in (codes.JPEG2000_LOSSLESS, codes.JPEG_LS_LOSSLESS) and path in archive.accepted_files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ratio = ds.Rows * ds.Columns * 2 / os.path.getsize(path)
            assert 2.3 < ratio < 6.0, (path, ratio)


def test_views_carry_screening_attributes(archive):
    for path, ds in _headers(archive).items():
        exam_view = [v for v, p in archive.exam_files[ds.AccessionNumber].items() if p == path][0]
        laterality, view = exam_view.split("-")
        profile = profiles.PROFILES_BY_NAME[archive.exam_profiles[ds.AccessionNumber]]
        assert ds.SOPClassUID == codes.DM_FOR_PRESENTATION
        assert ds.Modality == "MG" and ds.PresentationIntentType == "FOR PRESENTATION"
        assert codes.VIEW_CODES[ds.ViewCodeSequence[0].CodeValue] == view
        assert len(ds.ViewCodeSequence[0].ViewModifierCodeSequence) == 0
        if path != archive.edge_case_files["laterality_only_in_0020_0060"]:
            assert ds.ImageLaterality == laterality and ds.ViewPosition == view
        assert list(ds.PatientOrientation) == list(dicom_files.patient_orientation(laterality, view,
                                                                                   profile.mirrored))
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID):
            assert uid.startswith(codes.SYNTHETIC_UID_ROOT + ".") and len(uid) <= 64
        assert ds.InstitutionName == profile.site and ds.Manufacturer == profile.manufacturer
        assert ds.ManufacturerModelName and ds.StudyDate and ds.AccessionNumber
        assert ds.BitsStored == profile.bits_stored and ds.PhotometricInterpretation == profile.photometric
        assert ds.VOILUTFunction == profile.voi_lut_function and "WindowCenter" in ds and "WindowWidth" in ds
        assert float(ds.ImagerPixelSpacing[0]) > 0 and ds.BreastImplantPresent == "NO"
        assert ds.PatientName.family_name == "SYNTH" and ds.PatientID.startswith("SYN")
        assert 50 <= int(ds.PatientAge[:3]) <= 74 and ds.PatientBirthDate and ds.IssuerOfPatientID


def test_orientation_examples_from_the_convention():
    assert dicom_files.patient_orientation("L", "CC", False) == ("A", "R")
    assert dicom_files.patient_orientation("L", "MLO", False) == ("A", "F")
    assert dicom_files.patient_orientation("R", "CC", False) == ("P", "L")
    assert dicom_files.patient_orientation("R", "MLO", False) == ("P", "F")
    assert dicom_files.patient_orientation("L", "CC", True) == ("P", "R")
    assert dicom_files.patient_orientation("R", "CC", True) == ("A", "L")


def test_breast_hugs_the_chest_wall_side_the_orientation_names(archive):
    for path in archive.accepted_files:
        if "edge_cases" in path:
            continue
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float64)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            pixels = (1 << ds.BitsStored) - 1 - pixels
        band = pixels.shape[1] // 10
        left, right = pixels[:, :band].mean(), pixels[:, -band:].mean()
        # "A" first: rows run towards the nipple, so the chest wall (tissue) is on the left.
        chest_wall_left = ds.PatientOrientation[0] == "A"
        assert (left > 2 * right) if chest_wall_left else (right > 2 * left), path


def test_window_covers_the_breast_and_is_mirrored_for_monochrome1(archive):
    seen_m1 = False
    for path in archive.accepted_files:
        if "edge_cases" in path:
            continue
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float64)
        centre = float(ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter)
        width = float(ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth)
        air = pixels[:, -3:].mean() if ds.PatientOrientation[0] == "A" else pixels[:, :3].mean()
        if ds.PhotometricInterpretation == "MONOCHROME1":
            seen_m1 = True
            assert air > centre + width / 2  # air is high in MONOCHROME1, above the window
        else:
            assert air < centre - width / 2
    assert seen_m1


def test_outcomes_match_the_files(archive):
    with open(archive.outcomes_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["accession_number", "site", "study_date", "laterality", "cancer", "lesion_type",
                             "reader1_recall", "reader2_recall", "consensus_recall", "diagnosis_date",
                             "interval_cancer"]
    assert len(rows) == 2 * N_EXAMS
    headers = {ds.AccessionNumber: ds for ds in _headers(archive).values()}
    by_exam = {}
    for row in rows:
        by_exam.setdefault(row["accession_number"], []).append(row)
    assert set(by_exam) == set(archive.exam_files) == set(headers)
    cancers = 0
    for accession, pair in by_exam.items():
        assert sorted(r["laterality"] for r in pair) == ["L", "R"]
        ds = headers[accession]
        study_date = dt.date.fromisoformat(pair[0]["study_date"])
        assert study_date.strftime("%Y%m%d") == ds.StudyDate
        for row in pair:
            assert row["site"] == ds.InstitutionName
            assert row["consensus_recall"] == pair[0]["consensus_recall"]
            assert row["reader1_recall"] == pair[0]["reader1_recall"]
            if row["cancer"] == "1":
                cancers += 1
                assert row["lesion_type"] in lesions.LESION_KINDS
                days = (dt.date.fromisoformat(row["diagnosis_date"]) - study_date).days
                assert 0 < days <= 730
                if row["interval_cancer"] == "1":
                    assert days >= 60
            else:
                assert row["lesion_type"] == "" and row["diagnosis_date"] == "" and row["interval_cancer"] == "0"
    assert round(0.3 * 2 * N_EXAMS) - 1 <= cancers <= round(0.3 * 2 * N_EXAMS) + 1


def test_interval_cancers_occur_within_two_years(tmp_path):
    summary = generate(str(tmp_path), exams=60, seed=2, size="small", cancer_fraction=0.3,
                       profiles=["beta"], transfer_syntaxes=[codes.EXPLICIT_VR_LE])
    with open(summary.outcomes_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    interval = [r for r in rows if r["interval_cancer"] == "1"]
    detected = [r for r in rows if r["cancer"] == "1" and r["interval_cancer"] == "0"]
    assert interval and detected
    assert all(r["consensus_recall"] == "1" for r in detected)
    assert {r["lesion_type"] for r in rows if r["cancer"] == "1"} == set(lesions.LESION_KINDS)


def test_cancer_lesions_appear_in_both_views_at_the_same_depth():
    chosen = profiles.select_profiles(None)
    checked = 0
    for index in range(12):
        plan = exams.plan_exam(SEED, index, profiles.profile_for_exam(index, chosen), "small", 0.3)
        for laterality, lesion in plan.lesions.items():
            if lesion is None or lesion.kind == "occult":
                continue
            spacing = plan.geometry.pixel_spacing_mm
            for view in ("CC", "MLO"):
                outline = plan.breasts[laterality].outline(view)
                layer = np.zeros((plan.geometry.rows, plan.geometry.columns), np.float32)
                lesions.draw_lesion(layer, lesion, outline, spacing)
                assert layer.max() >= 0.5 * lesion.contrast
                x_mm, _ = lesions.lesion_centre_mm(lesion, outline)
                assert x_mm == pytest.approx(lesion.depth_fraction * outline.nipple_depth_mm)
                _, mask = anatomy_mask(plan, laterality, view)
                ys, xs = np.nonzero(layer > 0.3 * lesion.contrast)
                assert mask[ys, xs].mean() > 0.9  # drawn inside the breast
            checked += 1
    assert checked >= 3


def anatomy_mask(plan, laterality, view):
    from mammobeam.synthetic import anatomy
    outline = plan.breasts[laterality].outline(view)
    return anatomy.render_breast(np.random.default_rng(0), outline, 0.5, plan.geometry)


def test_every_dicom_file_carries_the_synthetic_marker_and_fake_phi(archive):
    for path in archive.files:
        if path == archive.edge_case_files["not_dicom"]:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert dicom_files.has_synthetic_marker(ds), path
        assert str(ds.PatientName).startswith("SYNTH^") and ds.PatientID.startswith("SYN"), path
        assert ds.PatientBirthDate, path


def test_expected_rejections_cover_every_edge_case(archive):
    rejections = archive.expected_rejections
    valid = {r.value for r in Reason}
    assert set(rejections.values()) <= valid
    for name, case in EDGE_CASES.items():
        path = archive.edge_case_files[name]
        if case.expected is None:
            assert path not in rejections
        else:
            assert rejections[path] == case.expected.value
            assert path in archive.files
    assert sum(1 for r in rejections.values() if r == Reason.NON_STANDARD_VIEW.value) == 3
    # The duplicate holds the original's SOP instance and sorts after it; the original is accepted.
    copy = archive.edge_case_files["duplicate_sop_instance"]
    original = copy.replace("_copy.dcm", ".dcm")
    assert original in archive.accepted_files and sorted([copy, original])[0] == original
    assert (pydicom.dcmread(copy, stop_before_pixels=True).SOPInstanceUID
            == pydicom.dcmread(original, stop_before_pixels=True).SOPInstanceUID)
    assert np.array_equal(pydicom.dcmread(copy).pixel_array, pydicom.dcmread(original).pixel_array)
    # The exam missing a view keeps 3 accepted files.
    [incomplete] = archive.incomplete_exams
    assert set(archive.exam_files[incomplete]) == {"L-CC", "L-MLO", "R-CC"}
    assert all(p in archive.accepted_files for p in archive.exam_files[incomplete].values())


def test_edge_case_files_are_what_they_claim(archive):
    e = archive.edge_case_files
    read = lambda name: pydicom.dcmread(e[name], stop_before_pixels=True)  # noqa: E731
    assert read("ct").Modality == "CT" and read("ct").SOPClassUID == codes.CT_IMAGE
    fp = read("for_processing")
    assert fp.SOPClassUID == codes.DM_FOR_PROCESSING and fp.PresentationIntentType == "FOR PROCESSING"
    tomo = pydicom.dcmread(e["tomosynthesis"])
    assert tomo.SOPClassUID == codes.BREAST_TOMOSYNTHESIS and tomo.pixel_array.shape[0] == int(tomo.NumberOfFrames) > 1
    s2d = read("synthesized_2d")
    assert s2d.SOPClassUID == codes.DM_FOR_PRESENTATION and "GENERATED_2D" in s2d.ImageType
    assert s2d.SeriesDescription == "C-View"
    for name, modifier in (("magnification", "MAGNIFICATION"), ("spot_compression", "SPOT_COMPRESSION"),
                           ("implant_displaced", "IMPLANT_DISPLACED")):
        item = read(name).ViewCodeSequence[0]
        assert [codes.VIEW_MODIFIER_CODES[m.CodeValue] for m in item.ViewModifierCodeSequence] == [modifier]
    assert read("implant_displaced").BreastImplantPresent == "YES"
    film = read("digitized_film")
    assert film.Modality == "MG" and film.SOPClassUID in codes.SECONDARY_CAPTURE_CLASSES
    lossy = pydicom.dcmread(e["lossy_jpeg"])
    assert lossy.file_meta.TransferSyntaxUID == codes.JPEG_BASELINE and lossy.BitsStored == 8
    assert lossy.LossyImageCompression == "01" and lossy.pixel_array.dtype == np.uint8
    nolat = read("no_laterality")
    assert not {"ImageLaterality", "Laterality", "PatientOrientation"} & set(nolat.dir())
    latonly = read("laterality_only_in_0020_0060")
    assert latonly.Laterality in ("L", "R") and "ImageLaterality" not in latonly
    assert "ViewPosition" not in latonly and codes.VIEW_CODES[latonly.ViewCodeSequence[0].CodeValue] == "CC"
    with pytest.raises(Exception):
        pydicom.dcmread(e["truncated"]).pixel_array
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(e["not_dicom"])


def test_full_size_matrices_follow_the_profiles():
    assert profiles.PROFILES_BY_NAME["alpha"].geometry("full").rows == 4096
    assert profiles.PROFILES_BY_NAME["alpha"].geometry("small") == profiles.ImageGeometry(512, 416, 0.56)
    beta = profiles.PROFILES_BY_NAME["beta"]
    assert (beta.geometry("full").rows, beta.geometry("full").columns, beta.bits_stored) == (2294, 1914, 14)
    assert {p.photometric for p in profiles.PROFILES} == {"MONOCHROME1", "MONOCHROME2"}
    assert any(p.mirrored for p in profiles.PROFILES)


def test_cli_writes_an_archive(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--exams", "1", "--output", str(tmp_path), "--seed", "3", "--size", "small"])
    assert cli.run(args) == 0
    assert sorted(os.listdir(tmp_path / "0003000001")) == ["L_CC.dcm", "L_MLO.dcm", "R_CC.dcm", "R_MLO.dcm"]
    assert (tmp_path / "outcomes.csv").exists() and "wrote 4 files" in capsys.readouterr().out
