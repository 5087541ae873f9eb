"""Model status and metadata over REST, in TF Serving's protobuf-JSON shapes."""
import json

AVAILABLE_V1 = {"model_version_status": [
    {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_status_of_all_versions(models_server):
    status, body, headers, raw = models_server.get("/v1/models/half_plus_two")
    assert (status, body) == (200, AVAILABLE_V1)
    assert headers["Content-Type"] == "application/json"
    assert raw.startswith('{\n "model_version_status": [\n  {\n   "version": "1",')


def test_status_of_one_version(models_server):
    assert models_server.get("/v1/models/half_plus_two/versions/1")[:2] == (200, AVAILABLE_V1)


def test_status_ignores_labels_like_tf_serving(models_server):
    # TF Serving's GetModelStatus looks only at name and version, never at the label.
    assert models_server.get("/v1/models/multi_io/labels/anything")[:2] == (200, {
        "model_version_status": AVAILABLE_V1["model_version_status"]})


def _tensor(name_prefix, dtype, dims):
    return {"dtype": dtype, "tensor_shape": {
        "dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}}


def _strip_names(signature_defs):
    """Tensor names depend on how TF numbered graph nodes; the rest must match exactly."""
    names = {}
    for key, signature in signature_defs.items():
        for side in ("inputs", "outputs"):
            for alias, info in signature[side].items():
                names[(key, side, alias)] = info.pop("name")
    return names


def test_metadata(models_server):
    status, body, _, raw = models_server.get("/v1/models/half_plus_two/metadata")
    assert status == 200
    assert raw.startswith('{\n"model_spec":{\n "name": "half_plus_two",\n "signature_name": "",\n'
                          ' "version": "1"\n},\n"metadata": {"signature_def": {\n')
    assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    signature_defs = body["metadata"]["signature_def"]["signature_def"]
    names = _strip_names(signature_defs)
    assert names[("serving_default", "inputs", "x")] == "serving_default_x:0"
    assert all(isinstance(n, str) and n for n in names.values())
    assert signature_defs["serving_default"] == {
        "inputs": {"x": _tensor("x", "DT_FLOAT", [-1])},
        "outputs": {"y": _tensor("y", "DT_FLOAT", [-1])},
        "method_name": "tensorflow/serving/predict",
        "defaults": {},
    }
    assert signature_defs["regress_x_to_y"]["inputs"] == {
        "inputs": _tensor("inputs", "DT_STRING", [-1])}
    assert sorted(signature_defs) == ["__saved_model_init_op", "classify_with_classes",
                                      "classify_x_to_y", "regress_x_to_y", "serving_default"]


def test_metadata_of_a_version_and_multi_io_shapes(models_server):
    status, body, _, _ = models_server.get("/v1/models/multi_io/versions/1/metadata")
    assert status == 200
    assert body["model_spec"]["version"] == "1"
    signature_defs = body["metadata"]["signature_def"]["signature_def"]
    _strip_names(signature_defs)
    assert signature_defs["matrix"]["inputs"] == {"m": _tensor("m", "DT_FLOAT", [-1, 3])}
    assert sorted(signature_defs["serving_default"]["outputs"]) == [
        "echo_bytes", "length", "ratio", "sum", "text_upper"]
    assert signature_defs["serving_default"]["inputs"]["b"]["dtype"] == "DT_INT64"
    json.dumps(body)  # plain JSON all the way down
