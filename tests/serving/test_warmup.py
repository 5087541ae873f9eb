"""SavedModel warmup: a version that ships assets.extra/tf_serving_warmup_requests has its
requests replayed before it becomes AVAILABLE, as TF Serving does, or fails to load with
TF Serving's error when the file is bad.

One model, call_counter, whose predict answers how often it has been called, in six
versions: two that warm up (4 mixed records; 1000 records, the limit) and four that must
fail (1001 records, a failing request, a record that is not a PredictionLog, a file that is
not TFRecord). One server replays them; a second one, --enable_model_warmup=false, serves
the same versions without replaying.
"""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving import warmup
from serving.client import GrpcClient, make_example
from tests.serving.conftest import (build_models, make_model_base, start_server, wait_for,
                                    write_model_config)
from tests.serving.test_request_logging import logging_config, read_logs, settled_count

MODEL = "call_counter"
METRICS_PATH = "/monitoring/prometheus/metrics"
ITERATIONS = 3
MIXED, AT_LIMIT, OVER_LIMIT, FAILING, MALFORMED, NOT_TFRECORD = 1, 2, 3, 4, 5, 6


def predict_log(x=1.0, input_name="x"):
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = MODEL
    log.predict_log.request.inputs[input_name].CopyFrom(
        tf.make_tensor_proto(np.array([x], np.float32)))
    return log


def mixed_logs():
    """One record of each kind TF Serving replays."""
    classify = prediction_log_pb2.PredictionLog()
    classify.classify_log.request.model_spec.signature_name = "classify_x"
    classify.classify_log.request.input.example_list.examples.add().CopyFrom(
        make_example({"x": 1.0}))
    regress = prediction_log_pb2.PredictionLog()
    regress.regress_log.request.model_spec.signature_name = "regress_x"
    regress.regress_log.request.input.example_list.examples.add().CopyFrom(
        make_example({"x": 1.0}))
    multi = prediction_log_pb2.PredictionLog()
    task = multi.multi_inference_log.request.tasks.add()
    task.model_spec.name, task.model_spec.signature_name = MODEL, "regress_x"
    task.method_name = "tensorflow/serving/regress"
    multi.multi_inference_log.request.input.example_list.examples.add().CopyFrom(
        make_example({"x": 1.0}))
    return [predict_log(), classify, regress, multi]


def write_warmup_file(version_dir, records) -> str:
    """records: PredictionLogs written as TFRecords, or raw bytes as the whole file."""
    path = Path(warmup.warmup_requests_path(str(version_dir)))
    path.parent.mkdir(exist_ok=True)
    if isinstance(records, bytes):
        path.write_bytes(records)
    else:
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record if isinstance(record, bytes) else record.SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def warmup_models(module_tmp):
    """The six versions' base path and {version: warmup file path}."""
    source = build_models("warmup_saved_models", module_tmp / "built")[MODEL]
    base = Path(make_model_base(module_tmp / MODEL, {v: source for v in range(1, 7)}))
    files = {
        MIXED: write_warmup_file(base / "1", mixed_logs()),
        AT_LIMIT: write_warmup_file(base / "2", [predict_log()] * warmup.MAX_NUM_RECORDS),
        OVER_LIMIT: write_warmup_file(base / "3", [predict_log()] * (warmup.MAX_NUM_RECORDS + 1)),
        FAILING: write_warmup_file(base / "4", [predict_log(), predict_log(input_name="z")]),
        MALFORMED: write_warmup_file(base / "5", [predict_log(), b"not a PredictionLog"]),
        NOT_TFRECORD: write_warmup_file(base / "6", b"x=1.0\nx=2.0\n"),
    }
    return base, files


def start(warmup_models, root, *flags):
    base, _ = warmup_models
    root.mkdir()
    config = write_model_config(root / "models.config", {MODEL: {
        "base_path": str(base),
        "extra": "    model_version_policy { all {} }\n" + logging_config(root / "requests")}})
    monitoring = root / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    server = start_server(f"--model_config_file={config}",
                          f"--monitoring_config_file={monitoring}",
                          "--max_num_load_retries=0", *flags, tmp_dir=root)
    server.request_logs = root / "requests"
    return server


@pytest.fixture(scope="module")
def warm_server(warmup_models, module_tmp):
    server = start(warmup_models, module_tmp / "warm",
                   f"--num_request_iterations_for_warmup={ITERATIONS}")
    # Read before any request: what loading alone counted.
    server.metrics_at_start = server.get(METRICS_PATH)[3]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cold_server(warmup_models, module_tmp):
    server = start(warmup_models, module_tmp / "cold", "--enable_model_warmup=false")
    server.metrics_at_start = server.get(METRICS_PATH)[3]
    yield server
    server.stop()


def version_status(server, version) -> dict:
    with GrpcClient(port=server.grpc_port) as client:
        return client.status(MODEL, version=version)[0]


def calls_seen_by_first_predict(server, version) -> int:
    status, body, _, _ = server.post(f"/v1/models/{MODEL}/versions/{version}:predict",
                                     {"instances": [1.0]})
    assert status == 200, body
    return body["predictions"][0]["calls"]


def metric_value(text, line_prefix):
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def warmup_metric(name, path, status="OK"):
    return f':tensorflow:serving:{name}{{model_path="{path}",status="{status}"}}'


