"""Model validation that is not a coin toss: the Evaluator blocks a candidate for
being worse than the serving model only when the 95% interval of the difference
says so, and records the interval for the run summary and the lineage tool.

Each test runs the pipeline on a copy of the shared store, so every step before
the Evaluator is cached unless a flag changes it.
"""
import os
import subprocess
import sys

import pytest
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2

from metadata.artifacts import confidence_intervals_of
from pipeline.lineage.store import open_store
from tests.conftest import PROJECT_ROOT, copy_store, run_pipeline


def latest_blessing(metadata_path):
    """The ModelBlessing of the newest Evaluator execution, and its ModelEvaluation."""
    store = open_store(str(metadata_path))
    node = store.get_context_by_type_and_name("node", "taxi_tips.Evaluator")
    evaluator = max(store.get_executions_by_context(node.id),
                    key=lambda e: (e.create_time_since_epoch, e.id))
    outputs = {event.path.steps[0].key: event.artifact_id
               for event in store.get_events_by_execution_ids([evaluator.id])
               if event.type == metadata_store_pb2.Event.OUTPUT}
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list(outputs.values()))}
    return artifacts[outputs["blessing"]], artifacts[outputs["evaluation"]]


def auc_change(blessing) -> dict:
    intervals = confidence_intervals_of(blessing)
    assert intervals is not None, "the blessing records no confidence intervals"
    (change,) = [c for c in intervals["changes"] if c["metric"] == "auc"]
    return change


def test_the_blessing_records_tfmas_interval_of_the_auc_difference(pipeline_runs):
    blessing, evaluation = latest_blessing(pipeline_runs.metadata_path)
    intervals = confidence_intervals_of(blessing)
    assert (intervals["method"], intervals["level"]) == ("JACKKNIFE", 0.95)
    value, lower, upper = intervals["candidate"]["auc"]
    assert lower < upper and 0 <= value <= 1

    # The same numbers as TFMA's own output in the ModelEvaluation artifact.
    (overall,) = [m for m in tfma.load_metrics(evaluation.uri)
                  if not m.slice_key.single_slice_keys]
    (diff,) = [entry for entry in overall.metric_keys_and_values
               if entry.key.name == "auc" and entry.key.is_diff]
    change = auc_change(blessing)
    assert change["diff"] == pytest.approx(diff.value.double_value.value)
    assert change["lower"] == pytest.approx(
        diff.confidence_interval.lower_bound.double_value.value)
    assert change["upper"] == pytest.approx(
        diff.confidence_interval.upper_bound.double_value.value)
    assert change["bar"] == pytest.approx(-1.0)  # the tests' flags: no bar in effect

    # The run summary, the user's view of the run, shows them too.
    summary = pipeline_runs.after_new_span.stdout
    assert f"candidate auc {value:.3f} (95% CI {lower:.3f} to {upper:.3f})" in summary
    assert (f"auc vs baseline {change['diff']:+.3f} "
            f"(95% CI {change['lower']:+.3f} to {change['upper']:+.3f})") in summary


def test_a_candidate_below_the_bar_but_inside_the_interval_is_blessed(pipeline_runs, tmp_path):
    # A bar between the point estimate of candidate - baseline AUC and the upper end
    # of its interval: TFMA's point-estimate check fails the candidate, but the data
    # cannot tell that it is worse than the bar.
    shared = auc_change(latest_blessing(pipeline_runs.metadata_path)[0])
    # A quarter of the way: the Evaluator draws new jackknife buckets when it runs
    # again, and the interval's width moves by a third between draws.
    bar = shared["diff"] + (shared["upper"] - shared["diff"]) / 4
    _, output_dir = copy_store(pipeline_runs, tmp_path)

    result = run_pipeline(pipeline_runs.data_dir, output_dir,
                          "--max-auc-drop-vs-baseline", repr(-bar))

    assert result.returncode == 0, result.stdout + result.stderr
    blessing, evaluation = latest_blessing(output_dir / "metadata.sqlite")
    change = auc_change(blessing)
    assert change["bar"] == pytest.approx(bar)
    # The Evaluator ran again (new jackknife buckets), on the same cached models.
    assert change["diff"] == pytest.approx(shared["diff"])
    assert change["diff"] < bar <= change["upper"]
    assert not change["significantly_worse"]
    assert blessing.custom_properties["blessed"].int_value == 1
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert tfma.load_validation_result(evaluation.uri).validation_ok
    assert "below the bar, but not significantly: allowed" in result.stdout
    assert "Pushed model version" in result.stdout

    # The lineage tool shows the served model's evaluation with the same interval.
    trace = subprocess.run(
        [sys.executable, "-m", "pipeline.lineage", "--metadata_path",
         str(output_dir / "metadata.sqlite"), "model"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert trace.returncode == 0, trace.stderr
    assert (f"change      auc vs baseline {change['diff']:+.3f} (95% CI "
            f"{change['lower']:+.3f} to {change['upper']:+.3f}), bar {bar:+.3f}: "
            f"below the bar, but not significantly: allowed") in trace.stdout


def test_a_significantly_worse_candidate_is_not_blessed(pipeline_runs, tmp_path):
    _, output_dir = copy_store(pipeline_runs, tmp_path)
    versions_before = sorted(p.name for p in (output_dir / "serving_model/taxi_tips").iterdir())

    # One training step: a model barely trained, against the good serving model,
    # with the production bar of 0.01 AUC.
    result = run_pipeline(pipeline_runs.data_dir, output_dir, "--train-steps", "1",
                          "--max-auc-drop-vs-baseline", "0.01")

    assert result.returncode == 0, result.stdout + result.stderr
    blessing, evaluation = latest_blessing(output_dir / "metadata.sqlite")
    change = auc_change(blessing)
    assert change["upper"] < change["bar"] == pytest.approx(-0.01)
    assert change["significantly_worse"]
    assert blessing.custom_properties["blessed"].int_value == 0
    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    validation = tfma.load_validation_result(evaluation.uri)
    assert not validation.validation_ok
    failed = [(failure.metric_key.name, failure.metric_key.is_diff)
              for per_slice in validation.metric_validations_per_slice
              for failure in per_slice.failures]
    assert failed == [("auc", True)]  # the absolute bars are off in the tests' flags
    assert "significantly worse than the bar: not blessed" in result.stdout
    assert "Nothing pushed: the Evaluator did not bless the model" in result.stdout
    assert sorted(p.name for p in (output_dir / "serving_model/taxi_tips").iterdir()) \
        == versions_before
