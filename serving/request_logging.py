"""TF Serving's `logging_config` made to work: each sampled, successful inference call becomes a
tensorflow.serving.PredictionLog in TFRecord files named after the model's filename_prefix.

The API layers hand over what they already hold (gRPC protos and the request's bytes, or
REST's body and output arrays); a sender thread passes it, as plain bytes, to a writer process
(serving.request_log_writer) that builds, serializes and writes the logs in its own
interpreter, so a request pays for a random draw and an append and the server's interpreter
lock is not spent on protos. A full queue drops the log (counted): logging never fails or
blocks a call.
"""
import collections
import dataclasses
import logging
import math
import multiprocessing
import os
import pickle
import random
import threading
import time
import typing
import weakref

from serving import errors, metrics
from serving.tfrecord_files import MAX_FILE_AGE_SECONDS, MAX_FILE_BYTES

log = logging.getLogger("serving.request_logging")

TFRECORD_COLLECTOR = "tfrecord"  # the one log_collector_config.type this server writes
QUEUE_SIZE = 10000  # logs waiting for the sender thread; past this they are dropped
# The sender takes what is queued every DRAIN_SECONDS, in one go: waking per log would
# cost every request a thread switch. Files are flushed once FLUSH_SECONDS have passed, so
# a log is on disk within DRAIN_SECONDS + FLUSH_SECONDS = 1 s (all a crash can lose).
DRAIN_SECONDS = 0.1
FLUSH_SECONDS = 0.9
FLUSH_BYTES = 1024 * 1024  # a burst is written out before its second is up
RESTART_SECONDS = 1.0  # a writer process that keeps dying is started at most this often
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
    sampling_config_bytes: bytes  # serialized tensorflow.serving.SamplingConfig, in each log


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
                logging_config.sampling_config.SerializeToString())
    return settings