def test_every_record_is_replayed_num_request_iterations_times_before_the_version_serves(
        warm_server, warmup_models):
    base, _ = warmup_models
    assert version_status(warm_server, MIXED)["state"] == "AVAILABLE"
    assert calls_seen_by_first_predict(warm_server, MIXED) == 4 * ITERATIONS + 1
    assert calls_seen_by_first_predict(warm_server, AT_LIMIT) == 1000 * ITERATIONS + 1
    assert (f"Finished reading warmup data for model at {base / '1'}/assets.extra/"
            "tf_serving_warmup_requests. Number of warmup records read: 4.") in warm_server.log()


def test_warmup_has_its_own_metrics_and_is_not_counted_as_requests(warm_server,
                                                                      warmup_models):
    base, _ = warmup_models
    text = warm_server.metrics_at_start
    latency_count = warmup_metric("model_warmup_latency_count", base / "1")
    assert metric_value(text, latency_count) == 1
    assert metric_value(text, warmup_metric("model_warmup_records_read", base / "1")) == 4
    assert metric_value(text, warmup_metric("model_warmup_records_read", base / "2")) == 1000
    assert metric_value(text, latency_count.replace("_count{", "_sum{")) > 0
    assert "# TYPE :tensorflow:serving:model_warmup_latency histogram" in text
    # 4 x 3 + 1000 x 3 replayed calls, and not one of them is a request.
    assert ":tensorflow:serving:request_count{" not in text
    assert ":tensorflow:serving:request_count_by_version{" not in text
    assert ":tensorflow:serving:request_latency_bucket{" not in text


def test_replayed_requests_are_not_request_logged(warm_server):
    calls_seen_by_first_predict(warm_server, AT_LIMIT)
    text = warm_server.get(METRICS_PATH)[3]
    inference_calls = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith(":tensorflow:serving:request_count_by_version{")
        and 'status="OK"' in line)
    assert inference_calls >= 1
    # Every predict this session made is logged (sampling_rate 1), none of the 3012 replays
    # (the writer process starts with the first log, so wait for it first).
    wait_for(lambda: len(read_logs(warm_server.request_logs)) >= inference_calls,
             message="the predicts' logs")
    assert settled_count(warm_server.request_logs) == inference_calls


def test_over_the_record_limit_the_load_fails(warm_server, warmup_models):
    _, files = warmup_models
    assert version_status(warm_server, OVER_LIMIT) == {
        "version": str(OVER_LIMIT), "state": "END",
        "status": {"error_code": "INVALID_ARGUMENT", "error_message":
                   f"Number of warmup records exceeds the maximum (1000) at {files[OVER_LIMIT]}"}}


def test_a_failing_warmup_request_fails_the_load_with_its_own_error(warm_server):
    status = version_status(warm_server, FAILING)
    assert status["state"] == "END"
    assert status["status"] == {
        "error_code": "INVALID_ARGUMENT",
        "error_message": f"Request inputs do not match required inputs for model `{MODEL}`. "
                         "Send extra: {z}. Missing but required: {x}."}
    # Requests for it are refused as for any version that did not load.
    assert warm_server.post(f"/v1/models/{MODEL}/versions/{FAILING}:predict",
                            {"instances": [1.0]})[:2] == (
        404, {"error": f"Servable not found for request: Specific({MODEL}, {FAILING})"})


def test_a_record_that_is_not_a_prediction_log_fails_the_load(warm_server, warmup_models):
    _, files = warmup_models
    status, body, _, _ = warm_server.get(f"/v1/models/{MODEL}/versions/{MALFORMED}")
    assert status == 200
    assert body["model_version_status"][0] == {
        "version": str(MALFORMED), "state": "END",
        "status": {"error_code": "INVALID_ARGUMENT", "error_message":
                   f"Failed to parse warmup record: not a PredictionLog from "
                   f"{files[MALFORMED]}"}}


def test_a_file_that_is_not_tfrecord_fails_the_load_with_data_loss(warm_server,
                                                                     warmup_models):
    base, _ = warmup_models
    assert version_status(warm_server, NOT_TFRECORD)["status"] == {
        "error_code": "DATA_LOSS",
        "error_message": "corrupted record at 0 (Is this even a TFRecord file?). Please "
                         "verify your warmup data is in TFRecord format."}
    # TF Serving records the warmup metric for a damaged file, with the reader's status.
    damaged = warmup_metric("model_warmup_latency_count", base / "6",
                            "DATA_LOSS: corrupted record at 0 (Is this even a TFRecord file?)")
    assert metric_value(warm_server.metrics_at_start, damaged) == 1


def test_without_warmup_the_same_versions_load_and_nothing_is_replayed(cold_server):
    with GrpcClient(port=cold_server.grpc_port) as client:
        assert [s["state"] for s in client.status(MODEL)] == ["AVAILABLE"] * 6
    assert calls_seen_by_first_predict(cold_server, MIXED) == 1
    assert calls_seen_by_first_predict(cold_server, AT_LIMIT) == 1
    assert not [line for line in cold_server.metrics_at_start.splitlines()
                if line.startswith(":tensorflow:serving:model_warmup")]
    assert "warmup data" not in cold_server.log()
