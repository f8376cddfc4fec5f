"""One screening exam: plan it (patient, breasts, lesions, readers), render its views, write its files.

Randomness is split into independent streams keyed by (seed, stream, index), so exam 7 is the same
whether the run has 10 exams or 1000, and a view's pixels do not depend on which syntax it is
written in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from typing import Optional

import numpy as np

from mammobeam.schemas import codes
from mammobeam.synthetic import anatomy, dicom_files, lesions, programme
from mammobeam.synthetic.profiles import ImageGeometry, VendorProfile

# Random streams: the second entry of every generator's seed key.
STREAM_EXAM = 1
STREAM_VIEW = 2
STREAM_EDGE = 3

FIRST_SCREENING_DAY = dt.date(2022, 1, 3)
SCREENING_DAYS = 730  # studies spread over two years
AGE_RANGE = (50, 74)  # screening-programme ages (inclusive)


def exam_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAM_EXAM, index])


def view_rng(seed: int, index: int, view_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAM_VIEW, index, view_index])


def fake_study(rng: np.random.Generator, seed: int, study_key: str, accession: str, patient_id: str,
               patient_name: str, site: str) -> dicom_files.StudyContext:
    study_date = FIRST_SCREENING_DAY + dt.timedelta(days=int(rng.integers(0, SCREENING_DAYS)))
    age = int(rng.integers(AGE_RANGE[0], AGE_RANGE[1] + 1))
    birth = study_date - dt.timedelta(days=int(age * 365.25 + rng.integers(30, 330)))
    time = f"{int(rng.integers(8, 18)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    return dicom_files.StudyContext(
        seed=seed, study_key=study_key, accession_number=accession, patient_id=patient_id,
        patient_name=patient_name, birth_date=birth, study_date=study_date, study_time=time, site=site)


@dataclasses.dataclass(frozen=True)
class ExamPlan:
    index: int
    study: dicom_files.StudyContext
    profile: VendorProfile
    geometry: ImageGeometry
    breasts: dict[str, anatomy.BreastAnatomy]  # by laterality
    lesions: dict[str, Optional[lesions.Lesion]]  # by laterality; None for a normal breast
    outcomes: list[programme.BreastOutcome]


def accession_for(seed: int, index: int) -> str:
    return f"{seed % 10000:04d}{index + 1:06d}"


def plan_exam(seed: int, index: int, profile: VendorProfile, size: str, cancer_fraction: float) -> ExamPlan:
    rng = exam_rng(seed, index)
    number = index + 1
    study = fake_study(rng, seed, f"exam-{index}", accession_for(seed, index), f"SYN{number:04d}",
                       f"SYNTH^PATIENT{number:04d}", profile.site)
    geometry = profile.geometry(size)
    density = float(rng.beta(2.0, 2.5))  # per woman: both breasts alike
    breasts = {lat: anatomy.sample_anatomy(rng, geometry, density) for lat in codes.LATERALITIES}
    breast_lesions: dict[str, Optional[lesions.Lesion]] = {}
    for lat in codes.LATERALITIES:
        if programme.breast_has_cancer(seed, index, lat, cancer_fraction):
            breast_lesions[lat] = lesions.sample_lesion(rng, programme.sample_lesion_kind(rng))
        else:
            breast_lesions[lat] = None
    outcomes = programme.read_exam(rng, study.accession_number, study.site, study.study_date, breast_lesions)
    return ExamPlan(index=index, study=study, profile=profile, geometry=geometry, breasts=breasts,
                    lesions=breast_lesions, outcomes=outcomes)


def render_view(rng: np.random.Generator, breast: anatomy.BreastAnatomy, view: str, laterality: str,
                geometry: ImageGeometry, profile: VendorProfile,
                lesion: Optional[lesions.Lesion]) -> tuple[np.ndarray, np.ndarray]:
    """Stored-orientation (MONOCHROME2-sense uint16 values, breast mask) of one view."""
    outline = breast.outline(view)
    image, mask = anatomy.render_breast(rng, outline, breast.density, geometry)
    if lesion is not None:
        lesions.draw_lesion(image, lesion, outline, geometry.pixel_spacing_mm)
    stored = anatomy.to_stored_values(rng, image, profile.bits_stored, profile.signal_range)
    return (dicom_files.orient(stored, laterality, profile.mirrored),
            dicom_files.orient(mask, laterality, profile.mirrored))


def exam_view_spec(plan: ExamPlan, exam_view: str) -> dicom_files.ImageSpec:
    laterality, view = exam_view.split("-")
    position = codes.STANDARD_EXAM_VIEWS.index(exam_view)
    return dicom_files.ImageSpec(
        laterality=laterality, view=view, instance_key=exam_view, instance_number=position + 1,
        series_number=position + 1, pixel_spacing_mm=plan.geometry.pixel_spacing_mm)


def view_file_name(exam_view: str) -> str:
    return exam_view.replace("-", "_") + ".dcm"


def render_exam_view(seed: int, plan: ExamPlan, exam_view: str) -> tuple[np.ndarray, np.ndarray]:
    laterality, view = exam_view.split("-")
    rng = view_rng(seed, plan.index, codes.STANDARD_EXAM_VIEWS.index(exam_view))
    return render_view(rng, plan.breasts[laterality], view, laterality, plan.geometry, plan.profile,
                       plan.lesions[laterality])


def build_exam_view(seed: int, plan: ExamPlan, exam_view: str):
    """(header + stored pixels as the profile stores them, MONOCHROME2-sense pixels) of one view."""
    stored_m2, mask = render_exam_view(seed, plan, exam_view)
    rng = view_rng(seed, plan.index, 100 + codes.STANDARD_EXAM_VIEWS.index(exam_view))
    ds = dicom_files.mammography_dataset(plan.study, plan.profile, exam_view_spec(plan, exam_view),
                                         stored_m2, mask, rng)
    stored = dicom_files.stored_for_profile(stored_m2, plan.profile.bits_stored, plan.profile.photometric)
    return ds, stored


def exam_dir(output_dir: str, plan: ExamPlan) -> str:
    return os.path.join(output_dir, plan.study.accession_number)
