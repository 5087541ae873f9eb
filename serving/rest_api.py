"""TF Serving's HTTP/REST API, transport-free: routes, status codes, JSON bodies.

Paths are matched with TF Serving's own (case-insensitive) patterns; every failure becomes
{"error": "..."} with the HTTP status TF Serving maps its status code to.
"""
import json
import logging
import re
import time
import urllib.parse

from serving import errors, json_codec, metrics

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
DEADLINE_MESSAGE = "Timed out waiting for notification"


class RestApi:
    """Turns (method, path, body) into (HTTP status, JSON text); knows nothing of sockets."""

    def __init__(self, manager, timeout_in_ms: int = 30000):
        self.manager = manager
        self.timeout_seconds = timeout_in_ms / 1000.0 if timeout_in_ms > 0 else None

    def handle(self, method: str, path: str, body: bytes):
        started = time.monotonic()
        model_name, api = "", None
        try:
            model_name, api, call = self._route(method, path, body, started)
            output = call()
            status_name, http_status = "OK", 200
        except errors.ServingError as e:
            output = json_codec.encode_error(e.message)
            status_name, http_status = e.code_name, e.http_status
        except RecursionError:  # only a request nested past every other bound gets here
            error = errors.invalid_argument("JSON Value is nested too deeply")
            output = json_codec.encode_error(error.message)
            status_name, http_status = error.code_name, error.http_status
        except Exception as e:  # a bug must not take the server down; report it as TF would
            log.exception("Unexpected error serving %s %s", method, path)
            output = json_codec.encode_error(f"Internal error: {type(e).__name__}: {e}")
            status_name, http_status = "INTERNAL", 500
        if api is not None and model_name:
            metrics.observe_request(metrics.model_label(model_name, self.manager.model_names()),
                                    api, status_name, time.monotonic() - started,
                                    entrypoint="REST")
        return http_status, output

    def _route(self, method, path, body, started):
        """-> (model name, api, call producing the JSON text); raises for bad paths."""
        malformed = errors.invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = PREDICTION_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, api = match.groups()
            name, version, label = _decode_model_info(name, version, label)
            api = api.lower()
            deadline = started + self.timeout_seconds if self.timeout_seconds else None
            handler = {"predict": self._predict, "classify": self._classify,
                       "regress": self._regress}[api]
            return name, api, lambda: handler(name, version, label, body, deadline)
        if method == "GET":
            match = MODEL_STATUS_PATH.fullmatch(path)
            if not match:
                raise malformed
            name, version, label, subresource = match.groups()
            name, version, label = _decode_model_info(name, version, label)
            if not name:
                raise errors.invalid_argument("Missing model name in request.")
            if subresource:
                return name, "metadata", lambda: self._metadata(name, version, label)
            return name, "status", lambda: self._status(name, version, label)
        raise malformed

    # --- APIs -----------------------------------------------------------------------------
    def _predict(self, name, version, label, body, deadline):
        doc = json_codec.parse_json(body)
        signature_name = json_codec.signature_name_of(doc)
        servable = self.manager.servable(name, version, label)
        tensor_infos = servable.signature_inputs(signature_name)
        try:
            inputs, request_format = json_codec.decode_predict_request(doc, tensor_infos)
        except errors.ServingError as error:
            raise servable.with_signature_hint(error, signature_name,
                                               _named_inputs(doc)) from None
        outputs = servable.predict(signature_name, inputs, deadline=deadline)
        return json_codec.encode_predict_response(outputs, request_format)

    def _examples_request(self, name, version, label, body):
        """Classify and regress read the same body: (servable, signature, examples)."""
        doc = json_codec.parse_json(body)
        signature_name = json_codec.signature_name_of(doc)
        examples = json_codec.decode_examples_request(doc)
        return self.manager.servable(name, version, label), signature_name, examples

    def _classify(self, name, version, label, body, deadline):
        servable, signature_name, examples = self._examples_request(name, version, label, body)
        classes, scores = servable.classify(signature_name, examples, deadline=deadline)
        return json_codec.encode_classify_response(classes, scores)

    def _regress(self, name, version, label, body, deadline):
        servable, signature_name, examples = self._examples_request(name, version, label, body)
        values = servable.regress(signature_name, examples, deadline=deadline)
        return json_codec.encode_regress_response(values)

    def _status(self, name, version, label):
        states = self.manager.version_states(name, version, label)
        body = {"model_version_status": [
            {"version": str(state.version), "state": state.state,
             "status": {"error_code": _status_code_name(state.error_code),
                        "error_message": state.error_message}}
            for state in states]}
        # TF Serving prints protobuf JSON with add_whitespace: one-space indents.
        return json.dumps(body, indent=1, ensure_ascii=False) + "\n"

    def _metadata(self, name, version, label):
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        servable = self.manager.servable(name, version, label)
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
                '"metadata": {"signature_def": ' + signature_json + "}\n}\n")


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
