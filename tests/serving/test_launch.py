"""serving.launch: the exact command lines for all three servers (--dry_run, so neither
the binary nor Docker is needed), how `auto` chooses, and the fallback really serving.
"""
import os
import shlex
import shutil
import subprocess
from importlib import metadata

import numpy as np
import pytest

from serving.client import GrpcClient, RestClient
from tests.serving.conftest import PYTHON, REPO, make_model_base

import portpicker

IMAGE = f"tensorflow/serving:{metadata.version('tensorflow-serving-api')}"


def launch(*args, path=None, timeout=60):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    if path is not None:
        env["PATH"] = path
    return subprocess.run([PYTHON, "-m", "serving.launch", *args], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def no_servers_path(tmp_path):
    """A PATH with neither tensorflow_model_server nor docker on it."""
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    return str(empty)


def test_dry_run_python(no_servers_path):
    result = launch("--server=python", "--dry_run", "--port=9000", "--rest_api_port=9001",
                    "--model_name=m", "--model_base_path=/models/m", path=no_servers_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shlex.join([PYTHON, "-m", "serving", "--port=9000",
                                        "--rest_api_port=9001", "--model_name=m",
                                        "--model_base_path=/models/m"]) + "\n"
    assert "serving.launch: python: --server=python was asked for" in result.stderr


def test_dry_run_binary_drops_our_bind_address(no_servers_path):
    result = launch("--server=tensorflow_model_server", "--dry_run", "--port=9000",
                    "--bind_address=0.0.0.0", "--model_config_file=/cfg/models.config",
                    "--enable_batching", path=no_servers_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ("tensorflow_model_server --port=9000 "
                             "--model_config_file=/cfg/models.config --enable_batching\n")


def test_dry_run_docker_mounts_every_path_and_publishes_ports(tmp_path, no_servers_path):
    models = tmp_path / "models"
    (models / "a" / "1").mkdir(parents=True)
    (models / "b").mkdir()
    config = tmp_path / "models.config"
    config.write_text('model_config_list {\n'
                      f'  config {{ name: "a" base_path: "{models / "a"}" '
                      'model_platform: "tensorflow" }\n'
                      f"  config {{ name: 'b' base_path: '{models / 'b'}' }}\n}}\n")
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 32 }\n")
    result = launch("--server=docker", "--dry_run", "--port=9000", "--rest_api_port=9001",
                    f"--model_config_file={config}", "--enable_batching",
                    f"--batching_parameters_file={batching}", path=no_servers_path)
    assert result.returncode == 0, result.stderr

    def mount(path):
        return ["--mount", f"type=bind,source={path},target={path},readonly"]

    assert shlex.split(result.stdout) == [
        "docker", "run", "--rm", "--workdir", str(REPO),
        "-p", "127.0.0.1:9000:9000", "-p", "127.0.0.1:9001:9001",
        *mount(config), *mount(models / "a"), *mount(models / "b"), *mount(batching),
        "--entrypoint", "tensorflow_model_server", IMAGE,
        "--port=9000", "--rest_api_port=9001", f"--model_config_file={config}",
        "--enable_batching", f"--batching_parameters_file={batching}"]


def test_dry_run_docker_makes_relative_paths_absolute(no_servers_path):
    result = launch("--server=docker", "--dry_run", "--model_base_path=outputs/m",
                    "--bind_address=0.0.0.0", "--docker_image=tensorflow/serving:latest",
                    path=no_servers_path)
    absolute = REPO / "outputs" / "m"
    assert shlex.split(result.stdout) == [
        "docker", "run", "--rm", "--workdir", str(REPO), "-p", "0.0.0.0:8500:8500",
        "--mount", f"type=bind,source={absolute},target={absolute},readonly",
        "--entrypoint", "tensorflow_model_server", "tensorflow/serving:latest",
        f"--model_base_path={absolute}"]


def test_dry_run_docker_reads_space_separated_flags_too(no_servers_path):
    result = launch("--server=docker", "--dry_run", "--model_base_path", "outputs/m",
                    "--docker_image=tensorflow/serving:latest", path=no_servers_path)
    absolute = REPO / "outputs" / "m"
    command = shlex.split(result.stdout)
    assert f"type=bind,source={absolute},target={absolute},readonly" in command
    assert command[-1] == f"--model_base_path={absolute}"


def fake_binary(tmp_path):
    """A `tensorflow_model_server` on its own PATH folder; --dry_run never runs it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    binary = bin_dir / "tensorflow_model_server"
    binary.write_text("#!/bin/sh\nexit 3\n")
    binary.chmod(0o755)
    return binary


def test_auto_prefers_the_binary_on_path(tmp_path):
    # Only its presence on PATH is looked at: --dry_run never runs it.
    binary = fake_binary(tmp_path)
    bin_dir = binary.parent
    result = launch("--dry_run", "--port=9000", "--model_base_path=/m", path=str(bin_dir))
    assert result.stdout == f"{binary} --port=9000 --model_base_path=/m\n"
    assert f"tensorflow_model_server: tensorflow_model_server is on PATH at {binary}" \
        in result.stderr


def test_auto_picks_python_for_a_config_that_logs_requests(tmp_path):
    """tensorflow_model_server would not start: it has no request logger to create."""
    bin_dir = fake_binary(tmp_path).parent
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/m" '
                      'logging_config { log_collector_config { type: "tfrecord" '
                      'filename_prefix: "/logs/m" } } } }\n')
    result = launch("--dry_run", f"--model_config_file={config}", path=str(bin_dir))
    assert result.returncode == 0, result.stderr
    assert "serving.launch: python: the model config has a logging_config" in result.stderr
    assert shlex.split(result.stdout)[1:3] == ["-m", "serving"]


def test_auto_falls_back_to_python_without_binary_or_docker(no_servers_path):
    result = launch("--dry_run", "--model_base_path=/m", path=no_servers_path)
    assert result.stdout == shlex.join([PYTHON, "-m", "serving", "--model_base_path=/m"]) + "\n"
    assert ("serving.launch: python: tensorflow_model_server is not on PATH; docker is not "
            "on PATH; using this project's Python server") in result.stderr


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker client on PATH")
def test_auto_uses_docker_only_with_a_running_engine():
    engine = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                            capture_output=True, text=True, timeout=30)
    result = launch("--dry_run", "--model_base_path=/m",
                    path=os.path.dirname(shutil.which("docker")) + ":/usr/bin:/bin")
    if engine.returncode == 0 and engine.stdout.strip():
        assert result.stdout.startswith("docker run ")
    else:
        assert "no Docker engine is running" in result.stderr
        assert result.stdout.startswith(shlex.join([PYTHON, "-m", "serving"]))


@pytest.mark.parametrize("server, message", [
    ("tensorflow_model_server", "tensorflow_model_server is not on PATH; install it or use "
                                "--server=auto"),
    ("docker", "cannot use Docker: docker is not on PATH; use --server=auto"),
])
def test_asking_for_a_missing_server_fails_clearly(no_servers_path, server, message):
    result = launch(f"--server={server}", "--model_base_path=/m", path=no_servers_path)
    assert result.returncode == 2
    assert f"serving.launch: {message}" in result.stderr
    assert result.stdout == ""


def test_fallback_really_starts_our_server_and_serves(saved_models, tmp_path, no_servers_path):
    base = make_model_base(tmp_path / "half_plus_two", {1: saved_models["half_plus_two"]})
    grpc_port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               PATH=no_servers_path)
    log_path = tmp_path / "launch.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [PYTHON, "-m", "serving.launch", f"--port={grpc_port}",
             f"--rest_api_port={rest_port}", "--model_name=half_plus_two",
             f"--model_base_path={base}"], cwd=str(REPO), env=env, stdout=log,
            stderr=subprocess.STDOUT)
    try:
        with RestClient("127.0.0.1", rest_port) as rest:
            rest.wait_until_available("half_plus_two", timeout=120)
            assert rest.predict("half_plus_two", instances=[1.0, 2.0]) == [2.5, 3.0]
        with GrpcClient("127.0.0.1", grpc_port) as grpc_client:
            outputs = grpc_client.predict("half_plus_two", {"x": np.array([4.0], np.float32)})
            assert list(outputs["y"]) == [4.0]
        text = log_path.read_text()
        assert "serving.launch: python: tensorflow_model_server is not on PATH" in text
        assert f"serving.launch: running {PYTHON} -m serving --port={grpc_port}" in text
    finally:
        process.terminate()  # exec'd: this pid is the server itself
        process.wait(timeout=30)
