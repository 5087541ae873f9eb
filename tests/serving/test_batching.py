"""--enable_batching: concurrent requests run as one padded batch, per the parameters file.

The multi_io model's batch_info signature reports the batch size the graph ran on.
"""
import concurrent.futures
import json
import time

import pytest

from serving import rest_api
from tests.serving.conftest import (add_version, make_model_base, start_server, wait_for,
                                    write_model_config)

BATCH_INFO = "/v1/models/multi_io:predict"
PARAMETERS = """
max_batch_size { value: 8 }
batch_timeout_micros { value: 400000 }
max_enqueued_batches { value: 4 }
num_batch_threads { value: 1 }
allowed_batch_sizes: 2
allowed_batch_sizes: 4
allowed_batch_sizes: 8
pad_variable_length_inputs: true
"""


@pytest.fixture(scope="module")
def batching_server(saved_models, module_tmp):
    config = write_model_config(module_tmp / "models.config", {
        "half_plus_two": make_model_base(module_tmp / "half_plus_two",
                                         {1: saved_models["half_plus_two"]}),
        "multi_io": make_model_base(module_tmp / "multi_io", {1: saved_models["multi_io"]}),
    })
    parameters = module_tmp / "batching.config"
    parameters.write_text(PARAMETERS)
    server = start_server(f"--model_config_file={config}", "--enable_batching",
                          f"--batching_parameters_file={parameters}", tmp_dir=module_tmp)
    yield server
    server.stop()


def batch_info(server, rows):
    status, body, _, _ = server.post(BATCH_INFO, {"signature_name": "batch_info",
                                                  "inputs": {"tokens": rows}})
    assert status == 200, body
    return body["outputs"]


def test_single_request_is_padded_to_an_allowed_size(batching_server):
    assert batch_info(batching_server, [[1.0, 2.0]]) == {
        "batch_size": [2], "width": [2], "total": [3.0]}
    assert batch_info(batching_server, [[1.0], [2.0], [3.0]]) == {
        "batch_size": [4, 4, 4], "width": [1, 1, 1], "total": [1.0, 2.0, 3.0]}


def test_oversized_request_is_rejected(batching_server):
    status, body, _, _ = batching_server.post(BATCH_INFO, {
        "signature_name": "batch_info", "inputs": {"tokens": [[1.0]] * 9}})
    assert (status, body) == (400, {
        "error": "Task size 9 is larger than maximum input batch size 8"})


def test_concurrent_requests_share_a_batch_and_get_their_own_rows(batching_server):
    requests = [[[float(i)]] for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(lambda rows: batch_info(batching_server, rows), requests))
    assert [r["total"] for r in results] == [[0.0], [1.0], [2.0], [3.0]]
    # All four arrive within the 400 ms batch timeout: one run of 4 rows.
    assert max(r["batch_size"][0] for r in results) == 4


def test_large_bodies_are_batched_like_small_ones(batching_server):
    # Small predict bodies are decoded on the event loop, large ones on a pool thread
    # (rest_api.LOOP_DECODE_MAX_BYTES): both reach the same batcher and get their rows.
    wide = [[float(i)] * 2000 for i in range(3)]
    body = json.dumps({"signature_name": "batch_info", "inputs": {"tokens": wide}})
    assert len(body) > rest_api.LOOP_DECODE_MAX_BYTES
    status, answer, _, _ = batching_server.post(BATCH_INFO, body)
    assert status == 200, answer
    assert answer["outputs"] == {"batch_size": [4, 4, 4], "width": [2000, 2000, 2000],
                                 "total": [0.0, 2000.0, 4000.0]}


def test_batched_rest_request_past_its_deadline_times_out(saved_models, module_tmp):
    # The event loop keeps the REST deadline of a request waiting for its batch.
    base = make_model_base(module_tmp / "slow", {1: saved_models["multi_io"]})
    server = start_server("--model_name=multi_io", f"--model_base_path={base}",
                          "--enable_batching", "--rest_api_timeout_in_ms=250",
                          tmp_dir=module_tmp)
    try:
        status, body, _, _ = server.post("/v1/models/multi_io:predict",
                                         {"signature_name": "slow", "instances": [3000000]})
        assert (status, body) == (504, {"error": "Timed out waiting for notification"})
        assert server.get("/v1/models/multi_io")[0] == 200  # the event loop is free
        # Once the abandoned batch is through, fast requests are answered again.
        wait_for(lambda: server.post("/v1/models/multi_io:predict", {
            "signature_name": "slow", "instances": [10]})[:2] == (200, {"predictions": [9]}),
            message="a fast request after the slow one")
    finally:
        server.stop()


