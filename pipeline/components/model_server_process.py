"""A model server on one candidate model, as a child process of the pipeline.

`tensorflow_model_server` where it is on PATH, else this project's
`python -m serving` (serving/launch.py chooses, Docker excluded), on a free
loopback port; ready once the version is AVAILABLE in ModelService's
GetModelStatus. Leaving the `with` block always stops the process.
"""
import contextlib
import dataclasses
import os
import pathlib
import subprocess
import time

import grpc
import portpicker
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from pipeline.components.infra_failure import InfraValidationFailed
from serving import launch

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
VERSION = 1  # the one version under the temporary model base path
STOP_GRACE_SECONDS = 10
State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass
class RunningServer:
    server: str  # launch's name for it: "tensorflow_model_server" or "python"
    why: str  # launch's reason for that choice
    address: str  # host:port of its gRPC API
    channel: grpc.Channel
    log_path: str


def model_base_path(saved_model_dir: str, work_dir: str, model_name: str) -> str:
    """TF Serving wants <base>/<integer version>/saved_model.pb; a symbolic link
    gives it that layout without copying the model."""
    base = os.path.join(work_dir, model_name)
    os.makedirs(base, exist_ok=True)
    link = os.path.join(base, str(VERSION))
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.abspath(saved_model_dir), link)
    return base


def _environment() -> dict:
    """`python -m serving` must find this project whatever the pipeline's directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _log_tail(log_path: str, lines: int = 5) -> str:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            tail = [line.strip() for line in handle.readlines()[-lines:] if line.strip()]
    except OSError:
        return ""
    return " | ".join(tail)


def wait_until_available(process, channel, model_name: str, deadline: float,
                         log_path: str) -> None:
    """Polls GetModelStatus until every version is AVAILABLE; raises with the
    server's last log lines if it exits, a version ends, or the deadline passes."""
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": model_name})
    last_seen = "no answer from the gRPC port"
    while time.time() < deadline:
        if process.poll() is not None:
            raise InfraValidationFailed(
                f"the model server exited with status {process.returncode} before the "
                f"model was AVAILABLE; its log {log_path} ends: {_log_tail(log_path)}")
        try:
            statuses = stub.GetModelStatus(request, timeout=2).model_version_status
        except grpc.RpcError as error:
            last_seen = f"GetModelStatus: {error.code().name} {error.details()}"
            statuses = []
        if statuses and all(s.state == State.AVAILABLE for s in statuses):
            return
        ended = [s for s in statuses if s.state == State.END]
        if ended:
            raise InfraValidationFailed(
                f"the model server could not load version {ended[0].version}: "
                f"{ended[0].status.error_message or 'state END'}; see {log_path}")
        if statuses:
            last_seen = "versions " + ", ".join(
                f"{s.version} {State.Name(s.state)}" for s in statuses)
        time.sleep(0.2)
    raise InfraValidationFailed(
        f"the model was not AVAILABLE within the loading time ({last_seen}); see "
        f"{log_path}, or raise ValidationSpec.max_loading_time_seconds")


@contextlib.contextmanager
def serving(saved_model_dir: str, work_dir: str, model_name: str, log_path: str,
            max_loading_seconds: float):
    """Yields a RunningServer with the model AVAILABLE; stops the server on exit,
    also when the caller raises or is interrupted."""
    port = portpicker.pick_unused_port()
    flags = [f"--port={port}", "--rest_api_port=0", f"--model_name={model_name}",
             f"--model_base_path={model_base_path(saved_model_dir, work_dir, model_name)}",
             # TF Serving retries a failed load 5 times a minute apart; a candidate
             # that cannot load should fail validation at once.
             "--max_num_load_retries=0"]
    server, why = launch.choose_server("auto", flags, docker=False)
    command = launch.server_command(server, flags, image="")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"# {' '.join(command)}\n# {why}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=str(PROJECT_ROOT),
                                   env=_environment())
    address = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(address)
    try:
        wait_until_available(process, channel, model_name,
                             time.time() + max_loading_seconds, log_path)
        yield RunningServer(server, why, address, channel, log_path)
    finally:
        channel.close()
        _stop(process)
        portpicker.return_port(port)
