"""Shared fixtures: a synthetic screening set with edge cases, a small real SavedModel, and the
environment every test runs in (no cloud credentials lookups, no pseudonym key from the shell)."""

from __future__ import annotations

import os

import pytest

# Beam's GCP code otherwise retries credential lookup for ~28 s per process (FACTS.md).
os.environ.setdefault("NO_GCE_CHECK", "True")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _name in ("MAMMOBEAM_PSEUDONYM_KEY", "MAMMOBEAM_PSEUDONYM_KEY_FILE"):
    os.environ.pop(_name, None)

SMALL_SIZE = "128x104"  # model input size for fast pipeline tests


def require(tool_available: bool, reason: str, variable: str) -> None:
    """Skip when a tool a fresh machine may lack is missing, unless CI sets `variable` to 1."""
    if tool_available:
        return
    if os.environ.get(variable) == "1":
        pytest.fail(f"{reason} (and {variable}=1 requires it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory):
    """Four small 4-view exams plus every edge case a real feed contains."""
    from mammobeam.synthetic import generate
    return generate(str(tmp_path_factory.mktemp("synth")), exams=4, seed=11, size="small", edge_cases=True)


@pytest.fixture(scope="session")
def small_spec():
    from mammobeam.transforms.preprocess_step import spec_from_size
    return spec_from_size(SMALL_SIZE)


@pytest.fixture(scope="session")
def reference_model(tmp_path_factory, small_spec):
    from mammobeam.serving.export import build_reference_model
    return build_reference_model(tmp_path_factory.mktemp("models"), height=small_spec.height,
                                 width=small_spec.width, preprocessing_version=small_spec.version)
