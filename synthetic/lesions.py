"""Lesions: what kind, where in the breast, and how each kind is drawn.

A lesion is placed once per breast in breast coordinates (depth from the chest wall as a fraction of
the nipple depth, and offsets from the nipple axis in CC and in MLO), so the CC and MLO images of a
cancer breast show it at corresponding positions: the same depth, a different height.

Kinds (the `lesion_type` column of outcomes.csv):
- mass: 4-12 mm radius, dense core with a steep lobulated margin, some spiculated;
- subtle_mass: 3.5-7 mm, low contrast, ill-defined margin;
- distortion: architectural distortion, thin spicules converging on a point, no central mass;
- calcifications: a cluster (3-8 mm radius) of 6-20 specks 0.35-1.0 mm across, bright, so they
  survive the resize to the model's 1024x832 input (about 0.25 mm per pixel);
- occult: a cancer not visible on this screen (nothing is drawn); becomes an interval cancer.

Contrasts are in display-density units (anatomy.py): tissue texture is about 0.02-0.3, quantum noise
about 0.003, so masses and calcifications are learnable by a small CNN and subtle ones are not easy.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from mammobeam.synthetic.anatomy import BreastOutline

LESION_KINDS = ("mass", "subtle_mass", "distortion", "calcifications", "occult")
# Share of each kind among cancer breasts (sums to 1).
LESION_KIND_WEIGHTS = {"mass": 0.3, "subtle_mass": 0.2, "distortion": 0.15, "calcifications": 0.25,
                       "occult": 0.10}


@dataclasses.dataclass(frozen=True)
class Lesion:
    """One lesion of one breast; shape_seed makes its CC and MLO renderings alike."""

    kind: str
    depth_fraction: float  # 0 at the chest wall, 1 at the nipple
    cc_offset: float  # -1..1 of the local half-height; + is medial
    mlo_offset: float  # -1..1 of the local half-height; + is inferior
    size_mm: float  # mass radius, spicule length or cluster radius
    contrast: float
    spiculated: bool
    shape_seed: int


def sample_lesion(rng: np.random.Generator, kind: str) -> Lesion:
    if kind not in LESION_KINDS:
        raise ValueError(f"unknown lesion kind {kind!r}")
    if kind == "mass":
        size, contrast, spiculated = rng.uniform(4.0, 12.0), rng.uniform(0.14, 0.22), rng.random() < 0.4
    elif kind == "subtle_mass":
        size, contrast, spiculated = rng.uniform(3.5, 7.0), rng.uniform(0.06, 0.09), False
    elif kind == "distortion":
        size, contrast, spiculated = rng.uniform(9.0, 20.0), rng.uniform(0.05, 0.08), True
    elif kind == "calcifications":
        size, contrast, spiculated = rng.uniform(3.0, 8.0), rng.uniform(0.16, 0.3), False
    else:
        size, contrast, spiculated = 0.0, 0.0, False
    return Lesion(kind=kind, depth_fraction=float(rng.uniform(0.3, 0.78)),
                  cc_offset=float(rng.uniform(-0.55, 0.55)), mlo_offset=float(rng.uniform(-0.5, 0.6)),
                  size_mm=float(size), contrast=float(contrast), spiculated=bool(spiculated),
                  shape_seed=int(rng.integers(0, 2**31 - 1)))


def lesion_centre_mm(lesion: Lesion, outline: BreastOutline) -> tuple[float, float]:
    """(x, y) in mm of the canonical frame; kept off the pectoral muscle in MLO."""
    x = lesion.depth_fraction * outline.nipple_depth_mm
    offset = lesion.cc_offset if outline.view == "CC" else lesion.mlo_offset
    for _ in range(8):
        reach = outline.half_extent_mm(x, upward=offset < 0)
        y = outline.axis_mm + offset * reach
        if not outline.in_pectoral(x, y):
            break
        offset = offset * 0.6 + 0.15  # slide down, away from the muscle
    return x, y


def draw_lesion(image: np.ndarray, lesion: Lesion, outline: BreastOutline, spacing_mm: float) -> None:
    """Add the lesion to a canonical-frame display-density image, in place."""
    if lesion.kind == "occult":
        return
    cx_mm, cy_mm = lesion_centre_mm(lesion, outline)
    shape_rng = np.random.default_rng(lesion.shape_seed)
    if lesion.kind in ("mass", "subtle_mass"):
        _draw_mass(image, cx_mm, cy_mm, lesion, shape_rng, spacing_mm)
    elif lesion.kind == "distortion":
        _draw_spicules(image, cx_mm, cy_mm, 0.0, lesion.size_mm, lesion.contrast, shape_rng, spacing_mm,
                       count=int(shape_rng.integers(10, 17)))
    elif lesion.kind == "calcifications":
        _draw_calcifications(image, cx_mm, cy_mm, lesion, shape_rng, spacing_mm)


def _patch(image: np.ndarray, cx_px: float, cy_px: float, half_px: int):
    """Slices of a square patch around a point, clipped to the image, and its origin."""
    rows, cols = image.shape
    r0, r1 = max(0, int(cy_px) - half_px), min(rows, int(cy_px) + half_px + 1)
    c0, c1 = max(0, int(cx_px) - half_px), min(cols, int(cx_px) + half_px + 1)
    return (slice(r0, r1), slice(c0, c1)), r0, c0


def _draw_mass(image, cx_mm, cy_mm, lesion, rng, spacing):
    radius_mm = lesion.size_mm
    reach_mm = radius_mm * (2.6 if lesion.spiculated else 1.6)
    half = int(math.ceil(reach_mm / spacing)) + 2
    sl, r0, c0 = _patch(image, cx_mm / spacing, cy_mm / spacing, half)
    yy, xx = np.mgrid[sl[0], sl[1]].astype(np.float32)
    dx = (xx + 0.5) * spacing - cx_mm
    dy = (yy + 0.5) * spacing - cy_mm
    r = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    # Lobulated margin: low-order harmonics of the radius.
    boundary = np.full_like(r, radius_mm)
    for k in range(2, 6):
        boundary += radius_mm * rng.normal(0.0, 0.07) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    # A dense core with a steep edge (circumscribed) or a soft one (ill-defined, subtle).
    inside = np.clip(1.0 - (r / boundary) ** 2, 0.0, None) ** 0.5
    margin_px = (0.1 if lesion.kind == "mass" else 0.35) * radius_mm / spacing
    inside = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), max(margin_px, 0.5))
    image[sl] += lesion.contrast * inside
    if lesion.spiculated:
        _draw_spicules(image, cx_mm, cy_mm, 0.8 * radius_mm, 1.8 * radius_mm, 0.4 * lesion.contrast, rng,
                       spacing, count=int(rng.integers(8, 15)))


def _draw_spicules(image, cx_mm, cy_mm, start_mm, length_mm, contrast, rng, spacing, count):
    """Thin bright lines radiating from a point (spiculated mass margin, architectural distortion)."""
    reach_mm = start_mm + 1.3 * length_mm
    half = int(math.ceil(reach_mm / spacing)) + 3
    sl, r0, c0 = _patch(image, cx_mm / spacing, cy_mm / spacing, half)
    canvas = np.zeros((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), np.float32)
    if canvas.size == 0:
        return
    shift = 4  # cv2 fixed-point fraction bits for sub-pixel line ends
    scale = 1 << shift
    width_px = max(1, int(round(0.5 / spacing)))
    ox, oy = cx_mm / spacing - c0, cy_mm / spacing - r0
    for angle in np.sort(rng.uniform(0, 2 * np.pi, count)):
        length = length_mm * rng.uniform(0.6, 1.3)
        a = (start_mm / spacing, (start_mm + length) / spacing)
        p0 = (int((ox + a[0] * np.cos(angle)) * scale), int((oy + a[0] * np.sin(angle)) * scale))
        p1 = (int((ox + a[1] * np.cos(angle)) * scale), int((oy + a[1] * np.sin(angle)) * scale))
        cv2.line(canvas, p0, p1, float(rng.uniform(0.7, 1.0)), width_px, cv2.LINE_AA, shift)
    canvas = cv2.GaussianBlur(canvas, (0, 0), max(0.25 / spacing, 0.5))
    peak = float(canvas.max())
    if peak > 0:
        image[sl] += contrast * canvas / peak


def _draw_calcifications(image, cx_mm, cy_mm, lesion, rng, spacing):
    count = int(rng.integers(6, 21))
    for _ in range(count):
        ox, oy = rng.normal(0.0, lesion.size_mm / 2.0, 2)
        diameter = rng.uniform(0.35, 1.0)
        sigma_px = max(diameter / 2.355 / spacing, 0.5)
        half = int(math.ceil(3 * sigma_px)) + 1
        px, py = (cx_mm + ox) / spacing, (cy_mm + oy) / spacing
        sl, r0, c0 = _patch(image, px, py, half)
        yy, xx = np.mgrid[sl[0], sl[1]].astype(np.float32)
        speck = np.exp(-((xx + 0.5 - px) ** 2 + (yy + 0.5 - py) ** 2) / (2 * sigma_px ** 2))
        image[sl] += lesion.contrast * rng.uniform(0.7, 1.0) * speck
