"""Prometheus metrics on the REST port, at the path the monitoring config names."""
import re

import pytest

from tests.serving.conftest import make_model_base, start_server

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
