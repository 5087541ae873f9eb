"""`python -m pipeline.monitor` as a user runs it, on request logs written as
the model server writes them (real trips as PredictionLogs) and a copy of a
real pipeline store: held-out trips pass, changed ones are named, damaged files
are skipped, a second check reads only what is new, and each check is in ML
Metadata.
"""
import json
import pathlib
import subprocess
import sys

import pytest
from ml_metadata.proto import metadata_store_pb2

from metadata import connection, serving_checks
from models import features as model_features
from tests.conftest import PROJECT_ROOT
from tests.monitor import request_logs

HOUR = 1704103200  # 2024-01-01T10:00:00Z, the start of a monitoring window
Event = metadata_store_pb2.Event


def monitor(store_dir, logs, *flags, output=None):
    """Runs the command; returns (exit status, the JSON report or None, stderr)."""
    report = output or (logs.parent / f"{logs.name}-report.json")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.monitor", "--request-logs", str(logs),
         "--metadata_path", str(store_dir / "metadata.sqlite"), "--format", "json",
         "-o", str(report), *flags],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    parsed = json.loads(report.read_text()) if report.exists() else None
    report.unlink(missing_ok=True)
    return result.returncode, parsed, result.stderr


@pytest.fixture(scope="module")
def held_out_trips(tmp_path_factory):
    return request_logs.held_out_trips(tmp_path_factory.mktemp("held_out"))


@pytest.fixture(scope="module")
def served_version(pipeline_runs) -> str:
    return str(pipeline_runs.pushed_versions()[-1])


def _features(window):
    return {f["feature"]: f for f in window["features"]}


def test_held_out_trips_show_no_skew(store_copy, tmp_path, held_out_trips, served_version):
    logs = tmp_path / "logs"
    replayed = request_logs.replay(held_out_trips[:100], served_version, HOUR)
    # The rest as predicts on the tf.Example signature.
    replayed += [request_logs.examples_predict_log(held_out_trips[i:i + 10], served_version,
                                                   HOUR + 600 + i)
                 for i in range(100, len(held_out_trips), 10)]
    request_logs.write_log_file(logs / "server-1", replayed)
    assert {log.WhichOneof("log_type") for log in replayed} == {"predict_log", "classify_log"}

    status, report, stderr = monitor(store_copy, logs)

    assert status == 0, stderr
    assert report["records_read"] == len(replayed) and report["skipped"] == []
    [window] = report["windows"]
    assert (window["model_version"], window["window_start"], window["window_end"]) == (
        served_version, HOUR, HOUR + 3600)
    assert window["requests"] == len(replayed)
    assert window["examples"] == len(held_out_trips)
    assert window["judged"] and not window["alarm"] and window["anomalies"] == []
    features = _features(window)
    assert set(features) == set(model_features.RAW_FEATURES)
    for feature in features.values():  # every distance measured, none crossing
        assert feature["distance"] is not None and not feature["crossed"], feature
    metrics = (store_copy / "monitoring" / "serving_skew.prom").read_text()
    assert "serving_skew_alarm 0.0" in metrics
    assert f'serving_skew_distance{{feature="fare",model="taxi_tips",version="{served_version}"}}' in metrics


