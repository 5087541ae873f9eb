"""metadata/serving_checks.py on a copy of a real pipeline store: a check
written with its events, and read back by pushed model and as the newest."""
import json
import os

import tensorflow_data_validation as tfdv
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from metadata import connection, serving_checks
from pipeline.components import served_model

Event = metadata_store_pb2.Event


def _open(output_dir):
    return connection.open_store(connection.sqlite_config(output_dir / "metadata.sqlite"))


def _result(store, version, window_start, skewed):
    pushed = serving_checks.pushed_model_of_version(store, version)
    [statistics_id] = served_model.walk(store, pushed.id,
                                        served_model.TO_TRAINING_WINDOW_STATISTICS)
    serving = statistics_pb2.DatasetFeatureStatisticsList()
    serving.datasets.add(num_examples=3)
    return serving_checks.SkewResult(
        model_name="taxi_tips", model_version=version, window_start=window_start,
        window_end=window_start + 3600, requests=2, examples=3,
        distances={"fare": 0.7 if skewed else 0.1, "payment_type": 0.05},
        thresholds={"fare": 0.3, "payment_type": 0.2},
        skewed_features=["fare"] if skewed else [], anomalous_features=[],
        pushed_model_id=pushed.id, training_statistics_id=statistics_id,
        serving_statistics=serving.SerializeToString())


def test_a_check_is_recorded_with_its_events_and_read_back(store_copy, pipeline_runs):
    store = _open(store_copy)
    older, newer = map(str, pipeline_runs.pushed_versions()[-2:])
    assert serving_checks.latest_check(store) is None
    assert serving_checks.pushed_model_of_version(store, "123") is None

    execution = serving_checks.start_check(store, "/logs/a", 1000, 2000, 5, 1)
    results = [_result(store, newer, 0, skewed=False), _result(store, newer, 3600, skewed=True),
               _result(store, older, 0, skewed=False)]
    check_id = serving_checks.finish_check(store, execution, results, store_copy)

    [execution] = store.get_executions_by_id([check_id])
    assert execution.last_known_state == metadata_store_pb2.Execution.COMPLETE
    events = store.get_events_by_execution_ids([check_id])
    inputs = {(e.path.steps[0].key, e.artifact_id) for e in events if e.type == Event.INPUT}
    newer_model = serving_checks.pushed_model_of_version(store, newer)
    older_model = serving_checks.pushed_model_of_version(store, older)
    # Each input once, though two windows judged the newer version.
    assert {key for key, _ in inputs} == {"pushed_model", "training_statistics"}
    assert ("pushed_model", newer_model.id) in inputs and ("pushed_model", older_model.id) in inputs
    outputs = [e for e in events if e.type == Event.OUTPUT]
    assert len(outputs) == 6

    # The serving statistics are laid out as StatisticsGen does.
    statistics = [a for a in store.get_artifacts_by_id([e.artifact_id for e in outputs])
                  if a.uri.split(os.sep)[-2] == "serving_statistics"]
    assert len(statistics) == 3
    for artifact in statistics:
        assert artifact.uri.startswith(str(store_copy / "monitoring"))
        assert json.loads(artifact.properties["split_names"].string_value) == ["serving"]
        loaded = tfdv.load_stats_binary(os.path.join(artifact.uri, "Split-serving",
                                                     "FeatureStats.pb"))
        assert loaded.datasets[0].num_examples == 3

    check = serving_checks.latest_check(store, "/logs/a")
    assert (check.execution_id, check.checked_from, check.checked_until,
            check.records_read, check.files_skipped) == (check_id, 1000, 2000, 5, 1)
    assert check.alarm and len(check.skews) == 3
    assert serving_checks.latest_check(store, "/logs/other") is None

    newer_checks = serving_checks.checks_of_pushed_model(store, newer_model.id)
    assert [s.window_start for s in newer_checks] == [3600, 0]  # newest window first
    skewed = newer_checks[0]
    assert skewed.skewed and skewed.skewed_features == ["fare"]
    assert skewed.distances == {"fare": 0.7, "payment_type": 0.05}
    assert skewed.thresholds["fare"] == 0.3
    with open(os.path.join(skewed.uri, "skew.json")) as f:
        assert json.load(f)["distance:fare"] == 0.7
    assert [s.model_version for s in serving_checks.checks_of_pushed_model(
        store, older_model.id)] == [older]

    # A later check is the newest, and a check that never finished is not.
    later = serving_checks.start_check(store, "/logs/a", 2000, 3000, 0, 0)
    serving_checks.finish_check(store, later, [], store_copy)
    serving_checks.start_check(store, "/logs/a", 3000, 4000, 0, 0)
    assert serving_checks.latest_check(store, "/logs/a").execution_id == later.id
    assert serving_checks.latest_check(store).checked_until == 3000
