"""`mammobeam preprocess` writes model inputs readable back into identical arrays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mammobeam.pipelines.cli import main
from mammobeam.transforms import model_inputs
from mammobeam.transforms.dicom import read_header
from mammobeam.transforms.preprocess_step import preprocess_bytes, spec_from_size
from mammobeam.transforms.pseudonyms import Pseudonymizer


@pytest.mark.parametrize("fmt", ["tfrecord", "parquet"])
def test_preprocess_writes_inputs_identical_to_the_scoring_path(synth_set, tmp_path, fmt):
    out = tmp_path / fmt
    pattern = os.path.join(synth_set.output_dir, "**", "*.dcm")
    assert main(["preprocess", "--input", pattern, "--output", str(out), "--format", fmt,
                 "--image-size", "128x104"]) == 0
    reader = model_inputs.read_tfrecords if fmt == "tfrecord" else model_inputs.read_parquet
    rows = list(reader(str(out / f"inputs-*.{fmt}")))
    spec = spec_from_size("128x104")
    pseudonymizer = Pseudonymizer.from_config()
    expected = {}
    for path in synth_set.files:
        if not path.endswith(".dcm"):
            continue
        data = Path(path).read_bytes()
        header = read_header(data, path, pseudonymizer)
        if header.accepted:
            outcome = preprocess_bytes(data, header.record, spec)
            if outcome.image is not None:
                expected.setdefault(header.record.sop_instance_uid, outcome.image)
    assert {r["sop_instance_uid"] for r in rows} == set(expected)
    for row in rows:
        image = expected[row["sop_instance_uid"]]
        assert np.array_equal(model_inputs.pixels_of(row), image.pixels)
        assert row["preprocessing_version"] == spec.version
        assert row["laterality"] == image.record.laterality and row["exam_id"] == image.record.exam_id
    import pyarrow.parquet as pq
    rejected = pq.read_table(out / "rejections").to_pylist()
    written = len(rows) + len(rejected)
    dcm_files = [p for p in synth_set.files if p.endswith(".dcm")]
    # The duplicate copy is written too (preprocess does not dedupe); every file is accounted for.
    assert written == len(dcm_files)
