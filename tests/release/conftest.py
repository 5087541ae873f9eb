"""Fixtures for the release tests: the pipeline's real pushed taxi models, a real
server following the release step's config file, the CLI as a user types it,
and clients that keep calling /labels/stable and /labels/canary.
"""
import dataclasses
import json
import os
import pathlib
import subprocess
import threading

import pytest

from tests.conftest import PROJECT_ROOT, PYTHON, copy_store
from tests.serving.conftest import http_request, start_server, wait_for

MODEL = "taxi_tips"
METRICS_PATH = "/monitoring/prometheus/metrics"
POLL_SECONDS = 1  # --model_config_file_poll_wait_seconds (whole seconds, as TF Serving)
TRIP = {"trip_miles": 3.2, "fare": 11.25, "trip_seconds": 780, "payment_type": "Credit Card",
        "company": "Flash Cab", "pickup_latitude": 41.88, "pickup_longitude": -87.63,
        "dropoff_latitude": 41.92, "dropoff_longitude": -87.65, "trip_start_hour": 18,
        "trip_start_day": 5, "trip_start_month": 10, "pickup_community_area": 8,
        "dropoff_community_area": 7}


@dataclasses.dataclass
class ReleaseSetup:
    """A copy of the shared pipeline runs' outputs: two pushed versions (old, new)
    with their PushedModels in ML Metadata, and no serving config yet."""
    data_dir: pathlib.Path
    output_dir: pathlib.Path
    old: int
    new: int

    @property
    def config_path(self) -> pathlib.Path:
        return self.output_dir / "serving_config" / "models.config"

    @property
    def serving_dir(self) -> pathlib.Path:
        return self.output_dir / "serving_model" / MODEL

    def release(self, metrics_url=None):
        """The release step as the pipeline component calls it (in-process)."""
        from metadata import connection
        from pipeline import config as pipeline_config
        from pipeline.release import actions

        cfg = dataclasses.replace(pipeline_config.PipelineConfig(),
                                  output_dir=self.output_dir, canary_load_timeout_seconds=60)
        return actions.Release(cfg, connection.open_store(cfg.metadata_connection),
                               metrics_url)


@pytest.fixture
def setup(pipeline_runs, tmp_path) -> ReleaseSetup:
    data_dir, output_dir = copy_store(pipeline_runs, tmp_path)
    old, new = pipeline_runs.pushed_versions()[-2:]
    return ReleaseSetup(data_dir, output_dir, old, new)


def serve(setup: ReleaseSetup, tmp_dir, *flags):
    """`python -m serving` following the release config, with its Prometheus page."""
    monitoring = pathlib.Path(tmp_dir) / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    server = start_server(f"--model_config_file={setup.config_path}",
                          f"--model_config_file_poll_wait_seconds={POLL_SECONDS}",
                          f"--monitoring_config_file={monitoring}", *flags, tmp_dir=tmp_dir)
    server.metrics_url = server.url(METRICS_PATH)
    return server


def release_cli(setup: ReleaseSetup, *args, metrics_url=None) -> subprocess.CompletedProcess:
    """`python -m pipeline.release ...` as a user types it."""
    flags = ["--output-dir", str(setup.output_dir)]
    if metrics_url:
        flags += ["--serving-metrics-url", metrics_url]
    return subprocess.run([PYTHON, "-m", "pipeline.release", *args, *flags],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300,
                          env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))


def label_version(server, label: str) -> int | None:
    status, body, _, _ = server.get(f"/v1/models/{MODEL}/labels/{label}/metadata")
    return int(body["model_spec"]["version"]) if status == 200 else None


def wait_for_labels(server, **labels):
    wait_for(lambda: all(label_version(server, k) == v for k, v in labels.items()),
             timeout=60, message=f"the server to resolve {labels}")


def predict_rest(server, label: str) -> tuple[bool, str]:
    status, body, _, _ = http_request(
        "POST", server.url(f"/v1/models/{MODEL}/labels/{label}:predict"),
        '{"signature_name": "serving_raw", "instances": [%s]}' % json.dumps(TRIP),
        timeout=30)
    return status == 200, f"REST {label}: HTTP {status} {body}"


class Clients:
    """Threads that call both labels over REST and gRPC until stopped; every
    answer that is not a prediction is a failure."""

    def __init__(self, server, threads_per_call: int = 1):
        self.server = server
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.calls, self.failures = 0, []
        self.threads = [threading.Thread(target=self._loop, args=(transport, label), daemon=True)
                        for transport in ("rest", "grpc") for label in ("stable", "canary")
                        for _ in range(threads_per_call)]

    def _loop(self, transport, label):
        grpc_client = None
        if transport == "grpc":
            from serving.client import GrpcClient
            grpc_client = GrpcClient("127.0.0.1", self.server.grpc_port, timeout=30)
        while not self.stopped.is_set():
            if grpc_client is not None:
                try:
                    grpc_client.classify(MODEL, [TRIP], label=label)
                    ok, detail = True, ""
                except Exception as error:  # the failure is what the test counts
                    ok, detail = False, f"gRPC {label}: {error}"
            else:
                ok, detail = predict_rest(self.server, label)
            with self.lock:
                self.calls += 1
                if not ok:
                    self.failures.append(detail)
        if grpc_client is not None:
            grpc_client.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def wait_for_calls(self, more: int, timeout: float = 120):
        target = self.calls + more
        wait_for(lambda: self.calls >= target, timeout=timeout,
                 message=f"{more} more client calls")

    def __exit__(self, *exc):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)


def send_requests(server, label: str, count: int):
    for _ in range(count):
        ok, detail = predict_rest(server, label)
        assert ok, detail





