"""Operating points and model scope: the two files that sit beside every model.

Thresholds file (JSON, `format: mammobeam-thresholds/1`)::

    {
      "format": "mammobeam-thresholds/1",
      "version": "demo-1",                      # goes on every exam row as thresholds_version
      "model_name": "demo", "model_version": "1",
      "preprocessing_version": "pp1-1024x832-...",
      "default": {"recall_threshold": 0.5, "normal_triage_threshold": 0.1,
                  "category_cut_points": [9 strictly increasing scores in (0, 1)]},
      "sites": {"SITE NAME": {...same keys as default, any may be omitted...}},
      "calibration": {...optional: data and expected figures the calibrator wrote...}
    }

The category of an exam is 1 + the number of cut points at or below its score (1..10). An exam is a
recall candidate at or above the recall threshold, and normal-triage below the triage threshold
(only if in scope). A file calibrated for another model or preprocessing version is refused.

Scope file (JSON, `format: mammobeam-scope/1`)::

    {"format": "mammobeam-scope/1", "manufacturers": ["..."] or null (any),
     "views": ["CC", "MLO"], "implants": false, "age_range": [40, 79] or null,
     "pixel_spacing_mm": [0.05, 0.11] or null, "statement": "what the model was validated on"}
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Optional

THRESHOLDS_FORMAT = "mammobeam-thresholds/1"
SCOPE_FORMAT = "mammobeam-scope/1"


class ThresholdsError(ValueError):
    """The thresholds file is malformed or calibrated for another model or preprocessing."""


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    recall_threshold: float
    normal_triage_threshold: float
    category_cut_points: tuple[float, ...]

    def __post_init__(self):
        cuts = self.category_cut_points
        if len(cuts) != 9 or any(b <= a for a, b in zip(cuts, cuts[1:])):
            raise ThresholdsError("category_cut_points must be 9 strictly increasing scores")
        if not self.normal_triage_threshold <= self.recall_threshold:
            raise ThresholdsError("normal_triage_threshold must not exceed recall_threshold")

    def category(self, score: float) -> int:
        return 1 + sum(1 for cut in self.category_cut_points if score >= cut)

    def as_dict(self) -> dict[str, Any]:
        return {"recall_threshold": self.recall_threshold,
                "normal_triage_threshold": self.normal_triage_threshold,
                "category_cut_points": list(self.category_cut_points)}


@dataclasses.dataclass(frozen=True)
class Thresholds:
    version: str
    model_name: str
    model_version: str
    preprocessing_version: str
    default: OperatingPoint
    sites: dict[str, OperatingPoint] = dataclasses.field(default_factory=dict)
    calibration: Optional[dict[str, Any]] = None

    def for_site(self, site: Optional[str]) -> OperatingPoint:
        return self.sites.get(site or "", self.default)

    def check_matches(self, model_name: str, model_version: str, preprocessing_version: str) -> None:
        """Refuse thresholds calibrated for another model or preprocessing."""
        found = (self.model_name, str(self.model_version), self.preprocessing_version)
        wanted = (model_name, str(model_version), preprocessing_version)
        if found != wanted:
            raise ThresholdsError(
                f"thresholds {self.version!r} were calibrated for model {found[0]} v{found[1]} with "
                f"preprocessing {found[2]}, but this run uses model {wanted[0]} v{wanted[1]} with "
                f"preprocessing {wanted[2]}; calibrate again (`mammobeam calibrate`)")

    def to_json(self) -> str:
        body = {"format": THRESHOLDS_FORMAT, "version": self.version, "model_name": self.model_name,
                "model_version": str(self.model_version),
                "preprocessing_version": self.preprocessing_version,
                "default": self.default.as_dict(),
                "sites": {k: v.as_dict() for k, v in sorted(self.sites.items())}}
        if self.calibration is not None:
            body["calibration"] = self.calibration
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> "Thresholds":
        if body.get("format") != THRESHOLDS_FORMAT:
            raise ThresholdsError(f"not a thresholds file (format must be {THRESHOLDS_FORMAT!r})")
        try:
            default = _operating_point(body["default"], None)
            sites = {name: _operating_point(point, default) for name, point in body.get("sites", {}).items()}
            return cls(version=str(body["version"]), model_name=body["model_name"],
                       model_version=str(body["model_version"]),
                       preprocessing_version=body["preprocessing_version"],
                       default=default, sites=sites, calibration=body.get("calibration"))
        except KeyError as e:
            raise ThresholdsError(f"thresholds file lacks {e.args[0]!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> "Thresholds":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ThresholdsError(f"{path}: not JSON ({e})") from None


def _operating_point(body: dict[str, Any], base: Optional[OperatingPoint]) -> OperatingPoint:
    def pick(key):
        if key in body:
            return body[key]
        if base is None:
            raise KeyError(key)
        return getattr(base, key)
    return OperatingPoint(recall_threshold=float(pick("recall_threshold")),
                          normal_triage_threshold=float(pick("normal_triage_threshold")),
                          category_cut_points=tuple(float(c) for c in pick("category_cut_points")))


@dataclasses.dataclass(frozen=True)
class ModelScope:
    """What a model was validated on. Exams outside it are scored but never normal-triaged."""

    manufacturers: Optional[tuple[str, ...]] = None
    views: tuple[str, ...] = ("CC", "MLO")
    implants: bool = False
    age_range: Optional[tuple[int, int]] = None
    pixel_spacing_mm: Optional[tuple[float, float]] = None
    statement: str = ""

    def out_of_scope_reason(self, *, manufacturers: Iterable[Optional[str]], views: Iterable[str],
                            implant_present: bool, age: Optional[int],
                            pixel_spacings: Iterable[Optional[float]]) -> Optional[str]:
        """None when the exam is within scope, else a short reason (several joined by '; ')."""
        reasons = []
        if self.manufacturers is not None:
            allowed = {m.lower() for m in self.manufacturers}
            unknown = sorted({m or "unknown" for m in manufacturers if (m or "").lower() not in allowed})
            if unknown:
                reasons.append(f"manufacturer not validated: {', '.join(unknown)}")
        other_views = sorted({v for v in views if v not in self.views})
        if other_views:
            reasons.append(f"view not validated: {', '.join(other_views)}")
        if implant_present and not self.implants:
            reasons.append("breast implant present")
        if self.age_range is not None:
            if age is None:
                reasons.append("age unknown")
            elif not self.age_range[0] <= age <= self.age_range[1]:
                reasons.append(f"age {age} outside {self.age_range[0]}-{self.age_range[1]}")
        if self.pixel_spacing_mm is not None:
            lo, hi = self.pixel_spacing_mm
            odd = sorted({s for s in pixel_spacings if s is not None and not lo <= s <= hi})
            if odd:
                reasons.append(f"pixel spacing {odd[0]:.3f} mm outside {lo}-{hi}")
        return "; ".join(reasons) or None

    def to_json(self) -> str:
        return json.dumps({"format": SCOPE_FORMAT,
                           "manufacturers": list(self.manufacturers) if self.manufacturers else None,
                           "views": list(self.views), "implants": self.implants,
                           "age_range": list(self.age_range) if self.age_range else None,
                           "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
                           "statement": self.statement}, indent=2) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> "ModelScope":
        body = json.loads(Path(path).read_text())
        if body.get("format") != SCOPE_FORMAT:
            raise ValueError(f"{path}: not a scope file (format must be {SCOPE_FORMAT!r})")
        return cls(
            manufacturers=tuple(body["manufacturers"]) if body.get("manufacturers") else None,
            views=tuple(body.get("views") or ("CC", "MLO")),
            implants=bool(body.get("implants", False)),
            age_range=tuple(body["age_range"]) if body.get("age_range") else None,
            pixel_spacing_mm=tuple(body["pixel_spacing_mm"]) if body.get("pixel_spacing_mm") else None,
            statement=body.get("statement", ""))
