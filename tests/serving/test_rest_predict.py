"""Predict over REST: row and columnar formats, named inputs/outputs, strings and numbers."""
import base64
import json


def test_row_format_single_input(models_server):
    status, body, headers, raw = models_server.post(
        "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]})
    assert status == 200
    assert body == {"predictions": [2.5, 3.0, 4.5]}
    assert headers["Content-Type"] == "application/json"
    # TF Serving's rapidjson layout, byte for byte.
    assert raw == '{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'


def test_columnar_format_single_input(models_server):
    status, body, _, raw = models_server.post(
        "/v1/models/half_plus_two:predict", {"inputs": [1.0, 2.0, 5.0]})
    assert status == 200
    assert body == {"outputs": [2.5, 3.0, 4.5]}
    assert raw == '{\n    "outputs": [\n        2.5,\n        3.0,\n        4.5\n    ]\n}'


def test_integers_are_accepted_for_float_inputs(models_server):
    status, body, _, _ = models_server.post(
        "/v1/models/half_plus_two:predict", {"instances": [1, 2, 3]})
    assert (status, body) == (200, {"predictions": [2.5, 3.0, 3.5]})


def test_explicit_signature_name_and_version(models_server):
    status, body, _, _ = models_server.post(
        "/v1/models/half_plus_two/versions/1:predict",
        {"signature_name": "serving_default", "instances": [4.0]})
    assert (status, body) == (200, {"predictions": [4.0]})


def test_paths_match_case_insensitively(models_server):
    status, body, _, _ = models_server.post(
        "/V1/MODELS/half_plus_two/VERSIONS/1:PREDICT", {"instances": [0.0]})
    assert (status, body) == (200, {"predictions": [2.0]})


def test_float32_prints_shortest_round_trip(models_server):
    # 0.5 * 0.2 + 2 = 2.1 in float32; TF Serving prints 2.1, not 2.0999999046325684.
    status, _, _, raw = models_server.post(
        "/v1/models/half_plus_two:predict", {"instances": [0.2, 0.1, 1e-7]})
    assert status == 200
    assert raw == '{\n    "predictions": [2.1, 2.05, 2.0\n    ]\n}'


def test_nan_and_infinity_are_written_bare(models_server):
    status, _, _, raw = models_server.post(
        "/v1/models/half_plus_two:predict", {"instances": [float("nan"), float("inf"),
                                                           float("-inf")]})
    assert status == 200
    assert raw == '{\n    "predictions": [NaN, Infinity, -Infinity\n    ]\n}'


MULTI_ROWS = [
    {"a": 1.5, "b": 2, "text": "hello", "image_bytes": {"b64": base64.b64encode(b"\x00\xffpng").decode()}},
    {"a": 0.1, "b": 0, "text": "héllo wörld", "image_bytes": {"b64": base64.b64encode(b"jpg").decode()}},
]


def test_row_format_named_inputs_and_outputs(models_server):
    status, body, _, _ = models_server.post("/v1/models/multi_io:predict",
                                            {"instances": MULTI_ROWS})
    assert status == 200
    assert body == {"predictions": [
        {"echo_bytes": {"b64": base64.b64encode(b"\x00\xffpng").decode()}, "length": 5,
         "ratio": 0.75, "sum": 3.5, "text_upper": "HELLO"},
        {"echo_bytes": {"b64": "anBn"}, "length": 13, "ratio": float("inf"), "sum": 0.1,
         "text_upper": "HéLLO WöRLD"},
    ]}


def test_columnar_format_named_inputs_and_outputs(models_server):
    columns = {key: [row[key] for row in MULTI_ROWS] for key in MULTI_ROWS[0]}
    status, body, _, raw = models_server.post("/v1/models/multi_io:predict",
                                              {"inputs": columns})
    assert status == 200
    assert body == {"outputs": {
        "echo_bytes": [{"b64": "AP9wbmc="}, {"b64": "anBn"}],
        "length": [5, 13],
        "ratio": [0.75, float("inf")],
        "sum": [3.5, 0.1],
        "text_upper": ["HELLO", "HéLLO WöRLD"],
    }}
    assert '"ratio": [\n            0.75,\n            Infinity\n        ]' in raw


def test_zero_over_zero_is_nan(models_server):
    status, _, _, raw = models_server.post("/v1/models/multi_io:predict", {"inputs": {
        "a": [0.0], "b": [0], "text": [""], "image_bytes": [""]}})
    assert status == 200
    assert '"ratio": [\n            NaN\n        ]' in raw


def test_rank_two_instances_are_stacked(models_server):
    status, body, _, raw = models_server.post(
        "/v1/models/multi_io:predict",
        {"signature_name": "matrix", "instances": [[1, 2, 3], [0.5, 0.25, 0.125]]})
    assert status == 200
    assert body == {"predictions": [[2.0, 4.0, 6.0], [1.0, 0.5, 0.25]]}
    assert raw == ('{\n    "predictions": [[2.0, 4.0, 6.0], [1.0, 0.5, 0.25]\n    ]\n}')


def test_rank_two_columnar(models_server):
    status, body, _, _ = models_server.post(
        "/v1/models/multi_io:predict",
        {"signature_name": "matrix", "inputs": {"m": [[1, 2, 3]]}})
    assert (status, body) == (200, {"outputs": [[2.0, 4.0, 6.0]]})


def test_single_named_input_as_object_in_instances(models_server):
    status, body, _, _ = models_server.post(
        "/v1/models/half_plus_two:predict", {"instances": [{"x": 1.0}, {"x": 3.0}]})
    assert (status, body) == (200, {"predictions": [2.5, 3.5]})


def test_request_body_with_utf8_and_whitespace(models_server):
    body = ' \n{ "instances" : [ 1.0 ] , "signature_name" : "serving_default" }\n'
    status, parsed, _, _ = models_server.post("/v1/models/half_plus_two:predict", body)
    assert (status, parsed) == (200, {"predictions": [2.5]})


def test_large_batch(models_server):
    xs = [float(i) for i in range(1000)]
    status, body, _, _ = models_server.post("/v1/models/half_plus_two:predict",
                                            json.dumps({"instances": xs}))
    assert status == 200
    assert body["predictions"] == [0.5 * x + 2 for x in xs]