def test_changed_distribution_is_named_and_recorded(store_copy, tmp_path, held_out_trips,
                                                    served_version):
    logs = tmp_path / "logs"
    replayed = request_logs.replay(request_logs.changed(held_out_trips), served_version, HOUR)
    request_logs.write_log_file(logs, replayed)
    # A version the store never pushed is reported, not judged.
    request_logs.write_log_file(logs, request_logs.replay(held_out_trips[:5], "42", HOUR), seq=1)
    prometheus_file = tmp_path / "skew.prom"

    status, report, stderr = monitor(store_copy, logs, "--prometheus-file", str(prometheus_file))

    assert status == 1, stderr
    assert report["alarm"] and report["unknown_versions"] == ["42"]
    unknown, = [w for w in report["windows"] if w["model_version"] == "42"]
    assert not unknown["judged"] and "no PushedModel" in unknown["reason"]
    [window] = [w for w in report["windows"] if w["model_version"] == served_version]
    assert window["skewed_features"] == ["fare", "payment_type"]
    features = _features(window)
    assert set(features) == set(model_features.RAW_FEATURES)
    assert all(f["distance"] is not None for f in features.values())
    assert window["anomalous_features"] == ["payment_type"]  # a value outside the domain
    metrics = prometheus_file.read_text()
    assert "serving_skew_alarm 1.0" in metrics
    assert f'serving_skew_version_alarm{{model="taxi_tips",version="{served_version}"}} 1.0' in metrics

    # ML Metadata: the execution, its inputs and outputs, the ServingSkew.
    store = connection.open_reader(connection.sqlite_config(store_copy / "metadata.sqlite"))
    check = serving_checks.latest_check(store, str(logs.resolve()))
    assert check.execution_id == report["check_id"]
    assert (check.records_read, check.files_skipped) == (report["records_read"], 0)
    [execution] = store.get_executions_by_id([check.execution_id])
    assert store.get_execution_types_by_id([execution.type_id])[0].name == "ServingMonitor"
    events = store.get_events_by_execution_ids([execution.id])
    inputs = {e.path.steps[0].key: e.artifact_id for e in events if e.type == Event.INPUT}
    [pushed] = store.get_artifacts_by_id([inputs["pushed_model"]])
    assert pushed.custom_properties["pushed_version"].string_value == served_version
    [training] = store.get_artifacts_by_id([inputs["training_statistics"]])
    assert training.uri == window["training_statistics_uri"]
    outputs = {e.path.steps[0].key: e.artifact_id for e in events if e.type == Event.OUTPUT}
    [statistics] = store.get_artifacts_by_id([outputs["serving_statistics"]])
    assert (store_copy / "monitoring").as_posix() in statistics.uri
    assert (pathlib.Path(statistics.uri) / "Split-serving" / "FeatureStats.pb").is_file()
    [skew] = store.get_artifacts_by_id([outputs["serving_skew"]])
    properties = {name: getattr(value, value.WhichOneof("value"))
                  for name, value in skew.custom_properties.items()}
    assert properties["model_version"] == served_version and properties["skewed"] == 1
    assert properties["skewed_features"] == "fare,payment_type"
    assert properties["anomalous_features"] == "payment_type"
    assert properties["requests"] == window["requests"]
    assert (properties["window_start"], properties["window_end"]) == (HOUR, HOUR + 3600)
    assert properties["distance:fare"] == pytest.approx(features["fare"]["distance"])
    assert properties["threshold:fare"] == pytest.approx(features["fare"]["threshold"])
    [judged] = serving_checks.checks_of_pushed_model(store, pushed.id)[:1]
    assert judged.artifact_id == skew.id


def test_damaged_files_are_skipped_and_the_rest_counted(store_copy, tmp_path, held_out_trips,
                                                        served_version):
    logs = tmp_path / "logs"
    replayed = request_logs.replay(held_out_trips, served_version, HOUR)
    whole = request_logs.write_log_file(logs, replayed, seq=0)
    # A file still being written (its last record cut), and a damaged one.
    being_written = logs / whole.name.replace("-0.", "-1.")
    being_written.write_bytes(whole.read_bytes()[:-40])
    damaged = logs / whole.name.replace("-0.", "-2.")
    content = bytearray(whole.read_bytes())
    content[len(content) // 2] ^= 0xFF
    damaged.write_bytes(bytes(content))
    (logs / "prediction_log-20240101T100000-9-0.tfrecord").write_bytes(b"garbage")

    status, report, stderr = monitor(store_copy, logs)

    assert status == 0, stderr
    skipped = {s["file"]: s for s in report["skipped"]}
    assert set(skipped) == {str(being_written), str(damaged),
                            str(logs / "prediction_log-20240101T100000-9-0.tfrecord")}
    assert skipped[str(being_written)]["record_index"] == len(replayed) - 1
    damaged_from = skipped[str(damaged)]["record_index"]
    assert 0 < damaged_from < len(replayed)
    assert report["records_read"] == len(replayed) + (len(replayed) - 1) + damaged_from
    assert report["files_skipped"] == 3 and report["files_read"] == 4


def test_a_second_check_reads_only_new_records(store_copy, tmp_path, held_out_trips,
                                               served_version):
    logs = tmp_path / "logs"
    first_batch = request_logs.replay(held_out_trips[:60], served_version, HOUR)
    request_logs.write_log_file(logs, first_batch, seq=0)
    status, first, stderr = monitor(store_copy, logs)
    assert status == 0, stderr
    assert first["records_read"] == len(first_batch) and first["checked_from"] is None

    # Requests logged after the first check looked.
    new_batch = request_logs.replay(held_out_trips[60:], served_version,
                                    first["checked_until"], gap=0)
    request_logs.write_log_file(logs, new_batch, stamp="20240101T120000", seq=1)
    status, second, stderr = monitor(store_copy, logs)

    assert status == 0, stderr
    assert second["checked_from"] == first["checked_until"]
    assert second["records_read"] == len(new_batch)
    assert sum(w["examples"] for w in second["windows"]) == len(held_out_trips) - 60
    store = connection.open_reader(connection.sqlite_config(store_copy / "metadata.sqlite"))
    checks = serving_checks.checks(store, str(logs.resolve()))
    assert [c.execution_id for c in checks] == [second["check_id"], first["check_id"]]


def test_usage_errors_exit_2(store_copy, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    assert monitor(tmp_path / "nowhere", logs)[0] == 2  # no metadata store
    assert monitor(store_copy, tmp_path / "missing")[0] == 2  # no log folder
    status, report, stderr = monitor(store_copy, logs, "--since", "yesterday")
    assert status == 2 and report is None and "yesterday" in stderr
