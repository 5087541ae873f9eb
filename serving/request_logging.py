"""TF Serving's `logging_config` made to work: each sampled, successful inference call becomes a
tensorflow.serving.PredictionLog in TFRecord files named after the model's filename_prefix.

The API layers hand over what they already hold (gRPC protos and the request's bytes, or
REST's decoded numpy arrays) and one writer thread builds, serializes and writes the logs, so a
request pays for a random draw and an append. A full queue drops the log (counted): logging
never fails or blocks a call.
"""
import collections
import dataclasses
import logging
import random
import threading
import time

from serving import errors, metrics
from serving.tfrecord_files import MAX_FILE_AGE_SECONDS, MAX_FILE_BYTES, RotatingRecordWriter

log = logging.getLogger("serving.request_logging")

TFRECORD_COLLECTOR = "tfrecord"  # the one log_collector_config.type this server writes
QUEUE_SIZE = 10000  # logs waiting for the writer thread; past this they are dropped
# The writer takes what is queued every DRAIN_SECONDS, in one go: waking per log would
# cost every request a thread switch. Files are flushed once FLUSH_SECONDS have passed, so
# a log is on disk within DRAIN_SECONDS + FLUSH_SECONDS = 1 s (all a crash can lose).
DRAIN_SECONDS = 0.1
FLUSH_SECONDS = 0.9
FLUSH_BYTES = 1024 * 1024  # a burst is written out before its second is up
SERVE_TAG = "serve"
# PredictionLog's field for each API; the writer fills the request/response pair in it.
PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE = (
    "predict_log", "classify_log", "regress_log", "multi_inference_log")


def check_logging_config(model_config) -> None:
    """INVALID_ARGUMENT for a logging_config this server cannot honour (at start-up, the
    server exits; on a reload, the reload is refused and the old config keeps serving)."""
    if not model_config.HasField("logging_config"):
        return
    where = f"logging_config of model {model_config.name}"
    collector = model_config.logging_config.log_collector_config
    if collector.type != TFRECORD_COLLECTOR:
        raise errors.invalid_argument(
            f"{where}: unsupported log_collector_config.type '{collector.type}'; this server "
            f"writes type '{TFRECORD_COLLECTOR}' only")
    if not collector.filename_prefix:
        raise errors.invalid_argument(
            f"{where}: log_collector_config.filename_prefix is empty; name the files, e.g. "
            "'outputs/request_logs/taxi'")
    rate = model_config.logging_config.sampling_config.sampling_rate
    if not 0.0 <= rate <= 1.0:
        raise errors.invalid_argument(
            f"{where}: sampling_config.sampling_rate must be between 0 and 1, got {rate}")


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: one per config read
class LogSettings:
    """One model's logging_config, read once per config rather than once per request."""
    sampling_rate: float
    filename_prefix: str
    sampling_config: object  # tensorflow.serving.SamplingConfig, copied into each log


def settings_by_model(server_config) -> dict:
    """{model name: LogSettings} for the models of a ModelServerConfig that log requests."""
    if server_config is None or server_config.WhichOneof("config") != "model_config_list":
        return {}
    settings = {}
    for model_config in server_config.model_config_list.config:
        if model_config.HasField("logging_config"):
            logging_config = model_config.logging_config
            settings[model_config.name] = LogSettings(
                logging_config.sampling_config.sampling_rate,
                logging_config.log_collector_config.filename_prefix,
                logging_config.sampling_config)
    return settings


