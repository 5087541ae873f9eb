"""TF Serving's HTTP/REST API, transport-free: routes, status codes, JSON bodies.

Paths are matched with TF Serving's own (case-insensitive) patterns; every failure becomes
{"error": "..."} with the HTTP status TF Serving maps its status code to.
"""
import asyncio
import json
import logging
import re
import time
import urllib.parse

from serving import errors, json_codec, metrics, request_logging

log = logging.getLogger("serving.rest")

# TF Serving's kPredictionApiGegex / kModelStatusApiRegex (http_rest_api_util.cc).
PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:"
    r"(classify|regress|predict)", re.IGNORECASE)
MODEL_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
CORS_HEADERS = [("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "POST, GET"),
                ("Access-Control-Allow-Headers", "Content-Type")]
# Predict bodies up to this size are decoded on the event loop (a one-row request is
# ~1 KiB); larger ones on a pool thread, so one big body cannot stall other connections.
LOOP_DECODE_MAX_BYTES = 16 * 1024
_DEADLINED_APIS = ("predict", "classify", "regress")


class RestApi:
    """Turns (method, path, body) into (HTTP status, JSON text); knows nothing of sockets.

    Each API handler returns (JSON text, RequestLogger.log's arguments but the time, or None).
    """

    def __init__(self, manager, timeout_in_ms: int = 30000, request_logger=None):
        self.manager = manager
        self.timeout_seconds = timeout_in_ms / 1000.0 if timeout_in_ms > 0 else None
        self.request_logger = request_logger

    async def handle_async(self, method: str, path: str, body: bytes, executor):
        """-> (HTTP status, JSON text), on an asyncio event loop, without blocking it.

        The work runs on `executor`, except a small predict with batching on, which is
        decoded here and waits for its batch without a thread (one thread hop fewer per
        request; the GIL serializes the decoding anyway). The event loop keeps the REST
        deadline (--rest_api_timeout_in_ms) itself, so the thread that runs the signature
        need not hand it to another to be able to give up: a request past its deadline is
        answered "Timed out" while its run finishes in the background, as before.
        """
        started = time.monotonic()
        received = time.time()  # the request time its log records
        model_name, api = "", None
        resolved = ResolvedVersion()
        loop = asyncio.get_running_loop()
        try:
            model_name, api, handler, args = self._route(method, path, body)
            deadline = started + self.timeout_seconds \
                if self.timeout_seconds and api in _DEADLINED_APIS else None
            batched = self._batched_servable(*args[:3]) \
                if api == "predict" and len(body) <= LOOP_DECODE_MAX_BYTES else None
            if batched is not None:
                resolved.version = batched.version
                output, call_log = await self._predict_on_loop(loop, executor, deadline,
                                                               batched, *args)
            else:
                output, call_log = await _within(
                    loop.run_in_executor(executor, handler, resolved, *args), deadline)
            status_name, http_status = "OK", 200
            # Only a call answered 200 in time is logged (not one that ran past its deadline).
            if call_log is not None and self.request_logger is not None:
                self.request_logger.log(received, *call_log)
        except Exception as e:
            status_name, http_status, output = self._error(e, method, path)
        self._observe(model_name, api, status_name, started, resolved.version)
        return http_status, output

    def _batched_servable(self, name, version, label):
        """The servable a predict goes to, if it batches; else None."""
        try:
            servable = self.manager.servable(name, version, label)
        except errors.ServingError:
            return None  # the pool path reports it, after the body's own errors
        return servable if servable.batching else None

    async def _predict_on_loop(self, loop, executor, deadline, servable, name, version, label,
                               body):
        doc = json_codec.parse_json(body)
        signature_name = json_codec.signature_name_of(doc)
        inputs, request_format = self._decode_predict(doc, servable, signature_name)
        done = loop.create_future()

        def wake():  # on the batch thread
            try:
                loop.call_soon_threadsafe(_resolve, done)
            except RuntimeError:  # the server stopped meanwhile: no one is waiting
                pass

        task, aliases = servable.submit_predict(signature_name, inputs, wake)
        if task is None:  # unloaded meanwhile: run alone, as Servable.predict does
            outputs = await _within(loop.run_in_executor(
                executor, servable.predict, signature_name, inputs), deadline)
        else:
            await _within(done, deadline)
            outputs = servable.predict_outputs(task, aliases)
        response_json = json_codec.encode_predict_response(outputs, request_format)
        return response_json, _predict_log(name, version, label, signature_name, servable,
                                           body, outputs, response_json)

    def _error(self, e, method, path):
        """-> (status code name, HTTP status, JSON text) for an exception, as TF Serving."""
        if isinstance(e, errors.ServingError):
            return e.code_name, e.http_status, json_codec.encode_error(e.message)
        if isinstance(e, RecursionError):  # only a request nested past every other bound
            error = errors.invalid_argument("JSON Value is nested too deeply")
            return error.code_name, error.http_status, json_codec.encode_error(error.message)
        # A bug must not take the server down; report it as TF would.
        log.error("Unexpected error serving %s %s", method, path, exc_info=e)
        return "INTERNAL", 500, json_codec.encode_error(
            f"Internal error: {type(e).__name__}: {e}")

    def _observe(self, model_name, api, status_name, started, version):
        if api is not None and model_name:
            metrics.observe_request(metrics.model_label(model_name, self.manager.model_names()),
                                    api, status_name, time.monotonic() - started,
                                    entrypoint="REST", version=version)

    def _servable(self, resolved, name, version, label):
        """manager.servable(), noting the version it resolved to for the per-version metrics."""
        servable = self.manager.servable(name, version, label)
        resolved.version = servable.version
        return servable

    def _route(self, method, path, body):
        """-> (model name, api, handler, its arguments); raises for bad paths."""
        malformed = errors.invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = PREDICTION_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, api = match.groups()
            name, version, label = _decode_model_info(name, version, label)
            api = api.lower()
            handler = {"predict": self._predict, "classify": self._classify,
                       "regress": self._regress}[api]
            return name, api, handler, (name, version, label, body)
        if method == "GET":
            match = MODEL_STATUS_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, subresource = match.groups()
            name, version, label = _decode_model_info(name, version, label)
            if not name:
                raise errors.invalid_argument("Missing model name in request.")
            if subresource:
                return name, "metadata", self._metadata, (name, version, label)
            return name, "status", self._status, (name, version, label)
        raise malformed

    # --- APIs -----------------------------------------------------------------------------
    def _predict(self, resolved, name, version, label, body):
        doc = json_codec.parse_json(body)
        signature_name = json_codec.signature_name_of(doc)
        servable = self._servable(resolved, name, version, label)
        inputs, request_format = self._decode_predict(doc, servable, signature_name)
        outputs = servable.predict(signature_name, inputs)
        response_json = json_codec.encode_predict_response(outputs, request_format)
        return response_json, _predict_log(name, version, label, signature_name, servable,
                                           body, outputs, response_json)

    @staticmethod
    def _decode_predict(doc, servable, signature_name):
        tensor_infos = servable.signature_inputs(signature_name)
        try:
            return json_codec.decode_predict_request(doc, tensor_infos)
        except errors.ServingError as error:
            raise servable.with_signature_hint(error, signature_name,
                                               _named_inputs(doc)) from None

    def _examples_request(self, resolved, name, version, label, body):
        """Classify and regress read the same body: (servable, signature, context, examples)."""
        doc = json_codec.parse_json(body)
        signature_name = json_codec.signature_name_of(doc)
        context, examples = json_codec.decode_examples_request(doc)
        return (self._servable(resolved, name, version, label), signature_name, context,
                examples)

    def _classify(self, resolved, name, version, label, body):
        servable, signature_name, context, examples = self._examples_request(
            resolved, name, version, label, body)
        classes, scores = servable.classify(
            signature_name, json_codec.serialized_examples(context, examples))
        return json_codec.encode_classify_response(classes, scores), (
            request_logging.CLASSIFY, name, servable.version, signature_name,
            request_logging.rest_classify, name, version, label, signature_name,
            servable.version, body, classes, scores)

    def _regress(self, resolved, name, version, label, body):
        servable, signature_name, context, examples = self._examples_request(
            resolved, name, version, label, body)
        values = servable.regress(signature_name,
                                  json_codec.serialized_examples(context, examples))
        return json_codec.encode_regress_response(values), (
            request_logging.REGRESS, name, servable.version, signature_name,
            request_logging.rest_regress, name, version, label, signature_name,
            servable.version, body, values)

    def _status(self, _resolved, name, version, label):
        states = self.manager.version_states(name, version, label)
        body = {"model_version_status": [
            {"version": str(state.version), "state": state.state,
             "status": {"error_code": _status_code_name(state.error_code),
                        "error_message": state.error_message}}
            for state in states]}
        # TF Serving prints protobuf JSON with add_whitespace: one-space indents.
        return json.dumps(body, indent=1, ensure_ascii=False) + "\n", None

    def _metadata(self, resolved, name, version, label):
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        servable = self._servable(resolved, name, version, label)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs().items():
            signature_map.signature_def[key].CopyFrom(signature)
        model_spec = {"name": servable.name, "signature_name": "",
                      "version": str(servable.version)}
        signature_json = json.dumps(
            json_format.MessageToDict(signature_map, including_default_value_fields=True,
                                      preserving_proto_field_name=True),
            indent=1, ensure_ascii=False)
        # Same layout as TF Serving, which glues two protobuf JSON strings together.
        return ('{\n"model_spec":' + json.dumps(model_spec, indent=1) + ",\n"
                '"metadata": {"signature_def": ' + signature_json + "}\n}\n"), None


class ResolvedVersion:
    """The version a request resolved to (None until it does), set on the pool thread and
    read when the request is counted: a failed request still counts under its version."""
    __slots__ = ("version",)

    def __init__(self):
        self.version = None


def _predict_log(name, version, label, signature_name, servable, body, outputs,
                 response_json):
    """RequestLogger.log's arguments (but the time) for a REST predict: the body as it came,
    which the writer process decodes again, rather than the arrays, which cost more to hand
    over than to decode; likewise the response JSON, with the outputs for what it does not
    hold exactly."""
    return (request_logging.PREDICT, name, servable.version, signature_name,
            request_logging.rest_predict, name, version, label, signature_name, servable,
            body, outputs, response_json)


async def _within(future, deadline):
    """Awaits an asyncio future until `deadline` (time.monotonic(); None: no limit), then
    gives up with TF's session timeout; cancelling a pool job not yet started drops it."""
    if deadline is None:
        return await future
    expired = []

    def expire():
        expired.append(True)
        future.cancel()

    timer = asyncio.get_running_loop().call_later(deadline - time.monotonic(), expire)
    try:
        return await future
    except asyncio.CancelledError:
        if not expired:  # the caller itself was cancelled, not by the deadline
            raise
        raise errors.deadline_exceeded() from None
    finally:
        timer.cancel()


def _resolve(future):
    if not future.done():  # a request past its deadline is no longer waited for
        future.set_result(None)


def _named_inputs(doc) -> list:
    """The input names a predict body uses, row or columnar, for the signature hint."""
    rows = doc.get("instances") if isinstance(doc, dict) else None
    columns = doc.get("inputs") if isinstance(doc, dict) else None
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        return list(rows[0])
    return list(columns) if isinstance(columns, dict) else []


def _decode_model_info(name, version, label):
    name = urllib.parse.unquote(name) if name else ""
    label = urllib.parse.unquote(label) if label else None
    if version is not None:
        try:
            version = int(version)
            if version >= 2 ** 63:
                raise ValueError(version)
        except ValueError:
            raise errors.invalid_argument(
                f"Failed to convert version: {version} to numeric.") from None
    return name, version, label


def _status_code_name(code: int) -> str:
    import grpc

    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return "UNKNOWN"
