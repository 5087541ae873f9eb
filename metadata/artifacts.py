"""Reading TFX's properties off ML Metadata artifacts.

TFX 1.16 keeps `span` and `version` of Examples as custom properties (the typed
property, `artifact.span` in TFX's Python, stays 0); older TFX as typed
properties. This is the one place that knows.
"""
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
