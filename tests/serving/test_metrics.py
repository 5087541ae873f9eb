"""Prometheus metrics on the REST port, at the path the monitoring config names."""
import re

import numpy as np
import pytest
from tensorflow_serving.apis import inference_pb2

from serving.client import GrpcClient, ServingRequestError, make_example
from tests.serving.conftest import make_model_base, start_server, write_model_config

METRICS_PATH = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def monitored_server(saved_models, module_tmp):
    base = make_model_base(module_tmp / "half_plus_two", {1: saved_models["half_plus_two"]})
    monitoring = module_tmp / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    server = start_server("--model_name=half_plus_two", f"--model_base_path={base}",
                          f"--monitoring_config_file={monitoring}", tmp_dir=module_tmp)
    yield server
    server.stop()


def metric_value(text, line_prefix):
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_request_counts_and_latency_by_model_and_api(monitored_server):
    for _ in range(3):
        assert monitored_server.post("/v1/models/half_plus_two:predict",
                                     {"instances": [1.0]})[0] == 200
    assert monitored_server.post("/v1/models/half_plus_two:predict", {"instances": ["x"]})[0] \
        == 400
    assert monitored_server.post("/v1/models/half_plus_two:regress", {
        "signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]})[0] == 200
    assert monitored_server.get("/v1/models/half_plus_two/metadata")[0] == 200

    status, _, headers, text = monitored_server.get(METRICS_PATH)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    count = ':tensorflow:serving:request_count{model_name="half_plus_two",status="%s"}'
    assert metric_value(text, count % "OK") == 5
    assert metric_value(text, count % "INVALID_ARGUMENT") == 1
    latency = (':tensorflow:serving:request_latency_count{model_name="half_plus_two",'
               'API="%s",entrypoint="REST"}')
    assert metric_value(text, latency % "Predict") == 4
    assert metric_value(text, latency % "Regress") == 1
    assert metric_value(text, latency % "GetModelMetadata") == 1
    inf_bucket = (':tensorflow:serving:request_latency_bucket{model_name="half_plus_two",'
                  'API="Predict",entrypoint="REST",le="+Inf"}')
    assert metric_value(text, inf_bucket) == 4
    # Buckets are cumulative and in microseconds, starting at 10us.
    assert re.search(r'API="Predict",entrypoint="REST",le="10"} 0', text)
    assert metric_value(text, latency.replace("_count", "_sum") % "Predict") > 0


def test_metrics_path_is_exact(monitored_server):
    assert monitored_server.get(METRICS_PATH + "/x")[:2] == (404, "")


def test_no_metrics_without_monitoring_config(models_server):
    assert models_server.get(METRICS_PATH)[:2] == (404, "")


@pytest.fixture(scope="module")
def canary_server(saved_models, module_tmp):
    """half_plus_two with a stable version 1 (y = x/2 + 2) and a canary version 2 (+ 3)."""
    root = module_tmp / "canary"
    base = make_model_base(root / "half_plus_two", {1: saved_models["half_plus_two"],
                                                     2: saved_models["half_plus_three"]})
    config = write_model_config(root / "models.config", {"half_plus_two": {
        "base_path": base, "extra": (
            "    model_version_policy { all {} }\n"
            '    version_labels { key: "stable" value: 1 }\n'
            '    version_labels { key: "canary" value: 2 }\n')}})
    monitoring = root / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    # Batching on: a small REST predict then resolves its version on the event loop, while
    # regress resolves it on a pool thread; both must reach the metrics.
    server = start_server(f"--model_config_file={config}", "--enable_batching",
                          f"--monitoring_config_file={monitoring}", tmp_dir=module_tmp)
    yield server
    server.stop()


def test_inference_calls_are_counted_under_the_version_they_resolved_to(canary_server):
    model = "/v1/models/half_plus_two"
    # REST: by number, by label and latest; OK and failing.
    assert canary_server.post(f"{model}/versions/1:predict", {"instances": [1.0]})[:2] == (
        200, {"predictions": [2.5]})
    assert canary_server.post(f"{model}/versions/1:predict", {"instances": [2.0]})[0] == 200
    assert canary_server.post(f"{model}/labels/canary:predict", {"instances": [1.0]})[:2] == (
        200, {"predictions": [3.5]})
    assert canary_server.post(f"{model}:predict", {"instances": [1.0]})[:2] == (
        200, {"predictions": [3.5]})  # latest is version 2
    assert canary_server.post(f"{model}/labels/stable:predict", {"instances": ["x"]})[0] == 400
    assert canary_server.post(f"{model}/labels/stable:regress", {
        "signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]})[0] == 200
    # Never resolved to a version: counted by model only.
    assert canary_server.post(f"{model}/versions/7:predict", {"instances": [1.0]})[0] == 404
    assert canary_server.get(f"{model}/versions/1/metadata")[0] == 200

    # gRPC: by label and number, OK and failing, and a multi-inference call.
    with GrpcClient(port=canary_server.grpc_port) as client:
        assert client.predict("half_plus_two", {"x": np.array([1.0], np.float32)},
                              label="canary")["y"].tolist() == [3.5]
        with pytest.raises(ServingRequestError) as failed:
            client.predict("half_plus_two", {"x": np.array([1], np.int64)}, version=1)
        assert failed.value.code == "INVALID_ARGUMENT"
        assert client.classify("half_plus_two", [{"x": 1.0}], signature_name="classify_x_to_y",
                               version=2) == [[["", 3.5]]]
        request = inference_pb2.MultiInferenceRequest()
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.version_label = "half_plus_two", "canary"
        task.model_spec.signature_name = "regress_x_to_y"
        task.method_name = "tensorflow/serving/regress"
        request.input.example_list.examples.add().CopyFrom(make_example({"x": 1.0}))
        response = client.prediction.MultiInference(request, timeout=30)
        assert response.results[0].regression_result.regressions[0].value == 3.5

    text = canary_server.get(METRICS_PATH)[3]
    assert "# TYPE :tensorflow:serving:request_count_by_version counter" in text
    assert "# TYPE :tensorflow:serving:request_latency_by_version histogram" in text
    count = (':tensorflow:serving:request_count_by_version{model_name="half_plus_two",'
             'version="%d",status="%s"}')
    assert metric_value(text, count % (1, "OK")) == 3
    assert metric_value(text, count % (1, "INVALID_ARGUMENT")) == 2
    assert metric_value(text, count % (2, "OK")) == 5
    assert metric_value(text, count % (2, "INVALID_ARGUMENT")) is None
    assert "version=\"7\"" not in text
    latency = ':tensorflow:serving:request_latency_by_version_%s{model_name="half_plus_two",' \
              'version="%d"%s}'
    assert metric_value(text, latency % ("count", 1, "")) == 5
    assert metric_value(text, latency % ("count", 2, "")) == 5
    assert metric_value(text, latency % ("bucket", 2, ',le="+Inf"')) == 5
    assert metric_value(text, latency % ("bucket", 1, ',le="10"')) == 0  # microseconds
    assert metric_value(text, latency % ("sum", 1, "")) > 0
    # The families without a version are unchanged: every call, by model.
    by_model = ':tensorflow:serving:request_count{model_name="half_plus_two",status="%s"}'
    assert metric_value(text, by_model % "OK") == 9  # the 8 inference calls OK + metadata
    assert metric_value(text, by_model % "NOT_FOUND") == 1
