"""The command line: tensorflow_model_server's flags, refusals, startup and shutdown logs."""
import signal
import subprocess

import pytest

from tests.serving.conftest import PYTHON, REPO, make_model_base, start_server


def run_cli(*args, timeout=60):
    return subprocess.run([PYTHON, "-m", "serving", *args], cwd=str(REPO), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--model_base_path=/x", "--nope=1"], "unknown argument: --nope=1"),
    (["--model_base_path=/x", "stray"], "unknown argument: stray"),
    (["--model_base_path=/x", "--port=abc"], "Couldn't interpret value abc for flag port."),
    (["--model_base_path=/x", "--enable_batching=maybe"],
     "Couldn't interpret value maybe for flag enable_batching."),
    (["--model_base_path=/x", "--port"], "Couldn't interpret value  for flag port."),
    ([], "Either --model_base_path or --model_config_file must be set."),
    (["--model_base_path=/x", "--port=9000", "--rest_api_port=9000"],
     "--rest_api_port cannot be same as --port."),
])
def test_bad_command_lines_exit_with_usage(args, message):
    result = run_cli(*args)
    assert result.returncode == 255
    assert message in result.stderr
    assert result.stdout.startswith("usage: python -m serving")
    assert "\t--rest_api_port=0\tint32\t" in result.stdout


def test_help_lists_flags_and_loopback_default():
    result = run_cli("--help")
    assert result.returncode == 0
    for line in ("\t--port=8500\tint32\t", "\t--model_name=\"default\"\tstring\t",
                 "\t--file_system_poll_wait_seconds=1\tint32\t",
                 "\t--model_config_file_poll_wait_seconds=0\tint32\t",
                 "\t--rest_api_timeout_in_ms=30000\tint32\t",
                 "\t--enable_batching=false\tbool\t",
                 "\t--bind_address=\"127.0.0.1\"\tstring\t"):
        assert line in result.stdout
    assert "loopback" in result.stdout


def test_version():
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, "TensorFlow ModelServer: 2.16.1-python\n")


@pytest.mark.parametrize("flag, contents, message", [
    ("--model_config_file", "model_config_list { config { name: ",
     "Invalid protobuf file: '{path}'"),
    ("--model_config_file", "model_config_list { config { nme: \"x\" } }",
     "Invalid protobuf file: '{path}'"),
    ("--monitoring_config_file", "prometheus_config { enable: yes_please }",
     "Invalid protobuf file: '{path}'"),
    ("--batching_parameters_file", "max_batch_size { value: 8 } allowed_batch_sizes: 4",
     "final entry in allowed_batch_sizes must equal max_batch_size"),
    ("--batching_parameters_file", "max_batch_size: 8", "Invalid protobuf file: '{path}'"),
])
def test_bad_config_files_stop_the_server(tmp_path, saved_models, flag, contents, message):
    base = make_model_base(tmp_path / "m", {1: saved_models["half_plus_two"]})
    path = tmp_path / "bad.config"
    path.write_text(contents)
    extra = ["--enable_batching"] if "batching" in flag else []
    server = start_server(f"--model_base_path={base}", f"{flag}={path}", *extra,
                          tmp_dir=tmp_path, expect_failure=True)
    log = server.log()
    assert server.process.returncode == 1, log
    assert message.format(path=path) in log
    assert "Running gRPC ModelServer" not in log and "Exporting HTTP/REST API" not in log


def test_missing_config_file_stops_the_server(tmp_path):
    server = start_server(f"--model_config_file={tmp_path}/missing.config", tmp_dir=tmp_path,
                          expect_failure=True)
    assert server.process.returncode == 1
    assert f"{tmp_path}/missing.config" in server.log()


def test_startup_logs_loopback_addresses_and_sigterm_stops_cleanly(tmp_path, saved_models):
    base = make_model_base(tmp_path / "m", {1: saved_models["half_plus_two"]})
    server = start_server(f"--model_base_path={base}", tmp_dir=tmp_path)
    log = server.log()
    assert f"Running gRPC ModelServer at 127.0.0.1:{server.grpc_port} ..." in log
    assert f"Exporting HTTP/REST API at:localhost:{server.rest_port} ..." in log
    # --model_name defaults to "default", as in tensorflow_model_server.
    assert server.get("/v1/models/default")[0] == 200
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0


def test_rest_api_port_zero_turns_rest_off(tmp_path, saved_models):
    base = make_model_base(tmp_path / "m", {1: saved_models["half_plus_two"]})
    server = start_server(f"--model_base_path={base}", rest=False, tmp_dir=tmp_path)
    try:
        assert "Exporting HTTP/REST API" not in server.log()
        assert server.rest_port == 0
    finally:
        server.stop()
