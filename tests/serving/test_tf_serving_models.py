"""TF Serving's own test SavedModels, served as TF Serving serves them, with its answers.

tests/serving/testdata/ holds TF Serving's half_plus_two (TF1 and TF2 exports) and
half_plus_three in their zero-padded version folders (00000123); the expected answers are
those of TF Serving's tensorflow_model_server_test.py. A generated TF1 export checks that
the main op runs with the asset files, and duplicate version folders resolve as TF Serving
resolves them.
"""
import json
import shutil
from pathlib import Path

import grpc
import pytest
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, inference_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from tests.serving.conftest import build_models, start_server, write_model_config

TESTDATA = Path(__file__).parent / "testdata"
VERSION_STATUS_123 = {"model_version_status": [{
    "version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


@pytest.fixture(scope="module")
def server(module_tmp):
    """One server for every model here, each under the name the tests use."""
    models = module_tmp / "models"
    shutil.copytree(TESTDATA, models)
    generated = build_models("extra_saved_models", module_tmp / "generated")
    shutil.copytree(generated["tf1_half_plus_two"],
                    models / "generated_tf1" / "0000000007")
    # Two folders name version 123: TF Serving takes the last in sorted order, "123".
    duplicates = models / "duplicates"
    shutil.copytree(models / "saved_model_half_plus_two_cpu" / "00000123",
                    duplicates / "00000123")
    shutil.copytree(models / "saved_model_half_plus_three" / "00000123", duplicates / "123")
    config = write_model_config(module_tmp / "models.config", {
        "default": str(models / "saved_model_half_plus_two_cpu"),
        "half_plus_three": str(models / "saved_model_half_plus_three"),
        "tf2": str(models / "saved_model_half_plus_two_tf2_cpu"),
        "two_versions": {"base_path": str(models / "saved_model_half_plus_two_2_versions"),
                         "extra": "    model_version_policy { all {} }\n"},
        "generated_tf1": str(models / "generated_tf1"),
        "duplicates": str(duplicates),
    })
    server = start_server(f"--model_config_file={config}", tmp_dir=module_tmp)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def channel(server):
    channel = grpc.insecure_channel(server.grpc_address)
    yield channel
    channel.close()


def example_x(value):
    example = example_pb2.Example()
    example.features.feature["x"].float_list.value.append(value)
    return example


def sorted_json(value):
    """Order-free form of a JSON document, as TF Serving's test compares metadata."""
    if isinstance(value, dict):
        return sorted((key, sorted_json(item)) for key, item in value.items())
    if isinstance(value, list):
        return sorted(json.dumps(sorted_json(item)) for item in value)
    return value


# --- REST, TF1 half_plus_two: TF Serving's testPredictREST & co ---------------------------

def test_status_reports_the_version_folder_as_a_number(server):
    assert server.get("/v1/models/default")[:2] == (200, VERSION_STATUS_123)
    assert server.get("/v1/models/default/versions/123")[:2] == (200, VERSION_STATUS_123)


def test_predict_rest(server):
    assert server.post("/v1/models/default:predict", {"instances": [1.0, 2.0, 5.0]})[:2] == (
        200, {"predictions": [2.5, 3.0, 4.5]})
    assert server.post("/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]})[:2] == (
        200, {"predictions": [3.0, 3.5, 4.0]})
    assert server.post("/v1/models/default/versions/123:predict",
                       {"inputs": [2.0, 3.0, 4.0]})[:2] == (200, {"outputs": [3.0, 3.5, 4.0]})


def test_classify_and_regress_rest(server):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert server.post("/v1/models/default:classify", body)[:2] == (
        200, {"results": [[["", 3.0]]]})
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert server.post("/v1/models/default:regress", body)[:2] == (200, {"results": [3.0]})
    # y2 = 0.5x + 3 runs on the same examples input.
    body = {"signature_name": "regress_x_to_y2", "examples": [{"x": 2.0}]}
    assert server.post("/v1/models/default:regress", body)[:2] == (200, {"results": [4.0]})


def test_metadata_rest_is_tf_servings(server):
    status, body, _, _ = server.get("/v1/models/default/metadata")
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    assert status == 200
    assert sorted_json(body) == sorted_json(expected)


def test_half_plus_three_and_the_tf2_export(server):
    assert server.post("/v1/models/half_plus_three:predict", {"instances": [2.0]})[:2] == (
        200, {"predictions": [4.0]})
    assert server.get("/v1/models/half_plus_three")[:2] == (200, VERSION_STATUS_123)
    # Its regress signature declares DT_FLOAT for its string tf_example input; TF Serving
    # feeds the examples anyway, and so do we.
    assert server.post("/v1/models/half_plus_three:regress", {
        "signature_name": "tensorflow/serving/regress", "examples": [{"x": 2.0}]})[:2] == (
        200, {"results": [4.0]})
    # TF Serving's TF2 export of half_plus_two answers as its TF1 export does.
    assert server.post("/v1/models/tf2:predict", {"instances": [2.0]})[:2] == (
        200, {"predictions": [3.0]})
    assert server.post("/v1/models/tf2:classify", {
        "signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]})[:2] == (
        200, {"results": [[["", 3.0]]]})
    assert server.post("/v1/models/tf2:regress", {
        "signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})[:2] == (
        200, {"results": [3.0]})


def test_two_zero_padded_versions(server):
    status, body, _, _ = server.get("/v1/models/two_versions")
    assert status == 200
    assert [(v["version"], v["state"]) for v in body["model_version_status"]] == [
        ("124", "AVAILABLE"), ("123", "AVAILABLE")]
    for version in (123, 124):
        assert server.post(f"/v1/models/two_versions/versions/{version}:predict",
                           {"instances": [2.0]})[:2] == (200, {"predictions": [3.0]})
    status, body, _, _ = server.get("/v1/models/two_versions/versions/123/metadata")
    assert body["model_spec"]["version"] == "123"


def test_duplicate_version_folders_resolve_as_tf_serving(server):
    # "00000123" (half_plus_two) and "123" (half_plus_three): version 123 is "123".
    assert server.post("/v1/models/duplicates:predict", {"instances": [2.0]})[:2] == (
        200, {"predictions": [4.0]})
    assert server.get("/v1/models/duplicates")[:2] == (200, VERSION_STATUS_123)
    assert ("Duplicate version directories detected for servable duplicates. Version 123 "
            "will be loaded from 123, 00000123 will be ignored.") in server.log()


def test_generated_tf1_export_runs_its_main_op_with_its_assets(server):
    # The class names exist only in the export's assets/ file, read by a table that the
    # main op fills: "low"/"high" prove the asset path was fed to the main op.
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}, {"x": 0.0}]}
    assert server.post("/v1/models/generated_tf1:classify", body)[:2] == (
        200, {"results": [[["low", -2.0], ["high", 3.0]], [["low", -1.0], ["high", 2.0]]]})
    assert server.post("/v1/models/generated_tf1:predict", {"instances": [2.0]})[:2] == (
        200, {"predictions": [3.0]})
    status, body, _, _ = server.get("/v1/models/generated_tf1")
    assert body["model_version_status"][0]["version"] == "7"


# --- gRPC: TF Serving's testPredict, testClassify, testRegress, testMultiInference -------

def test_predict_grpc(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for model, expected in (("default", 3.0), ("half_plus_three", 4.0), ("tf2", 3.0)):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["x"].dtype = 1  # DT_FLOAT
        request.inputs["x"].float_val.append(2.0)
        request.inputs["x"].tensor_shape.dim.add().size = 1
        request.output_filter.append("y")
        response = stub.Predict(request, timeout=30)
        assert list(response.outputs["y"].float_val) == [expected], model
        assert response.model_spec.version.value == 123
        assert response.model_spec.signature_name == "serving_default"


def test_classify_regress_and_multi_inference_grpc(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "default"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(example_x(2.0))
    response = stub.Classify(classify, timeout=30)
    assert [c.score for c in response.result.classifications[0].classes] == [3.0]
    assert (response.model_spec.name, response.model_spec.version.value) == ("default", 123)

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.append(example_x(2.0))
    response = stub.Regress(regress, timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0]

    multi = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "tensorflow/serving/regress"),
                              ("classify_x_to_y", "tensorflow/serving/classify")):
        task = multi.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    multi.input.example_list.examples.append(example_x(2.0))
    response = stub.MultiInference(multi, timeout=30)
    assert response.results[0].regression_result.regressions[0].value == 3.0
    assert response.results[1].classification_result.classifications[0].classes[0].score == 3.0
    assert [r.model_spec.version.value for r in response.results] == [123, 123]


def test_metadata_and_status_grpc(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "default"
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 123
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert sorted(signature_map.signature_def) == [
        "classify_x_to_y", "regress_x2_to_y3", "regress_x_to_y", "regress_x_to_y2",
        "serving_default"]

    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    response = models.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state) for s in response.model_version_status] == [
        (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
