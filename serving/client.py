"""Small clients for a TF Serving compatible model server, over REST and gRPC.

Shared by the tests, the pipeline's post-push checks and users; they work the
same against our `python -m serving` and against `tensorflow_model_server`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import time
import urllib.parse
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import requests
import urllib3

# TensorFlow is only imported by the gRPC client; when it is, it must use the
# Keras 2 API like the rest of the project.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

DEFAULT_HOST = "localhost"
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501


class ServingRequestError(Exception):
    """A request the server refused, carrying the server's own error text.

    `code` is the gRPC status code name (e.g. "NOT_FOUND") for gRPC calls and
    `http_status` the HTTP status for REST calls; `message` is the server's text.
    """

    def __init__(self, message: str, code: str | None = None,
                 http_status: int | None = None, transport: str = "rest"):
        self.message = message
        self.code = code
        self.http_status = http_status
        self.transport = transport
        where = code if code is not None else f"HTTP {http_status}"
        super().__init__(f"{transport} request failed ({where}): {message}")


def _model_path(model: str, version: int | None, label: str | None) -> str:
    if version is not None and label is not None:
        raise ValueError("give either a version or a label, not both")
    path = f"/v1/models/{model}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{label}"
    return path


def _json_feature_value(value: Any) -> Any:
    """Encodes bytes the way TF Serving's JSON API expects binary data."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_json_feature_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_feature_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _json_feature_value(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _excerpt(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."


def _available(version_status: list[dict]) -> bool:
    return any(v.get("state") == "AVAILABLE" for v in version_status)


def _wait(status_call, model: str, timeout: float, interval: float) -> list[dict]:
    """Polls `status_call` until some version of `model` is AVAILABLE."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            statuses = status_call(model)
            if _available(statuses):
                return statuses
            last_error = None
        except ServingRequestError as error:
            # NOT_FOUND: the server is up but has not seen the model yet; UNAVAILABLE
            # or a REST connection error: it is not listening yet. Anything else is real.
            if not (error.code in ("NOT_FOUND", "UNAVAILABLE")
                    or error.http_status in (404, 503)):
                raise
            last_error = error
        except (requests.ConnectionError, OSError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            detail = f": last error {last_error}" if last_error else ""
            raise TimeoutError(
                f"model '{model}' had no AVAILABLE version after {timeout:.0f}s"
                f"{detail}; check the server's log and --model_base_path")
        time.sleep(interval)


class RestClient:
    """TF Serving's REST API (`/v1/models/...`) over one keep-alive session."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_REST_PORT,
                 timeout: float = 30.0):
        # An IPv6 address goes in brackets in a URL.
        self.base_url = f"http://[{host}]:{port}" if ":" in host and not host.startswith(
            "[") else f"http://{host}:{port}"
        self.timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "RestClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Sends one call and returns the decoded JSON, raising on an error."""
        data = None if body is None else json.dumps(body)
        response = self._session.request(method, self.base_url + path,
                                         data=data, timeout=self.timeout)
        try:
            payload = response.json()
        except ValueError:
            # Not TF Serving's JSON (another HTTP server, a proxy's error page): say so in
            # one bounded line instead of returning or quoting a whole HTML page.
            raise ServingRequestError(f"the answer is not JSON: {_excerpt(response.text)}",
                                      http_status=response.status_code,
                                      transport="rest") from None
        if response.status_code != 200:
            message = payload.get("error", response.text) if isinstance(
                payload, dict) else response.text
            raise ServingRequestError(message, http_status=response.status_code,
                                      transport="rest")
        return payload

    def status(self, model: str, version: int | None = None,
               label: str | None = None) -> list[dict]:
        """The `model_version_status` list, e.g. [{"version": "1", "state": ...}]."""
        reply = self.request("GET", _model_path(model, version, label))
        return reply.get("model_version_status", [])

    def metadata(self, model: str, version: int | None = None,
                 label: str | None = None) -> dict:
        """The metadata JSON: {"model_spec": ..., "metadata": {"signature_def": ...}}."""
        return self.request("GET", _model_path(model, version, label) + "/metadata")

    def predict(self, model: str, instances: Sequence | None = None,
                inputs: Any = None, signature_name: str | None = None,
                version: int | None = None, label: str | None = None) -> Any:
        """Row format (`instances`) returns `predictions`; columnar returns `outputs`."""
        if (instances is None) == (inputs is None):
            raise ValueError("give exactly one of instances= or inputs=")
        body: dict[str, Any] = {}
        if signature_name is not None:
            body["signature_name"] = signature_name
        if instances is not None:
            body["instances"] = _json_feature_value(list(instances))
        else:
            body["inputs"] = _json_feature_value(inputs)
        reply = self.request("POST", _model_path(model, version, label) + ":predict", body)
        return reply["predictions"] if instances is not None else reply["outputs"]

    def _infer(self, verb: str, model: str, examples: Iterable[Mapping],
               context: Mapping | None, signature_name: str | None,
               version: int | None, label: str | None) -> list:
        body: dict[str, Any] = {"examples": [_json_feature_value(e) for e in examples]}
        if context:
            body["context"] = _json_feature_value(context)
        if signature_name is not None:
            body["signature_name"] = signature_name
        reply = self.request("POST", _model_path(model, version, label) + ":" + verb, body)
        return reply["results"]

    def classify(self, model: str, examples: Iterable[Mapping],
                 context: Mapping | None = None, signature_name: str | None = None,
                 version: int | None = None, label: str | None = None) -> list:
        """One list of [class label, score] pairs per example."""
        return self._infer("classify", model, examples, context, signature_name,
                           version, label)

    def regress(self, model: str, examples: Iterable[Mapping],
                context: Mapping | None = None, signature_name: str | None = None,
                version: int | None = None, label: str | None = None) -> list[float]:
        """One regression value per example."""
        return self._infer("regress", model, examples, context, signature_name,
                           version, label)

    def wait_until_available(self, model: str, timeout: float = 60.0,
                             interval: float = 0.2) -> list[dict]:
        return _wait(self.status, model, timeout, interval)