class RequestLogger:
    """Samples calls, queues them, and writes them from one thread; thread-safe."""

    def __init__(self, config_source, max_file_bytes: int = MAX_FILE_BYTES,
                 max_file_age_seconds: float = MAX_FILE_AGE_SECONDS,
                 queue_size: int = QUEUE_SIZE):
        """config_source() -> the ModelServerConfig being served (it changes on reloads)."""
        self._config_source = config_source
        self._config = None
        self._settings = {}
        self._max_file_bytes = max_file_bytes
        self._max_file_age_seconds = max_file_age_seconds
        # A deque: append and popleft are atomic, and need no lock or wake-up per log.
        self._queue = collections.deque()
        self._queue_size = max(1, queue_size)
        self._stopping = threading.Event()
        self._writers = {}  # filename prefix -> RotatingRecordWriter; writer thread only
        self._unflushed = {}  # prefix -> {model name: [logs, bytes]}; writer thread only
        self._reported_errors = set()
        self._thread = threading.Thread(target=self._write_forever, name="request-logger",
                                        daemon=True)

    def start(self):
        self._thread.start()

    def stop(self, timeout: float = 10):
        """Writes what is queued, then flushes and closes every file."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the request path: cheap and never raising ---------------------------------------
    def _settings_for(self, model_name):
        config = self._config_source()
        if config is not self._config:  # a reload: read the new config's settings once
            self._settings = settings_by_model(config)
            self._config = config
        return self._settings.get(model_name)

    def log(self, timestamp: float, kind: str, model_name: str, version: int, signature_name,
            build, *parts) -> None:
        """Logs one successful call with probability sampling_rate.

        timestamp is time.time() when the call arrived; kind is the PredictionLog field
        (PREDICT, ...); version the one that served it; signature_name the request's ("" is
        serving_default; None for multi-inference, whose tasks each name one).
        build(*parts) -> (serialized request, serialized response), on the writer thread.
        """
        try:
            settings = self._settings_for(model_name)
            if settings is None or not random.random() < settings.sampling_rate:
                return
            if len(self._queue) >= self._queue_size:  # may overshoot by a few threads' worth
                metrics.count_request_logs(model_name, "RESOURCE_EXHAUSTED")
                return
            self._queue.append((settings, kind, model_name, version, signature_name,
                                timestamp, build, parts))
        except Exception:  # logging must never fail the call it logs
            log.exception("Request logging failed for model %s", model_name)

    # --- the writer thread -----------------------------------------------------------------
    def _write_forever(self):
        next_flush = time.monotonic() + FLUSH_SECONDS
        while True:
            stopping = self._stopping.wait(DRAIN_SECONDS)
            try:
                queued = self._queue
                while queued:
                    self._write(*queued.popleft())
                    # Hand the GIL over between logs: held for a whole batch, it would keep
                    # the request threads waiting for the interpreter's 5 ms switch interval.
                    time.sleep(0)
                if stopping:
                    self._flush_all(closing=True)
                    return
                if time.monotonic() >= next_flush:
                    self._flush_all()
                    next_flush = time.monotonic() + FLUSH_SECONDS
            except Exception:  # a bug here must not end logging for the server's lifetime
                log.exception("Request logger failed; it goes on with the next logs")
                if stopping:
                    return

    def _write(self, settings, kind, model_name, version, signature_name, timestamp, build,
               parts):
        try:
            record = _prediction_log(settings, kind, model_name, version, signature_name,
                                     timestamp, build, parts)
        except Exception as e:  # a request the protos cannot hold loses its log, not more
            self._report_error(("build", kind, type(e).__name__),
                               f"Could not build the {kind} of model {model_name}: {e!r}")
            metrics.count_request_logs(model_name, "INTERNAL")
            return
        prefix = settings.filename_prefix
        writer = self._writers.get(prefix)
        if writer is None:
            writer = self._writers[prefix] = RotatingRecordWriter(
                prefix, self._max_file_bytes, self._max_file_age_seconds)
        size = writer.write(record)
        counts = self._unflushed.setdefault(prefix, {}).setdefault(model_name, [0, 0])
        counts[0] += 1
        counts[1] += size
        if writer.pending_bytes >= FLUSH_BYTES:
            self._flush(prefix)

    def _flush_all(self, closing=False):
        """Flushes every file; closes those of prefixes no model uses any more."""
        active = {settings.filename_prefix
                  for settings in settings_by_model(self._config_source()).values()}
        for prefix in list(self._writers):
            self._flush(prefix, close=closing or prefix not in active)

    def _flush(self, prefix, close=False):
        writer = self._writers[prefix]
        counts = self._unflushed.pop(prefix, {})
        try:
            writer.close() if close else writer.flush()
            status = "OK"
        except OSError as e:
            self._report_error(("write", prefix, e.errno),
                               f"Could not write request logs to {prefix}-*: {e}")
            status = "INTERNAL"
        if close:
            del self._writers[prefix]
        for model_name, (count, num_bytes) in counts.items():
            metrics.count_request_logs(model_name, status, count,
                                       num_bytes if status == "OK" else 0)

    def _report_error(self, key, message):
        """Logs each kind of failure once: a full disk must not flood the server log."""
        if key not in self._reported_errors:
            self._reported_errors.add(key)
            log.error("%s (further such errors are counted, not logged)", message)


def _prediction_log(settings, kind, model_name, version, signature_name, timestamp, build,
                    parts) -> bytes:
    """A serialized PredictionLog, put together from its serialized parts.

    Protobuf fields are concatenated bytes, so the request and response (serialized once,
    or for gRPC the bytes the request arrived as) are wrapped, not copied into a new
    message and serialized again: that halves the writer's time per log, which on a small
    machine is CPU the requests lack. LogMetadata is serialized once per model version and
    signature; only its timestamp is added per log.
    """
    from serving.proto_codec import length_delimited, varint

    request, response = build(*parts)
    fields = _log_fields()
    metadata = _metadata_without_time(settings, model_name, version, signature_name) \
        + fields["timestamp_secs_tag"] + varint(int(timestamp))
    return b"".join((
        length_delimited(fields["log_metadata"], metadata),
        length_delimited(fields[kind], b"".join((
            length_delimited(fields[kind, "request"], request),
            length_delimited(fields[kind, "response"], response))))))


_MAX_METADATA = 1024  # (settings, model, version, signature) kept; cleared when full
_metadata = {}


def _metadata_without_time(settings, model_name, version, signature_name) -> bytes:
    key = (settings, model_name, version, signature_name)
    serialized = _metadata.get(key)
    if serialized is None:
        from tensorflow_serving.apis import logging_pb2

        from serving.servable import DEFAULT_SIGNATURE

        metadata = logging_pb2.LogMetadata()
        metadata.model_spec.name = model_name
        metadata.model_spec.version.value = version
        if signature_name is not None:
            metadata.model_spec.signature_name = signature_name or DEFAULT_SIGNATURE
        metadata.sampling_config.CopyFrom(settings.sampling_config)
        metadata.saved_model_tags.append(SERVE_TAG)
        serialized = metadata.SerializeToString()
        if len(_metadata) >= _MAX_METADATA:
            _metadata.clear()
        _metadata[key] = serialized
    return serialized


_LOG_FIELDS = {}


def _log_fields() -> dict:
    """Field numbers of PredictionLog ("log_metadata", "predict_log", ...) and of each log
    kind's request and response ((kind, "request")), read from the descriptors; and the
    tag of LogMetadata.timestamp_secs."""
    if not _LOG_FIELDS:
        from tensorflow_serving.apis import logging_pb2, prediction_log_pb2

        from serving.proto_codec import varint

        fields = prediction_log_pb2.PredictionLog.DESCRIPTOR.fields_by_name
        timestamp = logging_pb2.LogMetadata.DESCRIPTOR.fields_by_name["timestamp_secs"]
        numbers = {"log_metadata": fields["log_metadata"].number,
                   "timestamp_secs_tag": varint(timestamp.number << 3)}  # a varint field
        for kind in (PREDICT, CLASSIFY, REGRESS, MULTI_INFERENCE):
            numbers[kind] = fields[kind].number
            for part in ("request", "response"):
                numbers[kind, part] = fields[kind].message_type.fields_by_name[part].number
        _LOG_FIELDS.update(numbers)
    return _LOG_FIELDS


# --- builders: (serialized request, serialized response) from what an API layer holds ----------

def serialized_protos(request, response) -> tuple:
    """gRPC: the request as it arrived (its bytes, or its message) and the response sent."""
    if not isinstance(request, bytes):
        request = request.SerializeToString()
    return request, response.SerializeToString()


def _request_model_spec(model_spec, name, version, label, signature_name):
    """The ModelSpec a REST URL and body amount to, as TF Serving's REST handler builds it."""
    model_spec.name = name
    if version is not None:
        model_spec.version.value = version
    elif label is not None:
        model_spec.version_label = label
    model_spec.signature_name = signature_name


