"""Run read_header + preprocess_bytes on every file in a folder under an address-space limit.

Used by test_fuzz.py in a subprocess, so an unbounded allocation or a crash in a codec shows up as a
failure of this process, not of the test runner. Prints one JSON line per file.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


def main(folder: str, limit_mb: int) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (limit_mb * 1024 * 1024, limit_mb * 1024 * 1024))
    from mammobeam.transforms.dicom import ReaderOptions, read_header
    from mammobeam.transforms.preprocess_step import preprocess_bytes, spec_from_size
    from mammobeam.transforms.pseudonyms import DEMO_KEY, Pseudonymizer

    pseudonymizer = Pseudonymizer(DEMO_KEY, is_demo_key=True, allow_demo_key_on_real_data=True)
    options = ReaderOptions(max_pixel_bytes=64 * 1024 * 1024, accept_lossy=True, accept_digitized_film=True)
    spec = spec_from_size("128x104")
    for path in sorted(Path(folder).iterdir()):
        data = path.read_bytes()
        result = read_header(data, str(path), pseudonymizer, options)
        verdict = str(result.rejection.reason) if result.rejection else None
        if result.accepted:
            outcome = preprocess_bytes(data, result.record, spec)
            verdict = str(outcome.rejection.reason) if outcome.rejection else "SCORED"
        print(json.dumps({"file": path.name, "verdict": verdict}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
