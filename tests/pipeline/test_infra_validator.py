"""The InfraValidator as users meet it: a training run serves its candidate on a
local model server (no Docker) before the Pusher may push it; a candidate that
is too slow or cannot be loaded is not pushed, and ML Metadata says why."""
import json
import os
import re
import shutil

import psutil
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from metadata import runs
from models import signatures
from pipeline.components.infra_validator import SubprocessInfraValidatorExecutor
from pipeline.lineage.store import open_store
from tests.conftest import copy_store, run_pipeline
from tests.pipeline.test_components import artifacts_of, latest_execution

ROWS_PER_SIGNATURE = 5  # pipeline/config.py infra_request_rows
OUTPUT = metadata_store_pb2.Event.OUTPUT


def properties(artifact) -> dict:
    return {name: getattr(value, value.WhichOneof("value"))
            for name, value in artifact.custom_properties.items()}


def infra_blessing(store):
    execution = latest_execution(store, "InfraValidator")
    (blessing,) = artifacts_of(store, execution, OUTPUT)["blessing"]
    return blessing


def test_pushed_model_holds_its_warmup_requests(pipeline_runs):
    newest = pipeline_runs.serving_dir / str(pipeline_runs.pushed_versions()[-1])
    warmup_file = newest / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(warmup_file))]
    # One PredictionLog per request: each client signature, each eval row.
    assert len(logs) == len(signatures.CLIENT_SIGNATURES) * ROWS_PER_SIGNATURE
    requests = [log.predict_log.request for log in logs]
    assert {r.model_spec.signature_name for r in requests} == set(signatures.CLIENT_SIGNATURES)
    assert {r.model_spec.name for r in requests} == {"taxi_tips"}
    raw = [r for r in requests if r.model_spec.signature_name == "serving_raw"]
    assert "fare" in raw[0].inputs and "payment_type" in raw[0].inputs


def test_metadata_records_the_blessing_and_the_load_test(pipeline_runs):
    store = open_store(str(pipeline_runs.metadata_path))
    blessing = infra_blessing(store)
    recorded = properties(blessing)
    assert recorded["blessed"] == 1 and recorded["has_model"] == 1
    assert recorded["reason"] == ""
    assert recorded["signatures"] == ",".join(signatures.CLIENT_SIGNATURES)
    assert recorded["failed_requests"] == 0 and recorded["load_requests"] >= 1
    assert 0 < recorded["latency_p50_ms"] <= recorded["latency_p99_ms"] \
        <= recorded["p99_target_ms"]
    files = set(os.listdir(blessing.uri))
    assert {"INFRA_BLESSED", "infra_validation.json", "model_server.log",
            "stamped_model"} <= files
    with open(os.path.join(blessing.uri, "infra_validation.json")) as f:
        assert json.load(f)["latency_p99_ms"] == pytest.approx(recorded["latency_p99_ms"])
    # The Pusher read the blessing, and the run summary shows the load test.
    pusher = latest_execution(store, "Pusher")
    assert [a.id for a in artifacts_of(store, pusher, metadata_store_pb2.Event.INPUT)
            ["infra_blessing"]] == [blessing.id]
    assert re.search(r"InfraValidator: blessed; p99 [\d.]+ ms at [\d.]+ req/s "
                     r"\(target [\d.]+ ms\), 0 failed", pipeline_runs.after_new_span.stdout)


def test_a_too_slow_candidate_is_not_pushed_and_the_run_says_why(pipeline_runs, tmp_path):
    data_dir, output_dir = copy_store(pipeline_runs, tmp_path)
    versions_before = sorted(os.listdir(output_dir / "serving_model" / "taxi_tips"))

    # The same span again, with a target no server can meet.
    result = run_pipeline(data_dir, output_dir, "--infra-p99-target-ms", "0.001")

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"InfraValidator\s+ran", out), out
    assert "Nothing pushed: the InfraValidator did not bless the model (p99 latency" in out, out
    assert "above the target 0.001 ms" in out
    assert sorted(os.listdir(output_dir / "serving_model" / "taxi_tips")) == versions_before

    store = open_store(str(output_dir / "metadata.sqlite"))
    blessing = infra_blessing(store)
    recorded = properties(blessing)
    assert recorded["blessed"] == 0 and "has_model" not in recorded
    assert "above the target" in recorded["reason"]
    assert recorded["latency_p99_ms"] > 0.001  # measured, and recorded on a failure too
    assert "INFRA_NOT_BLESSED" in os.listdir(blessing.uri)
    assert "stamped_model" not in os.listdir(blessing.uri)
    (pushed,) = artifacts_of(store, latest_execution(store, "Pusher"), OUTPUT)["pushed_model"]
    assert properties(pushed)["pushed"] == 0
    outcome = runs.run_properties(runs.all_runs(store)[-1])
    assert outcome["outcome"] == "not blessed"
    assert outcome["outcome_detail"].startswith("InfraValidator: p99 latency")


def test_a_model_the_server_cannot_load_is_not_blessed(pipeline_runs, tmp_path):
    """The executor on its own, on a copy of the trained model without its
    variables: the real server fails to load it, and is stopped."""
    store = open_store(str(pipeline_runs.metadata_path))
    inputs = artifacts_of(store, latest_execution(store, "InfraValidator"),
                          metadata_store_pb2.Event.INPUT)
    broken_uri = tmp_path / "model"
    shutil.copytree(inputs["model"][0].uri, broken_uri)
    shutil.rmtree(broken_uri / "Format-Serving" / "variables")
    model, examples, blessing = (standard_artifacts.Model(), standard_artifacts.Examples(),
                                 standard_artifacts.InfraBlessing())
    model.set_mlmd_artifact(inputs["model"][0])
    model.uri = str(broken_uri)
    examples.set_mlmd_artifact(inputs["examples"][0])
    blessing.uri = str(tmp_path / "blessing")
    os.makedirs(blessing.uri)
    exec_properties = {
        "serving_spec": proto_utils.proto_to_json(infra_validator_pb2.ServingSpec(
            tensorflow_serving=infra_validator_pb2.TensorFlowServing(),
            model_name="taxi_tips")),
        "request_spec": proto_utils.proto_to_json(infra_validator_pb2.RequestSpec(
            tensorflow_serving=infra_validator_pb2.TensorFlowServingRequestSpec(
                signature_names=list(signatures.CLIENT_SIGNATURES)),
            split_name="eval", num_examples=2, make_warmup=True)),
        "validation_spec": proto_utils.proto_to_json(infra_validator_pb2.ValidationSpec(
            max_loading_time_seconds=120, num_tries=1)),
        "p99_target_ms": 1000.0, "load_rate": 10.0, "load_seconds": 1.0,
        "max_failed_requests": 0}

    # Session fixtures (a database server) may already be children of this process.
    children_before = set(psutil.Process().children(recursive=True))
    SubprocessInfraValidatorExecutor().Do(
        {"model": [model], "examples": [examples]}, {"blessing": [blessing]}, exec_properties)

    recorded = properties(blessing.mlmd_artifact)
    assert recorded["blessed"] == 0 and "has_model" not in recorded
    assert "could not load version 1" in recorded["reason"]
    assert "variables" in recorded["reason"]  # the server's own words
    files = os.listdir(blessing.uri)
    assert "INFRA_NOT_BLESSED" in files and "stamped_model" not in files
    assert "Loading servable" in (tmp_path / "blessing" / "model_server.log").read_text()
    # the model server was stopped
    assert set(psutil.Process().children(recursive=True)) - children_before == set()
