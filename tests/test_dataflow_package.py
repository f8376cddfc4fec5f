"""What Dataflow needs, checked offline: the project builds as a wheel, the wheel installs with
--no-deps into a fresh venv that sees the test environment's packages and imports with networking
disabled (`unshare -n`), and the command lines in infra/dataflow/ parse as `mammobeam` and Beam
options with the settings that matter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions, PipelineOptions,
                                                  SetupOptions, StandardOptions, WorkerOptions)

from conftest import require
from mammobeam.pipelines.cli import _parser_for

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
# Every module a worker or launcher imports; none may reach the network at import time.
MODULES = ["mammobeam.pipelines.cli", "mammobeam.pipelines.batch", "mammobeam.pipelines.bigquery_io",
           "mammobeam.pipelines.streaming", "mammobeam.schemas.bigquery", "mammobeam.serving.tfserving",
           "mammobeam.analytics.report"]


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(out), str(REPO)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list(out.glob("mammobeam-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


@pytest.mark.slow
def test_wheel_installs_without_deps_and_imports_offline(wheel, tmp_path):
    require(unshare_works(), "unshare -n is not available (needs root or user namespaces)",
            "MAMMOBEAM_REQUIRE_EMULATORS")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The test environment's packages, as a plain path: its .pth files (the editable mammobeam) are
    # not processed, so `mammobeam` can only come from the wheel.
    (site / "test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = ("import importlib, sys, mammobeam, pathlib\n"
             f"for m in {MODULES!r}: importlib.import_module(m)\n"
             "import mammobeam.serving as s\n"
             "assert (pathlib.Path(s.__file__).parent / 'models.config').is_file(), 'package data missing'\n"
             "print(mammobeam.__file__)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["NO_GCE_CHECK"] = "True"
    result = subprocess.run(["unshare", "-n", str(python), "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith(str(site)), result.stdout
    cli = subprocess.run(["unshare", "-n", str(venv / "bin" / "mammobeam"), "--help"], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert cli.returncode == 0 and "score" in cli.stdout, cli.stderr


def dry_run(script: str, **env) -> list[str]:
    """The command a launch script would run, with DRY_RUN=1 (arguments NUL-separated)."""
    result = subprocess.run(["bash", str(INFRA / "dataflow" / script)], capture_output=True,
                            env={**os.environ, "DRY_RUN": "1", "PROJECT": "screening-prod", **env})
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return result.stdout.decode().split("\0")[:-1]


def parse(argv: list[str]):
    assert argv[0] == "mammobeam"
    parser, module = _parser_for(argv[1])
    args, extra = parser.parse_known_args(argv[2:])
    options = PipelineOptions(extra)
    known = set(PipelineOptions([]).get_all_options())
    unknown = set(options.get_all_options(retain_unknown_options=True)) - known
    assert not unknown, f"not Beam options: {sorted(unknown)}"
    return args, options


def check_dataflow_options(options: PipelineOptions) -> WorkerOptions:
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert cloud.project == "screening-prod" and cloud.region
    assert cloud.temp_location.startswith("gs://") and cloud.staging_location.startswith("gs://")
    assert cloud.service_account_email
    worker = options.view_as(WorkerOptions)
    assert worker.sdk_container_image and worker.machine_type
    assert worker.max_num_workers and worker.autoscaling_algorithm == "THROUGHPUT_BASED"
    assert worker.use_public_ips is False
    assert options.view_as(SetupOptions).sdk_location == "container"
    debug = options.view_as(DebugOptions)
    assert "use_runner_v2" in debug.experiments and debug.number_of_worker_harness_threads
    return worker


def test_score_command_line_parses_with_dataflow_options():
    argv = dry_run("score.sh", INPUT="gs://archive/site-north/**.dcm")
    args, options = parse(argv)
    assert args.input == ["gs://archive/site-north/**.dcm"]
    assert args.output == "bq://screening-prod.screening" and args.state_dir
    assert args.serving_address and args.serving_model and args.image_size
    assert args.chunk_exams >= 100 and args.pseudonymize_paths and not args.resume
    check_dataflow_options(options)
    assert parse(dry_run("score.sh", INPUT="gs://a/**.dcm", RESUME="1"))[0].resume


def test_stream_command_line_parses_with_dataflow_options():
    args, options = parse(dry_run("stream.sh"))
    assert args.subscription == "projects/screening-prod/subscriptions/mammobeam-dicom-finalize"
    assert args.output == "bq://screening-prod.screening"
    assert args.serving_address and args.pseudonymize_paths
    assert options.view_as(StandardOptions).streaming
    check_dataflow_options(options)
    assert options.view_as(GoogleCloudOptions).enable_streaming_engine


def test_infra_shell_scripts_are_valid_bash():
    scripts = sorted(INFRA.rglob("*.sh"))
    assert len(scripts) >= 6
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, (script, result.stderr)


def test_worker_image_installs_the_wheel_with_the_tested_constraints():
    dockerfile = (INFRA / "dataflow" / "Dockerfile").read_text()
    import apache_beam
    assert f"ARG BEAM_VERSION={apache_beam.__version__}" in dockerfile
    assert f"beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk" in dockerfile
    assert "pip install -c /opt/mammobeam/constraints.txt" in dockerfile
    assert "worker-entrypoint.sh" in dockerfile and (REPO / "constraints.txt").is_file()
