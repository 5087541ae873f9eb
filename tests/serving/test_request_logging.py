"""Request logging (logging_config in --model_config_file): sampled, successful calls end up as
tensorflow.serving.PredictionLog records in TFRecord files, read here with tf.data while the
server runs, as a monitoring job would read them.

One server (batching on, so REST predicts take both the event-loop and the pool path) serves
the content, sampling, failure and metrics tests; a second one is reconfigured by the reload
tests and finally stopped to show that stopping flushes.
"""
import http.client
import json
import os
import re
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, inference_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from serving import errors, metrics, proto_codec, request_logging, rest_api
from tests.serving.conftest import make_model_base, start_server, wait_for, write_model_config
from tests.serving.test_grpc_prediction_service import build_tf1_half_plus_two

METRICS_PATH = "/monitoring/prometheus/metrics"
FILE_NAME = re.compile(r"-(\d{8}T\d{6})-(\d+)-(\d{5})\.tfrecord$")


def logging_config(prefix, sampling_rate=1.0, collector_type="tfrecord"):
    return (f'    logging_config {{\n'
            f'      sampling_config {{ sampling_rate: {sampling_rate} }}\n'
            f'      log_collector_config {{ type: "{collector_type}" '
            f'filename_prefix: "{prefix}" }}\n    }}\n')


def log_files(prefix) -> list:
    prefix = Path(prefix)
    return sorted(str(path) for path in prefix.parent.glob(prefix.name + "-*.tfrecord"))


def read_logs(prefix) -> list:
    """Every PredictionLog under a filename prefix, read with TensorFlow's TFRecord reader."""
    logs = []
    for path in log_files(prefix):
        for record in tf.data.TFRecordDataset(path):
            logs.append(prediction_log_pb2.PredictionLog.FromString(record.numpy()))
    return logs


def wait_for_log(prefix, matches, timeout=15):
    """The first log under prefix for which matches(log) holds, once written (<= ~1 s)."""
    return wait_for(lambda: next((entry for entry in read_logs(prefix) if matches(entry)),
                                 None), timeout=timeout, message=f"a matching log in {prefix}")


def settled_count(prefix) -> int:
    """The number of logs under prefix once the writer has flushed what it had."""
    def unchanged_over_a_flush():
        first = len(read_logs(prefix))
        time.sleep(1.2)  # a flush interval and a bit
        return (first,) if len(read_logs(prefix)) == first else None

    return wait_for(unchanged_over_a_flush, timeout=20, message=f"logs in {prefix} to settle")[0]


def example(**features):
    result = example_pb2.Example()
    for name, value in features.items():
        result.features.feature[name].float_list.value.append(value)
    return result


def metric_value(text, line_prefix):
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def server(saved_models, module_tmp):
    """half_plus_two and multi_io log everything, sampled logs a tenth, tf1 (for
    MultiInference) logs everything, unlogged has no logging_config."""
    root = module_tmp / "server"
    logs = root / "outputs" / "request_logs"
    half_plus_two = make_model_base(root / "half_plus_two", {1: saved_models["half_plus_two"]})
    tf1 = make_model_base(root / "tf1", {1: build_tf1_half_plus_two(str(root / "tf1_export"))})
    config = write_model_config(root / "models.config", {
        "half_plus_two": {"base_path": half_plus_two,
                          "extra": logging_config(logs / "half_plus_two")},
        "multi_io": {"base_path": make_model_base(root / "multi_io",
                                                  {1: saved_models["multi_io"]}),
                     "extra": logging_config(logs / "multi_io")},
        "sampled": {"base_path": half_plus_two,
                    "extra": logging_config(logs / "sampled", sampling_rate=0.1)},
        "tf1": {"base_path": tf1, "extra": logging_config(logs / "tf1")},
        "unlogged": half_plus_two,
    })
    monitoring = root / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    server = start_server(f"--model_config_file={config}", "--enable_batching",
                          f"--monitoring_config_file={monitoring}", tmp_dir=root)
    server.logs = logs
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


# --- what a log holds -----------------------------------------------------------------------

def test_rest_predict_is_logged_as_a_predict_request_and_response(server):
    before = int(time.time())
    status, body, _, _ = server.post("/v1/models/half_plus_two:predict",
                                     {"instances": [10.0, 11.0]})
    assert (status, body) == (200, {"predictions": [7.0, 7.5]})
    entry = wait_for_log(server.logs / "half_plus_two",
                         lambda e: list(e.predict_log.request.inputs["x"].float_val) == [10, 11])
    metadata = entry.log_metadata
    assert metadata.model_spec.name == "half_plus_two"
    assert metadata.model_spec.version.value == 1
    assert metadata.model_spec.signature_name == "serving_default"
    assert metadata.sampling_config.sampling_rate == 1.0
    assert before <= metadata.timestamp_secs <= time.time()
    request = entry.predict_log.request
    assert request.model_spec.name == "half_plus_two"
    assert request.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in request.inputs["x"].tensor_shape.dim] == [2]
    response = entry.predict_log.response
    assert response.model_spec.version.value == 1
    assert list(response.outputs["y"].float_val) == [7.0, 7.5]


