"""The screening programme around the images: who has cancer, what the readers did, what happened.

Ground truth is written to outcomes.csv, one row per exam and breast (two rows per exam):

  accession_number, site, study_date, laterality, cancer, lesion_type,
  reader1_recall, reader2_recall, consensus_recall, diagnosis_date, interval_cancer

Model of the programme (double reading with arbitration, as in European programmes):
- Cancer breasts are chosen by a low-discrepancy sequence over breast index, so any run holds
  round(cancer_fraction * breasts) +-1 of them, and a run of N exams is a prefix of a run of N+1.
- Each reader flags a breast with the chance its lesion is seen (LESION_DETECTABILITY) plus a
  small false-positive chance; an exam is recalled by a reader if any breast is flagged.
- Consensus: both readers recall -> recall; one -> arbitration recalls with ARBITRATION_RECALL.
- A cancer breast in a recalled exam whose lesion is visible is screen-detected, diagnosed 2-8 weeks
  after the screen. Otherwise (missed, or occult on this screen) it is an interval cancer, diagnosed
  2-24 months after the screen (interval_cancer = 1).
Dates are ISO (yyyy-mm-dd), the same as the study_date of the records.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import math
from typing import Iterable, Optional

import numpy as np

from mammobeam.schemas import codes
from mammobeam.synthetic.lesions import LESION_KIND_WEIGHTS, Lesion

OUTCOME_COLUMNS = (
    "accession_number", "site", "study_date", "laterality", "cancer", "lesion_type",
    "reader1_recall", "reader2_recall", "consensus_recall", "diagnosis_date", "interval_cancer",
)
# Chance one reader flags a breast with this lesion (the rest of the chance is the false-positive rate).
LESION_DETECTABILITY = {"mass": 0.9, "calcifications": 0.85, "distortion": 0.6, "subtle_mass": 0.4,
                        "occult": 0.0}
READER_FALSE_POSITIVE_PER_BREAST = 0.025
ARBITRATION_RECALL = {"visible_cancer": 0.75, "no_visible_cancer": 0.3}
SCREEN_DETECTED_DELAY_DAYS = (14, 56)
INTERVAL_DELAY_DAYS = (60, 720)  # within the two-year screening interval
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def breast_has_cancer(seed: int, exam_index: int, laterality: str, fraction: float) -> bool:
    """Low-discrepancy choice of cancer breasts: exact fraction for small runs, stable prefixes."""
    if fraction <= 0:
        return False
    offset = (seed * _GOLDEN * 7.0) % 1.0
    k = 2 * exam_index + codes.LATERALITIES.index(laterality)
    return (offset + k * _GOLDEN) % 1.0 < fraction


def sample_lesion_kind(rng: np.random.Generator) -> str:
    kinds = list(LESION_KIND_WEIGHTS)
    return str(rng.choice(kinds, p=[LESION_KIND_WEIGHTS[k] for k in kinds]))


@dataclasses.dataclass(frozen=True)
class BreastOutcome:
    accession_number: str
    site: str
    study_date: dt.date
    laterality: str
    cancer: bool
    lesion_type: str  # "" when no cancer
    reader1_recall: bool
    reader2_recall: bool
    consensus_recall: bool
    diagnosis_date: Optional[dt.date]
    interval_cancer: bool

    def row(self) -> dict[str, str]:
        return {
            "accession_number": self.accession_number, "site": self.site,
            "study_date": self.study_date.isoformat(), "laterality": self.laterality,
            "cancer": str(int(self.cancer)), "lesion_type": self.lesion_type,
            "reader1_recall": str(int(self.reader1_recall)), "reader2_recall": str(int(self.reader2_recall)),
            "consensus_recall": str(int(self.consensus_recall)),
            "diagnosis_date": self.diagnosis_date.isoformat() if self.diagnosis_date else "",
            "interval_cancer": str(int(self.interval_cancer)),
        }


def read_exam(rng: np.random.Generator, accession: str, site: str, study_date: dt.date,
              lesions: dict[str, Optional[Lesion]]) -> list[BreastOutcome]:
    """Simulate double reading, arbitration and follow-up of one exam; one outcome per breast."""
    def reader_recalls() -> bool:
        flagged = False
        for lat in codes.LATERALITIES:
            lesion = lesions.get(lat)
            seen = LESION_DETECTABILITY[lesion.kind] if lesion else 0.0
            p = seen + (1.0 - seen) * READER_FALSE_POSITIVE_PER_BREAST
            flagged |= bool(rng.random() < p)
        return flagged

    r1, r2 = reader_recalls(), reader_recalls()
    visible = any(les is not None and les.kind != "occult" for les in lesions.values())
    if r1 and r2:
        consensus = True
    elif r1 or r2:
        key = "visible_cancer" if visible else "no_visible_cancer"
        consensus = bool(rng.random() < ARBITRATION_RECALL[key])
    else:
        consensus = False

    outcomes = []
    for lat in codes.LATERALITIES:
        lesion = lesions.get(lat)
        diagnosis, interval = None, False
        if lesion is not None:
            if consensus and lesion.kind != "occult":
                delay = rng.integers(*SCREEN_DETECTED_DELAY_DAYS)
            else:
                delay, interval = rng.integers(*INTERVAL_DELAY_DAYS), True
            diagnosis = study_date + dt.timedelta(days=int(delay))
        outcomes.append(BreastOutcome(
            accession_number=accession, site=site, study_date=study_date, laterality=lat,
            cancer=lesion is not None, lesion_type=lesion.kind if lesion else "",
            reader1_recall=r1, reader2_recall=r2, consensus_recall=consensus,
            diagnosis_date=diagnosis, interval_cancer=interval))
    return outcomes


def write_outcomes(path: str, outcomes: Iterable[BreastOutcome]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=OUTCOME_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for outcome in outcomes:
            writer.writerow(outcome.row())
    return path
