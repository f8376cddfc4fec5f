"""Breast-shaped phantoms: outline, tissue texture, pectoral muscle, noise.

Everything is drawn in one canonical frame per view: the chest wall on the image's left edge (column
0) and the nipple pointing to the right; rows run medially in CC (towards the other breast) and
towards the feet in MLO. dicom_files.orient() flips the result into the stored orientation that
PatientOrientation announces. Positions are in millimetres, so one anatomy renders at any matrix.

Intensities are "display density" in [0, 1] (MONOCHROME2 sense: dense tissue is bright), turned into
stored values by to_stored_values(). The levels below were tuned by eye and by compression ratio:
lossless ratios of about 3-4:1 come from tissue noise, as with real detectors.

Cost: the smooth parts (outline, skin fall-off, glandular density) are drawn at WORK_ROWS rows and
resized; only fine texture, lesions and quantum noise are drawn at the output matrix. A 4096x3328
image costs about a second, a 512x416 one a few milliseconds.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import cv2
import numpy as np

from mammobeam.synthetic.profiles import ImageGeometry

WORK_ROWS = 512  # matrix height of the smooth anatomy layers

# Display-density levels (fractions of the stored range).
AIR_LEVEL = 0.035
FAT_LEVEL = 0.24
THICKNESS_GAIN = 0.16  # compressed breast thins towards the skin line
GLANDULAR_GAIN = 0.30
PECTORAL_GAIN = 0.17
SKIN_GAIN = 0.05
FINE_TEXTURE_GAIN = 0.012
SKIN_FALLOFF_MM = 12.0  # distance from the skin over which thickness reaches full
# Quantum noise, sigma = a + b * sqrt(level); tuned so lossless ratios land near 3-4:1.
NOISE_FLOOR = 0.0002
NOISE_SLOPE = 0.002


@dataclasses.dataclass(frozen=True)
class BreastOutline:
    """Where the breast lies in one view, in mm of the canonical frame."""

    view: str  # "CC" or "MLO"
    nipple_depth_mm: float  # distance from chest wall to nipple along the rows
    axis_mm: float  # row coordinate of the nipple axis
    lower_half_height_mm: float  # extent below (CC: also above) the axis at the chest wall
    shape_power: float  # superellipse exponent: 2 is an ellipse, larger is fuller
    axilla_depth_mm: float = 0.0  # MLO: how far the breast reaches at the top edge
    pectoral_width_mm: float = 0.0  # MLO: pectoral triangle along the top edge
    pectoral_height_mm: float = 0.0  # MLO: pectoral triangle along the chest wall

    def half_extent_mm(self, depth_mm: float, upward: bool) -> float:
        """How far the breast reaches from the axis, up or down, at one depth from the chest wall."""
        f = min(max(depth_mm / self.nipple_depth_mm, 0.0), 1.0)
        core = (1.0 - f ** self.shape_power) ** (1.0 / self.shape_power)
        if self.view == "MLO" and upward:
            # The upper MLO contour runs from the axilla at the top edge to the nipple.
            a = self.axilla_depth_mm / self.nipple_depth_mm
            g = min(max((f - a) / (1.0 - a), 0.0), 1.0)
            return self.axis_mm * (1.0 - g * g) ** 0.5
        return self.lower_half_height_mm * core

    def in_pectoral(self, x_mm: float, y_mm: float) -> bool:
        if self.pectoral_width_mm <= 0:
            return False
        return x_mm / self.pectoral_width_mm + y_mm / self.pectoral_height_mm < 1.0


@dataclasses.dataclass(frozen=True)
class BreastAnatomy:
    """One breast: its outline in both views and how dense it is (shared by CC and MLO)."""

    cc: BreastOutline
    mlo: BreastOutline
    density: float  # 0 = fatty .. 1 = extremely dense

    def outline(self, view: str) -> BreastOutline:
        return self.cc if view == "CC" else self.mlo


def sample_anatomy(rng: np.random.Generator, geometry: ImageGeometry, density: float) -> BreastAnatomy:
    """Draw a plausible breast that fits the detector of `geometry` in both views."""
    width, height = geometry.width_mm, geometry.height_mm
    depth = min(rng.uniform(70.0, 125.0), 0.85 * width)
    half_height = min(rng.uniform(62.0, 95.0), 0.44 * height)
    cc = BreastOutline(
        view="CC", nipple_depth_mm=depth, axis_mm=height * rng.uniform(0.47, 0.53),
        lower_half_height_mm=half_height, shape_power=rng.uniform(1.9, 2.6))
    mlo_depth = min(depth * rng.uniform(1.02, 1.15), 0.9 * width)
    axis = height * rng.uniform(0.46, 0.56)
    lower = min(half_height * rng.uniform(0.65, 0.85), 0.95 * height - axis)
    mlo = BreastOutline(
        view="MLO", nipple_depth_mm=mlo_depth, axis_mm=axis, lower_half_height_mm=lower,
        shape_power=rng.uniform(1.9, 2.4), axilla_depth_mm=mlo_depth * rng.uniform(0.3, 0.45),
        pectoral_width_mm=mlo_depth * rng.uniform(0.28, 0.45),
        pectoral_height_mm=height * rng.uniform(0.4, 0.62))
    return BreastAnatomy(cc=cc, mlo=mlo, density=density)


def _outline_mask(outline: BreastOutline, rows: int, cols: int, spacing: float) -> np.ndarray:
    """uint8 mask (1 inside the breast) of the outline at one matrix, one row at a time vectorised."""
    y = (np.arange(rows, dtype=np.float64) + 0.5) * spacing
    x = (np.arange(cols, dtype=np.float64) + 0.5) * spacing
    d = outline.nipple_depth_mm
    dy = y - outline.axis_mm
    upward = dy < 0
    # Depth reached on each row: invert half_extent_mm per row (closed forms of the same curves).
    lower = np.clip(np.abs(dy) / outline.lower_half_height_mm, 0.0, 1.0)
    reach = d * (1.0 - lower ** outline.shape_power) ** (1.0 / outline.shape_power)
    reach[np.abs(dy) >= outline.lower_half_height_mm] = 0.0
    if outline.view == "MLO":
        a = outline.axilla_depth_mm
        up = np.clip(-dy / outline.axis_mm, 0.0, 1.0)
        reach_up = a + (d - a) * np.sqrt(1.0 - up * up)
        reach = np.where(upward, reach_up, reach)
    return (x[None, :] < reach[:, None]).astype(np.uint8)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float,
                  sigma_y_px: Optional[float] = None) -> np.ndarray:
    """Unit-variance Gaussian-filtered noise (a cheap 1/f-like texture when summed over scales)."""
    field = rng.standard_normal(shape, dtype=np.float32)
    sy = sigma_px if sigma_y_px is None else sigma_y_px
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=max(sigma_px, 0.3), sigmaY=max(sy, 0.3),
                             borderType=cv2.BORDER_REFLECT)
    std = float(field.std())
    return field / std if std > 0 else field


def render_breast(rng: np.random.Generator, outline: BreastOutline, density: float,
                  geometry: ImageGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Return (display density float32 image, breast mask bool) in the canonical frame."""
    rows, cols = geometry.rows, geometry.columns
    work_rows = min(rows, WORK_ROWS)
    work_cols = max(8, int(round(cols * work_rows / rows)))
    work_spacing = geometry.height_mm / work_rows

    mask = _outline_mask(outline, work_rows, work_cols, work_spacing)
    # Distance to the skin line only: pad the chest-wall edge (and the top edge in MLO, where the
    # breast leaves the image) with tissue so those image borders do not count as skin.
    pad = 64
    padded = cv2.copyMakeBorder(mask, pad, 0, pad, 0, cv2.BORDER_REPLICATE)
    if outline.view == "CC":
        padded[:pad, :] = 0
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[pad:, pad:] * work_spacing
    thickness = np.clip(dist / SKIN_FALLOFF_MM, 0.0, 1.0) ** 0.6
    skin = np.exp(-dist / 1.2) * mask

    # Glandular tissue: coarse clouds plus finer strands running towards the nipple, concentrated
    # behind the nipple and fading towards the chest wall and skin.
    px = 1.0 / work_spacing
    clouds = _smooth_noise(rng, (work_rows, work_cols), 7.0 * px)
    strands = _smooth_noise(rng, (work_rows, work_cols), 3.0 * px, 1.8 * px)
    yy, xx = np.mgrid[0:work_rows, 0:work_cols].astype(np.float32) * work_spacing
    centre_x = 0.55 * outline.nipple_depth_mm
    spread = 0.45 * outline.nipple_depth_mm
    prior = np.exp(-(((xx - centre_x) / spread) ** 2 + ((yy - outline.axis_mm) / (1.3 * spread)) ** 2))
    bias = -1.6 + 2.6 * density
    glandular = 1.0 / (1.0 + np.exp(-(0.9 * clouds + 0.5 * strands + 2.0 * prior + bias) / 0.75))
    glandular *= np.clip(dist / 6.0, 0.0, 1.0)

    image = FAT_LEVEL + THICKNESS_GAIN * thickness + GLANDULAR_GAIN * glandular * thickness
    image += SKIN_GAIN * skin
    if outline.pectoral_width_mm > 0:
        edge = 1.0 - (xx / outline.pectoral_width_mm + yy / outline.pectoral_height_mm)
        pectoral = np.clip(edge * outline.pectoral_width_mm / 4.0, 0.0, 1.0)  # ~4 mm soft border
        image += PECTORAL_GAIN * pectoral * (0.9 + 0.1 * clouds)
    image = np.where(mask > 0, image, AIR_LEVEL).astype(np.float32)
    tissue_weight = (mask * (0.5 + glandular)).astype(np.float32)

    if (work_rows, work_cols) != (rows, cols):
        image = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_LINEAR)
        tissue_weight = cv2.resize(tissue_weight, (cols, rows), interpolation=cv2.INTER_LINEAR)
        inside = cv2.resize(mask, (cols, rows), interpolation=cv2.INTER_NEAREST) > 0
    else:
        inside = mask > 0

    # Fine parenchymal texture at the output matrix (about 1 mm grain).
    fine = _smooth_noise(rng, (rows, cols), 1.0 / geometry.pixel_spacing_mm)
    image += FINE_TEXTURE_GAIN * fine * tissue_weight
    return image, inside


def to_stored_values(rng: np.random.Generator, image: np.ndarray, bits_stored: int,
                     signal_range: float = 1.0) -> np.ndarray:
    """Add quantum noise and quantise display density to MONOCHROME2 stored values (uint16).

    Density 1.0 maps to signal_range of the stored range; values stay within BitsStored.
    """
    level = np.clip(image, 0.0, 1.0)
    sigma = NOISE_FLOOR + NOISE_SLOPE * np.sqrt(level)
    noisy = level + sigma * rng.standard_normal(level.shape, dtype=np.float32)
    top = (1 << bits_stored) - 1
    return np.clip(np.rint(noisy * (top * signal_range)), 0, top).astype(np.uint16)