def test_rest_predict_logs_one_tensor_per_named_input(server):
    """Raw features, as taxi's serving_raw takes them: each its own typed tensor."""
    status, _, _, _ = server.post("/v1/models/multi_io/versions/1:predict", {
        "signature_name": "serving_default",
        "instances": [{"a": 1.5, "b": 3, "text": "taxi", "image_bytes": {"b64": "AAE="}}]})
    assert status == 200
    entry = wait_for_log(server.logs / "multi_io",
                         lambda e: list(e.predict_log.request.inputs["text"].string_val)
                         == [b"taxi"])
    inputs = entry.predict_log.request.inputs
    assert sorted(inputs) == ["a", "b", "image_bytes", "text"]
    assert (inputs["a"].dtype, list(inputs["a"].float_val)) == (types_pb2.DT_FLOAT, [1.5])
    assert (inputs["b"].dtype, list(inputs["b"].int64_val)) == (types_pb2.DT_INT64, [3])
    assert list(inputs["image_bytes"].string_val) == [b"\x00\x01"]
    assert entry.predict_log.request.model_spec.version.value == 1
    assert list(entry.predict_log.response.outputs["sum"].float_val) == [4.5]


def test_large_rest_predict_is_logged_too(server):
    """Bodies over rest_api.LOOP_DECODE_MAX_BYTES take the thread-pool path."""
    values = [1000.0 + i for i in range(100)]
    body = json.dumps({"instances": values}) + " " * rest_api.LOOP_DECODE_MAX_BYTES
    assert server.post("/v1/models/half_plus_two:predict", body)[0] == 200
    entry = wait_for_log(server.logs / "half_plus_two",
                         lambda e: e.predict_log.request.inputs["x"].float_val[:1] == [1000.0])
    assert list(entry.predict_log.request.inputs["x"].float_val) == values


def test_rest_classify_and_regress_log_their_examples(server):
    status, body, _, _ = server.post("/v1/models/half_plus_two:classify", {
        "signature_name": "classify_x_to_y", "examples": [{"x": 21.0}]})
    assert (status, body) == (200, {"results": [[["", 12.5]]]})
    status, body, _, _ = server.post("/v1/models/half_plus_two:regress", {
        "signature_name": "regress_x_to_y", "context": {"x": 0.0}, "examples": [{"x": 22.0}]})
    assert (status, body) == (200, {"results": [13.0]})

    prefix = server.logs / "half_plus_two"
    classify = wait_for_log(prefix, lambda e: e.HasField("classify_log")).classify_log
    assert list(classify.request.input.example_list.examples) == [example(x=21.0)]
    assert classify.request.model_spec.signature_name == "classify_x_to_y"
    assert classify.response.result.classifications[0].classes[0].score == 12.5
    regress_entry = wait_for_log(prefix, lambda e: e.HasField("regress_log"))
    # The context is merged into each example, as the model saw it.
    assert list(regress_entry.regress_log.request.input.example_list.examples) == [
        example(x=22.0)]
    assert regress_entry.regress_log.response.result.regressions[0].value == 13.0
    assert regress_entry.log_metadata.model_spec.signature_name == "regress_x_to_y"


def test_grpc_calls_are_logged_as_sent(server, stub):
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "half_plus_two"
    predict.model_spec.version.value = 1
    predict.inputs["x"].CopyFrom(tf.make_tensor_proto([31.0], dtype=tf.float32))
    predict_response = stub.Predict(predict, timeout=30)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_with_classes"
    classify.input.example_list.examples.append(example(x=0.25))
    classify_response = stub.Classify(classify, timeout=30)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.append(example(x=33.0))
    regress_response = stub.Regress(regress, timeout=30)

    prefix = server.logs / "half_plus_two"
    entry = wait_for_log(prefix, lambda e: e.predict_log.request == predict)
    assert entry.predict_log.response == predict_response
    assert entry.log_metadata.model_spec.signature_name == "serving_default"
    entry = wait_for_log(prefix, lambda e: e.classify_log.request == classify)
    assert entry.classify_log.response == classify_response
    assert [c.label for c in entry.classify_log.response.result.classifications[0].classes] \
        == ["low", "high"]
    assert entry.log_metadata.model_spec.signature_name == "classify_with_classes"
    entry = wait_for_log(prefix, lambda e: e.regress_log.request == regress)
    assert entry.regress_log.response == regress_response
    assert entry.log_metadata.model_spec.version.value == 1