class RequestLogger:
    """Samples calls and queues them; a sender thread hands them to the writer process.

    Thread-safe. The request path pays for a random draw and a deque append; the sender
    thread, every DRAIN_SECONDS, turns what is queued into plain bytes and numbers (no
    protos, no numpy pickles: both cost the server's interpreter more than the build they
    would save) and sends it down a pipe; the writer process (serving.request_log_writer)
    builds, serializes and writes the logs and reports what it wrote. A writer that dies
    is started again; the logs it had not reported are counted as INTERNAL.
    """

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
        # The sender thread's alone:
        self._process = self._logs = self._reports = None
        self._started_at = -math.inf
        self._in_flight = {}  # model name -> logs sent to the writer and not yet reported
        self._active = (None, frozenset())  # (config, prefixes its models log to)
        self._thread = threading.Thread(target=self._send_forever, name="request-logger",
                                        daemon=True)

    def start(self):
        self._thread.start()

    def stop(self, timeout: float = 10):
        """Sends what is queued; the writer writes it, flushes and closes every file."""
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
            builder, *parts) -> None:
        """Logs one successful call with probability sampling_rate.

        timestamp is time.time() when the call arrived; kind is the PredictionLog field
        (PREDICT, ...); version the one that served it; signature_name the request's ("" is
        serving_default; None for multi-inference, whose tasks each name one).
        builder: a Builder; builder.prepare(*parts) runs on the sender thread.
        """
        try:
            settings = self._settings_for(model_name)
            if settings is None or not random.random() < settings.sampling_rate:
                return
            if len(self._queue) >= self._queue_size:  # may overshoot by a few threads' worth
                metrics.count_request_logs(model_name, "RESOURCE_EXHAUSTED")
                return
            self._queue.append((settings, kind, model_name, version, signature_name,
                                timestamp, builder, parts))
        except Exception:  # logging must never fail the call it logs
            log.exception("Request logging failed for model %s", model_name)

    # --- the sender thread ---------------------------------------------------------------
    def _send_forever(self):
        while True:
            stopping = self._stopping.wait(DRAIN_SECONDS)
            try:
                self._read_reports()
                if self._queue or self._process is not None:  # no process until a log
                    self._check_writer()
                self._send_queued()
                if stopping:
                    self._stop_writer()
                    return
            except Exception:  # a bug here must not end logging for the server's lifetime
                log.exception("Request logger failed; it goes on with the next logs")
                if stopping:
                    return

    def _send_queued(self):
        queued, entries = self._queue, []
        while queued:
            settings, kind, model_name, version, signature_name, timestamp, builder, parts \
                = queued.popleft()
            try:
                arguments = builder.prepare(*parts)
            except Exception as e:
                log.error("Could not prepare the %s of model %s: %r", kind, model_name, e)
                metrics.count_request_logs(model_name, "INTERNAL")
                continue
            entries.append((settings.filename_prefix, settings.sampling_config_bytes, kind,
                            model_name, version, signature_name, timestamp, builder.name,
                            arguments))
        if not entries or self._logs is None:
            for entry in entries:  # no writer (it failed to start): the logs are lost
                metrics.count_request_logs(entry[3], "INTERNAL")
            return
        for entry in entries:
            self._in_flight[entry[3]] = self._in_flight.get(entry[3], 0) + 1
        # One pickle and one pipe write per batch; the write waits (without the interpreter
        # lock) while the writer is behind, and meanwhile the queue fills and drops.
        message = pickle.dumps(("logs", self._active_prefixes(), entries),
                               pickle.HIGHEST_PROTOCOL)
        try:
            self._logs.send_bytes(message)
        except OSError:  # the writer died; _check_writer counts the loss and restarts it
            pass

    def _active_prefixes(self):
        config = self._config_source()
        if self._active[0] is not config:
            self._active = (config, frozenset(
                settings.filename_prefix for settings in settings_by_model(config).values()))
        return self._active[1]

    def _read_reports(self):
        reports = self._reports
        try:
            while reports is not None and reports.poll():
                _, counts = reports.recv()
                for model_name, status, count, num_bytes in counts:
                    metrics.count_request_logs(model_name, status, count, num_bytes)
                    self._in_flight[model_name] = self._in_flight.get(model_name, 0) - count
        except (EOFError, OSError):  # the writer is gone; _check_writer deals with it
            pass

    def _check_writer(self):
        """Starts the writer, or again after it died (at most once per RESTART_SECONDS)."""
        if self._process is not None and self._process.is_alive():
            return
        if self._process is not None:
            self._read_reports()  # what it reported before it died
            log.error("The request log writer process exited (code %s); logs it had not "
                      "written are counted as lost, and it is started again",
                      self._process.exitcode)
            self._writer_lost()
        if time.monotonic() - self._started_at >= RESTART_SECONDS:
            self._start_writer()

    def _start_writer(self):
        from serving import request_log_writer

        self._started_at = time.monotonic()
        context = multiprocessing.get_context("spawn")
        logs_out, logs_in = context.Pipe(duplex=False)
        reports_out, reports_in = context.Pipe(duplex=False)
        process = context.Process(
            target=request_log_writer.run, name="request-log-writer", daemon=True,
            args=(logs_out, reports_in, os.getpid(), self._max_file_bytes,
                  self._max_file_age_seconds))
        try:
            process.start()
        except Exception:
            log.exception("Could not start the request log writer process")
            for end in (logs_out, logs_in, reports_out, reports_in):
                end.close()
            return
        logs_out.close()  # the writer's ends: closed here, so that its death reads as EOF
        reports_in.close()
        self._process, self._logs, self._reports = process, logs_in, reports_out

    def _writer_lost(self):
        for model_name, count in self._in_flight.items():
            if count > 0:
                metrics.count_request_logs(model_name, "INTERNAL", count)
        self._in_flight = {}
        for end in (self._logs, self._reports):
            end.close()
        self._process = self._logs = self._reports = None

    def _stop_writer(self, timeout: float = 10):
        """"stop" after the last logs; the writer flushes, reports and exits."""
        if self._process is None:
            return
        try:
            self._logs.send_bytes(pickle.dumps(("stop",)))
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while self._process.is_alive() and time.monotonic() < deadline:
            self._reports.poll(0.05)
            self._read_reports()
        self._read_reports()
        if self._process.is_alive():
            log.error("The request log writer did not finish within %s s", timeout)
            self._process.kill()
        self._process.join(1)
        self._writer_lost()  # counts anything it did not report


