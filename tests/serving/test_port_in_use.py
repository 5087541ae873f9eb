"""A second server on a port already in use refuses to start, as tensorflow_model_server does.

grpc enables SO_REUSEPORT by default: without care, a second server would bind the first
one's gRPC port too and silently take part of its traffic.
"""
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving.conftest import make_model_base, start_server


@pytest.fixture(scope="module")
def first_server(saved_models, module_tmp):
    base = make_model_base(module_tmp / "half_plus_two", {1: saved_models["half_plus_two"]})
    server = start_server("--model_name=half_plus_two", f"--model_base_path={base}",
                          tmp_dir=module_tmp)
    server.base = base
    yield server
    server.stop()


def predict_grpc(server, x):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([x], np.float32)))
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return list(stub.Predict(request, timeout=30).outputs["y"].float_val)


def test_second_server_on_the_grpc_port_refuses_to_start(first_server, module_tmp):
    second = start_server("--model_name=half_plus_two",
                          f"--model_base_path={first_server.base}",
                          f"--port={first_server.grpc_port}",  # overrides the picked port
                          tmp_dir=module_tmp, expect_failure=True)
    assert second.process.returncode != 0
    assert (f"Failed to start server: Failed to BuildAndStart gRPC server: cannot bind "
            f"127.0.0.1:{first_server.grpc_port}") in second.log()
    assert "Running gRPC ModelServer" not in second.log()
    # Every request still reaches the first server, which keeps answering.
    assert [predict_grpc(first_server, 1.0) for _ in range(20)] == [[2.5]] * 20


def test_second_server_on_the_rest_port_refuses_to_start(first_server, module_tmp):
    second = start_server("--model_name=half_plus_two",
                          f"--model_base_path={first_server.base}",
                          f"--rest_api_port={first_server.rest_port}",
                          tmp_dir=module_tmp, expect_failure=True)
    assert second.process.returncode != 0
    assert "Failed to start server" in second.log()
    assert f":{first_server.rest_port}" in second.log()
    assert first_server.post("/v1/models/half_plus_two:predict", {"instances": [1.0]})[:2] == (
        200, {"predictions": [2.5]})
