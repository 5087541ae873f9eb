"""Each component produced its expected artifacts, read back from the real ML
Metadata store the pipeline runs wrote."""
import os

import pytest
from ml_metadata.proto import metadata_store_pb2

from metadata.artifacts import span_of
from pipeline.lineage.store import open_store

EXPECTED_OUTPUTS = {
    "CsvExampleGen": {"Examples"},
    "StatisticsGen": {"ExampleStatistics"},
    "SchemaGen": {"Schema"},
    "ImportSchemaGen": {"Schema"},
    "ExampleValidator": {"ExampleAnomalies"},
    # The span checks: the served model's metrics and the data's drift on the
    # new span, and whether the span trains a model.
    "DecayCheck": {"ServedModelPerformance"},
    "DriftCheck": {"DataDrift"},
    "RetrainDecision": {"RetrainDecision"},
    # Transform also writes statistics, schema and anomalies of the data it saw,
    # but no transformed Examples: the Trainer applies the graph as it reads.
    "Transform": {"TransformGraph", "ExampleStatistics", "Schema", "ExampleAnomalies"},
    "Trainer": {"Model", "ModelRun"},
    "Evaluator": {"ModelEvaluation", "ModelBlessing"},
    # The candidate served by a local model server: verdict, load test, warmed model.
    "InfraValidator": {"InfraBlessing"},
    "Pusher": {"PushedModel"},
}


@pytest.fixture(scope="module")
def store(pipeline_runs):
    return open_store(str(pipeline_runs.metadata_path))


def latest_execution(store, node_id):
    node = store.get_context_by_type_and_name("node", f"taxi_tips.{node_id}")
    assert node is not None, node_id
    executions = store.get_executions_by_context(node.id)
    return max(executions, key=lambda e: (e.create_time_since_epoch, e.id))


def artifacts_of(store, execution, event_type):
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == event_type]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    by_key = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        by_key.setdefault(key, []).append(artifacts[event.artifact_id])
    return by_key


def type_name(store, artifact):
    return store.get_artifact_types_by_id([artifact.type_id])[0].name


@pytest.mark.parametrize("node_id", sorted(EXPECTED_OUTPUTS))
def test_component_outputs_exist_on_disk_and_in_metadata(store, node_id):
    execution = latest_execution(store, node_id)
    assert execution.last_known_state in (metadata_store_pb2.Execution.COMPLETE,
                                          metadata_store_pb2.Execution.CACHED)
    outputs = [a for artifacts in artifacts_of(
        store, execution, metadata_store_pb2.Event.OUTPUT).values() for a in artifacts]
    assert {type_name(store, a) for a in outputs} == EXPECTED_OUTPUTS[node_id]
    for artifact in outputs:
        assert os.path.isdir(artifact.uri) and os.listdir(artifact.uri), artifact.uri


def test_example_gen_splits_each_span_into_train_and_eval(store):
    execution = latest_execution(store, "CsvExampleGen")
    (examples,) = artifacts_of(store, execution, metadata_store_pb2.Event.OUTPUT)["examples"]
    assert span_of(examples) == 16
    assert sorted(os.listdir(examples.uri)) == ["Split-eval", "Split-train"]


def executions_of(store, node_id):
    node = store.get_context_by_type_and_name("node", f"taxi_tips.{node_id}")
    return sorted(store.get_executions_by_context(node.id),
                  key=lambda e: (e.create_time_since_epoch, e.id))


def test_transform_and_trainer_read_the_rolling_window(store):
    windows = []
    for execution in executions_of(store, "Transform"):
        inputs = artifacts_of(store, execution, metadata_store_pb2.Event.INPUT)
        windows.append(sorted(span_of(a) for a in inputs["examples"]))
    # First run, the cached rerun, the run after span 16 arrived.
    assert windows == [[13, 14, 15], [13, 14, 15], [14, 15, 16]]
    latest = artifacts_of(store, executions_of(store, "Transform")[-1],
                          metadata_store_pb2.Event.INPUT)
    # Off by default (pipeline/config.py): the whole window is analyzed again.
    assert "analyzer_cache" not in latest


def test_evaluator_compared_the_new_model_with_the_pushed_one(store):
    evaluator = latest_execution(store, "Evaluator")
    inputs = artifacts_of(store, evaluator, metadata_store_pb2.Event.INPUT)
    (candidate,), (baseline,) = inputs["model"], inputs["baseline_model"]
    assert baseline.id != candidate.id
    assert baseline.create_time_since_epoch < candidate.create_time_since_epoch
    (blessing,) = artifacts_of(store, evaluator, metadata_store_pb2.Event.OUTPUT)["blessing"]
    assert blessing.custom_properties["blessed"].int_value == 1
