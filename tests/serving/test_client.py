"""serving.client against a running server: the REST and gRPC clients give the same
answers and raise ServingRequestError with the server's own text; the CLI prints JSON.
"""
import json
import subprocess

import numpy as np
import pytest

from serving.client import GrpcClient, RestClient, ServingRequestError
from tests.serving.conftest import PYTHON, REPO


@pytest.fixture(scope="module")
def rest(models_server):
    with RestClient("127.0.0.1", models_server.rest_port) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(models_server):
    with GrpcClient("127.0.0.1", models_server.grpc_port) as client:
        yield client


def test_status_is_the_same_over_both_transports(rest, grpc_client):
    expected = [{"version": "1", "state": "AVAILABLE",
                 "status": {"error_code": "OK", "error_message": ""}}]
    assert rest.status("half_plus_two") == expected
    assert grpc_client.status("half_plus_two") == expected
    assert rest.wait_until_available("half_plus_two", timeout=5) == expected
    assert grpc_client.wait_until_available("half_plus_two", timeout=5) == expected


def test_predict(rest, grpc_client):
    assert rest.predict("half_plus_two", instances=[1.0, 2.0]) == [2.5, 3.0]
    assert rest.predict("half_plus_two", inputs={"x": [1.0]}, version=1) == [2.5]
    outputs = grpc_client.predict("half_plus_two", {"x": np.array([1.0, 2.0], np.float32)})
    assert list(outputs) == ["y"]
    np.testing.assert_array_equal(outputs["y"], np.array([2.5, 3.0], np.float32))


def test_predict_strings_and_bytes(rest, grpc_client):
    row = {"a": 1.0, "b": 4, "text": "abc", "image_bytes": b"\x00\x01"}
    [prediction] = rest.predict("multi_io", instances=[row])
    assert prediction["text_upper"] == "ABC"
    assert prediction["echo_bytes"] == {"b64": "AAE="}
    outputs = grpc_client.predict(
        "multi_io", {"a": np.array([1.0], np.float32), "b": np.array([4], np.int64),
                     "text": np.array([b"abc"], object), "image_bytes": np.array([b"\x00\x01"],
                                                                                 object)},
        output_filter=["ratio", "echo_bytes"])
    assert sorted(outputs) == ["echo_bytes", "ratio"]
    assert list(outputs["echo_bytes"]) == [b"\x00\x01"] and list(outputs["ratio"]) == [0.25]


def test_classify_and_regress_agree(rest, grpc_client):
    examples = [{"x": -2.0}, {"x": 1.0}]
    for client in (rest, grpc_client):
        assert client.classify("half_plus_two", examples,
                               signature_name="classify_with_classes") == [
            [["low", 0.0], ["high", 1.0]], [["low", -1.5], ["high", 2.5]]]
        assert client.regress("half_plus_two", [{"other": 1.0}, {"x": 4.0}], context={"x": 2.0},
                              signature_name="regress_x_to_y") == [3.0, 4.0]


def test_metadata(rest, grpc_client):
    rest_metadata = rest.metadata("half_plus_two")
    assert rest_metadata["model_spec"]["name"] == "half_plus_two"
    assert "serving_default" in rest_metadata["metadata"]["signature_def"]["signature_def"]
    signatures = grpc_client.metadata("half_plus_two", version=1)
    assert signatures["serving_default"].outputs["y"].name
    assert set(signatures) == set(rest_metadata["metadata"]["signature_def"]["signature_def"])


def test_errors_carry_the_servers_text(rest, grpc_client):
    with pytest.raises(ServingRequestError) as raised:
        rest.predict("nope", instances=[1.0])
    assert (raised.value.http_status, raised.value.message) == (
        404, "Servable not found for request: Latest(nope)")
    with pytest.raises(ServingRequestError) as raised:
        grpc_client.predict("half_plus_two", {"x": np.array([1.0], np.float32)}, version=9)
    assert (raised.value.code, raised.value.message) == (
        "NOT_FOUND", "Servable not found for request: Specific(half_plus_two, 9)")
    with pytest.raises(ServingRequestError) as raised:
        grpc_client.predict("half_plus_two", {"x": np.array([1.0], np.float32)}, label="nope")
    assert (raised.value.code, raised.value.message) == (
        "INVALID_ARGUMENT", "Unrecognized servable version label: nope")


def test_wait_until_available_times_out_with_a_clear_message(rest):
    with pytest.raises(TimeoutError, match="model 'nope' had no AVAILABLE version after 1s"):
        rest.wait_until_available("nope", timeout=1, interval=0.2)


def run_cli(*args):
    return subprocess.run([PYTHON, "-m", "serving.client", *args], cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)


def test_cli_predict_and_status(models_server):
    port = f"--rest_api_port={models_server.rest_port}"
    result = run_cli("predict", "--model", "half_plus_two", "--host", "127.0.0.1", port,
                     "--json", '{"instances": [1.0, 5.0]}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": [2.5, 4.5]}
    result = run_cli("status", "--model", "half_plus_two", "--host", "127.0.0.1", port)
    assert json.loads(result.stdout)["model_version_status"][0]["state"] == "AVAILABLE"
    result = run_cli("metadata", "--model", "nope", "--host", "127.0.0.1", port)
    assert result.returncode == 1
    assert "Servable not found for request: Latest(nope)" in result.stderr


def test_grpc_lists_take_the_signatures_dtypes(grpc_client):
    # Python lists are typed from the signature (int64, strings); arrays are sent as given.
    outputs = grpc_client.predict("multi_io", {"a": [1.0], "b": [4], "text": ["abc"],
                                               "image_bytes": [b"\x00"]},
                                  output_filter=["sum", "text_upper"])
    assert list(outputs["sum"]) == [5.0] and list(outputs["text_upper"]) == [b"ABC"]
    with pytest.raises(ServingRequestError) as raised:
        grpc_client.predict("multi_io", {"a": np.array([1.0]), "b": [4], "text": ["abc"],
                                         "image_bytes": [b"\x00"]})
    assert (raised.value.code, raised.value.message) == (
        "INVALID_ARGUMENT", "Expects arg[0] to be float but double is provided")
