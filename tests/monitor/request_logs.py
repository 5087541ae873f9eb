"""Writes request logs as the model server does (the contract in README.md,
Monitoring): TFRecord files of tensorflow.serving.PredictionLog, built here from
real taxi trips, so the monitor's tests read what a server would have logged.
"""
import csv
import functools
import pathlib

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_serving.apis import prediction_log_pb2

from models import features
from pipeline import config


@functools.cache
def _column_types() -> dict[str, str]:
    """INT, FLOAT or BYTES per CSV column, from the curated schema."""
    schema = tfdv.load_schema_text(str(config.PipelineConfig().schema_file))
    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


def read_trips(csv_path, limit: int | None = None) -> list[dict]:
    """Rows of a span's CSV, typed as CsvExampleGen types them; an empty cell
    is a missing value (left out)."""
    types = _column_types()
    convert = {"INT": lambda v: int(float(v)), "FLOAT": float, "BYTES": str}
    trips = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            trips.append({name: convert[types[name]](value)
                          for name, value in row.items() if value != ""})
            if limit is not None and len(trips) == limit:
                break
    return trips


# 2015 Q4: before every training window of the shared store (tests/conftest.py).
HELD_OUT_SPAN = 12


def held_out_trips(folder) -> list[dict]:
    """The held-out span's trips, laid out in `folder` by data/make_spans.py."""
    from tests.conftest import make_spans

    make_spans(folder, HELD_OUT_SPAN, HELD_OUT_SPAN)
    return read_trips(pathlib.Path(folder) / f"span-{HELD_OUT_SPAN}" / "data.csv")


def changed(trips: list[dict]) -> list[dict]:
    """Half the payments of a type the model never saw, every fare ten times."""
    return [dict(trip, fare=trip["fare"] * 10,
                 **({"payment_type": "Crypto"} if i % 2 else {}))
            for i, trip in enumerate(trips)]


def example_of(trip: dict) -> tf.train.Example:
    """A serving tf.Example: every column of the trip but the label's source."""
    example = tf.train.Example()
    for name, value in trip.items():
        if name == features.TIPS_KEY:
            continue
        feature = example.features.feature[name]
        if isinstance(value, str):
            feature.bytes_list.value.append(value.encode())
        elif isinstance(value, int):
            feature.int64_list.value.append(value)
        else:
            feature.float_list.value.append(value)
    return example


def _metadata(log, version: int, signature: str, timestamp: float, name="taxi_tips"):
    log.log_metadata.model_spec.name = name
    log.log_metadata.model_spec.version.value = int(version)
    log.log_metadata.model_spec.signature_name = signature
    log.log_metadata.sampling_config.sampling_rate = 1.0
    log.log_metadata.timestamp_secs = int(timestamp)  # LogMetadata keeps whole seconds


def has_raw_features(trip: dict) -> bool:
    return all(name in trip for name in features.RAW_FEATURES)


def raw_predict_log(trips: list[dict], version, timestamp) -> prediction_log_pb2.PredictionLog:
    """A batched predict on `serving_raw`: one [batch] tensor per raw feature."""
    log = prediction_log_pb2.PredictionLog()
    _metadata(log, version, "serving_raw", timestamp)
    request = log.predict_log.request
    request.model_spec.name = "taxi_tips"
    request.model_spec.signature_name = "serving_raw"
    types = _column_types()
    dtypes = {"INT": tf.int64, "FLOAT": tf.float32, "BYTES": tf.string}
    for name in features.RAW_FEATURES:
        request.inputs[name].CopyFrom(tf.make_tensor_proto(
            [trip[name] for trip in trips], dtype=dtypes[types[name]]))
    log.predict_log.response.outputs["outputs"].CopyFrom(
        tf.make_tensor_proto([[0.5]] * len(trips), dtype=tf.float32))
    return log


def examples_predict_log(trips, version, timestamp, signature="serving_default"):
    """A predict on a tf.Example signature: serialized examples in `examples`."""
    log = prediction_log_pb2.PredictionLog()
    _metadata(log, version, signature, timestamp)
    log.predict_log.request.model_spec.signature_name = signature
    log.predict_log.request.inputs["examples"].CopyFrom(tf.make_tensor_proto(
        [example_of(trip).SerializeToString() for trip in trips], dtype=tf.string))
    return log


def classify_log(trips, version, timestamp) -> prediction_log_pb2.PredictionLog:
    log = prediction_log_pb2.PredictionLog()
    _metadata(log, version, "serving_default", timestamp)
    request = log.classify_log.request
    request.model_spec.signature_name = "serving_default"
    for trip in trips:
        request.input.example_list.examples.add().CopyFrom(example_of(trip))
    for _ in trips:
        classes = log.classify_log.response.result.classifications.add()
        classes.classes.add(label="0", score=0.5)
        classes.classes.add(label="1", score=0.5)
    return log


def replay(trips: list[dict], version, start: float, batch: int = 5, gap: float = 1.0):
    """The trips as a client would send them, `batch` per request, one request
    every `gap` seconds from `start`: complete trips as serving_raw predicts,
    the rest (a missing coordinate, say) as classify requests."""
    complete = [t for t in trips if has_raw_features(t)]
    partial = [t for t in trips if not has_raw_features(t)]
    logs = []
    for group, build in ((complete, raw_predict_log), (partial, classify_log)):
        for i in range(0, len(group), batch):
            logs.append(build(group[i:i + batch], version, start + len(logs) * gap))
    return logs


def write_log_file(folder, logs, stamp="20240101T100000", pid=4242, seq=0,
                   prefix="prediction_log") -> pathlib.Path:
    """One file named as the server names them."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}-{stamp}-{pid}-{seq}.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path
