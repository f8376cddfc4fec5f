"""Keyed pseudonyms for patient IDs, accession numbers, exam keys and (optionally) paths.

A pseudonym is HMAC-SHA256(key, "<kind>\\x1f<value>") as 32 hex characters: stable for one key, so
outcomes can be joined to tables, and useless without the key. The key comes from configuration:
``MAMMOBEAM_PSEUDONYM_KEY`` (the key itself) or ``MAMMOBEAM_PSEUDONYM_KEY_FILE`` (a file holding it),
or ``--pseudonym-key-file``. Without one, the built-in demo key is used, and only files carrying the
synthetic-data marker (schemas/codes.py) may be read with it; ``allow_demo_key_on_real_data`` forces
it, with a warning on every use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

KEY_ENV = "MAMMOBEAM_PSEUDONYM_KEY"
KEY_FILE_ENV = "MAMMOBEAM_PSEUDONYM_KEY_FILE"
# Public on purpose: it protects nothing, so it may only touch synthetic data.
DEMO_KEY = b"mammobeam-demo-key-for-synthetic-data-only"
MIN_KEY_BYTES = 16


class PseudonymKeyError(ValueError):
    """The configured key is unusable (missing file, too short)."""


class DemoKeyRefused(RuntimeError):
    """Real (unmarked) data met the public demo key."""


@dataclasses.dataclass(frozen=True)
class Pseudonymizer:
    """Turns identifiers into keyed pseudonyms.

    A key read from a file or the environment is never pickled: a pipeline ships the key's source
    (and a fingerprint), and each worker reads the key itself, so it does not land in a runner's
    staging bucket. Workers need the same MAMMOBEAM_PSEUDONYM_KEY(_FILE); a different key is refused.
    """

    key: bytes = dataclasses.field(repr=False)
    is_demo_key: bool = False
    allow_demo_key_on_real_data: bool = False
    key_file: Optional[str] = None
    key_env: Optional[str] = None

    def __reduce__(self):
        if self.key_file or self.key_env:
            return (_from_source, (self.key_file, self.key_env, self.allow_demo_key_on_real_data,
                                   self.fingerprint()))
        return (Pseudonymizer, (self.key, self.is_demo_key, self.allow_demo_key_on_real_data))

    def fingerprint(self) -> str:
        """Identifies the key without revealing it (for checks and logs)."""
        return self.pseudonym("fingerprint", "mammobeam")[:12]

    @classmethod
    def from_config(cls, key_file: Optional[str] = None, allow_demo_key_on_real_data: bool = False
                    ) -> "Pseudonymizer":
        """The key from --pseudonym-key-file, else the environment, else the demo key."""
        path = key_file or os.environ.get(KEY_FILE_ENV)
        if path:
            return cls(_read_key_file(path), allow_demo_key_on_real_data=allow_demo_key_on_real_data,
                       key_file=path)
        if os.environ.get(KEY_ENV):
            return cls(_checked(os.environ[KEY_ENV].encode()),
                       allow_demo_key_on_real_data=allow_demo_key_on_real_data, key_env=KEY_ENV)
        return cls(DEMO_KEY, is_demo_key=True, allow_demo_key_on_real_data=allow_demo_key_on_real_data)

    def check_allowed(self, synthetic: bool) -> None:
        """Refuse the demo key on unmarked data unless forced (then warn loudly)."""
        if not self.is_demo_key or synthetic:
            return
        if not self.allow_demo_key_on_real_data:
            raise DemoKeyRefused(
                f"no pseudonym key configured ({KEY_ENV} or {KEY_FILE_ENV}) and the file is not "
                "synthetic: the public demo key would make pseudonyms reversible by anyone")
        log.warning("PSEUDONYMS ARE NOT PROTECTED: the public demo key is being used on real data")

    def pseudonym(self, kind: str, value: str) -> str:
        digest = hmac.new(self.key, f"{kind}\x1f{value}".encode(), hashlib.sha256).hexdigest()
        return digest[:32]

    def patient(self, patient_id: str, issuer: Optional[str] = None) -> str:
        return self.pseudonym("patient", f"{issuer or ''}|{patient_id}")

    def accession(self, accession_number: str, issuer_or_site: Optional[str] = None) -> str:
        return self.pseudonym("accession", f"{issuer_or_site or ''}|{accession_number}")

    def exam(self, exam_key: str) -> str:
        return self.pseudonym("exam", exam_key)

    def path(self, uri: str) -> str:
        return "path:" + self.pseudonym("path", uri)


def _checked(key: bytes) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    return key


def _read_key_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return _checked(f.read().strip())
    except OSError as e:
        raise PseudonymKeyError(f"cannot read pseudonym key file {path}: {e.strerror}") from None


def _from_source(key_file: Optional[str], key_env: Optional[str], allow: bool, fingerprint: str
                 ) -> Pseudonymizer:
    """Unpickling on a worker: read the key where the launcher read it, and check it is the same."""
    if key_file:
        path = os.environ.get(KEY_FILE_ENV) if not os.path.exists(key_file) else key_file
        if not path:
            raise PseudonymKeyError(f"worker cannot read the pseudonym key file {key_file}; "
                                    f"mount it or set {KEY_FILE_ENV}")
        found = Pseudonymizer(_read_key_file(path), allow_demo_key_on_real_data=allow, key_file=path)
    else:
        value = os.environ.get(key_env or KEY_ENV)
        if not value:
            raise PseudonymKeyError(f"worker has no {key_env or KEY_ENV}; set it or use {KEY_FILE_ENV}")
        found = Pseudonymizer(_checked(value.encode()), allow_demo_key_on_real_data=allow, key_env=key_env)
    if found.fingerprint() != fingerprint:
        raise PseudonymKeyError("the worker's pseudonym key differs from the launcher's")
    return found
