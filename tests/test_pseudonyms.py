"""Keyed pseudonyms: stable per key, different across keys, demo key only for synthetic data."""

from __future__ import annotations

import pytest

from mammobeam.transforms.pseudonyms import (DEMO_KEY, DemoKeyRefused, Pseudonymizer,
                                             PseudonymKeyError)


def test_same_key_same_pseudonym_other_key_other_pseudonym():
    a, b = Pseudonymizer(b"k" * 32), Pseudonymizer(b"j" * 32)
    assert a.patient("123", "HOSP") == a.patient("123", "HOSP")
    assert a.patient("123", "HOSP") != b.patient("123", "HOSP")
    assert a.patient("123", "HOSP") != a.patient("123", "OTHER")  # issuer qualifies the ID
    assert a.accession("123", "SITE") != a.patient("123", "SITE")  # kinds never collide
    assert "123" not in a.exam("study:123")


def test_key_comes_from_file_then_environment_then_demo(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMMOBEAM_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("MAMMOBEAM_PSEUDONYM_KEY_FILE", raising=False)
    assert Pseudonymizer.from_config().is_demo_key
    monkeypatch.setenv("MAMMOBEAM_PSEUDONYM_KEY", "an-environment-key-long-enough")
    assert Pseudonymizer.from_config().key == b"an-environment-key-long-enough"
    key_file = tmp_path / "key"
    key_file.write_text("a-file-key-that-is-long-enough\n")
    assert Pseudonymizer.from_config(str(key_file)).key == b"a-file-key-that-is-long-enough"
    key_file.write_text("short")
    with pytest.raises(PseudonymKeyError):
        Pseudonymizer.from_config(str(key_file))
    with pytest.raises(PseudonymKeyError):
        Pseudonymizer.from_config(str(tmp_path / "missing"))


def test_demo_key_is_refused_on_real_data_unless_forced(caplog):
    demo = Pseudonymizer(DEMO_KEY, is_demo_key=True)
    demo.check_allowed(synthetic=True)
    with pytest.raises(DemoKeyRefused):
        demo.check_allowed(synthetic=False)
    forced = Pseudonymizer(DEMO_KEY, is_demo_key=True, allow_demo_key_on_real_data=True)
    forced.check_allowed(synthetic=False)
    assert "NOT PROTECTED" in caplog.text


def test_a_configured_key_is_never_pickled_and_workers_must_hold_the_same(tmp_path, monkeypatch):
    import pickle
    secret = "the-programme-secret-key-0123456789"
    monkeypatch.delenv("MAMMOBEAM_PSEUDONYM_KEY_FILE", raising=False)
    monkeypatch.setenv("MAMMOBEAM_PSEUDONYM_KEY", secret)
    launcher = Pseudonymizer.from_config()
    shipped = pickle.dumps(launcher)
    assert secret.encode() not in shipped and secret not in repr(launcher)
    worker = pickle.loads(shipped)
    assert worker.exam("study:1") == launcher.exam("study:1")
    monkeypatch.setenv("MAMMOBEAM_PSEUDONYM_KEY", "another-key-entirely-0123456789")
    with pytest.raises(PseudonymKeyError, match="differs"):
        pickle.loads(shipped)
    key_file = tmp_path / "key"
    key_file.write_text(secret)
    from_file = Pseudonymizer.from_config(str(key_file))
    assert secret.encode() not in pickle.dumps(from_file)
    assert pickle.loads(pickle.dumps(from_file)).exam("x") == launcher.exam("x")
