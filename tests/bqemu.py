"""bqemulator (a DuckDB-backed BigQuery emulator, REST on loopback) for tests that write BigQuery.

bqemulator pins DuckDB 1.5.5, so it runs from a virtual environment of its own, made by
`infra/ci/bqemulator-venv.sh VENV` (.ci/run calls it). Tests find that venv through
$MAMMOBEAM_BQEMULATOR_VENV, else `<repo>/.venv-bqemu`. When it is missing the tests are skipped with
the reason, unless MAMMOBEAM_REQUIRE_EMULATORS=1.

Fixture (`from tests.bqemu import bqemulator` or `from bqemu import bqemulator`):

    bqemulator   BqEmulator (module scope); BIGQUERY_EMULATOR_HOST is set while it runs
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Optional

import pytest

from emulators import (PROJECT, REQUIRE_VARIABLE, EmulatorUnavailable, _require, _stop, _wait_for_http,
                       environment, free_port)

VENV_VARIABLE = "MAMMOBEAM_BQEMULATOR_VENV"
DEFAULT_VENV = Path(__file__).resolve().parent.parent / ".venv-bqemu"


def bqemulator_binary() -> str:
    venv = Path(os.environ.get(VENV_VARIABLE) or DEFAULT_VENV)
    binary = venv / "bin" / "bqemulator"
    if not binary.is_file():
        raise EmulatorUnavailable(f"bqemulator is not installed in {venv} (run infra/ci/bqemulator-venv.sh "
                                  f"{venv}, or set {VENV_VARIABLE})")
    return str(binary)


@dataclasses.dataclass
class BqEmulator:
    host: str
    port: int
    project: str = PROJECT
    process: Optional[subprocess.Popen] = None
    log_path: Optional[Path] = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {"BIGQUERY_EMULATOR_HOST": self.endpoint, "NO_GCE_CHECK": "True"}

    def client(self):
        """google-cloud-bigquery, anonymous, talking to the emulator."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery
        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=self.endpoint))

    def beam_client(self):
        """Beam WriteToBigQuery's `test_client` for this emulator."""
        from mammobeam.pipelines.bigquery_io import EndpointBigQueryClient
        return EndpointBigQueryClient(self.endpoint, self.project)

    def rows(self, sql: str) -> list[dict]:
        return [dict(row.items()) for row in self.client().query(sql).result()]

    def stop(self) -> None:
        _stop(self.process)
        self.process = None


def start_bqemulator(workdir: Path, project: str = PROJECT, timeout: float = 60) -> BqEmulator:
    binary = bqemulator_binary()
    port = free_port()
    log_path = Path(workdir) / f"bqemulator-{port}.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [binary, "start", "--rest-host", "127.0.0.1", "--rest-port", str(port), "--grpc-host", "127.0.0.1",
         "--grpc-port", str(free_port()), "--project", project, "--ephemeral", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "NO_GCE_CHECK": "True"})
    emulator = BqEmulator("127.0.0.1", port, project, process, log_path)
    try:
        _wait_for_http(f"{emulator.endpoint}/bigquery/v2/projects/{project}/datasets", process, log_path,
                       timeout)
    except Exception:
        emulator.stop()
        raise
    return emulator


@pytest.fixture(scope="module")
def bqemulator(tmp_path_factory):
    emulator = _require(lambda: start_bqemulator(tmp_path_factory.mktemp("bqemu")))
    try:
        with environment(**emulator.env()):
            yield emulator
    finally:
        emulator.stop()


__all__ = ["BqEmulator", "bqemulator", "start_bqemulator", "REQUIRE_VARIABLE"]
