"""The baselines `mammobeam score` is measured against: single-process loops as a researcher writes
them, producing the same preprocessing version.

    python -m benchmarks.loops researcher MODEL_DIR FILE...   pydicom pixel_array (the plugins the
                                                             project installs), one model call per image
    python -m benchmarks.loops imagecodecs MODEL_DIR FILE...  the same loop decoding with imagecodecs
                                                             on 2 threads

Prints one JSON line: images scored and seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(mode: str, model_dir: str, files: list[str]) -> int:
    started = time.monotonic()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import pydicom
    import tensorflow as tf

    from mammobeam.serving.contract import resolve_model
    from mammobeam.serving.inprocess import load_and_check
    from mammobeam.transforms.codecs import RawFrame, decode_raw
    from mammobeam.transforms.dicom import read_header
    from mammobeam.transforms.pixels import PreprocessingSpec, preprocess_pixels
    from mammobeam.transforms.pseudonyms import Pseudonymizer
    from mammobeam.transforms.voi import transform_from_header

    _, fn, info = load_and_check(resolve_model(model_dir))
    spec = PreprocessingSpec(height=info.height, width=info.width)
    pseudonymizer = Pseudonymizer.from_config()
    ready = time.monotonic()
    scores = []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        record = read_header(data, path, pseudonymizer).record
        ds = pydicom.dcmread(path)
        if mode == "researcher":
            raw = RawFrame(ds.pixel_array, "pydicom", True, ds.BitsAllocated, ds.BitsStored,
                           ds.PixelRepresentation)
        else:
            raw = decode_raw(ds, threads=2)
        pixels, _, _ = preprocess_pixels(raw, record, transform_from_header(record, ds), spec)
        out = fn(**{info.input_key: tf.constant(pixels[np.newaxis, :, :, np.newaxis])})
        scores.append(float(np.asarray(out[info.output_key])[0]))
    done = time.monotonic()
    print(json.dumps({"mode": mode, "images": len(scores), "startup_s": ready - started,
                      "loop_s": done - ready, "total_s": done - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
