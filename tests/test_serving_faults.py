"""Fault drills: a Beam pipeline scoring through TFServingModelHandler against a real serve-local process.

Each run either completes with every image scored exactly once, or stops with a clear error and no
final output file (WriteToText only renames its temporary shards once the pipeline has succeeded).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference  # noqa: E402

from mammobeam.serving.contract import ContractError, resolve_model  # noqa: E402
from mammobeam.serving.export import build_reference_model  # noqa: E402
from mammobeam.serving.inprocess import InProcessModelHandler  # noqa: E402
from mammobeam.serving.serve_local import LocalServer  # noqa: E402
from mammobeam.serving.tfserving import ServingError, TFServingModelHandler  # noqa: E402

H, W = 64, 52
N_IMAGES = 40
MAMMOBEAM = Path(sys.executable).parent / "mammobeam"


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_reference_model(root, height=H, width=W, preprocessing_version="pp-test")
    import tensorflow as tf

    class WrongSignature(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, H, W, 1], tf.uint16, name="images")])
        def serve(self, images):  # two outputs, the second an int
            x = tf.cast(images, tf.float32)
            return {"score": tf.reduce_mean(x, axis=[1, 2, 3]), "label": tf.zeros([tf.shape(x)[0]], tf.int32)}

    module = WrongSignature()
    tf.saved_model.save(module, str(root / "wrongsig" / "1"), signatures={"serving_default": module.serve})
    (root / "models.config").write_text(f"""
model_config_list {{
  config {{ name: "reference" base_path: "{root / 'reference'}" model_platform: "tensorflow" }}
  config {{ name: "wrongsig" base_path: "{root / 'wrongsig'}" model_platform: "tensorflow" }}
}}""")
    return root


@pytest.fixture(scope="module")
def exams():
    rng = np.random.default_rng(7)
    return {f"img-{i:03d}": rng.integers(0, 65535, (H, W), dtype=np.uint16) for i in range(N_IMAGES)}


@pytest.fixture(scope="module")
def expected(model_root, exams):
    h = InProcessModelHandler(resolve_model(model_root / "reference"))
    results = h.run_inference(list(exams.values()), h.load_model())
    return {key: r.inference for key, r in zip(exams, results)}


def handler(address, **kw):
    kw.setdefault("max_batch_size", 4)
    kw.setdefault("min_batch_size", 4)
    return TFServingModelHandler(address, "reference", image_height=H, image_width=W, **kw)


def score(handler, exams, out_dir: Path) -> Path:
    """The pipeline's shape: resolve at construction, RunInference, rows with the version, a file sink."""
    name, version = handler.resolve()
    prefix = out_dir / "scores"
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = (p
             | beam.Create(sorted(exams.items()))
             | RunInference(KeyedModelHandler(handler))
             | beam.MapTuple(lambda key, r: json.dumps({"image": key, "score": r.inference,
                                                        "model": name, "version": version,
                                                        "model_id": r.model_id}))
             | beam.io.WriteToText(str(prefix), file_name_suffix=".jsonl", shard_name_template=""))
    return Path(f"{prefix}.jsonl")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_scored_exactly_once(path, expected):
    rows = read_rows(path)
    keys = [r["image"] for r in rows]
    assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys))
    for r in rows:
        assert r["score"] == pytest.approx(expected[r["image"]], abs=1e-6)
        assert (r["version"], r["model_id"]) == (1, "reference:1")


def test_server_not_yet_up_at_start(model_root, exams, expected, tmp_path):
    server = LocalServer(["--model", str(model_root / "reference"), "--threads", "1"],
                         log_path=str(tmp_path / "serve.log"))
    h = handler(server.address, retry_budget_s=60, initial_backoff_s=0.2, max_backoff_s=1.0)
    starter = threading.Timer(1.0, server.start, kwargs={"wait": False})
    starter.start()
    try:
        out = score(h, exams, tmp_path)  # resolve() waits for the server, then the run scores
        assert_scored_exactly_once(out, expected)
    finally:
        starter.join()
        server.kill()


def test_server_killed_after_some_predicts_and_restarted(model_root, exams, expected, tmp_path):
    """SIGKILL after 3 answered Predicts (of 10); a supervisor restarts it on the same port."""
    log_path = str(tmp_path / "serve.log")
    # The lead's console script, as an operator would run it.
    server = LocalServer(["serve-local", "--model", str(model_root / "reference"), "--threads", "1"],
                         log_path=log_path, command=[str(MAMMOBEAM)])
    server.start(["--exit-after-predicts", "3"])
    first = server.process
    restarted = threading.Event()
    stop = threading.Event()

    def supervise():
        first.wait()
        if not stop.is_set():
            time.sleep(0.5)
            server.start()
            restarted.set()

    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()
    try:
        out = score(handler(server.address, retry_budget_s=90, initial_backoff_s=0.2,
                             max_backoff_s=1.0), exams, tmp_path)
        assert restarted.wait(60) and first.returncode == -9
        assert_scored_exactly_once(out, expected)
    finally:
        stop.set()
        first.kill() if first.poll() is None else None
        supervisor.join(timeout=90)
        tail = server.stop()
    # Together the two servers answered every image at least once (replays are allowed, duplicates in
    # the output are not); the restarted one reports its own share.
    assert "stopped after" in tail
    log = Path(log_path).read_text()
    assert log.count("exiting after 3 Predict calls") == 1


@pytest.fixture(scope="module")
def blocking_server(model_root, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("blocking")
    server = LocalServer(["--model-config", str(model_root / "models.config"), "--threads", "1",
                          "--block-predicts-after", "2"], log_path=str(log_dir / "serve.log"))
    server.start()
    yield server
    server.kill()


def test_server_blocking_past_the_deadline_stops_with_a_clear_error_and_no_output(
        blocking_server, exams, tmp_path):
    h = handler(blocking_server.address, deadline_s=0.5, retry_budget_s=3, initial_backoff_s=0.2)
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        score(h, exams, tmp_path)
    elapsed = time.monotonic() - started
    assert "DEADLINE_EXCEEDED" in str(info.value) and "retry budget" in str(info.value)
    assert elapsed < 30
    assert not (tmp_path / "scores.jsonl").exists()


def test_wrong_signature_model_fails_at_start_before_any_image(blocking_server, exams, tmp_path):
    h = TFServingModelHandler(blocking_server.address, "wrongsig", image_height=H, image_width=W)
    with pytest.raises(ContractError, match="must return one output"):
        score(h, exams, tmp_path)
    assert not (tmp_path / "scores.jsonl").exists()


def test_unknown_model_fails_at_start_without_retrying(blocking_server):
    h = TFServingModelHandler(blocking_server.address, "nosuch", image_height=H, image_width=W)
    with pytest.raises(ServingError, match="NOT_FOUND"):
        h.resolve()
