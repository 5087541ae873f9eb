"""TFX's Evaluator, with "not worse than the baseline" judged on a confidence interval.

TFMA computes a 95% interval for each metric and for each candidate-minus-baseline
diff when the eval config asks for confidence intervals, but its validator compares
only the point estimate with the bars (evaluators/metrics_validator.py, `float(metric)`
is `ValueWithTDistribution.unsampled_value`). On a few hundred eval trips, a bar of
-0.01 AUC on a point estimate is a coin toss. This executor runs TFX's Evaluator
unchanged, then keeps a change-threshold failure only if the whole interval of the
diff is on the wrong side of the bar, and rewrites the blessing from what is left:
the BLESSED / NOT_BLESSED file and the `blessed` property the Pusher reads.
"""
import json
import os

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from metadata.artifacts import CONFIDENCE_INTERVALS_PROPERTY

# TFMA's writer computes every interval at this level (utils/math_util.py, alpha=0.05).
CONFIDENCE_LEVEL = 0.95


class IntervalJudgedEvaluatorExecutor(evaluator_executor.Executor):

    def Do(self, input_dict, output_dict, exec_properties):
        super().Do(input_dict, output_dict, exec_properties)
        blessings = output_dict.get(standard_component_specs.BLESSING_KEY)
        if not blessings or evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY not in \
                blessings[0].mlmd_artifact.custom_properties:
            return  # no thresholds, so TFX wrote no verdict to revise
        blessing = blessings[0]
        evaluation_uri = artifact_utils.get_single_uri(
            output_dict[standard_component_specs.EVALUATION_KEY])
        thresholds = change_thresholds(
            exec_properties[standard_component_specs.EVAL_CONFIG_KEY],
            has_baseline=bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)))
        metrics = overall_metrics_with_intervals(evaluation_uri)
        validation = tfma.load_validation_result(evaluation_uri)
        revised, changes = judge_change_thresholds(validation, thresholds, metrics)
        if revised != validation:
            _rewrite_validation_result(evaluation_uri, revised)
            _rewrite_blessing(blessing, revised.validation_ok)
        blessing.set_string_custom_property(CONFIDENCE_INTERVALS_PROPERTY, json.dumps(
            judgement(metrics, changes, _method(exec_properties)), sort_keys=True))


def change_thresholds(eval_config_json: str, has_baseline: bool) -> dict:
    """{diff MetricKey: GenericChangeThreshold} of the overall slice, with the model
    names TFX gives the candidate and baseline."""
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(eval_config_json, eval_config)
    eval_config = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=has_baseline, rubber_stamp=True)
    result = {}
    for key, sliced in tfma.metrics.metric_thresholds_from_metrics_specs(
            eval_config.metrics_specs, eval_config=eval_config).items():
        for slice_spec, threshold in sliced:
            overall = slice_spec is None or slice_spec == tfma.SlicingSpec()
            if key.is_diff and overall and isinstance(threshold, tfma.GenericChangeThreshold):
                result[key] = threshold
    return result


def overall_metrics_with_intervals(evaluation_uri: str) -> dict:
    """{MetricKey: (value, lower, upper)} of the overall slice; lower and upper are
    None for a metric without an interval (ExampleCount, or intervals off)."""
    result = {}
    for per_slice in tfma.load_metrics(evaluation_uri):
        if per_slice.slice_key.single_slice_keys or per_slice.HasField("cross_slice_key"):
            continue
        for entry in per_slice.metric_keys_and_values:
            if not entry.value.HasField("double_value"):
                continue
            interval = entry.confidence_interval
            bounds = ((interval.lower_bound.double_value.value,
                       interval.upper_bound.double_value.value)
                      if entry.HasField("confidence_interval") else (None, None))
            key = tfma.metrics.MetricKey.from_proto(entry.key)
            result[key] = (entry.value.double_value.value, *bounds)
    return result