def prediction_log(prefix, sampling_config, kind, model_name, version, signature_name,
                   timestamp, request, response) -> bytes:
    """A serialized PredictionLog, put together from its serialized parts.

    Protobuf fields are concatenated bytes, so the request and response (serialized once,
    or for gRPC the bytes the request arrived as) are wrapped, not copied into a new
    message and serialized again. LogMetadata is serialized once per model version and
    signature; only its timestamp is added per log.
    """
    from serving.proto_codec import varint

    start = _log_starts.get((prefix, sampling_config, kind, model_name, version,
                             signature_name))
    if start is None:
        start = _log_start(prefix, sampling_config, kind, model_name, version,
                           signature_name)
    metadata_tag, metadata, kind_tag, request_tag, response_tag = start
    metadata += varint(int(timestamp))
    request_length, response_length = varint(len(request)), varint(len(response))
    return b"".join((
        metadata_tag, varint(len(metadata)), metadata,
        kind_tag, varint(len(request_tag) + len(request_length) + len(request)
                         + len(response_tag) + len(response_length) + len(response)),
        request_tag, request_length, request, response_tag, response_length, response))


_MAX_METADATA = 1024  # (settings, model, version, signature) kept; cleared when full
_log_starts = {}


def _log_start(prefix, sampling_config, kind, model_name, version, signature_name) -> tuple:
    """What a model version's logs of one kind and signature share: the tags of
    PredictionLog's log_metadata, of the kind's field and of its request and response, and
    the LogMetadata but its timestamp (ending with that field's tag)."""
    from tensorflow_serving.apis import logging_pb2

    from serving.proto_codec import varint
    from serving.servable import DEFAULT_SIGNATURE

    fields = _log_fields()
    metadata = logging_pb2.LogMetadata()
    metadata.model_spec.name = model_name
    metadata.model_spec.version.value = version
    if signature_name is not None:
        metadata.model_spec.signature_name = signature_name or DEFAULT_SIGNATURE
    metadata.sampling_config.ParseFromString(sampling_config)
    metadata.saved_model_tags.append(SERVE_TAG)
    start = (varint(fields["log_metadata"] << 3 | 2),
             metadata.SerializeToString() + fields["timestamp_secs_tag"],
             varint(fields[kind] << 3 | 2), varint(fields[kind, "request"] << 3 | 2),
             varint(fields[kind, "response"] << 3 | 2))
    if len(_log_starts) >= _MAX_METADATA:
        _log_starts.clear()
    _log_starts[prefix, sampling_config, kind, model_name, version, signature_name] = start
    return start


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


# --- builders: what an API layer holds -> plain data (server) -> serialized protos (writer) ---

class Builder(typing.NamedTuple):
    """prepare(*what the API layer handed over) runs on the server's sender thread and
    returns plain, cheaply pickled data (bytes, numbers, strings); BUILDERS[name](*that)
    runs in the writer process and returns (serialized request, serialized response)."""
    name: str
    prepare: typing.Callable


def _portable(array):
    """A numpy array as a tuple of bytes, dtype and shape: pickling the array itself costs
    the server's interpreter about 5 us, this under 1 us."""
    if array.dtype == object:
        return ("objects", array.shape, array.ravel().tolist())
    return (array.dtype.str, array.shape, array.tobytes())


def _array(portable):
    import numpy as np

    kind, shape, data = portable
    if kind == "objects":
        array = np.empty(len(data), object)
        array[:] = data
        return array.reshape(shape)
    return np.frombuffer(data, np.dtype(kind)).reshape(shape)


def _grpc_prepare(request, response):
    """gRPC: the request as it arrived (its bytes, or its message) and the response sent."""
    if not isinstance(request, bytes):
        request = request.SerializeToString()
    return request, response.SerializeToString()


def _grpc_build(request, response):
    return request, response


