"""REST server options: --rest_api_enable_cors_support and --rest_api_timeout_in_ms."""
import time

import pytest

from tests.serving.conftest import http_request, make_model_base, start_server

CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
        "Access-Control-Allow-Headers": "Content-Type"}


@pytest.fixture(scope="module")
def cors_server(saved_models, module_tmp):
    base = make_model_base(module_tmp / "multi_io", {1: saved_models["multi_io"]})
    server = start_server("--model_name=multi_io", f"--model_base_path={base}",
                          "--rest_api_enable_cors_support", "--rest_api_timeout_in_ms=250",
                          tmp_dir=module_tmp)
    yield server
    server.stop()


def test_cors_headers_on_success_and_error(cors_server):
    for status_expected, (status, _, headers, _) in (
            (200, cors_server.get("/v1/models/multi_io")),
            (404, cors_server.get("/v1/models/nope"))):
        assert status == status_expected
        assert {k: headers[k] for k in CORS} == CORS


def test_cors_preflight(cors_server):
    status, _, headers, raw = http_request("OPTIONS", cors_server.url("/v1/models/multi_io:predict"),
                                           headers={"Origin": "http://example.com",
                                                    "Access-Control-Request-Method": "POST"})
    assert (status, raw) == (200, "")
    assert {k: headers[k] for k in CORS} == CORS


def test_no_cors_headers_by_default(models_server):
    _, _, headers, _ = models_server.get("/v1/models/half_plus_two")
    assert "Access-Control-Allow-Origin" not in headers


def test_slow_request_times_out(cors_server):
    started = time.monotonic()
    status, body, _, _ = cors_server.post("/v1/models/multi_io:predict",
                                          {"signature_name": "slow", "instances": [300000]})
    assert (status, body) == (504, {"error": "Timed out waiting for notification"})
    assert time.monotonic() - started < 1.0
    # Fast requests are unaffected.
    status, body, _, _ = cors_server.post("/v1/models/multi_io:predict",
                                          {"signature_name": "slow", "instances": [10]})
    assert (status, body) == (200, {"predictions": [9]})


def test_rest_port_in_use_fails_start_up(cors_server, saved_models, module_tmp):
    # Like tensorflow_model_server: no second server quietly sharing the REST port.
    base = make_model_base(module_tmp / "second", {1: saved_models["multi_io"]})
    second = start_server("--model_name=multi_io", f"--model_base_path={base}",
                          f"--rest_api_port={cors_server.rest_port}", tmp_dir=module_tmp,
                          expect_failure=True)
    assert second.process.wait(timeout=60) != 0
    assert "Failed to start HTTP Server" in second.log()
    assert cors_server.get("/v1/models/multi_io")[0] == 200
