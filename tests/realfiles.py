"""Real DICOM files nobody here wrote: pydicom's bundled test files and PyPI pydicom-data
(installed as the `data_store` package). Listed from disk so nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

import pydicom


def pydicom_test_files() -> list[Path]:
    root = Path(pydicom.__file__).parent / "data" / "test_files"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ""))


def pydicom_data_files() -> list[Path]:
    try:
        import data_store
    except ImportError:
        return []
    root = Path(data_store.__file__).parent / "data"
    return sorted(p for p in root.glob("*.dcm"))


def real_file(name: str) -> Path:
    for path in pydicom_test_files() + pydicom_data_files():
        if path.name == name:
            return path
    raise FileNotFoundError(name)
