"""Vendor profiles, screening sites and output sizes of the synthetic archive.

A profile is what one kind of acquisition unit writes: matrix, bit depth, grey-scale convention
(LINEAR or SIGMOID VOI, MONOCHROME1 or 2), whether it stores images mirrored, and which coding scheme
it uses for views. The manufacturers are invented: the profiles mimic the variety of a real feed
without claiming that any real vendor behaves this way.

Each profile belongs to one site (InstitutionName); exams are spread round-robin over the chosen
profiles, so any run of four or more exams holds every profile.

Sizes: ``full`` writes each profile's native matrix (for benchmarks); ``medium`` scales to 1024 rows
(about the model's 1024x832 input); ``small`` scales to 512 rows (512x416 for the 4096x3328 profile),
for fast tests. Scaling keeps the physical field of view: ImagerPixelSpacing grows by the same factor,
so breasts and lesions keep their size in millimetres.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence, Union

# Rows each size scales to; None keeps the profile's native matrix.
SIZES: dict[str, Optional[int]] = {"small": 512, "medium": 1024, "full": None}


@dataclasses.dataclass(frozen=True)
class VendorProfile:
    """How one (invented) acquisition unit writes a For Presentation mammogram."""

    name: str
    site: str  # InstitutionName of the site running this unit
    manufacturer: str
    model_name: str
    rows: int
    columns: int
    bits_stored: int
    pixel_spacing_mm: float  # ImagerPixelSpacing at the native matrix
    photometric: str = "MONOCHROME2"
    voi_lut_function: str = "LINEAR"
    mirrored: bool = False  # stores pixels flipped left-right; PatientOrientation says so
    view_coding_scheme: str = "SCT"  # "SCT" (SNOMED CT) or legacy "SRT" (SNOMED-RT) view codes
    window_presets: tuple[str, ...] = ("NORMAL",)  # several windows, as some units write
    software_version: str = "1.0"
    # Share of the stored range the breast signal spans: 14-bit units keep headroom, which is also
    # why their lossless ratios stay near 3:1 instead of dropping with the two extra bits.
    signal_range: float = 1.0

    def geometry(self, size: str) -> "ImageGeometry":
        """Matrix and pixel spacing of this profile at one of SIZES."""
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
        target_rows = SIZES[size]
        if target_rows is None or target_rows >= self.rows:
            return ImageGeometry(self.rows, self.columns, self.pixel_spacing_mm)
        scale = self.rows / target_rows
        columns = int(round(self.columns / scale))
        return ImageGeometry(target_rows, columns, round(self.pixel_spacing_mm * scale, 6))


@dataclasses.dataclass(frozen=True)
class ImageGeometry:
    rows: int
    columns: int
    pixel_spacing_mm: float

    @property
    def height_mm(self) -> float:
        return self.rows * self.pixel_spacing_mm

    @property
    def width_mm(self) -> float:
        return self.columns * self.pixel_spacing_mm


SITE_NORTH = "SYNTHETIC SCREENING NORTH"
SITE_SOUTH = "SYNTHETIC SCREENING SOUTH"
SITE_WEST = "SYNTHETIC SCREENING WEST"
SITES = (SITE_NORTH, SITE_SOUTH, SITE_WEST)

PROFILES: tuple[VendorProfile, ...] = (
    # Large direct-conversion detector, 12-bit, linear window, three window presets.
    VendorProfile(
        name="alpha", site=SITE_NORTH, manufacturer="SYNTHVENDOR ALPHA", model_name="Alpha 4K",
        rows=4096, columns=3328, bits_stored=12, pixel_spacing_mm=0.07,
        window_presets=("NORMAL", "HARDER", "SOFTER"), software_version="AL 3.2"),
    # Smaller 14-bit detector whose units ask for a sigmoid VOI LUT.
    VendorProfile(
        name="beta", site=SITE_SOUTH, manufacturer="SYNTHVENDOR BETA", model_name="Beta Essential",
        rows=2294, columns=1914, bits_stored=14, pixel_spacing_mm=0.1, voi_lut_function="SIGMOID",
        software_version="BE 2.11", signal_range=0.4),
    # Stores MONOCHROME1 (high values are dark); the window is mirrored to match.
    VendorProfile(
        name="gamma", site=SITE_NORTH, manufacturer="SYNTHVENDOR GAMMA", model_name="Gamma M1",
        rows=3000, columns=2400, bits_stored=12, pixel_spacing_mm=0.085, photometric="MONOCHROME1",
        software_version="GM 5.0"),
    # Stores images mirrored left-right and writes legacy SNOMED-RT view codes.
    VendorProfile(
        name="delta", site=SITE_WEST, manufacturer="SYNTHVENDOR DELTA", model_name="Delta Mirror",
        rows=3328, columns=2560, bits_stored=14, pixel_spacing_mm=0.085, mirrored=True,
        view_coding_scheme="SRT", software_version="DM 1.4", signal_range=0.45),
)
PROFILES_BY_NAME = {p.name: p for p in PROFILES}


def select_profiles(profiles: Optional[Iterable[Union[str, VendorProfile]]]) -> tuple[VendorProfile, ...]:
    """The profiles a run uses: all of them by default, else the named ones (names or objects)."""
    if profiles is None:
        return PROFILES
    chosen: list[VendorProfile] = []
    for p in profiles:
        if isinstance(p, VendorProfile):
            chosen.append(p)
        elif p in PROFILES_BY_NAME:
            chosen.append(PROFILES_BY_NAME[p])
        else:
            raise ValueError(f"unknown vendor profile {p!r}; known: {', '.join(PROFILES_BY_NAME)}")
    if not chosen:
        raise ValueError("at least one vendor profile is needed")
    return tuple(chosen)


def profile_for_exam(exam_index: int, profiles: Sequence[VendorProfile]) -> VendorProfile:
    """Round-robin, so every profile appears once the run has as many exams as profiles."""
    return profiles[exam_index % len(profiles)]
