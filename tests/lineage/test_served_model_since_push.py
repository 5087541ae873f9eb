"""`model` follows the served model after its push: how it did on each new
span (decay), how far each span drifted from its training window, and whether
its version folder is still on disk."""
import shutil

import pytest
from ml_metadata.proto import metadata_store_pb2 as mlmd_pb2

from metadata import runs as run_metadata
from pipeline.lineage import format_json, records
from pipeline.lineage import span_checks as checks
from tests.lineage.test_model_trace import RawLineage

# The shared store holds the real DecayCheck and DriftCheck of span 16 (the
# fixture's third run measured it against the first pushed version). Spans 17
# and 18 against the served version are written here with ML Metadata's API, as
# the components record them, to spare two more pipeline runs: a real store,
# not a mock. The components themselves are tested end to end in
# tests/pipeline/test_span_checks.py and tests/continuous/test_watch.py.
DECAY_DETAIL = "span 18: decay: auc 0.61 below the bar 0.75"


def _set(properties, values: dict):
    for name, value in values.items():
        if isinstance(value, float):
            properties[name].double_value = value
        elif isinstance(value, int):
            properties[name].int_value = value
        else:
            properties[name].string_value = value


def _event(kind, key: str) -> mlmd_pb2.Event:
    event = mlmd_pb2.Event(type=kind)
    event.path.steps.add().key = key
    event.path.steps.add().index = 0
    return event


def _new_artifact(mlmd, type_name: str, uri: str, properties: dict) -> mlmd_pb2.Artifact:
    type_id = mlmd.put_artifact_type(mlmd_pb2.ArtifactType(name=type_name), can_omit_fields=True)
    artifact = mlmd_pb2.Artifact(type_id=type_id, uri=uri, state=mlmd_pb2.Artifact.LIVE)
    _set(artifact.custom_properties, properties)
    return artifact


def record_check(mlmd, run, check: str, inputs: dict, output_key: str,
                 output: mlmd_pb2.Artifact) -> int:
    """One check execution in `run`: INPUT events from `inputs` (key -> existing
    artifact), an OUTPUT event to `output`. Returns the output's id."""
    execution_type = mlmd.put_execution_type(mlmd_pb2.ExecutionType(name=check))
    execution = mlmd_pb2.Execution(type_id=execution_type,
                                   last_known_state=mlmd_pb2.Execution.COMPLETE)
    events = [(artifact, _event(mlmd_pb2.Event.INPUT, key)) for key, artifact in inputs.items()]
    _, artifact_ids, _ = mlmd.put_execution(
        execution, events + [(output, _event(mlmd_pb2.Event.OUTPUT, output_key))], [run])
    return artifact_ids[-1]


def measure_span(mlmd, span: int, pushed, evaluation, schema, performance: dict,
                 drift: dict | None, **run_properties):
    """A run for a new span: its Examples, the served model measured on them
    (DecayCheck) and, when `drift` is given, the span compared (DriftCheck)."""
    run = run_metadata.register_run(mlmd, f"span-{span}-run", span=span, **run_properties)
    version = pushed.custom_properties["pushed_version"].string_value
    [examples_id] = mlmd.put_artifacts([_new_artifact(
        mlmd, "Examples", f"/data/examples/{span}", {"span": span})])
    [examples] = mlmd.get_artifacts_by_id([examples_id])
    record_check(mlmd, run, "DecayCheck",
                 {"examples": examples, checks.SERVED_MODEL_INPUT: pushed,
                  "evaluation": evaluation},
                 "performance",
                 _new_artifact(mlmd, checks.PERFORMANCE_TYPE, f"/checks/decay/{span}", {
                     checks.SPAN: span, checks.MODEL_VERSION: version, checks.MEASURED: 1,
                     **performance}))
    if drift is not None:
        record_check(mlmd, run, "DriftCheck", {"schema": schema}, "drift",
                     _new_artifact(mlmd, checks.DRIFT_TYPE, f"/checks/drift/{span}", {
                         checks.SPAN: span, checks.MODEL_VERSION: version,
                         checks.MEASURED: 1, **drift}))


def _push_inputs(copy, pushed_version: str):
    """A PushedModel, the ModelEvaluation made when it was blessed, the curated schema."""
    mlmd, raw = copy.mlmd, RawLineage(copy.path)
    [pushed] = [a for a in mlmd.get_artifacts_by_type("PushedModel")
                if a.custom_properties["pushed_version"].string_value == pushed_version]
    [blessing] = raw.inputs(raw.producer(pushed.id), "model_blessing")
    evaluator_outputs = [e.artifact_id for e in mlmd.get_events_by_execution_ids(
        [raw.producer(blessing)]) if e.type == mlmd_pb2.Event.OUTPUT]
    [evaluation] = [a for a in mlmd.get_artifacts_by_id(evaluator_outputs)
                    if a.type == "ModelEvaluation"]
    [schema] = mlmd.get_artifacts_by_type("Schema")[:1]
    return pushed, evaluation, schema


def _distances(trip_miles: float, drifted: bool) -> dict:
    return {checks.DRIFTED: int(drifted), checks.DRIFTED_FEATURES: "trip_miles" if drifted else "",
            f"{checks.DISTANCE_PREFIX}trip_miles": trip_miles,
            f"{checks.THRESHOLD_PREFIX}trip_miles": 0.2,
            f"{checks.DISTANCE_PREFIX}payment_type": 0.01,
            f"{checks.THRESHOLD_PREFIX}payment_type": 0.1}


