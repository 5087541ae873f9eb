"""What users rely on at the two ends of the pipeline: bad data never reaches a
model, and the pushed model answers REST calls with raw feature values."""
import csv
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import copy_store, run_pipeline
from tests.serving.conftest import start_server

RAW_TRIP = {"trip_miles": 3.2, "fare": 11.25, "trip_seconds": 780,
            "payment_type": "Credit Card", "company": "Flash Cab",
            "pickup_latitude": 41.88, "pickup_longitude": -87.63,
            "dropoff_latitude": 41.92, "dropoff_longitude": -87.65,
            "trip_start_hour": 18, "trip_start_day": 5, "trip_start_month": 10,
            "pickup_community_area": 8, "dropoff_community_area": 7}


def write_bad_span(source_csv, target_csv):
    """A copy of a good span with negative trip lengths and an unknown payment type."""
    with open(source_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows[::3]:
        row["trip_miles"] = "-4.0"
    rows[1]["payment_type"] = "Crypto"
    target_csv.parent.mkdir(parents=True)
    with open(target_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_bad_span_stops_the_run_and_never_joins_the_training_window(pipeline_runs, tmp_path):
    data_dir, output_dir = copy_store(pipeline_runs, tmp_path)
    versions_before = sorted(p.name for p in (output_dir / "serving_model/taxi_tips").iterdir())
    write_bad_span(data_dir / "span-16" / "data.csv", data_dir / "span-17" / "data.csv")

    result = run_pipeline(data_dir, output_dir)

    assert result.returncode == 1
    out = result.stdout
    assert "ExampleValidator found anomalies" in out
    assert "trip_miles" in out and "payment_type" in out
    assert "ValidationGate" in out and "FAILED" in out
    for never_ran in ("Transform", "Trainer", "Evaluator", "Pusher"):
        assert f"  {never_ran} " not in out
    assert sorted(p.name for p in (output_dir / "serving_model/taxi_tips").iterdir()) \
        == versions_before
    assert "Traceback" not in out

    # A good span arrives next: the window skips the span that failed validation.
    good = data_dir / "span-18"
    good.mkdir()
    shutil.copy(data_dir / "span-16" / "data.csv", good / "data.csv")
    result = run_pipeline(data_dir, output_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Trained on spans 15, 16, 18." in result.stdout


@pytest.fixture(scope="module")
def taxi_server(pipeline_runs, tmp_path_factory):
    server = start_server("--model_name=taxi_tips",
                          f"--model_base_path={pipeline_runs.serving_dir}",
                          tmp_dir=tmp_path_factory.mktemp("taxi-server"))
    yield server
    server.stop()


def in_process_probability(saved_model_dir, trip):
    signature = tf.saved_model.load(str(saved_model_dir)).signatures["serving_raw"]
    inputs = {name: tf.constant([value], dtype=spec.dtype)
              for name, value in trip.items()
              for spec in [signature.structured_input_signature[1][name]]}
    return signature(**inputs)["outputs"].numpy()[0][0]


def test_pushed_model_serves_raw_features_over_rest(pipeline_runs, taxi_server):
    latest = pipeline_runs.pushed_versions()[-1]
    status, body, _, _ = taxi_server.get("/v1/models/taxi_tips")
    assert status == 200
    assert body["model_version_status"][0]["version"] == str(latest)
    assert body["model_version_status"][0]["state"] == "AVAILABLE"

    status, body, _, _ = taxi_server.post(
        "/v1/models/taxi_tips:predict",
        {"signature_name": "serving_raw", "instances": [RAW_TRIP, dict(RAW_TRIP, fare=40.0)]})
    assert status == 200, body
    predictions = body["predictions"]
    assert len(predictions) == 2
    for prediction in predictions:
        assert prediction["classes"] == ["0", "1"]
        assert sum(prediction["scores"]) == pytest.approx(1.0, abs=1e-6)
        assert 0.0 <= prediction["outputs"][0] <= 1.0
    expected = in_process_probability(pipeline_runs.serving_dir / str(latest), RAW_TRIP)
    assert predictions[0]["outputs"][0] == pytest.approx(float(expected), rel=1e-5)


def test_pushed_model_classifies_and_regresses_tf_examples(taxi_server):
    example = dict(RAW_TRIP)
    status, body, _, _ = taxi_server.post("/v1/models/taxi_tips:classify",
                                          {"examples": [example]})
    assert status == 200, body
    (result,) = body["results"]
    assert [label for label, _ in result] == ["0", "1"]
    probability = result[1][1]

    status, body, _, _ = taxi_server.post(
        "/v1/models/taxi_tips:regress",
        {"signature_name": "big_tip_probability", "examples": [example]})
    assert status == 200, body
    assert body["results"][0] == pytest.approx(probability, rel=1e-5)


def test_bad_request_gets_tf_serving_error_and_the_server_keeps_serving(taxi_server):
    status, body, _, _ = taxi_server.post(
        "/v1/models/taxi_tips:predict",
        {"signature_name": "serving_raw", "instances": [{"trip_miles": "far"}]})
    assert 400 <= status < 500 and "error" in body
    status, _, _, _ = taxi_server.post(
        "/v1/models/taxi_tips:predict", {"signature_name": "serving_raw", "instances": [RAW_TRIP]})
    assert status == 200
    np.testing.assert_equal(taxi_server.process.poll(), None)


def test_evaluator_gate_blocks_a_model_below_the_bar(pipeline_runs, tmp_path):
    _, output_dir = copy_store(pipeline_runs, tmp_path)
    versions_before = sorted(p.name for p in (output_dir / "serving_model/taxi_tips").iterdir())

    # The same data folder, so that every step before the Evaluator is cached.
    result = run_pipeline(pipeline_runs.data_dir, output_dir, "--min-auc", "0.999")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing pushed: the Evaluator did not bless the model" in result.stdout
    assert re.search(r"auc 0\.\d+ on Overall", result.stdout)
    assert re.search(r"Trainer\s+cached", result.stdout)  # only the evaluation changed
    assert sorted(p.name for p in (output_dir / "serving_model/taxi_tips").iterdir()) \
        == versions_before