_signature_inputs = weakref.WeakKeyDictionary()  # servable -> {signature: serialized inputs}


def _serialized_signature_inputs(servable, signature_name) -> bytes:
    """The signature's input TensorInfos, which the writer needs to decode a REST body,
    serialized once per servable and signature (one bytes object: a batch pickles it once)."""
    by_signature = _signature_inputs.get(servable)  # not setdefault: a new {} per call
    if by_signature is None:
        by_signature = _signature_inputs[servable] = {}
    serialized = by_signature.get(signature_name)
    if serialized is None:
        from tensorflow.core.protobuf import meta_graph_pb2

        signature = meta_graph_pb2.SignatureDef()
        for key, info in servable.signature_inputs(signature_name).items():
            signature.inputs[key].CopyFrom(info)
        serialized = by_signature[signature_name] = signature.SerializeToString()
    return serialized


def _rest_predict_prepare(name, version, label, signature_name, servable, body, outputs,
                          response_json):
    """REST predict: the body as it came (the writer decodes it again, as the server did)
    and the response JSON the handler sent, from which the writer reads the outputs back;
    the outputs as bytes where that JSON does not hold them exactly."""
    return (name, version, label, signature_name, servable.version,
            _serialized_signature_inputs(servable, signature_name), bytes(body),
            _outputs_by_json(outputs, response_json)
            or {alias: _portable(value) for alias, value in outputs.items()})


def _json_exact_kinds() -> dict:
    """numpy dtype -> what the writer rebuilds its arrays as (_portable's first item), for
    the dtypes whose values a REST predict response prints exactly: integers and bools as
    they are, float32 and float64 in as many digits as read back to the same bits
    (json_codec.format_decimal), strings as the bytes' UTF-8 (surrogateescape) or base64.
    Not float16, complex and the rest, which are sent as bytes."""
    import numpy as np

    kinds = {np.dtype(code): np.dtype(code).str for code in "?bBhHiIlLqQfd"}
    kinds[np.dtype(object)] = "objects"
    return kinds


_JSON_EXACT_KINDS = _json_exact_kinds()
# How a REST predict response prints non-finite floats; "NaN" cannot say which NaN it was.
_JSON_INEXACT_TEXTS = ("NaN", "Infinity")


def _outputs_by_json(outputs, response_json):
    """("json", the response JSON, ((alias, kind, shape), ...)) if the writer can read
    every output back from the JSON bit for bit, else None. Costs the server's interpreter
    about half of turning the arrays into bytes (the values are not touched here)."""
    for text in _JSON_INEXACT_TEXTS:
        if text in response_json:  # a float's (or a string's, or a name's): to be safe
            return None
    kinds, specs = _JSON_EXACT_KINDS, []
    for alias, value in outputs.items():
        kind = kinds.get(value.dtype)
        if kind is None:
            return None
        specs.append((alias, kind, value.shape))
    return ("json", response_json, tuple(specs))


_parsed_signature_inputs = {}  # the writer's: serialized inputs -> (TensorInfo map, InputPlan)


def _rest_predict_build(name, version, label, signature_name, served_version, signature_inputs,
                        body, outputs):
    """The PredictRequest a gRPC client would have sent for the body, and the
    PredictResponse of the outputs, both serialized."""
    from serving import json_codec, json_tensor_bytes, proto_codec

    parsed = _parsed_signature_inputs.get(signature_inputs)
    if parsed is None:  # parsed once per signature, not per log
        from tensorflow.core.protobuf import meta_graph_pb2

        if len(_parsed_signature_inputs) >= _MAX_METADATA:
            _parsed_signature_inputs.clear()
        infos = meta_graph_pb2.SignatureDef.FromString(signature_inputs).inputs
        parsed = _parsed_signature_inputs[signature_inputs] = (
            infos, json_tensor_bytes.InputPlan(infos, _predict_fields()["request inputs"]))
    infos, plan = parsed
    fields = _predict_fields()
    # Plain bodies (taxi's) go from the JSON to the wire format directly; the codec, which
    # costs several times as much, decodes the rest as the server did.
    doc = json_tensor_bytes.parse_body(body)
    inputs = None if doc is None else json_tensor_bytes.serialized_inputs(doc, plan)
    if inputs is None:
        arrays, _ = json_codec.decode_predict_request(json_codec.parse_json(body), infos)
        inputs = proto_codec.serialized_tensor_map(fields["request inputs"], arrays)
    request_spec, response_spec = _model_spec_fields(name, version, label, signature_name,
                                                     served_version)
    if type(outputs) is tuple:  # _outputs_by_json's
        outputs = portable_outputs_from_json(*outputs[1:])
    return (request_spec + inputs,
            _serialized_outputs(fields["response outputs"], outputs) + response_spec)


