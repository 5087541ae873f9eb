"""ModelService over gRPC (GetModelStatus, HandleReloadConfigRequest) and a version swap
under concurrent gRPC load, called with TF Serving's own stubs and protos.

Each test starts its own server: these change what the server serves.
"""
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from tests.serving.conftest import (add_version, make_model_base, start_server, wait_for,
                                    write_model_config)

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


class Session:
    """One gRPC channel with both stubs, as a TF Serving user would hold it."""

    def __init__(self, server):
        self.channel = grpc.insecure_channel(server.grpc_address)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def status(self, model, version=None):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        response = self.models.GetModelStatus(request, timeout=30)
        return [(s.version, s.state, s.status.error_code, s.status.error_message)
                for s in response.model_version_status]

    def reload(self, config_text):
        config = text_format.Parse(config_text, model_server_config_pb2.ModelServerConfig())
        request = model_management_pb2.ReloadConfigRequest(config=config)
        return self.models.HandleReloadConfigRequest(request, timeout=120)

    def predict(self, model, x, version=None, label=None, timeout=30):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([x], np.float32)))
        response = self.predictions.Predict(request, timeout=timeout)
        return response.model_spec.version.value, list(response.outputs["y"].float_val)


def rpc_error(call, *args):
    with pytest.raises(grpc.RpcError) as raised:
        call(*args)
    return raised.value.code(), raised.value.details()


@pytest.fixture
def two_version_base(saved_models, tmp_path):
    """half_plus_two's base path with v1 (y = 0.5x + 2) and v2 (y = 0.5x + 3)."""
    return make_model_base(tmp_path / "half_plus_two", {1: saved_models["half_plus_two"],
                                                        2: saved_models["half_plus_three"]})


def config_entry(name, base_path, extra=""):
    return (f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" '
            f'{extra} }}')