def test_grpc_multi_inference_is_logged(server, stub):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "tensorflow/serving/classify"),
                              ("regress_x_to_y", "tensorflow/serving/regress")):
        task = request.tasks.add()
        task.model_spec.name = "tf1"
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.append(example(x=4.0))
    response = stub.MultiInference(request, timeout=30)
    entry = wait_for_log(server.logs / "tf1", lambda e: e.HasField("multi_inference_log"))
    assert entry.multi_inference_log.request == request
    assert entry.multi_inference_log.response == response
    assert entry.log_metadata.model_spec.name == "tf1"
    assert entry.log_metadata.model_spec.version.value == 1


# --- what is not logged, and how much is ----------------------------------------------------

def test_failed_calls_are_not_logged_and_the_server_keeps_serving(server, stub):
    assert server.post("/v1/models/half_plus_two:predict",
                       {"instances": [{"x": 41.0, "extra": 1.0}]})[0] == 400
    wrong_type = predict_pb2.PredictRequest()
    wrong_type.model_spec.name = "half_plus_two"
    wrong_type.inputs["x"].CopyFrom(tf.make_tensor_proto([b"42"]))
    with pytest.raises(grpc.RpcError) as failure:
        stub.Predict(wrong_type, timeout=30)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A call after them is logged; nothing of the failed ones is.
    assert server.post("/v1/models/half_plus_two:predict", {"instances": [43.0]})[0] == 200
    prefix = server.logs / "half_plus_two"
    wait_for_log(prefix, lambda e: list(e.predict_log.request.inputs["x"].float_val) == [43.0])
    for entry in read_logs(prefix):
        inputs = entry.predict_log.request.inputs
        assert set(inputs) <= {"x"}
        assert list(inputs["x"].string_val) != [b"42"]
        assert 41.0 not in inputs["x"].float_val


def test_a_model_without_logging_config_writes_nothing(server):
    assert server.post("/v1/models/unlogged:predict", {"instances": [51.0]})[0] == 200
    time.sleep(1.5)  # past a flush
    prefixes = {path.name.split("-")[0] for path in server.logs.iterdir()}
    assert "unlogged" not in prefixes
    assert prefixes <= {"half_plus_two", "multi_io", "sampled", "tf1"}