def make_example(features: Mapping[str, Any]):
    """Builds a tf.train.Example from {name: scalar or list of int/float/str/bytes}."""
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel

    example = example_pb2.Example()
    for name, value in features.items():
        values = value.tolist() if isinstance(value, np.ndarray) else value
        if not isinstance(values, (list, tuple)):
            values = [values]
        feature = example.features.feature[name]
        if all(isinstance(v, (bool, int, np.integer)) for v in values) and values:
            feature.int64_list.value.extend(int(v) for v in values)
        elif all(isinstance(v, (float, int, np.number)) for v in values) and values:
            feature.float_list.value.extend(float(v) for v in values)
        else:
            feature.bytes_list.value.extend(
                v if isinstance(v, bytes) else str(v).encode() for v in values)
    return example


class GrpcClient:
    """TF Serving's PredictionService and ModelService over one gRPC channel.

    Tensors come out as numpy arrays. numpy arrays go in as they are, so their dtype
    must match the signature exactly, as with tensorflow_model_server (int64, not
    int32); plain Python lists and scalars are converted to the signature's dtype,
    read once per model/signature with GetModelMetadata.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_GRPC_PORT,
                 timeout: float = 30.0):
        # Imported here so that REST-only users do not pay for TensorFlow.
        import grpc  # pylint: disable=import-outside-toplevel
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from tensorflow_serving.apis import (  # pylint: disable=import-outside-toplevel
            model_service_pb2_grpc, prediction_service_pb2_grpc)

        self._grpc = grpc
        self._tf = tf
        self.timeout = timeout
        # TF Serving accepts messages up to 2 GiB; lift the 4 MiB client default.
        self._channel = grpc.insecure_channel(
            f"{host}:{port}", options=[("grpc.max_receive_message_length", -1),
                                       ("grpc.max_send_message_length", -1)])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._input_dtypes: dict = {}  # (model, version, label, signature) -> {name: dtype}

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout, wait_for_ready=False)
        except self._grpc.RpcError as error:
            raise ServingRequestError(error.details(), code=error.code().name,
                                      transport="grpc") from None

    @staticmethod
    def _spec(spec, model: str, version: int | None, label: str | None,
              signature_name: str | None = None) -> None:
        if version is not None and label is not None:
            raise ValueError("give either a version or a label, not both")
        spec.name = model
        if version is not None:
            spec.version.value = int(version)
        if label is not None:
            spec.version_label = label
        if signature_name is not None:
            spec.signature_name = signature_name

    def predict(self, model: str, inputs: Mapping[str, Any],
                signature_name: str | None = None, version: int | None = None,
                label: str | None = None,
                output_filter: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, version, label, signature_name)
        dtypes = None
        for name, value in inputs.items():
            dtype = None
            if not isinstance(value, np.ndarray):
                dtypes = dtypes or self._signature_input_dtypes(model, version, label,
                                                                signature_name)
                dtype = dtypes.get(name)
            request.inputs[name].CopyFrom(self._tf.make_tensor_proto(value, dtype=dtype))
        request.output_filter.extend(output_filter or [])
        response = self._call(self.prediction.Predict, request)
        return {name: self._tf.make_ndarray(tensor)
                for name, tensor in response.outputs.items()}

    def _signature_input_dtypes(self, model, version, label, signature_name) -> dict:
        key = (model, version, label, signature_name or "serving_default")
        if key not in self._input_dtypes:
            signature = self.metadata(model, version, label).get(key[-1])
            self._input_dtypes[key] = {} if signature is None else {
                name: self._tf.dtypes.as_dtype(info.dtype)
                for name, info in signature.inputs.items()}
        return self._input_dtypes[key]

    def _input(self, request, examples: Iterable, context: Mapping | None) -> None:
        as_proto = [e if hasattr(e, "SerializeToString") else make_example(e)
                    for e in examples]
        if context is None:
            request.input.example_list.examples.extend(as_proto)
        else:
            with_context = request.input.example_list_with_context
            with_context.examples.extend(as_proto)
            with_context.context.CopyFrom(
                context if hasattr(context, "SerializeToString") else make_example(context))

    def classify(self, model: str, examples: Iterable, context: Mapping | None = None,
                 signature_name: str | None = None, version: int | None = None,
                 label: str | None = None) -> list[list[list]]:
        """One list of [class label, score] pairs per example, as RestClient.classify."""
        from tensorflow_serving.apis import classification_pb2  # pylint: disable=import-outside-toplevel

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, model, version, label, signature_name)
        self._input(request, examples, context)
        response = self._call(self.prediction.Classify, request)
        return [[[c.label, c.score] for c in classifications.classes]
                for classifications in response.result.classifications]

    def regress(self, model: str, examples: Iterable, context: Mapping | None = None,
                signature_name: str | None = None, version: int | None = None,
                label: str | None = None) -> list[float]:
        from tensorflow_serving.apis import regression_pb2  # pylint: disable=import-outside-toplevel

        request = regression_pb2.RegressionRequest()
        self._spec(request.model_spec, model, version, label, signature_name)
        self._input(request, examples, context)
        response = self._call(self.prediction.Regress, request)
        return [r.value for r in response.result.regressions]

    def metadata(self, model: str, version: int | None = None,
                 label: str | None = None) -> dict:
        """{signature name: SignatureDef proto} of the served version."""
        from tensorflow_serving.apis import (  # pylint: disable=import-outside-toplevel
            get_model_metadata_pb2)

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(request.model_spec, model, version, label)
        request.metadata_field.append("signature_def")
        response = self._call(self.prediction.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return dict(signatures.signature_def)

    def status(self, model: str, version: int | None = None,
               label: str | None = None) -> list[dict]:
        """Same shape as RestClient.status: [{"version": "1", "state": ...}, ...]."""
        from google.protobuf import json_format  # pylint: disable=import-outside-toplevel
        from tensorflow_serving.apis import get_model_status_pb2  # pylint: disable=import-outside-toplevel

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version, label)
        response = self._call(self.model_service.GetModelStatus, request)
        return json_format.MessageToDict(
            response, preserving_proto_field_name=True,
            including_default_value_fields=True).get("model_version_status", [])

    def reload_config(self, config) -> None:
        """Replaces the served models by a ModelServerConfig (proto or text)."""
        from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
        from tensorflow_serving.apis import model_management_pb2  # pylint: disable=import-outside-toplevel
        from tensorflow_serving.config import model_server_config_pb2  # pylint: disable=import-outside-toplevel

        if isinstance(config, str):
            config = text_format.Parse(config, model_server_config_pb2.ModelServerConfig())
        request = model_management_pb2.ReloadConfigRequest(config=config)
        response = self._call(self.model_service.HandleReloadConfigRequest, request)
        if response.status.error_code != 0:
            from tensorflow.core.protobuf import error_codes_pb2  # pylint: disable=import-outside-toplevel
            raise ServingRequestError(
                response.status.error_message,
                code=error_codes_pb2.Code.Name(response.status.error_code),
                transport="grpc")

    def wait_until_available(self, model: str, timeout: float = 60.0,
                             interval: float = 0.2) -> list[dict]:
        return _wait(self.status, model, timeout, interval)


# The command line: `python -m serving.client VERB --model NAME ...` over REST. A user's
# mistake is one line on stderr, never a traceback: exit 2 for a bad command line (as
# argparse does), 1 when the request fails, with the server's own message when it sent one.

PROG = "python -m serving.client"
USAGE_ERROR = 2
REQUEST_FAILED = 1


class UsageError(Exception):
    """A mistake in the command line; the message says which and how to fix it."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is not between 1 and 65535")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="Call a TF Serving compatible server's REST API and print the JSON.")
    parser.add_argument("verb", choices=["status", "metadata", "predict", "classify", "regress"])
    parser.add_argument("--model", required=True)
    version = parser.add_mutually_exclusive_group()
    version.add_argument("--version", type=int)
    version.add_argument("--label")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="host name or address of the server (not a URL)")
    parser.add_argument("--rest_api_port", type=_port, default=DEFAULT_REST_PORT)
    parser.add_argument("--timeout", type=_seconds, default=30.0,
                        help="seconds to wait for the answer (default 30)")
    parser.add_argument("--json", help="request body for predict/classify/regress, exactly "
                        "as TF Serving's REST API takes it; @FILE reads it from a file, "
                        "@- from stdin")
    parser.add_argument("--instances", help="predict only: the JSON list of instances, "
                        "sent as {\"instances\": ...} (@FILE and @- as for --json)")
    parser.add_argument("--signature_name", help="with --instances: the signature to run")
    return parser


