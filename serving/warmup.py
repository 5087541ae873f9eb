"""SavedModel warmup, as TF Serving's saved_model_warmup.cc: before a version becomes
AVAILABLE, the requests it ships in assets.extra/tf_serving_warmup_requests are replayed
through it, so that TensorFlow's lazy initialization is paid at load, not by a client.

Below the manager: the server's servable factory calls run_warmup() on a Servable it has
just loaded, and an error fails that load (retried as any failed load) with TF Serving's
message. The replayed requests go straight to the Servable, under the API layers, so they
are neither counted as requests nor written to request logs; metrics.observe_warmup counts
the warmup itself.
"""
import logging
import os
import time

import grpc
from google.protobuf import message

from serving import errors, metrics, multi_inference, proto_codec

from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

log = logging.getLogger("serving.warmup")

ASSETS_EXTRA_DIRECTORY = "assets.extra"  # TF's kSavedModelAssetsExtraDirectory
WARMUP_REQUESTS_FILE = "tf_serving_warmup_requests"  # WarmupConsts::kRequestsFileName
MAX_NUM_RECORDS = 1000  # WarmupConsts::kMaxNumRecords
TFRECORD_FORMAT_HINT = ". Please verify your warmup data is in TFRecord format."
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def warmup_requests_path(version_dir: str) -> str:
    return os.path.join(version_dir, ASSETS_EXTRA_DIRECTORY, WARMUP_REQUESTS_FILE)


def run_warmup(servable, num_request_iterations: int = 0) -> int:
    """Replays every record of the version's warmup file num_request_iterations times
    (1 when not > 0, as --num_request_iterations_for_warmup); -> the records replayed.

    No file: nothing to do. Raises ServingError as TF Serving fails the load: a record that
    is not a PredictionLog, a replayed request that fails (its own error), more than
    MAX_NUM_RECORDS records, or a file that is not TFRecord (DATA_LOSS). As in TF Serving,
    the warmup metrics are recorded only when the file was read to its end or to damage.
    """
    path = warmup_requests_path(servable.path)
    if not os.path.exists(path):
        log.info("No warmup data file found at %s", path)
        return 0
    iterations = num_request_iterations if num_request_iterations > 0 else 1
    log.info("Starting to read warmup data for model at %s with model-warmup-options "
             "num_request_iterations: %d model_name: %s model_version: %d", path, iterations,
             servable.name, servable.version)
    started = time.monotonic()
    records = _tfrecords(path)
    num_records = 0
    read_error = None
    while True:
        try:
            record = next(records)
        except StopIteration:  # TF's OUT_OF_RANGE at the end of the file: success
            break
        except errors.ServingError as error:
            read_error = error
            break
        prediction_log = _parse_prediction_log(record, path)
        for _ in range(iterations):
            replay(servable, prediction_log)
        num_records += 1
        # Checked after the replay, as TF Serving does: record 1001 runs, then fails.
        if num_records > MAX_NUM_RECORDS:
            raise errors.invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_NUM_RECORDS}) at {path}")
    seconds = time.monotonic() - started
    status = "OK" if read_error is None else f"{read_error.code_name}: {read_error.message}"
    metrics.observe_warmup(servable.path, status, seconds, num_records)
    if read_error is not None:
        if read_error.code == grpc.StatusCode.DATA_LOSS:
            raise errors.ServingError(grpc.StatusCode.DATA_LOSS,
                                      read_error.message + TFRECORD_FORMAT_HINT)
        raise read_error
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: "
             "%d. Elapsed time (microseconds): %d.", path, num_records, seconds * 1e6)
    return num_records


def replay(servable, prediction_log) -> None:
    """Runs one logged request on `servable`, as TF Serving's RunWarmupRequest: the request's
    model name and version are not looked at, only its signature and inputs."""
    kind = prediction_log.WhichOneof("log_type")
    if kind == "predict_log":
        request = prediction_log.predict_log.request
        servable.predict(request.model_spec.signature_name,
                         proto_codec.inputs_as_numpy(request.inputs),
                         list(request.output_filter) or None)
    elif kind == "classify_log":
        request = prediction_log.classify_log.request
        servable.classify(request.model_spec.signature_name,
                          proto_codec.serialized_examples(request.input))
    elif kind == "regress_log":
        request = prediction_log.regress_log.request
        servable.regress(request.model_spec.signature_name,
                         proto_codec.serialized_examples(request.input))
    elif kind == "multi_inference_log":
        multi_inference.run(servable, prediction_log.multi_inference_log.request)
    elif kind is not None:  # session_run_log, predict_streamed_log
        # TF Serving prints the oneof case, i.e. the field's number.
        number = prediction_log.DESCRIPTOR.fields_by_name[kind].number
        raise errors.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                  f"Unsupported log_type for warmup: {number}")
    # A record with no request at all runs nothing and passes, as in TF Serving.


def _parse_prediction_log(record: bytes, path: str):
    try:
        return prediction_log_pb2.PredictionLog.FromString(record)
    except message.DecodeError:
        # TF Serving prints the raw bytes; a status message must be text.
        shown = record.decode("utf-8", errors="backslashreplace")
        raise errors.invalid_argument(
            f"Failed to parse warmup record: {shown} from {path}") from None


def _tfrecords(path: str):
    """The file's records, read by TensorFlow's own record reader, so a damaged file fails
    with the DATA_LOSS message TF Serving gets ("corrupted record at 12"); a few bytes too
    short for a record header end the file quietly, as there."""
    import tensorflow as tf
    from tensorflow.python.lib.io import tf_record
    from tensorflow.python.util import deprecation

    with deprecation.silence():  # deprecated for tf.data, which would need a graph
        reader = tf_record.tf_record_iterator(path)
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            raise errors.ServingError(_STATUS_CODES.get(error.error_code,
                                                        grpc.StatusCode.UNKNOWN),
                                      error.message) from None
        yield record
