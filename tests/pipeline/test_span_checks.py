"""What a watcher relies on for every new span: it is measured against the model
served when it arrived (decay of its metrics, drift from its training data),
both are named, and a policy that says "no" leaves training out of the run."""
import csv
import json
import os
import re

import pytest
from ml_metadata.proto import metadata_store_pb2

from metadata.artifacts import span_of
from pipeline.lineage.store import open_store
from tests.conftest import NEW_SPAN, copy_store, run_pipeline
from tests.pipeline.test_components import artifacts_of, executions_of

INPUT, OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT
TRAINING_NODES = ["Transform", "Trainer", "Evaluator", "Pusher"]


def properties(artifact) -> dict:
    return {name: getattr(value, value.WhichOneof("value"))
            for name, value in artifact.custom_properties.items()}


def run_outputs(store, node_id, output_key):
    """[(inputs by key, properties of the output, execution)], oldest run first."""
    return [(artifacts_of(store, execution, INPUT),
             properties(artifacts_of(store, execution, OUTPUT)[output_key][0]), execution)
            for execution in executions_of(store, node_id)]


def rewrite_span(source_csv, target_csv, change):
    """A copy of a span with `change(row)` applied to every trip."""
    with open(source_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        change(row)
    target_csv.parent.mkdir(parents=True)
    with open(target_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def flip_big_tipper(row):
    """Big tippers (tips > 20% of the fare) tip nothing; the others tip half the fare."""
    fare, tips = float(row["fare"]), float(row["tips"])
    row["tips"] = "0.0" if tips > 0.2 * fare else str(max(fare, 1.0) * 0.5)


def shift_distributions(row):
    row["payment_type"] = "Cash"
    row["fare"] = str(float(row["fare"]) * 5)


def run_on_new_span(pipeline_runs, tmp_path, change, *flags):
    """Copies the shared store, adds span 17 (span 16 with `change` applied), runs."""
    data_dir, output_dir = copy_store(pipeline_runs, tmp_path)
    rewrite_span(data_dir / f"span-{NEW_SPAN}" / "data.csv",
                 data_dir / f"span-{NEW_SPAN + 1}" / "data.csv", change)
    result = run_pipeline(data_dir, output_dir, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, output_dir, open_store(str(output_dir / "metadata.sqlite"))


def test_every_run_measures_its_span_against_the_model_served_when_it_arrived(pipeline_runs):
    store = open_store(str(pipeline_runs.metadata_path))
    first_version = str(pipeline_runs.pushed_versions()[0])
    decay = run_outputs(store, "DecayCheck", "performance")
    drift = run_outputs(store, "DriftCheck", "drift")
    decisions = run_outputs(store, "RetrainDecision", "decision")
    # The first run, the rerun with nothing new, the run after span 16 arrived.
    assert [execution.last_known_state for _, _, execution in decay + drift + decisions] == \
        [metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED,
         metadata_store_pb2.Execution.COMPLETE] * 3

    for inputs, performance, _ in decay[:2]:  # span 15: nothing was served yet
        assert span_of(inputs["examples"][0]) == performance["span"] == 15
        assert "pushed_model" not in inputs
        assert performance["measured"] == 0 and performance["reason"] == "no served model yet"
    for _, decision, _ in decisions[:2]:
        assert decision["retrain"] == 1 and decision["reason"] == "no served model yet"

    # Span 16 is scored with the model the first run pushed, not the one
    # trained on span 16 since, and compared with that model's push-time AUC.
    inputs, performance, _ = decay[2]
    assert span_of(inputs["examples"][0]) == performance["span"] == NEW_SPAN
    (pushed,) = inputs["pushed_model"]
    assert properties(pushed)["pushed_version"] == performance["model_version"] == first_version
    assert len(inputs["push_evaluation"]) == 1
    assert performance["measured"] == 1
    assert performance["example_count"] > 100  # every split of the span
    for name in ("auc", "binary_accuracy", "push_auc", "push_binary_accuracy"):
        assert 0.0 <= performance[name] <= 1.0, name
    _, decision, _ = decisions[2]
    assert decision["retrain"] == 1 and decision["reason"] == "new span"

    # Drift: no training statistics to compare span 15 with, then span 16 has
    # a distance for every feature the curated schema gives a threshold.
    assert all(values["measured"] == 0 for _, values, _ in drift[:2])
    inputs, values, execution = drift[2]
    assert values["span"] == NEW_SPAN and values["model_version"] == first_version
    assert inputs["pushed_model"][0].id == pushed.id
    assert values["measured"] == 1
    thresholds = {name.split(":", 1)[1] for name in values if name.startswith("threshold:")}
    distances = {name.split(":", 1)[1] for name in values if name.startswith("distance:")}
    assert distances == thresholds
    assert {"fare", "payment_type", "company", "trip_miles"} <= thresholds
    (artifact,) = artifacts_of(store, execution, OUTPUT)["drift"]
    with open(os.path.join(artifact.uri, "drift.json")) as f:
        report = json.load(f)
    # ML Metadata in SQLite keeps 6 decimals of a double; the file keeps all.
    assert {name: values["distance:" + name] for name in distances} == pytest.approx(
        {row["feature"]: row["distance"] for row in report["features"]}, abs=1e-6)
    # The training statistics are those of the served model's window (13..15).
    (window_statistics,) = inputs["training_statistics"]
    assert os.listdir(window_statistics.uri) == ["FeatureStats.pb"]


def test_span_with_flipped_labels_is_measured_as_decayed(pipeline_runs, tmp_path):
    # --retrain-on schedule: a manual run never trains; the span is only measured.
    result, _, store = run_on_new_span(pipeline_runs, tmp_path, flip_big_tipper,
                                       "--retrain-on", "schedule")
    _, performance, _ = run_outputs(store, "DecayCheck", "performance")[-1]
    assert performance["span"] == NEW_SPAN + 1
    assert performance["decayed"] == 1, performance
    assert performance["auc"] < performance["push_auc"] - 0.05
    assert re.search(r"auc [\d.]+ is [\d.]+ below [\d.]+ at push time", performance["reason"])
    _, decision, _ = run_outputs(store, "RetrainDecision", "decision")[-1]
    assert decision["retrain"] == 0 and decision["reason"].startswith("never retrain")
    for name in TRAINING_NODES:
        assert re.search(rf"  {name}\s+skipped", result.stdout), name


def test_span_with_shifted_distributions_drifts_and_names_the_features(pipeline_runs, tmp_path):
    _, _, store = run_on_new_span(pipeline_runs, tmp_path, shift_distributions,
                                  "--retrain-on", "drift")
    _, drift, _ = run_outputs(store, "DriftCheck", "drift")[-1]
    assert drift["span"] == NEW_SPAN + 1 and drift["drifted"] == 1
    assert {"payment_type", "fare"} <= set(drift["drifted_features"].split(","))
    for name in ("payment_type", "fare"):
        assert drift["distance:" + name] > drift["threshold:" + name]
    _, decision, _ = run_outputs(store, "RetrainDecision", "decision")[-1]
    assert decision["retrain"] == 1
    assert re.match(r"drift: .*fare [\d.]+ > 0\.3", decision["reason"]), decision["reason"]
    assert "payment_type" in decision["reason"]


def test_policy_decay_skips_training_on_a_span_that_did_not_decay(pipeline_runs, tmp_path):
    # Span 17 repeats span 16, which the served model was trained on: no decay.
    result, output_dir, store = run_on_new_span(pipeline_runs, tmp_path, lambda row: None,
                                                "--retrain-on", "decay")
    _, performance, _ = run_outputs(store, "DecayCheck", "performance")[-1]
    assert performance["span"] == NEW_SPAN + 1 and performance["decayed"] == 0, performance
    _, decision, _ = run_outputs(store, "RetrainDecision", "decision")[-1]
    assert decision["retrain"] == 0
    assert decision["reason"].startswith("no decay (auc ")

    for name in TRAINING_NODES:
        assert re.search(rf"  {name}\s+skipped", result.stdout), name
    log = (output_dir / "logs" / "run_local.log").read_text()
    assert "Skipping execution for Transform" in log
    latest_run = max(store.get_contexts_by_type("pipeline_run"),
                     key=lambda context: (context.create_time_since_epoch, context.id))
    types = {t.id: t.name for t in store.get_execution_types()}
    ran = {types[e.type_id].rsplit(".", 1)[-1]
           for e in store.get_executions_by_context(latest_run.id)}
    assert {"DecayCheck", "DriftCheck", "RetrainDecision"} <= ran
    assert not ran & set(TRAINING_NODES)
    serving_dir = output_dir / "serving_model" / "taxi_tips"
    assert sorted(int(name) for name in os.listdir(serving_dir)) == \
        pipeline_runs.pushed_versions()