def _read_json_argument(option: str, text: str) -> Any:
    """The JSON in `--option text`, where text may be `@file` or `@-` as with curl's -d."""
    where = option
    if text.startswith("@"):
        path = text[1:]
        where = f"{option} from stdin" if path == "-" else f"{option} file '{path}'"
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
        except OSError as error:
            raise UsageError(f"cannot read {where}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise UsageError(f"{where} is not UTF-8 text: {error.reason} at byte "
                             f"{error.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        start = max(0, error.pos - 30)
        near = (("..." if start else "") + error.doc[start:error.pos] + " >>>"
                + error.doc[error.pos:error.pos + 30])
        message = (f"{where} is not valid JSON: {error.msg} at line {error.lineno} column "
                   f"{error.colno}, here: {_excerpt(near)}")
        if where == option and '"' not in text and error.doc[error.pos:error.pos + 1].isalpha():
            # The shell took the double quotes: --json "{"a": 1}" arrives as {a: 1}.
            message += "; put the JSON in single quotes so the shell keeps its double quotes"
        raise UsageError(message) from None


def _request_from_arguments(args) -> tuple[str, str, Any]:
    """(method, path, body) of the call the command line asks for."""
    # A URL or host:port is a common slip; an IPv6 address has two colons or more.
    if "://" in args.host or "/" in args.host or args.host.count(":") == 1:
        url = urllib.parse.urlsplit(args.host if "://" in args.host else "http://" + args.host)
        raise UsageError(f"--host takes a host name or address, not a URL or host:port "
                         f"({args.host!r}); "
                         f"use --host {url.hostname or DEFAULT_HOST} "
                         f"--rest_api_port {url.port or args.rest_api_port}")
    path = _model_path(args.model, args.version, args.label)
    if args.verb in ("status", "metadata"):
        for option in ("json", "instances", "signature_name"):
            if getattr(args, option) is not None:
                raise UsageError(f"{args.verb} takes no --{option}: it is a GET with no body")
        return "GET", path + ("/metadata" if args.verb == "metadata" else ""), None
    if args.instances is not None:
        if args.verb != "predict":
            raise UsageError(f"--instances is for predict; {args.verb} takes --json "
                             "'{\"examples\": [...]}'")
        if args.json is not None:
            raise UsageError("give --json or --instances, not both")
        body = {"instances": _read_json_argument("--instances", args.instances)}
        if args.signature_name is not None:
            body["signature_name"] = args.signature_name
    elif args.json is not None:
        if args.signature_name is not None:
            raise UsageError("--signature_name goes with --instances; with --json, put "
                             "\"signature_name\" in the JSON body")
        body = _read_json_argument("--json", args.json)
    else:
        example = ("--instances '[...]' or --json '{\"instances\": [...]}'"
                   if args.verb == "predict" else "--json '{\"examples\": [...]}'")
        raise UsageError(f"{args.verb} needs a request body: {example}")
    return "POST", f"{path}:{args.verb}", body


def _connection_problem(error: requests.RequestException, host: str, port: int,
                        timeout: float) -> str:
    """One line on why no answer came, and what to check."""
    reason = getattr(error.args[0], "reason", error.args[0]) if error.args else error
    if isinstance(error, requests.Timeout):
        return f"no answer from {host}:{port} within {timeout:g}s (--timeout)"
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return f"cannot resolve host '{host}' (--host)"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        why = getattr(reason.__cause__, "strerror", None) or "cannot connect"
        return (f"no server answers at {host}:{port} ({why.lower()}); "
                f"start one with `python -m serving.launch --rest_api_port={port} ...`")
    if isinstance(error, requests.ConnectionError):
        return (f"{host}:{port} closed the connection without an HTTP answer; is it the "
                "server's REST port (--rest_api_port), not its gRPC port (--port)?")
    if isinstance(error, requests.exceptions.InvalidURL):
        return f"invalid --host or --rest_api_port: {_excerpt(str(error))}"
    return f"request to {host}:{port} failed: {_excerpt(str(error))}"


def _print_reply(reply: Any) -> int:
    try:
        print(json.dumps(reply, indent=2))
        sys.stdout.flush()
    except BrokenPipeError:
        return _exit_on_broken_pipe()
    return 0


def _exit_on_broken_pipe() -> int:
    """Does what `cat` does when `head` stops reading: dies of SIGPIPE, silently.

    SIGPIPE stays ignored while the client talks to the server (a dropped connection
    must be an error, not a silent death); it is only restored for this last act.
    """
    # Output still buffered for the closed pipe must not fail again at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    return 128 + 13  # where there is no SIGPIPE: the status a shell reports for one


def _fail(message: str, exit_code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _call_and_print(_parser().parse_args(argv))
    except KeyboardInterrupt:
        return 128 + 2  # as a shell reports Ctrl-C, without a traceback


def _call_and_print(args) -> int:
    try:
        method, path, body = _request_from_arguments(args)
    except UsageError as error:
        return _fail(str(error), USAGE_ERROR)
    try:
        with RestClient(args.host, args.rest_api_port, timeout=args.timeout) as client:
            reply = client.request(method, path, body)
    except ServingRequestError as error:
        # The server's own text, on one line: TF errors may quote a whole SignatureDef.
        return _fail(f"HTTP {error.http_status}: {' '.join(error.message.split())}",
                     REQUEST_FAILED)
    except requests.exceptions.InvalidURL as error:
        return _fail(_connection_problem(error, args.host, args.rest_api_port, args.timeout),
                     USAGE_ERROR)
    except requests.RequestException as error:
        return _fail(_connection_problem(error, args.host, args.rest_api_port, args.timeout),
                     REQUEST_FAILED)
    return _print_reply(reply)


if __name__ == "__main__":
    sys.exit(main())
