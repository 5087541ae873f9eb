"""REST errors: TF Serving's HTTP status codes and exact {"error": ...} messages.

Every malformed request must get a 4xx answer, never a crash or a 5xx.
"""
import json
import random

import pytest

from tests.serving.conftest import http_request

HALF = "/v1/models/half_plus_two:predict"
MULTI = "/v1/models/multi_io:predict"


def error(server, method, path, body=None):
    if method == "GET":
        status, parsed, headers, _ = server.get(path)
    else:
        status, parsed, headers, _ = http_request(method, server.url(path), body)
    return status, parsed


@pytest.mark.parametrize("path, status, message", [
    ("/v1/models/nope:predict", 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/half_plus_two/versions/7:predict", 404,
     "Servable not found for request: Specific(half_plus_two, 7)"),
    ("/v1/models/half_plus_two/labels/canary:predict", 400,
     "Unrecognized servable version label: canary"),
    ("/v1/models/half_plus_two:explode", 400,
     "Malformed request: POST /v1/models/half_plus_two:explode"),
    ("/v1/models/half_plus_two/versions/99999999999999999999:predict", 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("/v1/models/half_plus_two/versions/x:predict", 400,
     "Malformed request: POST /v1/models/half_plus_two/versions/x:predict"),
])
def test_bad_predict_paths(models_server, path, status, message):
    assert error(models_server, "POST", path, '{"instances": [1.0]}') == \
        (status, {"error": message})


@pytest.mark.parametrize("path, status, message", [
    ("/v1/models/nope", 404, "Could not find any versions of model nope"),
    ("/v1/models/half_plus_two/versions/7", 404, "Could not find version 7 of model half_plus_two"),
    ("/v1/models", 400, "Missing model name in request."),
    ("/v1/models/nope/metadata", 404, "Servable not found for request: Latest(nope)"),
    ("/v1/models/half_plus_two/versions/3/metadata", 404,
     "Servable not found for request: Specific(half_plus_two, 3)"),
    ("/v1/models/half_plus_two/labels/stable/metadata", 400,
     "Unrecognized servable version label: stable"),
    ("/v1/models/half_plus_two/versions/abc", 400,
     "Malformed request: GET /v1/models/half_plus_two/versions/abc"),
    ("/v1/models/half_plus_two:predict", 400,
     "Malformed request: GET /v1/models/half_plus_two:predict"),
])
def test_bad_status_and_metadata_paths(models_server, path, status, message):
    assert error(models_server, "GET", path) == (status, {"error": message})


def test_other_methods_are_malformed(models_server):
    assert error(models_server, "PUT", "/v1/models/half_plus_two", b"{}") == \
        (400, {"error": "Malformed request: PUT /v1/models/half_plus_two"})
    assert error(models_server, "DELETE", "/v1/models/half_plus_two") == \
        (400, {"error": "Malformed request: DELETE /v1/models/half_plus_two"})


def test_paths_outside_v1_are_not_found(models_server):
    status, body, _, raw = models_server.get("/v2/models/half_plus_two")
    assert (status, raw) == (404, "")
    status, _, _, raw = models_server.get("/")
    assert (status, raw) == (404, "")


@pytest.mark.parametrize("body, message", [
    ("", "JSON Parse error: The document is empty"),
    ("{", "JSON Parse error: Missing a name for object member. at offset: 1"),
    ('{"instances": [1.0,]}', "JSON Parse error: Invalid value. at offset: 19"),
    ('{"instances": [1.0] "x": 1}',
     "JSON Parse error: Missing a comma or '}' after an object member. at offset: 20"),
    ('{"instances": [1.0 2.0]}',
     "JSON Parse error: Missing a comma or ']' after an array element. at offset: 19"),
    ('{"instances": [1.0]} {}',
     "JSON Parse error: The document root must not be followed by other values. at offset: 21"),
    ('{"instances": ["abc]}', "JSON Parse error: Missing a closing quotation mark in string. "
                              "at offset: 15"),
    ("[1, 2]", "JSON Value: [\n    1,\n    2\n] Is not object"),
    ('"text"', 'JSON Value: "text" Is not object'),
])
def test_malformed_json(models_server, body, message):
    assert error(models_server, "POST", HALF, body) == (400, {"error": message})


@pytest.mark.parametrize("request_body, message", [
    ({"instances": [1.0], "inputs": [1.0]},
     'JSON Value: {\n    "instances": [\n        1.0\n    ],\n    "inputs": [\n        1.0\n'
     "    ]\n} Not formatted correctly expecting only one of 'inputs' or 'instances' keys to "
     "exist "),
    ({"signature_name": "serving_default"}, "Missing 'inputs' or 'instances' key"),
    ({"instances": []}, "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
    ({"instances": 5},
     "JSON Value: {\n    \"instances\": 5\n} Excepting 'instances' to be an list/array"),
    ({"signature_name": "nope", "instances": [1.0]},
     'Serving signature name: "nope" not found in signature def'),
    ({"signature_name": 7, "instances": [1.0]},
     'JSON Value: {\n    "signature_name": 7,\n    "instances": [\n        1.0\n    ]\n} not '
     "formatted correctly. 'signature_name' key must be a string value."),
    ({"instances": ["a"]},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     '"a" Type: String is not of expected type: float'),
    ({"instances": [1.0, True]},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
     "true Type: True is not of expected type: float"),
    ({"instances": [16777217]},
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: Cannot "
     "convert JSON value: 16777217 to float without loss of precision."),
    ({"instances": [1.0, [2.0]]},
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "shape [] but got: [1]"),
    ({"inputs": ["a"]}, 'JSON Value: "a" Type: String is not of expected type: float'),
    ({"inputs": [[1.0], 2.0]},
     # TF Serving reports the 0-based level plus one, so both numbers read 2 here.
     "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ({"instances": [{"y": 1.0}]},
     "Failed to process element: 0 key: y of 'instances' list. Error: INVALID_ARGUMENT: "
     "JSON object: does not have named input: y"),
])
def test_bad_predict_bodies(models_server, request_body, message):
    assert error(models_server, "POST", HALF, json.dumps(request_body)) == \
        (400, {"error": message})


def test_ragged_instances(models_server):
    body = {"signature_name": "matrix", "instances": [[1, 2, 3], [1, 2]]}
    assert error(models_server, "POST", MULTI, json.dumps(body)) == (400, {"error": (
        "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Expecting tensor size: 3 but got: 2")})
    body = {"signature_name": "matrix", "inputs": [[1, 2, 3], [1, 2]]}
    assert error(models_server, "POST", MULTI, json.dumps(body)) == (400, {"error": (
        "Encountered list at unexpected size: 2 at level: 1 expected size: 3")})


def test_graph_errors_are_invalid_argument(models_server):
    # Like a TF session, the graph does not re-check fed shapes; ops that cannot run fail.
    body = {"inputs": {"a": [1.0, 2.0, 3.0], "b": [1, 2], "text": ["t"], "image_bytes": ["x"]}}
    status, parsed = error(models_server, "POST", MULTI, json.dumps(body))
    assert status == 400
    assert "Incompatible shapes" in parsed["error"]


@pytest.mark.parametrize("request_body, message", [
    ({"instances": [1.0, 2.0]},
     "instances is a plain list, but expecting list of objects as multiple input tensors "
     "required as per tensorinfo_map"),
    ({"inputs": [1.0]},
     "inputs is a plain value/list, but expecting an object as multiple input tensors "
     "required as per tensorinfo_map"),
    ({"instances": [{"a": 1.0}]},
     "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": 1.0\n} "
     "keys must be equal to: a,b,image_bytes,text"),
    ({"instances": [{"a": 1.0, "b": 1.5, "text": "t", "image_bytes": ""}]},
     "Failed to process element: 0 key: b of 'instances' list. Error: INVALID_ARGUMENT: JSON "
     "Value: 1.5 Type: Number is not of expected type: int64"),
    ({"instances": [{"a": 1.0, "b": 1, "text": "t", "image_bytes": {"b64": "%%%"}}]},
     "Failed to process element: 0 key: image_bytes of 'instances' list. Error: "
     "INVALID_ARGUMENT: Unable to base64 decode"),
    ({"instances": [{"a": 1.0, "b": 1, "text": {"b64": "eA=="}, "image_bytes": "x"},
                    [1.0]]},
     "Expecting object but got list at item 1 of input list"),
    ({"inputs": {"a": [1.0], "text": ["t"], "image_bytes": ["x"]}},
     "Missing named input: b in 'inputs' object."),
    ({"inputs": {"a": [1.0], "b": [1], "text": [7], "image_bytes": ["x"]}},
     'JSON Value: 7 Type: Number is not of expected type: string'),
])
def test_bad_named_inputs(models_server, request_body, message):
    assert error(models_server, "POST", MULTI, json.dumps(request_body)) == \
        (400, {"error": message})


def test_no_request_crashes_the_server(models_server):
    rng = random.Random(7)
    atoms = ['{', '}', '[', ']', '"instances"', '"inputs"', '"b64"', ':', ',', '1', '-1e999',
             'NaN', 'null', 'true', '"x"', '{"b64": "AA=="}', '\\u0000', '"\\ud800"', ' ']
    bodies = [b"\xff\xfe", b"\x00" * 10, b'{"instances": [' * 2000, "{}".encode()]
    bodies += ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 30))).encode()
               for _ in range(150)]
    for path in (HALF, MULTI, "/v1/models/half_plus_two:classify",
                 "/v1/models/half_plus_two:regress"):
        for body in bodies:
            status, _, _, raw = http_request("POST", models_server.url(path), body)
            assert 400 <= status < 500, (path, body, status, raw)
    status, body, _, _ = models_server.post(HALF, {"instances": [1.0]})
    assert (status, body) == (200, {"predictions": [2.5]})