# The struct formats of the kinds _outputs_by_json sends as JSON, but strings: packed
# little-endian, as numpy's bytes of those dtypes are (struct's "f" rounds a double to float
# as numpy's astype does; the values read back are the float32s themselves anyway).
_STRUCT_FORMATS = {"|b1": "?", "|i1": "b", "|u1": "B", "<i2": "h", "<u2": "H", "<i4": "i",
                   "<u4": "I", "<i8": "q", "<u8": "Q", "<f4": "f", "<f8": "d"}


def portable_outputs_from_json(response_json, specs) -> dict:
    """{alias: _portable(array)} of the arrays a REST predict response was encoded from,
    read back from its JSON (row or columnar) given each output's kind and shape."""
    import base64
    import json

    import orjson

    from serving import json_codec, json_tensor_bytes

    try:
        doc = orjson.loads(response_json)
    except orjson.JSONDecodeError:  # model strings with bytes that are not UTF-8
        doc = json.loads(response_json)
    multiple = len(specs) > 1
    predictions = doc.get(json_codec.PREDICTIONS_KEY)
    portable = {}
    for alias, kind, shape in specs:
        values = []
        if predictions is not None:  # row format: one item per row, by name if several
            if len(predictions) != shape[0]:
                raise ValueError(f"output {alias}: {len(predictions)} rows, not {shape[0]}")
            for row in predictions:
                _flatten_json(row[alias] if multiple else row, shape, 1, values, alias)
        else:
            columns = doc[json_codec.OUTPUTS_KEY]
            _flatten_json(columns[alias] if multiple else columns, shape, 0, values, alias)
        if kind == "objects":
            items = []
            for value in values:
                if type(value) is dict:  # {"b64": ...}: an output named *_bytes
                    items.append(base64.b64decode(value[json_codec.BASE64_KEY]))
                elif type(value) is str:
                    items.append(value.encode("utf-8", errors="surrogateescape"))
                else:  # TensorFlow's string tensors hold bytes; anything else is not logged
                    raise ValueError(f"output {alias}: {type(value).__name__} in a string "
                                     "tensor")
            portable[alias] = ("objects", shape, items)
        else:
            portable[alias] = (kind, shape, json_tensor_bytes.packer(
                _STRUCT_FORMATS[kind], len(values))(*values))
    return portable


def _flatten_json(value, shape, depth, out, alias):
    """Appends the scalars of a nested JSON list of the given shape (from `depth` on)."""
    if depth == len(shape):
        out.append(value)
        return
    if type(value) is not list or len(value) != shape[depth]:
        raise ValueError(f"output {alias}: the JSON does not have shape {list(shape)}")
    if depth + 1 == len(shape):
        for item in value:
            if type(item) is list:
                raise ValueError(f"output {alias}: the JSON does not have shape "
                                 f"{list(shape)}")
        out += value
        return
    for item in value:
        _flatten_json(item, shape, depth + 1, out, alias)


