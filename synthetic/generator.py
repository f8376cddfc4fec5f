"""generate(): a synthetic screening archive on disk, and a summary of what is in it.

Layout of DIR:
  DIR/<accession>/L_CC.dcm, L_MLO.dcm, R_CC.dcm, R_MLO.dcm   one folder per exam
  DIR/edge_cases/<name>.dcm                                  standalone edge cases (--edge-cases)
  DIR/outcomes.csv                                           ground truth per exam and breast
  DIR/manifest.json                                          the GenerationSummary as JSON
Only the .dcm files are the feed; point readers at DIR/**/*.dcm.

The transfer syntax of file k (exams in order, views in STANDARD_EXAM_VIEWS order) is entry k mod 7
of dicom_files.LOSSLESS_ROTATION, so every view position meets every syntax over seven exams.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, Optional, Sequence, Union

from pydicom.filereader import read_file_meta_info

from mammobeam.schemas import codes
from mammobeam.synthetic import dicom_files, programme
from mammobeam.synthetic import exams as exam_plans  # `exams` is generate()'s count
from mammobeam.synthetic import edge_cases as catalogue  # `edge_cases` is generate()'s flag
from mammobeam.synthetic.profiles import SIZES, VendorProfile, profile_for_exam, select_profiles


@dataclasses.dataclass
class GenerationSummary:
    """What generate() wrote. Paths are strings as written (output_dir joined with the file name)."""

    output_dir: str
    seed: int
    size: str
    exams: int  # exams in outcomes.csv (the edge-case studies are not exams)
    files: list[str]  # every image file of the feed, edge cases included, in writing order
    outcomes_csv: str
    manifest: str
    exam_files: dict[str, dict[str, str]]  # accession -> exam view ("L-CC") -> path
    exam_profiles: dict[str, str]  # accession -> vendor profile name
    transfer_syntaxes: dict[str, str]  # path -> transfer syntax UID (DICOM files only)
    edge_case_files: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> path
    edge_case_descriptions: dict[str, str] = dataclasses.field(default_factory=dict)
    expected_rejections: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> Reason
    incomplete_exams: list[str] = dataclasses.field(default_factory=list)  # accessions
    missing_views: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # accession -> views

    @property
    def accepted_files(self) -> list[str]:
        """Files the acceptance checker must accept: everything not in expected_rejections."""
        return [f for f in self.files if f not in self.expected_rejections]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)


def generate(output_dir: str, exams: int, seed: int, size: str = "small", edge_cases: bool = False,
             cancer_fraction: float = 0.3,
             profiles: Optional[Iterable[Union[str, VendorProfile]]] = None,
             transfer_syntaxes: Optional[Sequence[str]] = None) -> GenerationSummary:
    """Write `exams` synthetic 4-view screening exams (plus edge cases) under output_dir.

    cancer_fraction is the share of breasts with cancer (lesions, some subtle, some occult);
    profiles restricts the vendor profiles (names or VendorProfile objects); transfer_syntaxes
    replaces the lossless rotation (e.g. all JPEG 2000 for a benchmark). Same arguments, same bytes.
    """
    n_exams = exams
    if n_exams < 1:
        raise ValueError("exams must be at least 1")
    if seed < 0:
        raise ValueError("seed must be non-negative")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    if not 0.0 <= cancer_fraction <= 1.0:
        raise ValueError("cancer_fraction must be within [0, 1]")
    chosen = select_profiles(profiles)
    rotation = dicom_files.available_syntaxes(tuple(transfer_syntaxes or dicom_files.LOSSLESS_ROTATION))
    if not rotation:
        raise ValueError("none of the requested transfer syntaxes can be encoded here")
    os.makedirs(output_dir, exist_ok=True)

    summary = GenerationSummary(
        output_dir=output_dir, seed=seed, size=size, exams=n_exams, files=[],
        outcomes_csv=os.path.join(output_dir, "outcomes.csv"),
        manifest=os.path.join(output_dir, "manifest.json"),
        exam_files={}, exam_profiles={}, transfer_syntaxes={})

    missing_exam = n_exams - 1 if edge_cases else None
    laterality_only_exam = 0 if edge_cases else None
    duplicated_exam = min(1, n_exams - 1) if edge_cases else None

    all_outcomes: list[programme.BreastOutcome] = []
    file_number = 0
    for index in range(n_exams):
        plan = exam_plans.plan_exam(seed, index, profile_for_exam(index, chosen), size, cancer_fraction)
        accession = plan.study.accession_number
        all_outcomes.extend(plan.outcomes)
        summary.exam_profiles[accession] = plan.profile.name
        summary.exam_files[accession] = {}
        folder = exam_plans.exam_dir(output_dir, plan)
        for exam_view in codes.STANDARD_EXAM_VIEWS:
            syntax = rotation[file_number % len(rotation)]
            file_number += 1
            if index == missing_exam and exam_view == catalogue.MISSING_VIEW:
                summary.incomplete_exams.append(accession)
                summary.missing_views[accession] = [exam_view]
                summary.edge_case_files["missing_view"] = folder
                continue
            ds, stored = exam_plans.build_exam_view(seed, plan, exam_view)
            if index == laterality_only_exam and exam_view == catalogue.LATERALITY_ONLY_VIEW:
                catalogue.keep_laterality_only_in_laterality_attribute(ds)
            path = os.path.join(folder, exam_plans.view_file_name(exam_view))
            dicom_files.set_pixel_data(ds, stored, syntax)
            _record(summary, dicom_files.write(ds, path), syntax)
            summary.exam_files[accession][exam_view] = path
            if index == laterality_only_exam and exam_view == catalogue.LATERALITY_ONLY_VIEW:
                summary.edge_case_files["laterality_only_in_0020_0060"] = path
            if index == duplicated_exam and exam_view == catalogue.DUPLICATED_VIEW:
                copy_syntax = catalogue.duplicate_syntax(syntax)
                copy_path = catalogue.duplicate_path(path)
                dicom_files.set_pixel_data(ds, stored, copy_syntax)
                _record(summary, dicom_files.write(ds, copy_path), copy_syntax)
                summary.edge_case_files["duplicate_sop_instance"] = copy_path

    if edge_cases:
        standalone = catalogue.write_standalone(seed, output_dir, size, chosen)
        for name, path in standalone.items():
            summary.files.append(path)
            summary.edge_case_files[name] = path
            if name != "not_dicom":
                summary.transfer_syntaxes[path] = _syntax_of(path)
        for name, path in summary.edge_case_files.items():
            expected = catalogue.EDGE_CASES[name].expected
            if expected is not None:
                summary.expected_rejections[path] = expected.value
        summary.edge_case_descriptions = {
            name: catalogue.EDGE_CASES[name].description for name in summary.edge_case_files}

    programme.write_outcomes(summary.outcomes_csv, all_outcomes)
    with open(summary.manifest, "w", encoding="utf-8") as f:
        f.write(summary.to_json())
    return summary



def _record(summary: GenerationSummary, path: str, syntax: str) -> None:
    summary.files.append(path)
    summary.transfer_syntaxes[path] = syntax


def _syntax_of(path: str) -> str:
    return str(read_file_meta_info(path).TransferSyntaxUID)
