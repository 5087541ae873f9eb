"""Reads the model server's request logs: TFRecord files of
tensorflow.serving.PredictionLog, turned into serialized tf.Examples, one per
row of a batched request, with the model version that served them.

A file may still be being written (its last record truncated) or be damaged:
what cannot be read is skipped with a warning naming the file and the record,
and the records read before the damage still count.
"""
import dataclasses
import logging
import pathlib
import re

import numpy as np
import tensorflow as tf
from google.protobuf import message
from tensorflow.python.lib.io import tf_record
from tensorflow.python.util import deprecation
from tensorflow_serving.apis import prediction_log_pb2

from pipeline.monitor.report import SkippedRecords

LOG_FILE_SUFFIX = ".tfrecord"
# Around each record: its length (8 bytes) and two CRCs (4 bytes each).
TFRECORD_FRAMING_BYTES = 16
# Input names that carry serialized tf.Examples in a predict request: the
# logging contract's `examples`, and `inputs` as the SavedModel names it.
EXAMPLES_INPUTS = ("examples", "inputs")

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoggedRequest:
    model_name: str
    model_version: str
    timestamp: float  # epoch seconds, when the request arrived
    examples: list[bytes]  # serialized tf.Examples, one per row


@dataclasses.dataclass
class ReadResult:
    requests: list[LoggedRequest]
    files_read: int
    skipped: list[SkippedRecords]


def log_files(folder: pathlib.Path, modified_since: float | None = None) -> list[pathlib.Path]:
    """The log files under `folder`; a file not modified since `modified_since`
    holds no record newer than it, so need not be opened."""
    files = sorted(p for p in folder.rglob(f"*{LOG_FILE_SUFFIX}") if p.is_file())
    if modified_since is not None:
        files = [p for p in files if p.stat().st_mtime >= modified_since]
    return files


def _example_with_context(example: tf.train.Example, context: tf.train.Example) -> bytes:
    merged = tf.train.Example()
    merged.CopyFrom(context)
    for name, feature in example.features.feature.items():  # its own values win
        merged.features.feature[name].CopyFrom(feature)
    return merged.SerializeToString()


def _input_examples(request_input) -> list[bytes]:
    """Examples of a classify, regress or multi-inference request's Input."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in request_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        return [_example_with_context(e, with_context.context)
                for e in with_context.examples]
    return []


def _feature_of(values) -> tf.train.Feature:
    feature = tf.train.Feature()
    if values.dtype.kind in "SUO":
        feature.bytes_list.value.extend(
            v if isinstance(v, bytes) else str(v).encode() for v in values)
    elif values.dtype.kind in "iub":
        feature.int64_list.value.extend(int(v) for v in values)
    else:
        feature.float_list.value.extend(float(v) for v in values)
    return feature


def _raw_tensor_examples(inputs) -> list[bytes]:
    """One tf.Example per row of a predict request's raw feature tensors
    (batch dimension first), each feature typed by its tensor's dtype."""
    arrays = {name: tf.make_ndarray(tensor) for name, tensor in inputs.items()}
    batch = max((len(a) if a.ndim else 1 for a in arrays.values()), default=0)
    examples = []
    for row in range(batch):
        example = tf.train.Example()
        for name, array in arrays.items():
            values = array.reshape(-1) if array.ndim == 0 else np.asarray(array[row]).reshape(-1)
            example.features.feature[name].CopyFrom(_feature_of(values))
        examples.append(example.SerializeToString())
    return examples


def _predict_examples(request) -> list[bytes]:
    inputs = request.inputs
    if len(inputs) == 1:
        name, tensor = next(iter(inputs.items()))
        if name in EXAMPLES_INPUTS and tensor.dtype == tf.string.as_datatype_enum:
            return list(tf.make_ndarray(tensor).reshape(-1))
    return _raw_tensor_examples(inputs)


def examples_of(log: prediction_log_pb2.PredictionLog) -> list[bytes]:
    """The rows a logged request asked about, as serialized tf.Examples.

    TFX's BulkInferrer converts a PredictionLog too
    (prediction_to_example_utils.convert), but only its first example, with
    the outputs added by an OutputExampleSpec: a batched request holds many
    rows, and skew is about the inputs only, so the conversion is here.
    """
    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        return _predict_examples(log.predict_log.request)
    if kind in ("classify_log", "regress_log", "multi_inference_log"):
        return _input_examples(getattr(log, kind).request.input)
    raise ValueError(f"a {kind or 'empty'} PredictionLog holds no model inputs")


def _request_of(log: prediction_log_pb2.PredictionLog) -> LoggedRequest:
    spec = log.log_metadata.model_spec
    return LoggedRequest(model_name=spec.name,
                         model_version=str(spec.version.value) if spec.HasField("version") else "",
                         # LogMetadata's request time (tensorflow_serving 2.16:
                         # `timestamp_secs`, whole seconds).
                         timestamp=float(log.log_metadata.timestamp_secs),
                         examples=examples_of(log))


def _skip(skipped: list, path, index: int, reason: str):
    logger.warning("request logs: skipped %s record %d: %s", path, index, reason)
    skipped.append(SkippedRecords(file=str(path), record_index=index, reason=reason))


def _damage(error: Exception) -> str:
    """TensorFlow's reason without its op and device names."""
    found = re.search(r"(truncated|corrupted) record at \d+", str(error))
    return found.group(0) if found else (str(error).splitlines() or [type(error).__name__])[0]


def read_file(path: pathlib.Path, skipped: list) -> list[LoggedRequest]:
    """Every readable request of one file; damage ends the file, a record
    that is not a PredictionLog is skipped alone."""
    requests = []
    records = 0
    consumed = 0  # bytes of the whole records read
    try:
        # TensorFlow's plain record reader (deprecated for tf.data, whose iterator
        # logs a warning at every file's end: "Local rendezvous is aborting").
        with deprecation.silence():
            reader = tf_record.tf_record_iterator(str(path))
        for record in reader:
            records += 1
            consumed += len(record) + TFRECORD_FRAMING_BYTES
            try:
                requests.append(_request_of(prediction_log_pb2.PredictionLog.FromString(record)))
            except (message.DecodeError, ValueError) as error:
                _skip(skipped, path, records - 1, f"not a readable PredictionLog: {error}")
    except tf.errors.OpError as error:
        # A truncated or corrupt record ends the file; those before it count.
        _skip(skipped, path, records, f"unreadable from here on: {_damage(error)}")
        return requests
    # The reader ends quietly on a partial record header (a file being
    # written, or a few bytes of garbage): say so, the rest may come later.
    left = path.stat().st_size - consumed
    if left > 0:
        _skip(skipped, path, records, f"{left} bytes after the last whole record "
                                      f"(still being written, or damaged)")
    return requests


def read_requests(folder: pathlib.Path, since: float | None, until: float) -> ReadResult:
    """The requests logged in [since, until) under `folder`."""
    skipped: list[SkippedRecords] = []
    files = log_files(folder, since)
    requests = []
    for path in files:
        requests.extend(r for r in read_file(path, skipped)
                        if (since is None or r.timestamp >= since) and r.timestamp < until)
    return ReadResult(requests=requests, files_read=len(files), skipped=skipped)
