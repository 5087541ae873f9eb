"""The command line: tensorflow_model_server's flags, refusals, startup and shutdown logs."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import portpicker
import pytest

from tests.serving.conftest import (PYTHON, REPO, STARTUP_TIMEOUT_SECONDS, make_model_base,
                                    start_server)


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


# --- start-up noise ------------------------------------------------------------------------
# What `import tensorflow` prints on a CPU machine, none of which a user can act on.
TENSORFLOW_NOISE = ("oneDNN custom operations are on", "Could not find cuda drivers",
                    "Unable to register cuFFT factory", "Unable to register cuDNN factory",
                    "Unable to register cuBLAS factory", "cpu_feature_guard.cc",
                    "To enable the following instructions", "Could not find TensorRT",
                    "absl::InitializeLog", "FutureWarning")
SERVER_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEC] serving[.\w]*\] ")
READY = "Exporting HTTP/REST API at"


def startup_stderr(tmp_path, base, **environment) -> str:
    """stderr of a real `python -m serving`, started in the user's environment (not the
    fixtures' quiet TF_CPP_MIN_LOG_LEVEL=2) with `environment` on top, up to READY."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(environment, PYTHONUNBUFFERED="1")
    grpc_port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    stderr_path = tmp_path / f"stderr-{grpc_port}.txt"
    with open(stderr_path, "wb") as stderr, open(os.devnull, "wb") as stdout:
        process = subprocess.Popen(
            [PYTHON, "-m", "serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_base_path={base}"], cwd=str(REPO), env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while READY not in stderr_path.read_text(errors="replace"):
            assert process.poll() is None, stderr_path.read_text(errors="replace")
            assert time.monotonic() < deadline, stderr_path.read_text(errors="replace")
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=20)
    text = stderr_path.read_text(errors="replace")
    return text[:text.index("\n", text.index(READY)) + 1]


def test_startup_shows_the_servers_lines_and_no_tensorflow_noise(tmp_path, saved_models):
    base = make_model_base(tmp_path / "m", {1: saved_models["half_plus_two"]})
    stderr = startup_stderr(tmp_path, base)
    for noise in TENSORFLOW_NOISE:
        assert noise not in stderr, stderr
    for line in ("Loading servable version {name: default version: 1}",
                 "Successfully loaded servable version {name: default version: 1}",
                 "Running gRPC ModelServer at 127.0.0.1:", READY):
        assert line in stderr, stderr
    # Nothing else remains: every line up to READY is one of the server's own.
    assert [line for line in stderr.splitlines() if not SERVER_LOG_LINE.match(line)] == []


def test_a_user_who_sets_tf_cpp_min_log_level_gets_tensorflows_own_log(tmp_path, saved_models):
    base = make_model_base(tmp_path / "m", {1: saved_models["half_plus_two"]})
    stderr = startup_stderr(tmp_path, base, TF_CPP_MIN_LOG_LEVEL="0")
    assert "oneDNN custom operations are on" in stderr
    assert "Could not find TensorRT" in stderr
    assert READY in stderr


NOISE = ("2026-11-27 04:54:13.695657: E external/local_xla/xla/stream_executor/cuda/"
         "cuda_fft.cc:479] Unable to register cuFFT factory: Attempting to register factory "
         "for plugin cuFFT when one has already been registered\n")
REAL_ERROR = ("2026-11-27 04:54:13.695700: E tensorflow/core/framework/op_kernel.cc:1] "
              "Out of memory\n")


def test_the_noise_filter_passes_every_other_line(tmp_path):
    script = Path(REPO) / "serving" / "tensorflow_runtime.py"
    text = NOISE + REAL_ERROR + "Traceback (most recent call last):\n" + NOISE + "no newline"
    result = subprocess.run([sys.executable, str(script)], input=text, capture_output=True,
                            text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == REAL_ERROR + "Traceback (most recent call last):\n" + "no newline"


def test_what_tensorflow_prints_before_it_crashes_still_reaches_the_user(tmp_path):
    # A TensorFlow that aborts while importing (as the real one does on a CPU without AVX):
    # its last words must not stay in the filter's pipe.
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\n"
        f"os.write(2, {(NOISE + REAL_ERROR).encode()!r})\n"
        "os.abort()\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    result = subprocess.run(
        [PYTHON, "-c", "from serving import tensorflow_runtime; "
                       "tensorflow_runtime.import_tensorflow()"],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGABRT
    assert result.stderr == REAL_ERROR