def _serialized_outputs(field_number, outputs) -> bytes:
    """PredictResponse.outputs from the sender's portable arrays: float outputs from their
    bytes, which are the packed values already, strings from their items; others (rarer
    dtypes) through numpy."""
    from tensorflow.core.framework import types_pb2

    from serving import proto_codec

    parts = []
    for alias, (kind, shape, data) in outputs.items():
        if kind == "objects":
            parts.append(proto_codec.tensor_map_entry(
                field_number, alias, types_pb2.DT_STRING, shape, None,
                proto_codec.string_values(data)))
            continue
        encoding = proto_codec.packed_encoding(kind)
        if encoding is None:
            parts.append(proto_codec.serialized_tensor_map(
                field_number, {alias: _array((kind, shape, data))}))
        else:
            dtype, values_tag = encoding
            parts.append(proto_codec.tensor_map_entry(field_number, alias, dtype, shape,
                                                      values_tag, data))
    return b"".join(parts)


_PREDICT_FIELDS = {}


def _predict_fields() -> dict:
    """Field numbers of PredictRequest's model_spec and inputs and PredictResponse's
    outputs and model_spec, read once from the descriptors."""
    if not _PREDICT_FIELDS:
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name
        response = predict_pb2.PredictResponse.DESCRIPTOR.fields_by_name
        _PREDICT_FIELDS.update({
            "request model_spec": request["model_spec"].number,
            "request inputs": request["inputs"].number,
            "response outputs": response["outputs"].number,
            "response model_spec": response["model_spec"].number})
    return _PREDICT_FIELDS


_model_specs = {}  # (name, version, label, signature, served version) -> _model_spec_fields


def _model_spec_fields(name, version, label, signature_name, served_version) -> tuple:
    """The model_spec fields of a REST predict's PredictRequest and PredictResponse,
    serialized once per model, version and signature rather than once per log."""
    key = (name, version, label, signature_name, served_version)
    fields = _model_specs.get(key)
    if fields is None:
        from tensorflow_serving.apis import model_pb2

        from serving import proto_codec

        numbers = _predict_fields()
        request_spec, response_spec = model_pb2.ModelSpec(), model_pb2.ModelSpec()
        _request_model_spec(request_spec, name, version, label, signature_name)
        proto_codec.set_model_spec(response_spec, name, served_version, signature_name)
        fields = (
            proto_codec.length_delimited(numbers["request model_spec"],
                                         request_spec.SerializeToString()),
            proto_codec.length_delimited(numbers["response model_spec"],
                                         response_spec.SerializeToString()))
        if len(_model_specs) >= _MAX_METADATA:
            _model_specs.clear()
        _model_specs[key] = fields
    return fields


def _rest_examples_prepare(name, version, label, signature_name, served_version, body,
                           *arrays):
    """REST classify/regress: the body (the writer reads its examples again) and the
    results as bytes."""
    return (name, version, label, signature_name, served_version, bytes(body),
            *(None if array is None else _portable(array) for array in arrays))


def _examples_build(from_examples):
    def build(name, version, label, signature_name, served_version, body, *arrays):
        from serving import json_codec

        context, examples = json_codec.decode_examples_request(json_codec.parse_json(body))
        return from_examples(name, version, label, signature_name, served_version, context,
                             examples, *(None if value is None else _array(value)
                                         for value in arrays))
    return build


def _request_model_spec(model_spec, name, version, label, signature_name):
    """The ModelSpec a REST URL and body amount to, as TF Serving's REST handler builds it."""
    model_spec.name = name
    if version is not None:
        model_spec.version.value = version
    elif label is not None:
        model_spec.version_label = label
    model_spec.signature_name = signature_name


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


serialized_protos = Builder("grpc", _grpc_prepare)  # gRPC: (request, response)
# REST: (name, version, label, signature_name, servable, body, outputs, response JSON) for
# predict; (name, version, label, signature_name, served version, body, classes, scores)
# for classify; (..., body, values) for regress.
rest_predict = Builder("rest_predict", _rest_predict_prepare)
rest_classify = Builder("rest_classify", _rest_examples_prepare)
rest_regress = Builder("rest_regress", _rest_examples_prepare)
BUILDERS = {  # the writer process's side, by Builder.name
    "grpc": _grpc_build,
    "rest_predict": _rest_predict_build,
    "rest_classify": _examples_build(classify_from_examples),
    "rest_regress": _examples_build(regress_from_examples),
}