def test_variable_length_inputs_are_padded(batching_server):
    requests = [[[1.0, 1.0]], [[2.0, 2.0, 2.0]]]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda rows: batch_info(batching_server, rows), requests))
    assert [r["width"] for r in results] == [[3], [3]]
    # Padding repeats the tensor's first element, as TF Serving does.
    assert [r["total"] for r in results] == [[3.0], [6.0]]


def test_ordinary_predict_classify_regress_work_with_batching(batching_server):
    started = time.monotonic()
    status, body, _, _ = batching_server.post("/v1/models/half_plus_two:predict",
                                              {"instances": [1.0, 2.0, 3.0]})
    assert (status, body) == (200, {"predictions": [2.5, 3.0, 3.5]})
    status, body, _, _ = batching_server.post("/v1/models/half_plus_two:regress", {
        "signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
    assert (status, body) == (200, {"results": [3.0]})
    assert time.monotonic() - started < 5


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_unloaded_versions_stop_their_batch_threads(saved_models, module_tmp):
    base = make_model_base(module_tmp / "swapped", {1: saved_models["half_plus_two"]})
    parameters = module_tmp / "many_threads.config"
    parameters.write_text("max_batch_size { value: 8 }\nnum_batch_threads { value: 6 }\n"
                          "batch_timeout_micros { value: 1000 }\n")
    server = start_server("--model_name=half_plus_two", f"--model_base_path={base}",
                          "--enable_batching", f"--batching_parameters_file={parameters}",
                          "--file_system_poll_wait_seconds=1", tmp_dir=module_tmp)
    try:
        def predict_on(version):
            status, body, _, _ = server.post(
                f"/v1/models/half_plus_two/versions/{version}:predict", {"instances": [1.0]})
            return status == 200

        assert predict_on(1)
        threads_with_one_version = thread_count(server.process.pid)
        for version in (2, 3, 4):
            add_version(base, version, saved_models["half_plus_two"])
            wait_for(lambda v=version: predict_on(v), message=f"version {version}")
            wait_for(lambda v=version: not predict_on(v - 1), message="old version unloaded")
        # Each loaded version starts 6 batch threads; the unloaded ones must end theirs.
        wait_for(lambda: thread_count(server.process.pid) <= threads_with_one_version + 5,
                 timeout=20, message="batch threads of unloaded versions to end")
    finally:
        server.stop()


SPLITTING = """
max_batch_size { value: 8 }
max_execution_batch_size { value: 2 }
enable_large_batch_splitting { value: %s }
batch_timeout_micros { value: 0 }
num_batch_threads { value: 1 }
"""


def splitting_server(saved_models, module_tmp, enabled: bool):
    base = make_model_base(module_tmp / f"split_{enabled}", {1: saved_models["multi_io"]})
    parameters = module_tmp / f"splitting_{enabled}.config"
    parameters.write_text(SPLITTING % ("true" if enabled else "false"))
    return start_server("--model_name=multi_io", f"--model_base_path={base}",
                        "--enable_batching", f"--batching_parameters_file={parameters}",
                        tmp_dir=module_tmp)


def test_large_batch_splitting_runs_a_request_in_pieces_and_keeps_its_rows_in_order(
        saved_models, module_tmp):
    server = splitting_server(saved_models, module_tmp, enabled=True)
    try:
        rows = [[float(i), 10.0 * i] for i in range(7)]
        outputs = batch_info(server, rows)
        # 7 rows, at most max_execution_batch_size = 2 per run of the graph.
        assert outputs["batch_size"] == [2, 2, 2, 2, 2, 2, 1]
        # The same answers, in the same order, as the graph gives the rows in one run.
        assert outputs["total"] == [11.0 * i for i in range(7)]
        assert outputs["width"] == [2] * 7
        # max_batch_size still bounds one request, as TF Serving's input_batch_size_limit.
        status, body, _, _ = server.post(BATCH_INFO, {
            "signature_name": "batch_info", "inputs": {"tokens": [[1.0]] * 9}})
        assert (status, body) == (400, {
            "error": "Task size 9 is larger than maximum input batch size 8"})
        # Concurrent split requests share batches but each gets back only its own rows.
        requests = [[[float(i)]] * (i + 1) for i in range(5)]
        with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
            results = list(pool.map(lambda r: batch_info(server, r), requests))
        assert [r["total"] for r in results] == [[float(i)] * (i + 1) for i in range(5)]
        assert max(max(r["batch_size"]) for r in results) <= 2
    finally:
        server.stop()


def test_without_splitting_max_execution_batch_size_is_ignored(saved_models, module_tmp):
    server = splitting_server(saved_models, module_tmp, enabled=False)
    try:
        outputs = batch_info(server, [[float(i)] for i in range(7)])
        assert outputs["batch_size"] == [7] * 7
        assert outputs["total"] == [float(i) for i in range(7)]
    finally:
        server.stop()