def significantly_worse(threshold, value: float, lower, upper) -> bool:
    """True only if the whole interval of the diff is beyond an absolute bar (the
    point estimate alone without an interval). A relative bar is judged as TFMA
    judged it; this pipeline sets none."""
    if not threshold.HasField("absolute"):
        return False
    bar = threshold.absolute.value
    if threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER:
        return (upper if upper is not None else value) < bar
    return (lower if lower is not None else value) > bar


def judge_change_thresholds(validation, thresholds: dict, metrics: dict):
    """TFMA's validation result without the change-threshold failures that are not
    significant, and one record per change threshold of the overall slice."""
    changes = []
    for key, threshold in sorted(thresholds.items(), key=lambda item: item[0].name):
        if key not in metrics:
            continue  # no baseline: TFMA reported the missing metric itself if it mattered
        value, lower, upper = metrics[key]
        changes.append({"metric": key.name, "bar": threshold.absolute.value,
                        "diff": value, "lower": lower, "upper": upper,
                        "significantly_worse": significantly_worse(
                            threshold, value, lower, upper)})
    insignificant = {change["metric"] for change in changes
                     if not change["significantly_worse"]}

    revised = tfma.ValidationResult()
    revised.CopyFrom(validation)
    del revised.metric_validations_per_slice[:]
    for per_slice in validation.metric_validations_per_slice:
        kept = [failure for failure in per_slice.failures
                if not _is_overall_change_failure(per_slice, failure, insignificant)]
        if kept:
            slice_copy = revised.metric_validations_per_slice.add()
            slice_copy.CopyFrom(per_slice)
            del slice_copy.failures[:]
            slice_copy.failures.extend(kept)
    # TFMA also fails a run for a missing slice or threshold; those failures stay.
    revised.validation_ok = validation.validation_ok or not (
        revised.metric_validations_per_slice or revised.missing_slices
        or revised.missing_cross_slices or revised.missing_thresholds)
    return revised, changes


def _is_overall_change_failure(per_slice, failure, metric_names) -> bool:
    return (not per_slice.slice_key.single_slice_keys
            and not per_slice.HasField("cross_slice_key")
            and failure.metric_threshold.HasField("change_threshold")
            and failure.metric_key.is_diff
            and failure.metric_key.name in metric_names)


def judgement(metrics: dict, changes: list, method: str) -> dict:
    """What the blessing records: the candidate's overall metrics with their
    intervals, and each change threshold with the interval of the diff."""
    candidate = {key.name: list(values) for key, values in metrics.items()
                 if not key.is_diff and key.model_name in ("", "candidate")}
    return {"level": CONFIDENCE_LEVEL if method else None, "method": method,
            "candidate": candidate, "changes": changes}


def _method(exec_properties) -> str:
    """TFMA's interval method named in the eval config, or "" with intervals off."""
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY],
                              eval_config)
    if not eval_config.options.compute_confidence_intervals.value:
        return ""
    return tfma.ConfidenceIntervalOptions.ConfidenceIntervalMethod.Name(
        eval_config.options.confidence_intervals.method)


def _rewrite_validation_result(evaluation_uri: str, validation) -> None:
    """Over TFMA's own file, so TFMA's tools show the verdict the blessing has."""
    (path,) = tf.io.gfile.glob(os.path.join(evaluation_uri, "validations*"))
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(validation.SerializeToString())


def _rewrite_blessing(blessing, blessed: bool) -> None:
    for name in (evaluator_constants.BLESSED_FILE_NAME,
                 evaluator_constants.NOT_BLESSED_FILE_NAME):
        path = os.path.join(blessing.uri, name)
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    marker = (evaluator_constants.BLESSED_FILE_NAME if blessed
              else evaluator_constants.NOT_BLESSED_FILE_NAME)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as f:
        f.write("")
    blessing.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        evaluator_constants.BLESSED_VALUE if blessed else evaluator_constants.NOT_BLESSED_VALUE)
