"""Judges serving statistics against training statistics with TFDV: a
distance per feature from the curated schema's skew comparators, and the
schema's anomalies in the SERVING environment.
"""
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline.components.drift_check import COMPARATOR_KINDS
from pipeline.monitor.report import FeatureSkew, ServingAnomaly

SERVING_ENVIRONMENT = "SERVING"


def skew_comparators(schema: schema_pb2.Schema) -> dict[str, tuple[str, float]]:
    """{feature: (comparator kind, threshold)} for the features that have one."""
    found = {}
    for feature in schema.feature:
        if feature.HasField("skew_comparator"):
            for field, kind in COMPARATOR_KINDS.items():
                if feature.skew_comparator.HasField(field):
                    found[feature.name] = (kind, getattr(feature.skew_comparator, field).threshold)
    return found


def feature_skews(training, serving, schema) -> list[FeatureSkew]:
    """Every compared feature with its distance, crossing or not: TFDV 1.16
    reports a measurement in `drift_skew_info` for each (its anomalies only
    for those that cross)."""
    anomalies = tfdv.validate_statistics(training, schema, serving_statistics=serving)
    distances = {".".join(info.path.step): measurement.value
                 for info in anomalies.drift_skew_info
                 for measurement in info.skew_measurements}
    return [FeatureSkew(feature=feature, comparator=kind, threshold=threshold,
                        distance=distances.get(feature))
            for feature, (kind, threshold) in sorted(skew_comparators(schema).items())]


def serving_anomalies(serving, schema) -> list[ServingAnomaly]:
    """Per-feature anomalies of the serving statistics. The schema's dataset
    constraints (a span's minimum size) are about training data, not about how
    many requests a window happened to see, so they are left out."""
    anomalies = tfdv.validate_statistics(serving, schema, environment=SERVING_ENVIRONMENT)
    return [ServingAnomaly(feature=feature, short_description=info.short_description,
                           description=info.description)
            for feature, info in sorted(anomalies.anomaly_info.items())]
