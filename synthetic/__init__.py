"""Synthetic screening exams: realistic, marked DICOM files for tests, benchmarks, the demo and the
demo model's training (`mammobeam synth`). Entry point: generate()."""

from mammobeam.synthetic.generator import GenerationSummary, generate
from mammobeam.synthetic.profiles import PROFILES, SIZES, VendorProfile

__all__ = ["GenerationSummary", "generate", "PROFILES", "SIZES", "VendorProfile"]
