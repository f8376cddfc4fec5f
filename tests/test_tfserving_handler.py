"""TFServingModelHandler against serve-local's PredictionService, run in this process (fast).

Subprocess fault drills (server down, killed, blocking) are in test_serving_faults.py.
"""

from __future__ import annotations

import datetime
import os
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402

from mammobeam.serving import serve_local  # noqa: E402
from mammobeam.serving.contract import ContractError, resolve_model  # noqa: E402
from mammobeam.serving.export import build_reference_model  # noqa: E402
from mammobeam.serving.inprocess import InProcessModelHandler  # noqa: E402
from mammobeam.serving.tfserving import (ServingError, TFServingModelHandler, images_per_message,  # noqa: E402
                                         is_message_too_large, is_retryable)

H, W = 64, 52
PP = "pp-test"


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 65535, (H, W), dtype=np.uint16) for _ in range(n)]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    build_reference_model(root, height=H, width=W, preprocessing_version=PP, version=1, seed=0)
    build_reference_model(root, height=H, width=W, preprocessing_version=PP, version=2, seed=1)
    build_reference_model(root, height=H, width=W, preprocessing_version=PP, name="other", version=1)
    import tensorflow as tf

    class WrongSignature(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, H, W, 1], tf.float32, name="images")])
        def serve(self, images):
            return {"score": tf.reduce_mean(images, axis=[1, 2, 3])}

    module = WrongSignature()
    tf.saved_model.save(module, str(root / "wrongsig" / "1"), signatures={"serving_default": module.serve})
    config = root / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{ name: "reference" base_path: "{root / 'reference'}" model_platform: "tensorflow"
           model_version_policy {{ all {{}} }}
           version_labels {{ key: "stable" value: 1 }} version_labels {{ key: "canary" value: 2 }} }}
  config {{ name: "wrongsig" base_path: "{root / 'wrongsig'}" model_platform: "tensorflow" }}
}}""")
    return root


@pytest.fixture(scope="module")
def server(model_root):
    models = serve_local.load_models(config_file=str(model_root / "models.config"))
    servicer = serve_local.PredictionServicer(models)
    srv, port = serve_local.build_server(servicer)
    srv.start()
    yield servicer, f"127.0.0.1:{port}"
    srv.stop(0)


def handler(address, model="reference", **kw):
    kw.setdefault("image_height", H)
    kw.setdefault("image_width", W)
    kw.setdefault("retry_budget_s", 2.0)
    return TFServingModelHandler(address, model, **kw)


def in_process_scores(model_root, version, batch):
    h = InProcessModelHandler(resolve_model(model_root / "reference", str(version)))
    return [p.inference for p in h.run_inference(batch, h.load_model())]


def test_label_resolves_once_to_a_version_that_every_request_asks_for(server, model_root):
    servicer, address = server
    h = handler(address, label="canary")
    assert h.resolve() == ("reference", 2)
    before = len(servicer.requested_specs)
    batch = images(6)
    client = h.create_client()
    results = list(h.request(batch[:3], client)) + list(h.request(batch[3:], client))
    assert servicer.requested_specs[before:] == [("reference", 2, None)] * 2
    assert [r.model_id for r in results] == ["reference:2"] * 6
    assert [r.inference for r in results] == pytest.approx(in_process_scores(model_root, 2, batch), abs=1e-6)
    assert all(isinstance(r.inference, float) for r in results)


def test_stable_label_and_latest_resolve_to_their_versions(server):
    _, address = server
    assert handler(address, label="stable").resolve() == ("reference", 1)
    assert handler(address).resolve() == ("reference", 2)
    assert handler(address, version=1).resolve() == ("reference", 1)


def test_pinned_handler_travels_pickled_with_its_version(server):
    import pickle
    _, address = server
    h = handler(address, label="stable")
    h.resolve()
    copy = pickle.loads(pickle.dumps(h))
    assert copy.version == 1 and copy.signature == h.signature
    assert {r.model_id for r in copy.request(images(2), copy.create_client())} == {"reference:1"}


def test_an_unresolved_label_refuses_to_score_on_a_worker(server):
    _, address = server
    h = handler(address, label="canary")
    with pytest.raises(ServingError, match="never resolved"):
        h.request(images(1), h.create_client())


def test_unknown_version_is_not_found_and_not_retried(server):
    _, address = server
    h = handler(address, version=7, retry_budget_s=30)
    started = time.monotonic()
    with pytest.raises(ServingError, match="NOT_FOUND.*not retried"):
        h.resolve()
    assert time.monotonic() - started < 5


def test_unknown_label_fails_at_start(server):
    _, address = server
    with pytest.raises(ServingError, match="INVALID_ARGUMENT.*Unrecognized servable version label"):
        handler(address, label="nightly").resolve()


def test_wrong_signature_fails_at_start_with_a_contract_error(server):
    _, address = server
    with pytest.raises(ContractError, match="input 'images' must be uint16, it is float32"):
        handler(address, model="wrongsig").resolve()


def test_wrong_input_size_fails_at_start(server):
    _, address = server
    with pytest.raises(ContractError, match="takes 64x52 images but preprocessing makes 32x32"):
        handler(address, image_height=32, image_width=32).resolve()


def test_batches_fit_the_pixel_budget(server):
    _, address = server
    per_image = H * W * 2
    h = handler(address, max_batch_size=32, max_message_bytes=5 * per_image + 4096)
    assert images_per_message(H, W, 5 * per_image + 4096) == 5
    assert h.batch_elements_kwargs()["max_batch_size"] == 5
    assert h.batch_elements_kwargs()["min_batch_size"] <= 5
    full = TFServingModelHandler(address, "m", image_height=1024, image_width=832)
    assert full.batch_elements_kwargs() == {"min_batch_size": 16, "max_batch_size": 32}


def test_message_size_refusal_splits_the_batch(model_root):
    models = serve_local.load_models(str(model_root / "reference"))
    servicer = serve_local.PredictionServicer(models)
    # The server takes at most 3 images per request; the client thinks 32 fit.
    srv, port = serve_local.build_server(servicer, max_message_bytes=3 * H * W * 2 + 2000)
    srv.start()
    try:
        h = handler(f"127.0.0.1:{port}")
        h.resolve()
        batch = images(8, seed=3)
        results = h.request(batch, h.create_client())
        assert [r.inference for r in results] == pytest.approx(in_process_scores(model_root, 2, batch), abs=1e-6)
        stats = servicer.stats()
        assert stats["images"] == 8 and max(int(k) for k in stats["batch_sizes"]) <= 3
    finally:
        srv.stop(0)


def test_images_of_the_wrong_shape_or_type_are_refused(server):
    _, address = server
    h = handler(address, version=1)
    h.resolve()
    with pytest.raises(ContractError, match="uint16 64x52"):
        h.request([np.zeros((H, W), np.float32)], h.create_client())


class _Rpc(grpc.RpcError):
    def __init__(self, code, details=""):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


@pytest.mark.parametrize("code,details,retry,split", [
    ("UNAVAILABLE", "failed to connect", True, False),
    ("DEADLINE_EXCEEDED", "Deadline Exceeded", True, False),
    ("RESOURCE_EXHAUSTED", "Received message larger than max (9 vs. 4)", False, True),
    ("RESOURCE_EXHAUSTED", "The batch scheduling queue to which this task was submitted is full", True, False),
    ("INVALID_ARGUMENT", "bad input", False, False),
    ("NOT_FOUND", "Servable not found", False, False),
    ("UNAUTHENTICATED", "no token", False, False),
])
def test_retry_filter(code, details, retry, split):
    exc = _Rpc(getattr(grpc.StatusCode, code), details)
    assert is_retryable(exc) is retry
    assert is_message_too_large(exc) is split
    assert not is_retryable(ValueError("not an RPC"))


def test_bearer_token_is_sent_as_metadata(model_root):
    models = serve_local.load_models(str(model_root / "reference"))
    srv, port = serve_local.build_server(serve_local.PredictionServicer(models, bearer_token="s3cret"))
    srv.start()
    try:
        with pytest.raises(ServingError, match="UNAUTHENTICATED"):
            handler(f"127.0.0.1:{port}").resolve()
        assert handler(f"127.0.0.1:{port}", bearer_token="s3cret").resolve() == ("reference", 2)
    finally:
        srv.stop(0)


def _self_signed():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tfserving.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("tfserving.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def test_tls_with_root_certificates_and_token(model_root):
    key_pem, cert_pem = _self_signed()
    models = serve_local.load_models(str(model_root / "reference"))
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
    srv, port = serve_local.build_server(serve_local.PredictionServicer(models, bearer_token="t"),
                                         server_credentials=credentials)
    srv.start()
    try:
        h = handler(f"127.0.0.1:{port}", root_certificates=cert_pem, tls_server_name="tfserving.test",
                    bearer_token="t")
        assert h.resolve() == ("reference", 2)
        assert len(h.request(images(2), h.create_client())) == 2
        # Without the root certificate the handshake fails (UNAVAILABLE, retried, then a clear error).
        with pytest.raises(ServingError, match="UNAVAILABLE"):
            handler(f"127.0.0.1:{port}", retry_budget_s=0.5, bearer_token="t").resolve()
    finally:
        srv.stop(0)
