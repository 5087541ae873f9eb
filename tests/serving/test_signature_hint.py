"""Predict without "signature_name" on a model whose raw-feature entry point is not the
default (the taxi model's serving_raw): TF Serving's message, plus where those inputs go.
"""
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.serving.conftest import build_models, make_model_base, start_server

PREDICT = "/v1/models/taxi:predict"
HINT = "Signature 'serving_raw' takes inputs: company, trip_miles; pass \"signature_name\"."


@pytest.fixture(scope="module")
def server(module_tmp):
    models = build_models("extra_saved_models", module_tmp / "models")
    base = make_model_base(module_tmp / "taxi", {1: models["two_entry_points"]})
    server = start_server("--model_name=taxi", f"--model_base_path={base}",
                          tmp_dir=module_tmp)
    yield server
    server.stop()


def test_rest_row_format_names_the_signature_that_takes_the_inputs(server):
    status, body, _, _ = server.post(PREDICT, {
        "instances": [{"trip_miles": 2.0, "company": "ab"}]})
    assert (status, body) == (400, {"error": (
        "Failed to process element: 0 key: trip_miles of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON object: does not have named input: trip_miles " + HINT)})


def test_rest_columnar_format_names_it_too(server):
    status, body, _, _ = server.post(PREDICT, {
        "inputs": {"trip_miles": [2.0], "company": ["ab"]}})
    assert (status, body) == (400, {"error": (
        "Missing named input: examples in 'inputs' object. " + HINT)})


def test_following_the_hint_works(server):
    status, body, _, _ = server.post(PREDICT, {
        "signature_name": "serving_raw", "instances": [{"trip_miles": 2.0, "company": "ab"}]})
    assert status == 200
    assert body["predictions"] == [pytest.approx(2.2)]


def test_no_hint_when_no_signature_takes_the_inputs(server):
    status, body, _, _ = server.post(PREDICT, {"instances": [{"fare": 2.0}]})
    assert (status, body) == (400, {"error": (
        "Failed to process element: 0 key: fare of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON object: does not have named input: fare")})


def test_grpc_names_the_signature_too(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "taxi"
    request.inputs["trip_miles"].CopyFrom(tf.make_tensor_proto(np.array([2.0], np.float32)))
    request.inputs["company"].CopyFrom(tf.make_tensor_proto(np.array([b"ab"], object)))
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == (
        "input size does not match signature: 2!=1 len({company,trip_miles}) != "
        "len({examples}). Sent extra: {company,trip_miles}. Missing but required: "
        "{examples}. " + HINT)
