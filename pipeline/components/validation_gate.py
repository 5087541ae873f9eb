"""Stops the pipeline when ExampleValidator found anomalies in the new data.

ExampleValidator records anomalies but lets the run go on; this gate fails its
execution instead, so no model is trained or pushed from data that failed.
"""
import os

from tensorflow_data_validation.utils import anomalies_util
from tfx import v1 as tfx
from tfx.types import artifact_utils


class DataAnomaliesError(RuntimeError):
    """The new span failed validation against the curated schema."""


def describe_anomalies(anomalies_artifact) -> list[str]:
    """One line per anomaly: split, feature, short and long description."""
    lines = []
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = os.path.join(anomalies_artifact.uri, f"Split-{split}", "SchemaDiff.pb")
        anomalies = anomalies_util.load_anomalies_binary(path)
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"[{split}] {feature}: {info.short_description} "
                         f"({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"[{split}] dataset: {info.short_description} "
                         f"({info.description})")
    return lines


@tfx.dsl.components.component
def ValidationGate(
        anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]
) -> tfx.dsl.components.OutputDict(anomaly_count=int):
    found = describe_anomalies(anomalies)
    if found:
        raise DataAnomaliesError(
            "ExampleValidator found anomalies in the new data; nothing was trained "
            "or pushed:\n  " + "\n  ".join(found))
    return {"anomaly_count": 0}
