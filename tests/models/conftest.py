"""A small real sample of taxi trips, run through the real preprocessing_fn with TFT.

Session-scoped: the TFT analysis (a Beam pipeline) runs once and the model and
signature tests reuse its transform graph and transformed rows.
"""
import csv
import dataclasses
import importlib.util
import os
import pathlib
import tempfile

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from models import preprocessing

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA_FILE = PROJECT_ROOT / "pipeline" / "schema" / "schema.pbtxt"
SAMPLE_ROWS = 300


def taxi_csv_rows(count):
    spec = importlib.util.find_spec("tfx")
    path = (pathlib.Path(list(spec.submodule_search_locations)[0])
            / "examples/chicago_taxi_pipeline/data/simple/data.csv")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return [row for _, row in zip(range(count), reader)]


def load_schema():
    from tensorflow_metadata.proto.v0 import schema_pb2
    from google.protobuf import text_format
    return text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())


def to_instance(row, feature_spec):
    """A CSV row as TFT's instance dict: [] for a missing cell, [value] otherwise
    (every fixed-length feature of the schema has shape [1])."""
    instance = {}
    for name, spec in feature_spec.items():
        cell = row[name]
        if spec.dtype == tf.string:
            values = [cell.encode()] if cell != "" else []
        elif spec.dtype == tf.int64:
            values = [int(float(cell))] if cell != "" else []
        else:
            values = [float(cell)] if cell != "" else []
        instance[name] = values
    return instance


@dataclasses.dataclass
class TransformedSample:
    raw_rows: list
    raw_instances: list
    transformed: list
    transform_output_dir: str
    feature_spec: dict

    @property
    def tf_transform_output(self):
        return tft.TFTransformOutput(self.transform_output_dir)

    def transform(self, instances):
        """Apply the analyzed transform graph to new raw instances."""
        layer = self.tf_transform_output.transform_features_layer()
        batch = {name: _batched(name, spec, [i[name] for i in instances])
                 for name, spec in self.feature_spec.items()}
        return {k: v.numpy() for k, v in layer(batch).items()}


def _batched(name, spec, values):
    if isinstance(spec, tf.io.VarLenFeature):
        return tf.ragged.constant(values, dtype=spec.dtype).to_sparse()
    return tf.constant(values, dtype=spec.dtype)


@pytest.fixture(scope="session")
def transformed_sample() -> TransformedSample:
    schema = load_schema()
    feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    rows = taxi_csv_rows(SAMPLE_ROWS)
    instances = [to_instance(row, feature_spec) for row in rows]
    metadata = dataset_metadata.DatasetMetadata(schema)
    output_dir = tempfile.mkdtemp(prefix="tft-")
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(prefix="tft-tmp-")):
        (transformed, _), transform_fn = (
            (instances, metadata)
            | tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
        transform_fn | tft_beam.WriteTransformFn(output_dir)
    # The serving signatures read the raw feature spec from here, as in TFX.
    metadata_io.write_metadata(
        metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return TransformedSample(rows, instances, transformed, output_dir, feature_spec)
