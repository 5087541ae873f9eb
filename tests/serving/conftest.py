"""Fixtures for the serving tests: real test SavedModels and real server subprocesses.

`start_server(*flags)` launches `python -m serving` on free loopback ports and returns a
ServerProcess (.rest_port, .grpc_port, .process, .url(), .log(), .stop()) once both
ports are announced in the log; the gRPC tests reuse it.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import portpicker
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
STARTUP_TIMEOUT_SECONDS = 120


class ServerProcess:
    """A running `python -m serving`; stop() it (fixtures do) to free its ports."""

    def __init__(self, process, rest_port, grpc_port, log_path):
        self.process = process
        self.rest_port = rest_port
        self.grpc_port = grpc_port
        self.log_path = log_path

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, path: str) -> str:
        return self.rest_url + path

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def stop(self, timeout: float = 15):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # Small HTTP helpers: (status, parsed JSON body or raw text, headers).
    def get(self, path, headers=None):
        return http_request("GET", self.url(path), headers=headers)

    def post(self, path, body, headers=None):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return http_request("POST", self.url(path), data, headers=headers)


def http_request(method, url, data=None, headers=None, timeout=60):
    """Returns (status, body_json_or_text, headers, raw_text); never raises on HTTP errors."""
    if isinstance(data, str):
        data = data.encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        status, raw, response_headers = e.code, e.read(), e.headers
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    return status, body, response_headers, text


def start_server(*flags, rest=True, tmp_dir=None, timeout=STARTUP_TIMEOUT_SECONDS,
                 expect_failure=False):
    """Starts `python -m serving <flags>` with --port/--rest_api_port picked here.

    Returns a ServerProcess once the log shows the server is up. With expect_failure=True,
    returns the ServerProcess after the process exits (its returncode and log() to check).
    """
    grpc_port = portpicker.pick_unused_port()
    rest_port = portpicker.pick_unused_port() if rest else 0
    args = [PYTHON, "-m", "serving", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
            *flags]
    log_dir = Path(tmp_dir) if tmp_dir else Path(os.environ.get("TMPDIR", "/tmp"))
    log_path = log_dir / f"serving-{grpc_port}.log"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(args, cwd=str(REPO), env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    server = ServerProcess(process, rest_port, grpc_port, str(log_path))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if expect_failure:
                return server
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        if not expect_failure:
            text = server.log()
            if "Running gRPC ModelServer at" in text and (
                    not rest or "Exporting HTTP/REST API at" in text):
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start within {timeout}s:\n{server.log()}")


def make_model_base(root, versions: dict) -> str:
    """Lays out a model base path: {version number: SavedModel dir to copy in}."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for version, source in versions.items():
        shutil.copytree(source, root / str(version))
    return str(root)


def add_version(base_path, version, source):
    """Publishes a version the way a pusher should: copy aside, then rename into place."""
    staging = Path(base_path) / f".staging-{version}"
    shutil.copytree(source, staging)
    os.rename(staging, Path(base_path) / str(version))


def wait_for(predicate, timeout=60, interval=0.2, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """{"half_plus_two", "half_plus_three", "multi_io"} -> SavedModel directory."""
    # Paid once per session.
    return build_models("saved_models", tmp_path_factory.mktemp("saved_models"))


def build_models(module: str, root) -> dict:
    """Runs tests.serving.<module>.build_all(root) in a subprocess, which keeps TensorFlow
    out of the pytest process; returns its {name: SavedModel directory}."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[2]); "
            f"from tests.serving import {module}; "
            f"print(json.dumps({module}.build_all(sys.argv[1])))")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([PYTHON, "-c", code, str(root), str(REPO)], env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"building test models failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request):
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def half_plus_two_server(saved_models, module_tmp):
    """One server per test module: half_plus_two v1 as model "half_plus_two"."""
    base = make_model_base(module_tmp / "half_plus_two", {1: saved_models["half_plus_two"]})
    server = start_server("--model_name=half_plus_two", f"--model_base_path={base}",
                          tmp_dir=module_tmp)
    yield server
    server.stop()


def write_model_config(path, models: dict) -> str:
    """Writes a ModelServerConfig text proto; models: {name: base_path or dict of extras}."""
    entries = []
    for name, spec in models.items():
        spec = {"base_path": spec} if isinstance(spec, str) else dict(spec)
        extra = spec.pop("extra", "")
        entries.append(f'  config {{\n    name: "{name}"\n    base_path: "{spec["base_path"]}"\n'
                       f'    model_platform: "tensorflow"\n{extra}  }}\n')
    Path(path).write_text("model_config_list {\n" + "".join(entries) + "}\n")
    return str(path)


@pytest.fixture(scope="session")
def models_server(saved_models, tmp_path_factory):
    """One shared server for the read-only REST tests: half_plus_two (v1) and multi_io (v1)."""
    root = tmp_path_factory.mktemp("models_server")
    config = write_model_config(root / "models.config", {
        "half_plus_two": make_model_base(root / "half_plus_two",
                                         {1: saved_models["half_plus_two"]}),
        "multi_io": make_model_base(root / "multi_io", {1: saved_models["multi_io"]}),
    })
    server = start_server(f"--model_config_file={config}", tmp_dir=root)
    yield server
    server.stop()
