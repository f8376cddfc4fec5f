"""The model contract: version resolution, signature checks, and start-up refusals with clear messages."""

from __future__ import annotations

import os

import pytest

from mammobeam.pipelines.cli import main
from mammobeam.schemas.thresholds import OperatingPoint, Thresholds
from mammobeam.serving.contract import ContractError, resolve_model
from mammobeam.serving.export import DEFAULT_CUTS, build_reference_model


def test_highest_version_unless_one_is_asked(tmp_path):
    for version in (1, 2, 10):
        build_reference_model(tmp_path, height=32, width=26, preprocessing_version="pp", version=version)
    assert resolve_model(tmp_path / "reference").version == "10"
    assert resolve_model(tmp_path / "reference", "2").version == "2"
    assert resolve_model(tmp_path / "reference" / "1").version == "1"
    with pytest.raises(ContractError, match="not 3"):
        resolve_model(tmp_path / "reference", "3")
    with pytest.raises(ContractError, match="does not exist"):
        resolve_model(tmp_path / "nothing")


def _wrong_signature_model(root):
    import tensorflow as tf

    class Float(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 32, 26, 1], tf.float32, name="images")])
        def serve(self, images):
            return {"score": tf.reduce_mean(images, axis=[1, 2, 3])}

    module = Float()
    tf.saved_model.save(module, str(root / "wrong" / "1"), signatures={"serving_default": module.serve})
    return root / "wrong"


def test_score_refuses_a_model_with_the_wrong_signature(synth_set, tmp_path, capsys):
    model = _wrong_signature_model(tmp_path)
    code = main(["score", "--input", os.path.join(synth_set.output_dir, "**"), "--output",
                 str(tmp_path / "out"), "--model", str(model), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not match the contract" in err and "uint16" in err
    assert not (tmp_path / "out" / "images").exists()


def test_score_refuses_thresholds_calibrated_for_another_model(synth_set, reference_model, tmp_path, capsys):
    other = Thresholds("other-1", reference_model.name, "99", "pp-x", OperatingPoint(0.5, 0.1, DEFAULT_CUTS))
    path = tmp_path / "thresholds.json"
    path.write_text(other.to_json())
    code = main(["score", "--input", os.path.join(synth_set.output_dir, "**"), "--output",
                 str(tmp_path / "out"), "--model", reference_model.model_root, "--thresholds", str(path),
                 "--quiet"])
    assert code == 2
    assert "calibrate again" in capsys.readouterr().err


def test_score_refuses_a_size_the_model_does_not_take(synth_set, reference_model, tmp_path, capsys):
    code = main(["score", "--input", os.path.join(synth_set.output_dir, "**"), "--output",
                 str(tmp_path / "out"), "--model", reference_model.model_root, "--image-size", "64x52",
                 "--quiet"])
    assert code == 2
    assert "--image-size" in capsys.readouterr().err


def test_input_pattern_matching_nothing_is_a_clear_error(reference_model, tmp_path, capsys):
    code = main(["score", "--input", str(tmp_path / "none" / "*.dcm"), "--output", str(tmp_path / "out"),
                 "--model", reference_model.model_root, "--quiet"])
    assert code == 2
    assert "matches no file" in capsys.readouterr().err