def test_sampling_rate_logs_about_that_share_of_calls(server):
    """1000 calls at sampling_rate 0.1: Binomial(1000, 0.1) has mean 100 and sd 9.5; 40..180
    is over 6 sd either side, so a correct server fails this about once in 10^9 runs."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    body = json.dumps({"instances": [1.0]})
    for _ in range(1000):
        connection.request("POST", "/v1/models/sampled:predict", body,
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
    connection.close()
    count = settled_count(server.logs / "sampled")
    assert 40 <= count <= 180, count


def test_counters_match_the_files(server):
    """request_log_count (OK: written) and request_log_bytes agree with the files on disk."""
    assert server.post("/v1/models/multi_io:predict", {
        "instances": [{"a": 0.5, "b": 1, "text": "x", "image_bytes": {"b64": ""}}]})[0] == 200
    prefix = server.logs / "multi_io"

    def counters_caught_up():
        text = server.get(METRICS_PATH)[3]
        count = metric_value(text, f'{metrics.REQUEST_LOG_COUNT}{{model_name="multi_io",'
                                   'status_code="OK"}')
        size = metric_value(text, f'{metrics.REQUEST_LOG_BYTES}{{model_name="multi_io"}}')
        files = log_files(prefix)
        on_disk = (len(read_logs(prefix)), sum(Path(p).stat().st_size for p in files))
        return (count, size) == on_disk and count >= 2

    wait_for(counters_caught_up, timeout=15, message="counters to match the files")
    text = server.get(METRICS_PATH)[3]
    assert f"# TYPE {metrics.REQUEST_LOG_COUNT} counter" in text
    assert 'model_name="unlogged"' not in text.split(metrics.REQUEST_LOG_COUNT, 1)[1]


def test_files_are_named_and_readable_while_the_server_runs(server):
    files = log_files(server.logs / "half_plus_two")
    assert files
    for path in files:
        stamp, pid, _ = FILE_NAME.search(path).groups()
        assert int(pid) == server.process.pid
        assert abs(time.mktime(time.strptime(stamp, "%Y%m%dT%H%M%S")) - time.mktime(
            time.gmtime())) < 3600
    assert server.process.poll() is None  # read above, with the server still running


# --- configuration --------------------------------------------------------------------------

def test_check_logging_config_names_what_is_wrong():
    def check(text):
        model = model_server_config_pb2.ModelConfig()
        text_format.Parse('name: "m" base_path: "/m" logging_config { %s }' % text, model)
        request_logging.check_logging_config(model)

    check('log_collector_config { type: "tfrecord" filename_prefix: "logs/m" }')
    for text, message in [
            ('log_collector_config { type: "csv" filename_prefix: "x" }', "type 'csv'"),
            ('log_collector_config { filename_prefix: "x" }', "type ''"),
            ('log_collector_config { type: "tfrecord" }', "filename_prefix is empty"),
            ('sampling_config { sampling_rate: 1.5 } '
             'log_collector_config { type: "tfrecord" filename_prefix: "x" }', "1.5")]:
        with pytest.raises(errors.ServingError) as error:
            check(text)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.message


def test_bad_collector_type_stops_the_server_at_start_up(saved_models, module_tmp):
    root = module_tmp / "bad_start"
    config = write_model_config(root / "models.config", {"half_plus_two": {
        "base_path": make_model_base(root / "half_plus_two", {1: saved_models["half_plus_two"]}),
        "extra": logging_config(root / "logs" / "x", collector_type="csv")}})
    server = start_server(f"--model_config_file={config}", tmp_dir=root, expect_failure=True)
    assert server.process.returncode == 1
    assert "unsupported log_collector_config.type 'csv'" in server.log()
    assert not (root / "logs").exists()


@pytest.mark.parametrize("array", [
    np.array([1.5, -2.0], np.float32), np.array([[1, -3, 2 ** 40]], np.int64),
    np.array([-1, 7], np.int32), np.array([7, 255], np.uint8), np.array([2 ** 63], np.uint64),
    np.array([True, False]), np.array([[0.25]], np.float64), np.array(3.0, np.float32),
    np.zeros((0, 3), np.float32), np.array([b"a", b"", "\u00e9".encode()], object),
    np.array(["text"], object), np.array([1.0], np.float16), np.array([1 + 2j], np.complex64)],
    ids=lambda array: f"{array.dtype}{list(array.shape)}")
def test_tensors_are_serialized_as_fill_tensor_proto_builds_them(array):
    """The request logger's direct serialization gives exactly the API's bytes."""
    message = tensor_pb2.TensorProto()
    proto_codec.fill_tensor_proto(message, array)
    assert proto_codec.serialized_tensor_proto(array) == message.SerializeToString()
    request = predict_pb2.PredictRequest()
    proto_codec.fill_tensor_proto(request.inputs["a"], array)
    proto_codec.fill_tensor_proto(request.inputs["b"], array)
    assert predict_pb2.PredictRequest.FromString(proto_codec.serialized_tensor_map(
        predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name["inputs"].number,
        {"a": array, "b": array})) == request


# Signatures for the REST predict builder: every dtype the writer's direct path writes, and
# single inputs (which take plain "instances" lists and plain "inputs" values).
MIXED = {"a": types_pb2.DT_FLOAT, "b": types_pb2.DT_INT64, "text": types_pb2.DT_STRING,
         "f": types_pb2.DT_DOUBLE, "flag": types_pb2.DT_BOOL, "i": types_pb2.DT_INT32}
ROW = {"a": 1.5, "b": 3, "text": "taxi", "f": 0.1, "flag": True, "i": -7}
B64_ONLY = {"bytes": types_pb2.DT_STRING}
FLOAT_ONLY = {"x": types_pb2.DT_FLOAT}


@pytest.mark.parametrize("inputs, body, direct", [
    (MIXED, {"instances": [ROW]}, True),
    (MIXED, {"signature_name": "ignored here", "instances": [
        {"i": 2 ** 31 - 1, "flag": False, "f": 2, "text": "\u00e9", "b": -(2 ** 40), "a": 1},
        {"a": -0.0, "b": 2 ** 63 - 1, "text": "", "f": -2.5e-300, "flag": True, "i": -2 ** 31}]},
     True),
    (MIXED, {"instances": [dict(ROW, a=[1, 2.5], text=["x", "yz"], flag=[True, False]),
                           dict(ROW, a=[3, 4.25], text=["", "w"], flag=[False, False])]},
     True),
    (MIXED, {"instances": [dict(ROW, a=[[1, 2], [3, 4]], b=[[5], [6]])]}, True),
    (MIXED, {"inputs": ROW}, True),
    (MIXED, {"inputs": dict(ROW, a=[[1.5, 2], [3, 4]], text=[{"b64": "AAE="}, "z"],
                            extra="ignored as the codec ignores it")}, True),
    (MIXED, {"instances": [dict(ROW, text={"b64": " aGk "})]}, True),
    (B64_ONLY, {"instances": [{"b64": "AP8="}, {"b64": "aGk"}]}, True),
    (B64_ONLY, {"inputs": {"b64": "AP8="}}, True),
    (FLOAT_ONLY, {"instances": [1.0, 2, -3.5]}, True),
    (FLOAT_ONLY, {"instances": [[1.0, 2], [3, 4]]}, True),
    (FLOAT_ONLY, {"inputs": 2.5}, True),
    (FLOAT_ONLY, {"inputs": [[0.25]]}, True),
    # Left to the codec: numbers json reads otherwise than orjson might, bare constants,
    # empty or deep lists, dtypes the direct path does not write.
    (MIXED, {"instances": [dict(ROW, f=1e300)]}, False),
    (FLOAT_ONLY, '{"instances": [Infinity, -Infinity]}', False),
    (FLOAT_ONLY, {"inputs": []}, False),
    (FLOAT_ONLY, {"inputs": [[[1.0]]]}, False),
    ({"u": types_pb2.DT_UINT8, "x": types_pb2.DT_FLOAT}, {"instances": [{"u": 7, "x": 1}]},
     False),
], ids=["taxi_like_row", "two_rows_edges", "lists_in_rows", "matrices_in_rows", "columns",
        "nested_columns_b64", "b64_in_row", "b64_values", "b64_column", "plain_values",
        "plain_lists", "scalar_column", "matrix_column", "huge_double", "infinities",
        "empty_list", "rank_3", "uint8"])
@pytest.mark.parametrize("version, label, signature_name",
                         [(None, None, ""), (3, None, "serving_raw"), (None, "stable", "x")])
def test_rest_predict_logs_hold_what_the_codec_decodes(inputs, body, direct, version, label,
                                                       signature_name):
    """The writer's direct path from the JSON to the logged PredictRequest's bytes gives the
    request TF Serving's gRPC API would have had: the codec's arrays, in a message built
    through the protobuf API. What the direct path does not cover goes through the codec."""
    from tensorflow.core.protobuf import meta_graph_pb2

    from serving import json_codec, json_tensor_bytes

    signature = meta_graph_pb2.SignatureDef()
    for name, dtype in inputs.items():
        signature.inputs[name].dtype = dtype
    body = (body if isinstance(body, str) else json.dumps(body)).encode()
    outputs = {"scores": np.array([[0.25, 0.75]], np.float32),
               "classes": np.array([[b"0", b"1"]], object)}

    request, response = request_logging.BUILDERS["rest_predict"](
        "taxi", version, label, signature_name, 5, signature.SerializeToString(), body,
        {alias: request_logging._portable(array) for alias, array in outputs.items()})

    expected = predict_pb2.PredictRequest()
    expected.model_spec.name = "taxi"
    if version is not None:
        expected.model_spec.version.value = version
    if label is not None:
        expected.model_spec.version_label = label
    expected.model_spec.signature_name = signature_name
    arrays, _ = json_codec.decode_predict_request(json_codec.parse_json(body), signature.inputs)
    for name, array in arrays.items():
        proto_codec.fill_tensor_proto(expected.inputs[name], array)
    assert predict_pb2.PredictRequest.FromString(request) == expected
    expected_response = predict_pb2.PredictResponse()
    proto_codec.set_model_spec(expected_response.model_spec, "taxi", 5, signature_name)
    for alias, array in outputs.items():
        proto_codec.fill_tensor_proto(expected_response.outputs[alias], array)
    assert predict_pb2.PredictResponse.FromString(response) == expected_response

    doc = json_tensor_bytes.parse_body(body)
    field = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name["inputs"].number
    covered = doc is not None and json_tensor_bytes.serialized_inputs(
        doc, json_tensor_bytes.InputPlan(signature.inputs, field)) is not None
    assert covered == direct


@pytest.mark.parametrize("body", [
    {"instances": [dict(ROW, a="1.5")]}, {"instances": [dict(ROW, b=3.0)]},
    {"instances": [dict(ROW, b=True)]}, {"instances": [dict(ROW, flag=1)]},
    {"instances": [dict(ROW, a=2 ** 24)]}, {"instances": [dict(ROW, i=2 ** 31)]},
    {"instances": [dict(ROW, text=5)]}, {"instances": [dict(ROW, text={"b64": "A"})]},
    {"instances": [dict(ROW, extra=1)]}, {"instances": [{k: v for k, v in ROW.items()
                                                         if k != "a"}]},
    {"instances": [ROW, dict(ROW, a=[1.0])]}, {"instances": [dict(ROW, a=[[1.0], 2.0])]},
    {"instances": [ROW], "inputs": ROW}, {"instances": []}, {"inputs": dict(ROW, b=None)}],
    ids=["string_for_float", "float_for_int", "bool_for_int", "int_for_bool", "float_loss",
         "int32_overflow", "number_for_string", "bad_b64", "extra_input", "missing_input",
         "shape_change", "ragged", "both_formats", "no_instances", "null"])
def test_bodies_the_codec_refuses_are_left_to_it(body):
    """The direct path writes nothing the codec would not have accepted."""
    from tensorflow.core.protobuf import meta_graph_pb2

    from serving import json_codec, json_tensor_bytes

    signature = meta_graph_pb2.SignatureDef()
    for name, dtype in MIXED.items():
        signature.inputs[name].dtype = dtype
    body = json.dumps(body).encode()
    with pytest.raises(errors.ServingError):
        json_codec.decode_predict_request(json_codec.parse_json(body), signature.inputs)
    field = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name["inputs"].number
    assert json_tensor_bytes.serialized_inputs(
        json_tensor_bytes.parse_body(body),
        json_tensor_bytes.InputPlan(signature.inputs, field)) is None


def _random_floats(dtype, count, seed):
    """count finite values of a float dtype from uniformly random bit patterns (every
    exponent, subnormals and signed zeros included), then edge values."""
    info, bits = np.finfo(dtype), np.dtype(f"u{np.dtype(dtype).itemsize}")
    patterns = np.random.default_rng(seed).integers(0, np.iinfo(bits).max, count, dtype=bits,
                                                    endpoint=True)
    values = patterns.view(dtype)
    edges = np.array([0.0, -0.0, 0.1, 1 / 3, 1.0, -1.0, info.max, -info.max, info.tiny,
                      info.smallest_subnormal, -info.smallest_subnormal, 2 ** 24 + 2,
                      16777217.0, 67108900.0, 1e-7, 3.4e38], dtype)
    return np.concatenate([values[np.isfinite(values)], edges])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("request_format", ["row", "columnar"])
def test_floats_read_back_from_the_response_json_bit_for_bit(dtype, request_format):
    """The writer reads a REST predict's outputs back from the JSON the client got, not from
    the arrays: every finite float32/float64, printed as TF Serving prints it (6 digits if
    they read back, else 9 or 17), gives the same bits again."""
    from serving import json_codec

    values = _random_floats(dtype, 40000, seed=10)
    outputs = {"x": values.reshape(-1, 1) if request_format == "row" else values}
    response_json = json_codec.encode_predict_response(outputs, request_format)
    kind, specs = request_logging._outputs_by_json(outputs, response_json)[::2]
    assert kind == "json"
    read_back = request_logging.portable_outputs_from_json(response_json, specs)
    expected = request_logging._portable(outputs["x"])
    assert read_back["x"][:2] == expected[:2]
    bits = f"u{np.dtype(dtype).itemsize}"
    mismatched = np.flatnonzero(np.frombuffer(read_back["x"][2], dtype).view(bits)
                                != values.view(bits))
    assert not mismatched.size, f"{values[mismatched[:5]]!r} read back otherwise"
    assert read_back["x"][2] == expected[2]


def _as_strings(*items):
    array = np.empty(len(items), object)
    array[:] = items
    return array


# Output maps as signatures return them: the taxi model's, one output, every dtype the JSON
# path carries, strings that are not UTF-8, *_bytes outputs, empty and scalar shapes.
OUTPUT_MAPS = {
    "taxi": {"outputs": np.array([[0.31]], np.float32),
             "scores": np.array([[0.69, 0.31]], np.float32),
             "classes": np.array([[b"0", b"1"]], object)},
    "one_output": {"y": np.array([[1.5], [-2.25], [3e-42]], np.float32)},
    "every_dtype": {
        name: np.array([[low, high], [high, low]], dtype) for name, dtype, low, high in [
            ("bool", np.bool_, False, True), ("i8", np.int8, -128, 127),
            ("u8", np.uint8, 0, 255), ("i16", np.int16, -2 ** 15, 2 ** 15 - 1),
            ("u16", np.uint16, 0, 2 ** 16 - 1), ("i32", np.int32, -2 ** 31, 2 ** 31 - 1),
            ("u32", np.uint32, 0, 2 ** 32 - 1), ("i64", np.int64, -2 ** 63, 2 ** 63 - 1),
            ("u64", np.uint64, 0, 2 ** 64 - 1), ("f32", np.float32, -1e-45, 3.4028235e38),
            ("f64", np.float64, 5e-324, -1.7e308)]},
    "strings": {
        "text": _as_strings(b"\xff\xfe not UTF-8", "\u00e9".encode(), b"", b"\x00\n\"")
        .reshape(2, 2),
        "image_bytes": _as_strings(b"\x00\xff", b"abc", b"", b"\x80").reshape(2, 2),
        "str_bytes": _as_strings("plain str", "x", "", "\u00e9").reshape(2, 2)},
    "shapes": {"empty": np.zeros((2, 0, 3), np.float32), "deep": np.arange(
        16, dtype=np.int64).reshape(2, 2, 2, 2), "row": np.array([7.0, 8.0], np.float64)},
}


@pytest.mark.parametrize("request_format", ["row", "columnar"])
@pytest.mark.parametrize("name", list(OUTPUT_MAPS))
def test_rest_predict_logs_the_same_outputs_from_the_json_as_from_the_arrays(name,
                                                                              request_format):
    """The logged PredictResponse built from the response JSON has exactly the bytes of the
    one built from the output arrays, for every shape and dtype the JSON path takes."""
    from tensorflow.core.protobuf import meta_graph_pb2

    from serving import json_codec

    outputs = OUTPUT_MAPS[name]
    response_json = json_codec.encode_predict_response(outputs, request_format)
    by_json = request_logging._outputs_by_json(outputs, response_json)
    assert by_json is not None
    by_arrays = {alias: request_logging._portable(value) for alias, value in outputs.items()}
    assert request_logging.portable_outputs_from_json(*by_json[1:]) == {
        alias: (kind, shape, data if kind != "objects" else [
            item if isinstance(item, bytes) else item.encode() for item in data])
        for alias, (kind, shape, data) in by_arrays.items()}
    signature = meta_graph_pb2.SignatureDef()
    signature.inputs["x"].dtype = types_pb2.DT_FLOAT
    build = request_logging.BUILDERS["rest_predict"]
    arguments = ("taxi", None, None, "", 5, signature.SerializeToString(),
                 b'{"instances": [1.0]}')
    assert build(*arguments, by_json) == build(*arguments, by_arrays)


@pytest.mark.parametrize("outputs", [
    {"x": np.array([[np.nan, 1.0]], np.float32)}, {"x": np.array([[-np.inf]], np.float64)},
    {"x": np.array([[0.5]], np.float16)}, {"x": np.array([[1.0]], np.float32).astype(">f4")},
    {"x": np.array([["NaN"]], object)}],
    ids=["nan", "infinity", "float16", "big_endian", "nan_text"])
def test_outputs_the_json_may_not_hold_exactly_are_sent_as_bytes(outputs):
    """Non-finite floats (which NaN?), float16 and non-native byte orders go as arrays."""
    from serving import json_codec

    response_json = json_codec.encode_predict_response(outputs, "row")
    assert request_logging._outputs_by_json(outputs, response_json) is None


def test_a_full_queue_drops_logs_without_blocking():
    """With no writer thread to drain it, a queue of one takes one log and drops the rest."""
    config = text_format.Parse(
        'model_config_list { config { name: "queue_test" base_path: "/none" logging_config { '
        'sampling_config { sampling_rate: 1.0 } '
        'log_collector_config { type: "tfrecord" filename_prefix: "/none/x" } } } }',
        model_server_config_pb2.ModelServerConfig())
    logger = request_logging.RequestLogger(lambda: config, queue_size=1)
    started = time.monotonic()
    for _ in range(3):
        logger.log(time.time(), request_logging.PREDICT, "queue_test", 1, "",
                   request_logging.serialized_protos, predict_pb2.PredictRequest(),
                   predict_pb2.PredictResponse())
    assert time.monotonic() - started < 1
    text = metrics.prometheus_text()
    assert metric_value(text, f'{metrics.REQUEST_LOG_COUNT}{{model_name="queue_test",'
                              'status_code="RESOURCE_EXHAUSTED"}') == 2


# --- reloads, and stopping --------------------------------------------------------------------

def reload(server, config_text):
    """HandleReloadConfigRequest; (grpc code, details)."""
    config = text_format.Parse(config_text, model_server_config_pb2.ModelServerConfig())
    with grpc.insecure_channel(server.grpc_address) as channel:
        try:
            model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                model_management_pb2.ReloadConfigRequest(config=config), timeout=60)
        except grpc.RpcError as error:
            return error.code(), error.details()
    return grpc.StatusCode.OK, ""


MAX_FILE_BYTES = 1500  # about ten logs of half_plus_two: the last test sees files rotate


@pytest.fixture(scope="module")
def reloaded(saved_models, module_tmp):
    """half_plus_two without logging, its config file polled every second."""
    root = module_tmp / "reloaded"
    base = make_model_base(root / "half_plus_two", {1: saved_models["half_plus_two"]})
    config_path = root / "models.config"
    write_model_config(config_path, {"half_plus_two": base})
    server = start_server(f"--model_config_file={config_path}",
                          "--model_config_file_poll_wait_seconds=1",
                          f"--request_log_max_file_bytes={MAX_FILE_BYTES}", tmp_dir=root)
    server.root, server.base, server.config_path = root, base, config_path
    yield server
    server.stop()


def config_text(server, prefix=None, collector_type="tfrecord"):
    extra = logging_config(prefix, collector_type=collector_type) if prefix else ""
    return ('model_config_list {\n  config {\n    name: "half_plus_two"\n'
            f'    base_path: "{server.base}"\n    model_platform: "tensorflow"\n{extra}  }}\n}}\n')


def predict_until_logged(server, prefix, x):
    """Predicts x until a log of it appears under prefix (a polled config applies within
    a poll); -> that log."""
    def logged():
        assert server.post("/v1/models/half_plus_two:predict", {"instances": [x]})[0] == 200
        return next((entry for entry in read_logs(prefix)
                     if list(entry.predict_log.request.inputs["x"].float_val) == [x]), None)

    return wait_for(logged, timeout=30, interval=0.5, message=f"a log of {x} in {prefix}")


def test_reloading_the_config_file_turns_logging_on_and_moves_it(reloaded):
    first, second = reloaded.root / "logs" / "first", reloaded.root / "logs" / "second"
    assert reloaded.post("/v1/models/half_plus_two:predict", {"instances": [1.0]})[0] == 200
    reloaded.config_path.write_text(config_text(reloaded, first))
    predict_until_logged(reloaded, first, 2.0)
    reloaded.config_path.write_text(config_text(reloaded, second))
    predict_until_logged(reloaded, second, 3.0)
    # The call before logging was on was not logged; nothing goes to the old prefix now.
    assert [list(e.predict_log.request.inputs["x"].float_val) for e in read_logs(first)
            if e.predict_log.request.inputs["x"].float_val == [1.0]] == []
    count = settled_count(first)
    assert reloaded.post("/v1/models/half_plus_two:predict", {"instances": [4.0]})[0] == 200
    time.sleep(1.5)
    assert len(read_logs(first)) == count


def test_a_reload_with_a_bad_collector_is_refused_and_logging_goes_on(reloaded):
    second = reloaded.root / "logs" / "second"
    assert reload(reloaded, config_text(reloaded, reloaded.root / "logs" / "bad", "kafka")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "logging_config of model half_plus_two: unsupported log_collector_config.type "
        "'kafka'; this server writes type 'tfrecord' only")
    predict_until_logged(reloaded, second, 5.0)
    assert not (reloaded.root / "logs" / "bad").exists()


def test_a_grpc_reload_turns_logging_off(reloaded):
    second = reloaded.root / "logs" / "second"
    assert reload(reloaded, config_text(reloaded)) == (grpc.StatusCode.OK, "")
    count = settled_count(second)  # the calls logged before the reload
    assert reloaded.post("/v1/models/half_plus_two:predict", {"instances": [6.0]})[0] == 200
    time.sleep(1.5)
    assert len(read_logs(second)) == count


def writer_pids(pid) -> list:
    """The server's writer processes: its children started by multiprocessing's spawn (not
    multiprocessing's resource tracker, which is another child)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            children.append(int(stat.parent.name))
    return children


def test_killing_the_writer_process_fails_no_call_and_logging_resumes(reloaded):
    """kill -9 of the writer process: calls go on answering, the server starts a new writer,
    and calls after that are logged (with the server's pid in the file names still)."""
    killed = reloaded.root / "logs" / "killed"
    assert reload(reloaded, config_text(reloaded, killed)) == (grpc.StatusCode.OK, "")
    predict_until_logged(reloaded, killed, 200.0)
    writers = writer_pids(reloaded.process.pid)
    assert len(writers) == 1, writers
    os.kill(writers[0], signal.SIGKILL)
    for i in range(20):  # straight after the kill, while there is no writer
        assert reloaded.post("/v1/models/half_plus_two:predict",
                             {"instances": [300.0 + i]})[0] == 200
    predict_until_logged(reloaded, killed, 400.0)
    assert writer_pids(reloaded.process.pid) not in ([], writers)
    assert reloaded.process.poll() is None
    assert {int(FILE_NAME.search(path).group(2)) for path in log_files(killed)} == {
        reloaded.process.pid}


def test_stopping_the_server_writes_every_queued_log_in_rotated_files(reloaded):
    third = reloaded.root / "logs" / "third"
    assert reload(reloaded, config_text(reloaded, third)) == (grpc.StatusCode.OK, "")
    for i in range(20):
        assert reloaded.post("/v1/models/half_plus_two:predict",
                             {"instances": [100.0 + i]})[0] == 200
    reloaded.stop()  # SIGTERM, straight after the calls: well within a flush interval
    assert reloaded.process.returncode == 0
    logged = [entry.predict_log.request.inputs["x"].float_val[0] for entry in read_logs(third)]
    assert logged == [100.0 + i for i in range(20)]  # files in name order, logs in call order
    files = log_files(third)
    assert len(files) > 1
    assert all(Path(path).stat().st_size <= MAX_FILE_BYTES for path in files)
    assert [int(FILE_NAME.search(path).group(3)) for path in files] == list(range(len(files)))
