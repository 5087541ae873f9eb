"""Stops the pipeline when ExampleValidator found anomalies in the new data.

ExampleValidator records anomalies but lets the run go on; this gate fails its
execution instead, so no model is trained or pushed from data that failed.
"""
import os

from tensorflow_data_validation.utils import anomalies_util
from tensorflow_metadata.proto.v0 import anomalies_pb2
# Not `from tfx import v1`: see pipeline/pipeline.py.
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputDict
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types import artifact_utils


class DataAnomaliesError(RuntimeError):
    """The new span failed validation against the curated schema."""


def _minimum_examples(anomalies) -> str:
    """The curated schema's minimum, which TFDV's own description leaves out."""
    constraints = anomalies.baseline.dataset_constraints
    if constraints.HasField("min_examples_count"):
        return (f" The curated schema's dataset_constraints.min_examples_count is "
                f"{constraints.min_examples_count}.")
    return ""


def describe_anomalies(anomalies_artifact) -> list[str]:
    """One line per anomaly: split, feature, short and long description."""
    lines = []
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = os.path.join(anomalies_artifact.uri, f"Split-{split}", "SchemaDiff.pb")
        anomalies = anomalies_util.load_anomalies_binary(path)
        # TFDV checks nothing in a split with no examples, not even the dataset
        # constraints: it only sets data_missing, so the gate must count that itself.
        if anomalies.data_missing:
            lines.append(f"[{split}] dataset: No examples (TFDV: data_missing, the "
                         f"split is empty).{_minimum_examples(anomalies)}")
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"[{split}] {feature}: {info.short_description} "
                         f"({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            too_few = any(reason.type == anomalies_pb2.AnomalyInfo.DATASET_LOW_NUM_EXAMPLES
                          for reason in info.reason)
            lines.append(f"[{split}] dataset: {info.short_description} ({info.description})"
                         + (_minimum_examples(anomalies) if too_few else ""))
    return lines


@component
def ValidationGate(
        anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
        # Read only for its span number, which the anomalies artifact does not carry.
        examples: InputArtifact[standard_artifacts.Examples],
) -> OutputDict(anomaly_count=int):
    found = describe_anomalies(anomalies)
    if found:
        # TFX 1.16 keeps the span as a custom property; `examples.span` reads 0.
        span = examples.get_int_custom_property("span")
        raise DataAnomaliesError(
            f"ExampleValidator found anomalies in span {span}; nothing was trained "
            "or pushed:\n  " + "\n  ".join(found) + "\nFix the span's data (or the "
            "curated schema pipeline/schema/schema.pbtxt, if the data is right), "
            "then run again.")
    return {"anomaly_count": 0}
