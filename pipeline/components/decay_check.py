"""Scores the served model on a new span, whose outcomes are known by now and
which the model has never seen: a model that fell below the Evaluator's bars,
or lost AUC since it was pushed, has decayed, which is a reason to retrain.
"""
import glob
import os

import numpy as np
import tensorflow as tf
from sklearn import metrics
# Not `from tfx import v1`: see pipeline/pipeline.py.
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact

from models import features, signatures
from metadata.artifacts import span_of
from pipeline.components.check_record import record
from pipeline.lineage import artifact_files

REPORT_FILE = "performance.json"
TRANSFORM_SIGNATURE = "transform_features"  # gives the label, as for the Evaluator
BATCH_SIZE = 1024


class ServedModelPerformance(Artifact):
    """The served model's metrics on one span; all values are custom properties."""
    TYPE_NAME = "ServedModelPerformance"


def serialized_examples(examples_uri: str) -> tf.data.Dataset:
    """Every split of the span: none of it was used to train the served model."""
    files = sorted(glob.glob(os.path.join(examples_uri, "Split-*", "*.gz")))
    if not files:
        raise FileNotFoundError(f"No gzipped TFRecords under {examples_uri}/Split-*/: "
                                f"is this an Examples artifact written by ExampleGen?")
    return tf.data.TFRecordDataset(files, compression_type="GZIP").batch(BATCH_SIZE)


def score(model_dir: str, examples_uri: str) -> dict:
    """AUC, binary accuracy (threshold 0.5) and example count of a SavedModel."""
    model = tf.saved_model.load(model_dir)
    probability_of = model.signatures[signatures.EVALUATION_SIGNATURE]
    transform = model.signatures[TRANSFORM_SIGNATURE]
    labels, probabilities = [], []
    for batch in serialized_examples(examples_uri):
        labels.append(transform(examples=batch)[features.TRANSFORMED_LABEL_KEY].numpy())
        probabilities.append(probability_of(inputs=batch)["outputs"].numpy()[:, 0])
    labels, probabilities = np.concatenate(labels), np.concatenate(probabilities)
    # With one class only AUC is undefined: no verdict on it.
    auc = (float(metrics.roc_auc_score(labels, probabilities))
           if len(np.unique(labels)) == 2 else None)
    accuracy = float(np.mean((probabilities > 0.5) == (labels == 1)))
    return {"auc": auc, "binary_accuracy": accuracy, "example_count": len(labels)}


def decay_reasons(measured: dict, push_time: dict, min_auc: float, min_accuracy: float,
                  max_auc_drop: float) -> list[str]:
    reasons = []
    auc, accuracy = measured["auc"], measured["binary_accuracy"]
    if auc is not None and auc < min_auc:
        reasons.append(f"auc {auc:.3f} below the bar {min_auc:g}")
    if accuracy < min_accuracy:
        reasons.append(f"binary_accuracy {accuracy:.3f} below the bar {min_accuracy:g}")
    push_auc = push_time.get("auc")
    if auc is not None and push_auc is not None and push_auc - auc > max_auc_drop:
        reasons.append(f"auc {auc:.3f} is {push_auc - auc:.3f} below {push_auc:.3f} "
                       f"at push time")
    return reasons


def describe(measured: dict, push_time: dict) -> str:
    """e.g. 'auc 0.861, binary_accuracy 0.842; at push time 0.870, 0.851'."""
    def shown(value):
        return "n/a" if value is None else f"{value:.3f}"
    text = (f"auc {shown(measured['auc'])}, "
            f"binary_accuracy {shown(measured['binary_accuracy'])}")
    if push_time:
        text += (f"; at push time {shown(push_time.get('auc'))}, "
                 f"{shown(push_time.get('binary_accuracy'))}")
    return text


@component
def DecayCheck(
        examples: InputArtifact[standard_artifacts.Examples],
        performance: OutputArtifact[ServedModelPerformance],
        min_auc: Parameter[float],
        min_accuracy: Parameter[float],
        max_auc_drop: Parameter[float],
        pushed_model: InputArtifact[standard_artifacts.PushedModel] = None,
        push_evaluation: InputArtifact[standard_artifacts.ModelEvaluation] = None):
    span = span_of(examples.mlmd_artifact) or 0
    if pushed_model is None:
        record(performance, {"span": span, "model_version": "", "measured": 0,
                             "decayed": 0, "reason": "no served model yet"}, REPORT_FILE)
        return
    measured = score(pushed_model.uri, examples.uri)
    push_time = {}
    if push_evaluation is not None:
        push_time = artifact_files.overall_metrics(push_evaluation.uri).get("candidate", {})
    reasons = decay_reasons(measured, push_time, min_auc, min_accuracy, max_auc_drop)
    values = {"span": span,
              "model_version": pushed_model.get_string_custom_property("pushed_version"),
              "measured": 1, "decayed": int(bool(reasons)),
              "reason": "; ".join(reasons) or describe(measured, push_time),
              "example_count": measured["example_count"],
              "binary_accuracy": measured["binary_accuracy"]}
    if measured["auc"] is not None:
        values["auc"] = measured["auc"]
    for name in ("auc", "binary_accuracy"):
        if name in push_time:
            values[f"push_{name}"] = float(push_time[name])
    record(performance, values, REPORT_FILE)
