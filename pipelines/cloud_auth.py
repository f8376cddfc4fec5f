"""Google Cloud credentials for the pipelines: application-default credentials in production,
anonymous credentials against emulators, and never a wait on credential retries with emulators.

Endpoints come from the standard variables, which the Google clients and Beam's GCS filesystem
read themselves:
  STORAGE_EMULATOR_HOST   e.g. http://127.0.0.1:4443 (fake-gcs-server)
  PUBSUB_EMULATOR_HOST    e.g. 127.0.0.1:8681 (the Pub/Sub emulator)

Why this module exists: with no Google credentials, Beam's GCP code retries the credential lookup
(google.auth.default with exponential backoff, about 28 s per process) before connecting
anonymously, and the metadata-server probe adds its own wait (FACTS.md). `prepare()` is called once
per process before any pipeline or client is built.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

STORAGE_EMULATOR_HOST = "STORAGE_EMULATOR_HOST"
PUBSUB_EMULATOR_HOST = "PUBSUB_EMULATOR_HOST"


def emulator_hosts() -> dict[str, str]:
    """The emulator endpoints configured in the environment (empty in production)."""
    return {k: os.environ[k] for k in (STORAGE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST) if os.environ.get(k)}


def using_emulators() -> bool:
    return bool(emulator_hosts())


def prepare() -> str:
    """Set up credentials for this process; returns 'anonymous (emulators: ...)' or 'application-default'.

    With an emulator configured: no metadata-server probe (NO_GCE_CHECK) and Beam's credential
    cache seeded with "no credentials", so Beam's GCS filesystem builds an anonymous client at once.
    Otherwise nothing is changed: Beam and the clients use application-default credentials
    (GOOGLE_APPLICATION_CREDENTIALS, gcloud's user credentials, or the metadata server on GCP).
    """
    hosts = emulator_hosts()
    if not hosts:
        return "application-default"
    os.environ.setdefault("NO_GCE_CHECK", "True")
    _seed_beam_anonymous()
    return "anonymous (emulators: " + ", ".join(f"{k}={v}" for k, v in sorted(hosts.items())) + ")"


def _seed_beam_anonymous() -> None:
    # Beam caches the credentials it found per process; None means "connect anonymously"
    # (apache_beam/internal/gcp/auth.py, _Credentials.get_service_credentials).
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # Beam without the gcp extra: nothing to seed
        return
    with auth._Credentials._credentials_lock:
        auth._Credentials._credentials = None
        auth._Credentials._credentials_init = True


def credentials():
    """Credentials for the google-cloud clients this project builds itself."""
    if using_emulators():
        from google.auth.credentials import AnonymousCredentials
        return AnonymousCredentials()
    import google.auth
    creds, _ = google.auth.default()
    return creds


def storage_client(project: Optional[str] = None):
    from google.cloud import storage
    if os.environ.get(STORAGE_EMULATOR_HOST):
        from google.auth.credentials import AnonymousCredentials
        return storage.Client(project=project or "emulator", credentials=AnonymousCredentials())
    return storage.Client(project=project, credentials=credentials())


def subscriber_client():
    from google.cloud import pubsub_v1
    return pubsub_v1.SubscriberClient(credentials=credentials())


def publisher_client():
    from google.cloud import pubsub_v1
    return pubsub_v1.PublisherClient(credentials=credentials())
