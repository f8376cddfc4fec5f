"""Untrusted DICOM: mutated real files never crash a worker or exhaust memory.

Mutations are made on the bytes of real files (pydicom's test files and the project's synthetic
mammograms), not through pydicom: element lengths set to 0xFFFFFFFF, huge declared dimensions and
frame counts, truncated or corrupted pixel fragments, garbage inside sequences, random byte flips.
Every mutated file is read under a 1.5 GiB address-space limit in a subprocess; each must end with a
coded verdict.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from mammobeam.schemas.reasons import Reason
from realfiles import pydicom_test_files

LIMIT_MB = 1536
VERDICTS = {r.value for r in Reason} | {"SCORED"}


def _tag_le(group: int, element: int) -> bytes:
    return struct.pack("<HH", group, element)


def _set_us(data: bytearray, group: int, element: int, value: int) -> bool:
    """Overwrite a US value in explicit VR little endian (tag, 'US', length 2, value)."""
    at = data.find(_tag_le(group, element) + b"US\x02\x00")
    if at < 0:
        return False
    data[at + 8:at + 10] = struct.pack("<H", value)
    return True


def mutations(source: bytes, rng: random.Random) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    data = bytearray(source)
    pixel = data.find(_tag_le(0x7FE0, 0x0010))
    # Huge declared dimensions and frame counts.
    huge = bytearray(data)
    if _set_us(huge, 0x0028, 0x0010, 0xFFFF) and _set_us(huge, 0x0028, 0x0011, 0xFFFF):
        out["huge_dimensions"] = bytes(huge)
    frames = bytearray(data)
    at = frames.find(_tag_le(0x0028, 0x0008) + b"IS")
    if at >= 0:
        length = struct.unpack("<H", frames[at + 6:at + 8])[0]
        frames[at + 8:at + 8 + length] = b"9" * length
        out["huge_frames"] = bytes(frames)
    # Undefined / enormous lengths on the pixel data element and on a sequence.
    if pixel > 0:
        for name, value in (("pixel_len_ffffffff", 0xFFFFFFFF), ("pixel_len_huge", 0x7FFFFFF0)):
            broken = bytearray(data)
            broken[pixel + 8:pixel + 12] = struct.pack("<I", value)
            out[name] = bytes(broken)
        for cut in (16, 200, (len(data) - pixel) // 2, len(data) - pixel - 7):
            if 0 < cut < len(data) - pixel:
                out[f"truncated_pixels_{cut}"] = bytes(data[:pixel + cut])
        corrupt = bytearray(data)
        start = pixel + 12 + (len(data) - pixel) // 3
        for i in range(start, min(len(corrupt), start + 64)):
            corrupt[i] = rng.randrange(256)
        out["corrupted_fragment"] = bytes(corrupt)
    sq = data.find(b"SQ\x00\x00")
    if sq > 0:
        broken = bytearray(data)
        broken[sq + 4:sq + 8] = struct.pack("<I", 0x7FFFFFF0)
        out["sequence_len_huge"] = bytes(broken)
        garbage = bytearray(data)
        for i in range(sq + 8, min(len(garbage), sq + 72)):
            garbage[i] = rng.randrange(256)
        out["sequence_garbage"] = bytes(garbage)
    for n in range(3):
        flipped = bytearray(data)
        for _ in range(20):
            i = rng.randrange(132, min(len(flipped), max(133, pixel if pixel > 0 else len(flipped))))
            flipped[i] = rng.randrange(256)
        out[f"header_flips_{n}"] = bytes(flipped)
    out["empty"] = b""
    out["preamble_only"] = bytes(data[:132])
    return out


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory, synth_set):
    rng = random.Random(1234)
    folder = tmp_path_factory.mktemp("fuzz")
    sources = [Path(p) for p in sorted(synth_set.transfer_syntaxes)[:12]]
    sources += [p for p in pydicom_test_files() if p.name in (
        "CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_rle_16bit.dcm", "JPEG-LL.dcm",
        "MR_small_jpeg_ls_lossless.dcm", "emri_small_big_endian.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm")]
    for source in sources:
        for name, data in mutations(source.read_bytes(), rng).items():
            (folder / f"{source.parent.name}-{source.stem}-{name}.dcm").write_bytes(data)
    return folder


def test_mutated_files_end_with_a_coded_verdict_under_a_memory_limit(fuzz_folder):
    count = len(list(fuzz_folder.iterdir()))
    assert count > 100
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fuzz_worker.py")),
                           str(fuzz_folder), str(LIMIT_MB)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    verdicts = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(verdicts) == count
    assert {v["verdict"] for v in verdicts} <= VERDICTS
    by_name = {v["file"]: v["verdict"] for v in verdicts}
    huge = [v for name, v in by_name.items() if "huge_dimensions" in name]
    assert huge and all(v == "IMAGE_TOO_LARGE" for v in huge), huge
    # Synthetic mammograms cut inside their pixel data are TRUNCATED (or undecodable), never scored.
    cut = [v for name, v in by_name.items() if "truncated_pixels" in name and name[:2].isdigit()]
    assert cut and set(cut) <= {"TRUNCATED", "DECODE_FAILED"}, cut