def test_get_model_status(two_version_base, tmp_path):
    server = start_server("--model_name=half_plus_two", f"--model_base_path={two_version_base}",
                          rest=False, tmp_dir=tmp_path)
    try:
        session = Session(server)
        # The default policy serves the latest version only; v1 was never loaded.
        assert session.status("half_plus_two") == [(2, AVAILABLE, 0, "")]
        assert session.status("half_plus_two", version=2) == [(2, AVAILABLE, 0, "")]
        assert rpc_error(session.status, "half_plus_two", 1) == (
            grpc.StatusCode.NOT_FOUND, "Could not find version 1 of model half_plus_two")
        assert rpc_error(session.status, "nope") == (
            grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")
        assert rpc_error(session.models.GetModelStatus,
                         get_model_status_pb2.GetModelStatusRequest()) == (
            grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    finally:
        server.stop()


def test_reload_config_adds_a_model_and_changes_the_version_policy(
        two_version_base, saved_models, tmp_path):
    multi_io_base = make_model_base(tmp_path / "multi_io", {1: saved_models["multi_io"]})
    config = write_model_config(tmp_path / "models.config", {"half_plus_two": two_version_base})
    server = start_server(f"--model_config_file={config}", rest=False, tmp_dir=tmp_path)
    try:
        session = Session(server)
        assert session.predict("half_plus_two", 1.0) == (2, [3.5])
        assert rpc_error(session.status, "multi_io") == (
            grpc.StatusCode.NOT_FOUND, "Could not find any versions of model multi_io")

        # Serve both versions with labels, and add a second model; the reply comes once
        # the new versions are loaded, so they answer right away.
        response = session.reload("model_config_list { %s %s }" % (
            config_entry("half_plus_two", two_version_base,
                         "model_version_policy { specific { versions: 1 versions: 2 } } "
                         'version_labels { key: "stable" value: 1 } '
                         'version_labels { key: "canary" value: 2 }'),
            config_entry("multi_io", multi_io_base)))
        assert (response.status.error_code, response.status.error_message) == (0, "")
        assert session.status("half_plus_two") == [(2, AVAILABLE, 0, ""), (1, AVAILABLE, 0, "")]
        assert session.status("multi_io") == [(1, AVAILABLE, 0, "")]
        assert session.predict("half_plus_two", 1.0, label="stable") == (1, [2.5])
        assert session.predict("half_plus_two", 1.0, label="canary") == (2, [3.5])
        assert session.predict("half_plus_two", 1.0, version=1) == (1, [2.5])

        # Configs TF Serving refuses, with its codes and messages.
        custom = model_server_config_pb2.ModelServerConfig()
        custom.custom_model_config.type_url = "type.googleapis.com/some.Custom"
        assert rpc_error(session.models.HandleReloadConfigRequest,
                         model_management_pb2.ReloadConfigRequest(config=custom), 30) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
            "ModelConfigList is currently supported")
        assert rpc_error(session.reload, "model_config_list { %s %s }" % (
            config_entry("multi_io", multi_io_base), config_entry("multi_io", multi_io_base))) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal to list model multi_io multiple times in config list")

        # Dropping a model from the config unloads it; its history stays visible.
        session.reload("model_config_list { %s }" % config_entry("multi_io", multi_io_base))
        assert [(v, state) for v, state, _, _ in session.status("half_plus_two")] == [
            (2, END), (1, END)]
        assert rpc_error(session.predict, "half_plus_two", 1.0) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(half_plus_two)")
    finally:
        server.stop()


def test_version_swap_under_concurrent_load_fails_no_request(saved_models, tmp_path):
    base = make_model_base(tmp_path / "half_plus_two", {1: saved_models["half_plus_two"]})
    server = start_server("--model_name=half_plus_two", f"--model_base_path={base}",
                          "--file_system_poll_wait_seconds=1", rest=False, tmp_dir=tmp_path)
    stop = threading.Event()
    failures = []
    answers = {worker: [] for worker in range(8)}  # worker -> [(version, y)] in order
    channels = [grpc.insecure_channel(server.grpc_address) for _ in range(2)]

    def load(worker):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channels[worker % 2])
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        deadline = time.monotonic() + 90  # bounded even if the swap never happens
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                response = stub.Predict(request, timeout=30)
                answers[worker].append((response.model_spec.version.value,
                                        response.outputs["y"].float_val[0]))
            except grpc.RpcError as error:
                failures.append((error.code(), error.details()))

    workers = [threading.Thread(target=load, args=(w,)) for w in range(len(answers))]
    try:
        for worker in workers:
            worker.start()
        wait_for(lambda: sum(map(len, answers.values())) >= 50, timeout=60,
                 message="load on version 1")
        add_version(base, 2, saved_models["half_plus_three"])
        wait_for(lambda: any(v == 2 for a in answers.values() for v, _ in a[-5:]), timeout=60,
                 message="version 2 to answer")
        served_before = sum(map(len, answers.values()))
        wait_for(lambda: sum(map(len, answers.values())) >= served_before + 50, timeout=60,
                 message="load on version 2")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        for channel in channels:
            channel.close()
        statuses = Session(server).status("half_plus_two")
        server.stop()

    assert failures == []
    expected = {1: 2.5, 2: 3.5}
    for worker, seen in answers.items():
        assert seen, f"worker {worker} got no answer"
        assert all(expected[version] == y for version, y in seen), seen
        versions = [version for version, _ in seen]
        # Each worker moves from v1 to v2 once and never goes back.
        assert versions == sorted(versions), versions
    assert {v for seen in answers.values() for v, _ in seen} == {1, 2}
    assert [(v, state) for v, state, _, _ in statuses] == [(2, AVAILABLE), (1, END)]


def test_grpc_requests_are_counted_in_the_prometheus_metrics(saved_models, tmp_path):
    base = make_model_base(tmp_path / "half_plus_two", {1: saved_models["half_plus_two"]})
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }\n')
    server = start_server("--model_name=half_plus_two", f"--model_base_path={base}",
                          f"--monitoring_config_file={monitoring}", tmp_dir=tmp_path)
    try:
        session = Session(server)
        assert session.predict("half_plus_two", 1.0) == (1, [2.5])
        assert session.predict("half_plus_two", 2.0) == (1, [3.0])
        assert rpc_error(session.predict, "half_plus_two", 1.0, 5)[0] == grpc.StatusCode.NOT_FOUND
        status, text = server.get("/metrics")[:2]
    finally:
        server.stop()
    assert status == 200
    lines = set(text.splitlines())
    count = ':tensorflow:serving:request_count{model_name="half_plus_two",status="%s"} %d'
    assert count % ("OK", 2) in lines
    assert count % ("NOT_FOUND", 1) in lines
    assert (':tensorflow:serving:request_latency_count{model_name="half_plus_two",'
            'API="Predict",entrypoint="GRPC"} 3') in lines
