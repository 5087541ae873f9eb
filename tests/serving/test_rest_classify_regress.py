"""Classify and regress over REST: JSON examples (+ context) become tf.Examples."""
import base64

import pytest

CLASSIFY = "/v1/models/half_plus_two:classify"
REGRESS = "/v1/models/half_plus_two:regress"


def test_classify_with_classes_and_scores(models_server):
    status, body, _, raw = models_server.post(CLASSIFY, {
        "signature_name": "classify_with_classes", "examples": [{"x": 1.0}, {"x": [3.0]}]})
    assert (status, body) == (200, {"results": [[["low", -1.5], ["high", 2.5]],
                                                [["low", -2.5], ["high", 3.5]]]})
    assert raw == ('{\n    "results": [[["low", -1.5], ["high", 2.5]], '
                   '[["low", -2.5], ["high", 3.5]]\n    ]\n}')


def test_classify_scores_only_gives_empty_labels(models_server):
    status, body, _, _ = models_server.post(CLASSIFY, {
        "signature_name": "classify_x_to_y", "examples": [{"x": 0.2}]})
    assert (status, body) == (200, {"results": [[["", 2.1]]]})


def test_regress(models_server):
    status, body, _, raw = models_server.post(REGRESS, {
        "signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 2}, {"x": 0.1}]})
    # x: 2 is an int64 feature, which the model's float feature spec rejects.
    assert status == 400
    status, body, _, raw = models_server.post(REGRESS, {
        "signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}, {"x": 0.1}]})
    assert (status, body) == (200, {"results": [2.5, 3.0, 2.05]})
    assert raw == '{\n    "results": [2.5, 3.0, 2.05]\n}'


def test_context_fills_missing_features_and_examples_win(models_server):
    status, body, _, _ = models_server.post(REGRESS, {
        "signature_name": "regress_x_to_y", "context": {"x": 4.0},
        "examples": [{}, {"x": 1.0}, {"other": "ignored"}]})
    assert (status, body) == (200, {"results": [4.0, 2.5, 4.0]})


def test_regress_routes_by_version(models_server):
    status, body, _, _ = models_server.post("/v1/models/half_plus_two/versions/1:regress", {
        "signature_name": "regress_x_to_y", "examples": [{"x": 0.0, "name": "a",
                                                          "blob": {"b64": "AAE="},
                                                          "flag": True}]})
    assert (status, body) == (200, {"results": [2.0]})


@pytest.mark.parametrize("path, request_body, status, message", [
    (CLASSIFY, {"examples": [{"x": 1.0}]}, 400,
     "No classification inputs found in SignatureDef: " + "*"),
    (REGRESS, {"signature_name": "nope", "examples": [{"x": 1.0}]}, 400,
     "No signature was found with the name: nope"),
    (CLASSIFY, {"signature_name": "classify_x_to_y"}, 400,
     'JSON Value: {\n    "signature_name": "classify_x_to_y"\n} When method is classify, key '
     "'examples' is expected and was not found"),
    (REGRESS, {"examples": {"x": 1.0}}, 400,
     'JSON Value: {\n    "examples": {\n        "x": 1.0\n    }\n} Expecting \'examples\' value '
     "to be an list/array"),
    (REGRESS, {"examples": []}, 400,
     "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
    (REGRESS, {"examples": [[1.0]]}, 400, "Example must be JSON object but got JSON Array"),
    (REGRESS, {"examples": [{"x": [1.0, 2]}]}, 400,
     "Unexpected element type in feature: x expecting type: float"),
    (REGRESS, {"examples": [{"x": [[1.0]]}]}, 400,
     "Feature: x has element with unexpected JSON type: Array"),
    (REGRESS, {"examples": [{"x": None}]}, 400,
     "Feature: x has element with unexpected JSON type: Null"),
    (REGRESS, {"examples": [{"x": {"a": 1}}]}, 400,
     "Feature: x has element with unexpected JSON type: Object"),
    (REGRESS, {"examples": [{"x": 18446744073709551615}]}, 400,
     "Feature: x has uint64 element. Only int64 is supported."),
    (REGRESS, {"context": [1], "examples": [{"x": 1.0}]}, 400,
     "Example must be JSON object but got JSON Array"),
    (REGRESS, {"signature_name": "classify_with_classes", "examples": [{"x": 1.0}]}, 400,
     "Expected one output Tensor."),
    ("/v1/models/nope:regress", {"examples": [{"x": 1.0}]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("/v1/models/half_plus_two/labels/stable:classify", {"examples": [{"x": 1.0}]}, 400,
     "Unrecognized servable version label: stable"),
])
def test_classify_regress_errors(models_server, path, request_body, status, message):
    got_status, body, _, _ = models_server.post(path, request_body)
    assert got_status == status
    if message.endswith("*"):
        assert body["error"].startswith(message[:-1])
    else:
        assert body == {"error": message}


def test_predict_signature_with_examples_input_is_not_classifiable(models_server):
    # TF Serving insists on an input named "inputs"; the multi_io model has none.
    status, body, _, _ = models_server.post("/v1/models/multi_io:classify",
                                            {"examples": [{"a": 1.0}]})
    assert status == 400
    assert body["error"] == "Expected one input Tensor."


def test_b64_and_bool_features(models_server):
    blob = base64.b64encode(b"\x00\x01").decode()
    status, body, _, _ = models_server.post(REGRESS, {
        "signature_name": "regress_x_to_y",
        "examples": [{"x": [0.5], "blob": {"b64": blob}, "flag": [True, False]}]})
    assert (status, body) == (200, {"results": [2.25]})
