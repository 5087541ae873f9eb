"""Reading TFX's properties off ML Metadata artifacts.

TFX 1.16 keeps `span` and `version` of Examples as custom properties (the typed
property, `artifact.span` in TFX's Python, stays 0); older TFX as typed
properties. This is the one place that knows.
"""
import json

from ml_metadata.proto import metadata_store_pb2


def int_property(artifact: metadata_store_pb2.Artifact, name: str) -> int | None:
    for properties in (artifact.custom_properties, artifact.properties):
        if name in properties:
            return properties[name].int_value
    return None


def span_of(artifact: metadata_store_pb2.Artifact) -> int | None:
    """The span of an Examples artifact (None for other artifacts)."""
    return int_property(artifact, "span")


def version_of(artifact: metadata_store_pb2.Artifact) -> int:
    return int_property(artifact, "version") or 0


# Where the Evaluator's executor (pipeline/components/interval_evaluator.py)
# records, on the ModelBlessing, the confidence intervals it judged the model by.
CONFIDENCE_INTERVALS_PROPERTY = "confidence_intervals"


def confidence_intervals_of(blessing: metadata_store_pb2.Artifact) -> dict | None:
    """The intervals a blessing was judged by, as the executor wrote them (JSON:
    level, method, candidate {metric: [value, lower, upper]}, changes [...]);
    None for a blessing made without them."""
    if CONFIDENCE_INTERVALS_PROPERTY not in blessing.custom_properties:
        return None
    return json.loads(blessing.custom_properties[CONFIDENCE_INTERVALS_PROPERTY].string_value)
