"""Writes a span check's result onto its output artifact, twice: as custom
properties, which ML Metadata queries and lineage read, and as a JSON file in
the artifact's folder, which a person can open without an MLMD client.
"""
import json
import os


def record(artifact, values: dict, file_name: str, details: dict | None = None):
    """Each value becomes a custom property of its type (a bool an int 0/1);
    the file holds the same values, plus `details` too long for a property."""
    for name, value in values.items():
        if isinstance(value, bool):
            artifact.set_int_custom_property(name, int(value))
        elif isinstance(value, int):
            artifact.set_int_custom_property(name, value)
        elif isinstance(value, float):
            artifact.set_float_custom_property(name, value)
        else:
            artifact.set_string_custom_property(name, str(value))
    os.makedirs(artifact.uri, exist_ok=True)
    with open(os.path.join(artifact.uri, file_name), "w") as f:
        json.dump({**values, **(details or {})}, f, indent=2, sort_keys=True)
