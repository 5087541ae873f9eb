"""Compares a new span's feature distributions with those of the served model's
training window, with the drift comparators of the curated schema: a model
sees data unlike what it learned from, which is a reason to retrain.
"""
import os

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2
# Not `from tfx import v1`: see pipeline/pipeline.py.
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.components.statistics_gen import stats_artifact_utils

from metadata.artifacts import span_of
from pipeline.components.check_record import record

REPORT_FILE = "drift.json"
# Transform computes the window's statistics on the train splits it analyzes;
# the new span's train split is the like-for-like comparison.
SPLIT = "train"
# Transform writes its pre-transform statistics as one file at the artifact's
# root, not per split as StatisticsGen does.
TRANSFORM_STATISTICS_FILE = "FeatureStats.pb"
COMPARATOR_KINDS = {"infinity_norm": "L-infinity",
                    "jensen_shannon_divergence": "Jensen-Shannon"}


class DataDrift(Artifact):
    """Per-feature distances of one span from the served model's training data."""
    TYPE_NAME = "DataDrift"


def comparators(schema) -> dict[str, tuple[str, float]]:
    """{feature: (comparator kind, threshold)} for the features that have one."""
    found = {}
    for feature in schema.feature:
        if feature.HasField("drift_comparator"):
            for field, kind in COMPARATOR_KINDS.items():
                if feature.drift_comparator.HasField(field):
                    threshold = getattr(feature.drift_comparator, field).threshold
                    found[feature.name] = (kind, threshold)
    return found


def span_statistics(statistics_artifact) -> statistics_pb2.DatasetFeatureStatisticsList:
    return stats_artifact_utils.load_statistics(statistics_artifact, SPLIT).proto()


def training_window_statistics(statistics_artifact):
    path = os.path.join(statistics_artifact.uri, TRANSFORM_STATISTICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No {TRANSFORM_STATISTICS_FILE} in {statistics_artifact.uri}:"
                                f" expected Transform's pre_transform_stats output.")
    return tfdv.load_stats_binary(path)


def distances(current, previous, schema) -> dict[str, float]:
    """TFDV's drift measurement of every feature with a comparator. TFDV 1.16
    reports one in `drift_skew_info` for each compared feature, crossing or not."""
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    return {".".join(info.path.step): measurement.value
            for info in anomalies.drift_skew_info
            for measurement in info.drift_measurements}


@component
def DriftCheck(
        examples: InputArtifact[standard_artifacts.Examples],
        statistics: InputArtifact[standard_artifacts.ExampleStatistics],
        schema: InputArtifact[standard_artifacts.Schema],
        drift: OutputArtifact[DataDrift],
        pushed_model: InputArtifact[standard_artifacts.PushedModel] = None,
        training_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None):
    schema_proto = tfdv.load_schema_text(os.path.join(schema.uri, "schema.pbtxt"))
    compared = comparators(schema_proto)
    values = {"span": span_of(examples.mlmd_artifact) or 0,
              "model_version": (pushed_model.get_string_custom_property("pushed_version")
                                if pushed_model is not None else ""),
              # Nothing to compare: no served model yet, or a schema without
              # comparators (an ImportSchemaGen cached from before they were added).
              "measured": int(training_statistics is not None and bool(compared)),
              "drifted": 0, "drifted_features": ""}
    for feature, (_, threshold) in compared.items():
        values[f"threshold:{feature}"] = threshold
    rows = [{"feature": feature, "comparator": kind, "threshold": threshold,
             "distance": None, "crossed": False}
            for feature, (kind, threshold) in sorted(compared.items())]
    if values["measured"]:
        found = distances(span_statistics(statistics),
                          training_window_statistics(training_statistics), schema_proto)
        for row in rows:
            row["distance"] = found.get(row["feature"])
            if row["distance"] is not None:
                values[f"distance:{row['feature']}"] = row["distance"]
                row["crossed"] = row["distance"] > row["threshold"]
        crossed = [row["feature"] for row in rows if row["crossed"]]
        values.update(drifted=int(bool(crossed)), drifted_features=",".join(crossed))
    record(drift, values, REPORT_FILE, details={"features": rows})
