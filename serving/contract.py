"""The model contract: the seam between the pipeline and any model, the demo model included.

A model is a TF Serving-style directory::

    <model_name>/
        <version>/            one SavedModel per integer version (TF Serving's layout)
            saved_model.pb
            variables/
        scope.json            what the model was validated on (schemas/thresholds.py: ModelScope)
        thresholds.json       the default operating points (schemas/thresholds.py: Thresholds)

Signature ``serving_default``: one input, uint16 images of shape [N, H, W, 1] where H x W is the
preprocessing size, and one output, float32 malignancy probability of shape [N]. The input and output
keys are read from the signature (the demo model uses ``images`` and ``score``). A model that does
not match fails at start-up with a ContractError that says what is wrong.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Optional

SIGNATURE_NAME = "serving_default"
INPUT_DTYPE = "uint16"
OUTPUT_DTYPE = "float32"
SCOPE_FILE = "scope.json"
THRESHOLDS_FILE = "thresholds.json"


class ContractError(ValueError):
    """The model does not match the contract."""


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Which model a run scores with; name and version come from the path."""

    name: str
    version: str
    saved_model_dir: str
    model_root: str

    @property
    def scope_path(self) -> Path:
        return Path(self.model_root) / SCOPE_FILE

    @property
    def thresholds_path(self) -> Path:
        return Path(self.model_root) / THRESHOLDS_FILE


def resolve_model(path: str | Path, version: Optional[str] = None) -> ModelRef:
    """`--model DIR`: DIR is `<name>/` (highest version, or `version`) or `<name>/<version>/`."""
    path = Path(path)
    if not path.is_dir():
        raise ContractError(f"model directory {path} does not exist")
    if (path / "saved_model.pb").exists() and re.fullmatch(r"\d+", path.name):
        if version is not None and version != path.name:
            raise ContractError(f"{path} is version {path.name}, but --model-version {version} was asked")
        return ModelRef(path.parent.name, path.name, str(path), str(path.parent))
    versions = sorted((int(p.name) for p in path.iterdir()
                       if p.is_dir() and re.fullmatch(r"\d+", p.name)), reverse=True)
    if not versions:
        raise ContractError(f"{path} holds no numbered version folders (<name>/<version>/saved_model.pb)")
    chosen = str(int(version)) if version is not None else str(versions[0])
    if int(chosen) not in versions:
        raise ContractError(f"{path} has versions {sorted(versions)}, not {chosen}")
    saved = path / chosen
    if not (saved / "saved_model.pb").exists():
        raise ContractError(f"{saved} is not a SavedModel (no saved_model.pb)")
    return ModelRef(path.name, chosen, str(saved), str(path))


@dataclasses.dataclass(frozen=True)
class SignatureInfo:
    input_key: str
    output_key: str
    height: int
    width: int


def check_signature(inputs: dict[str, tuple[str, tuple]], outputs: dict[str, tuple[str, tuple]]
                    ) -> SignatureInfo:
    """Check a signature given as {key: (dtype name, shape tuple with None for unknown)}.

    Shared by the in-process loader and the TF Serving metadata check, so both refuse the same models.
    """
    if len(inputs) != 1:
        raise ContractError(f"signature {SIGNATURE_NAME} must take one input, it takes {sorted(inputs)}")
    if len(outputs) != 1:
        raise ContractError(f"signature {SIGNATURE_NAME} must return one output, it returns {sorted(outputs)}")
    (in_key, (in_dtype, in_shape)), = inputs.items()
    (out_key, (out_dtype, out_shape)), = outputs.items()
    if in_dtype != INPUT_DTYPE:
        raise ContractError(f"input {in_key!r} must be {INPUT_DTYPE}, it is {in_dtype}")
    if len(in_shape) != 4 or in_shape[3] != 1 or in_shape[1] is None or in_shape[2] is None:
        raise ContractError(f"input {in_key!r} must have shape [N, H, W, 1] with fixed H and W, "
                            f"it has {list(in_shape)}")
    if out_dtype != OUTPUT_DTYPE:
        raise ContractError(f"output {out_key!r} must be {OUTPUT_DTYPE}, it is {out_dtype}")
    if len(out_shape) != 1:
        raise ContractError(f"output {out_key!r} must have shape [N], it has {list(out_shape)}")
    return SignatureInfo(in_key, out_key, int(in_shape[1]), int(in_shape[2]))


def check_input_size(info: SignatureInfo, height: int, width: int) -> None:
    if (info.height, info.width) != (height, width):
        raise ContractError(f"the model takes {info.height}x{info.width} images but preprocessing "
                            f"makes {height}x{width}; pass --image-size {info.height}x{info.width}")