@pytest.fixture
def measured(store, store_copy):
    """The copy, after spans 17 and 18 were measured against the served model
    (span 18 decayed and drifted); span 16 was measured against the older
    version by the real DecayCheck."""
    mlmd = store_copy.mlmd
    older, served = (str(v) for v in store.pushed_versions()[-2:])
    pushed, evaluation, schema = _push_inputs(store_copy, served)
    at_push = store_copy.cli_json("model")["model_trace"]["evaluation"]["metrics"]
    push = {f"{checks.PUSH_PREFIX}{m}": at_push[m] for m in checks.METRICS}
    # Written out of span order on purpose: the tool sorts by span.
    measure_span(mlmd, 18, pushed, evaluation, schema,
                 {"auc": 0.61, "binary_accuracy": 0.70, "example_count": 118,
                  checks.DECAYED: 1, checks.REASON: "auc 0.61 below the bar 0.75", **push},
                 _distances(0.31, drifted=True),
                 trigger="decay", trigger_detail=DECAY_DETAIL)
    measure_span(mlmd, 17, pushed, evaluation, schema,
                 {"auc": 0.86, "binary_accuracy": 0.80, "example_count": 120,
                  checks.DECAYED: 0, checks.REASON: "within the bars", **push},
                 _distances(0.04, drifted=False), trigger="new span 17")
    return store_copy, older, at_push


def test_served_model_decay_series_in_span_order(measured):
    copy, older, at_push = measured
    performance = copy.cli_json("model")["model_trace"]["performance"]
    assert [p["span"] for p in performance] == [17, 18]
    assert [p["decayed"] for p in performance] == [False, True]
    assert performance[1]["metrics"] == {"auc": 0.61, "binary_accuracy": 0.70}
    # SQLite stores keep doubles to about six digits.
    assert performance[1]["push_metrics"] == pytest.approx(
        {m: at_push[m] for m in checks.METRICS}, rel=1e-5)
    assert [p["run"] for p in performance] == ["span-17-run", "span-18-run"]
    older_series = copy.cli_json("model", "--version", older)["model_trace"]["performance"]
    assert [p["span"] for p in older_series] == [16], "each push has its own series"
    assert older_series[0]["measured"] and set(older_series[0]["metrics"]) == set(checks.METRICS)

    text = copy.cli("model")
    section = text.split("Since the push: the model on each new span", 1)[1]
    assert f"at push     auc {at_push['auc']:.4f}" in section
    assert "span 17     auc 0.8600  binary_accuracy 0.8000  (120 examples)\n" in section
    assert ("span 18     auc 0.6100  binary_accuracy 0.7000  (118 examples)  "
            "DECAYED: auc 0.61 below the bar 0.75") in section


def test_served_model_drift_per_span_with_crossings_named(measured):
    copy, older, _ = measured
    drift = copy.cli_json("model")["model_trace"]["drift"]
    assert [(d["span"], d["drifted"], d["drifted_features"]) for d in drift] == [
        (17, False, []), (18, True, ["trip_miles"])]
    features = {f["feature"]: f for f in drift[1]["features"]}
    assert features["trip_miles"] == {"feature": "trip_miles", "distance": 0.31,
                                      "threshold": 0.2, "drifted": True}
    assert features["payment_type"]["drifted"] is False
    # The real DriftCheck of span 16 against the older version: every compared
    # feature has its distance, crossing or not.
    (older_drift,) = copy.cli_json("model", "--version", older)["model_trace"]["drift"]
    assert older_drift["span"] == 16 and older_drift["measured"]
    assert {"payment_type", "fare"} <= {f["feature"] for f in older_drift["features"]}
    trace = format_json.loads(copy.cli("model", "--format", "json"))
    assert trace.drift[1].features[0] == records.FeatureDrift("trip_miles", 0.31, 0.2, True)

    text = copy.cli("model")
    assert ("  span 17     no drift  (2 feature(s) within their thresholds; "
            "closest trip_miles 0.0400 <= 0.2000)\n") in text
    assert ("  span 18     DRIFTED: trip_miles 0.3100 > 0.2000  "
            "(1 other feature(s) within their thresholds)\n") in text


def test_runs_retrained_for_decay_say_so(measured):
    copy, _, _ = measured
    runs = {run["name"]: run for run in copy.cli_json("runs")["runs"]}
    retrained = runs["span-18-run"]
    assert (retrained["trigger"], retrained["trigger_detail"]) == ("decay", DECAY_DETAIL)
    lines = copy.cli("runs").splitlines()
    row = next(i for i, line in enumerate(lines) if line.endswith("span-18-run"))
    assert "decay" in lines[row].split()
    assert lines[row + 1].strip() == f"trigger: {DECAY_DETAIL}"


def test_served_version_folder_gone(store, store_copy):
    served = str(store.pushed_versions()[-1])
    trace = store_copy.cli_json("model")["model_trace"]
    assert trace["destination_exists"] is True
    shutil.rmtree(store_copy.serving_dir / served)

    trace = store_copy.cli_json("model")["model_trace"]
    assert trace["version"] == served and trace["destination_exists"] is False
    text = store_copy.cli("model")
    assert (f"  WARNING      the version folder is gone from disk: version {served} "
            f"cannot be served (TF Serving loads the newest version folder still in "
            f"{store_copy.serving_dir})") in text
    assert store.serving_dir.joinpath(served).is_dir(), "the shared store is untouched"