def predict_from_arrays(name, version, label, signature_name, served_version, inputs,
                        outputs) -> tuple:
    """REST predict: the decoded inputs and the outputs as PredictRequest/PredictResponse,
    the tensors serialized directly (proto_codec.serialized_tensor_map: a sixth of the
    cost of building the messages)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2

    from serving import proto_codec

    request_fields = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name
    response_fields = predict_pb2.PredictResponse.DESCRIPTOR.fields_by_name
    request_spec, response_spec = model_pb2.ModelSpec(), model_pb2.ModelSpec()
    _request_model_spec(request_spec, name, version, label, signature_name)
    proto_codec.set_model_spec(response_spec, name, served_version, signature_name)
    request = (proto_codec.length_delimited(request_fields["model_spec"].number,
                                            request_spec.SerializeToString())
               + proto_codec.serialized_tensor_map(request_fields["inputs"].number, inputs))
    response = (proto_codec.serialized_tensor_map(response_fields["outputs"].number, outputs)
                + proto_codec.length_delimited(response_fields["model_spec"].number,
                                               response_spec.SerializeToString()))
    return request, response


def _examples_request(request, name, version, label, signature_name, context, examples):
    """REST classify/regress examples as Input.example_list, each merged with the context
    as the model saw it (a map merge: the example's own feature wins, as in TF's parse)."""
    example_list = request.input.example_list.examples
    for example in examples:
        logged = example_list.add()
        if context is not None:
            logged.MergeFrom(context)
        logged.MergeFrom(example)
    _request_model_spec(request.model_spec, name, version, label, signature_name)
    return request.SerializeToString()


def classify_from_examples(name, version, label, signature_name, served_version, context,
                           examples, classes, scores) -> tuple:
    from tensorflow_serving.apis import classification_pb2

    from serving import proto_codec

    request = _examples_request(classification_pb2.ClassificationRequest(), name, version,
                                label, signature_name, context, examples)
    response = classification_pb2.ClassificationResponse()
    proto_codec.set_model_spec(response.model_spec, name, served_version, signature_name)
    proto_codec.classification_result(response.result, classes, scores)
    return request, response.SerializeToString()


def regress_from_examples(name, version, label, signature_name, served_version, context,
                          examples, values) -> tuple:
    from tensorflow_serving.apis import regression_pb2

    from serving import proto_codec

    request = _examples_request(regression_pb2.RegressionRequest(), name, version, label,
                                signature_name, context, examples)
    response = regression_pb2.RegressionResponse()
    proto_codec.set_model_spec(response.model_spec, name, served_version, signature_name)
    proto_codec.regression_result(response.result, values)
    return request, response.SerializeToString()
