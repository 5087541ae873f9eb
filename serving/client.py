"""Small clients for a TF Serving compatible model server, over REST and gRPC.

Shared by the tests, the pipeline's post-push checks and users; they work the
same against our `python -m serving` and against `tensorflow_model_server`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import requests

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
        self.base_url = f"http://{host}:{port}"
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
            payload = {"error": response.text}
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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m serving.client VERB --model NAME [--json BODY]` over REST."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Call a TF Serving compatible server's REST API and print the JSON.")
    parser.add_argument("verb", choices=["status", "metadata", "predict", "classify", "regress"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", type=int)
    parser.add_argument("--label")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--rest_api_port", type=int, default=DEFAULT_REST_PORT)
    parser.add_argument("--json", help="request body for predict/classify/regress, "
                        "exactly as TF Serving's REST API takes it")
    args = parser.parse_args(argv)

    path = _model_path(args.model, args.version, args.label)
    if args.verb in ("status", "metadata"):
        method, body = "GET", None
        path += "/metadata" if args.verb == "metadata" else ""
    else:
        if not args.json:
            parser.error(f"{args.verb} needs --json with the request body")
        method, body, path = "POST", json.loads(args.json), f"{path}:{args.verb}"
    try:
        reply = RestClient(args.host, args.rest_api_port).request(method, path, body)
    except ServingRequestError as error:
        print(error, file=sys.stderr)
        return 1
    except requests.ConnectionError:
        print(f"no server answers at {args.host}:{args.rest_api_port}; start one with "
              "`python -m serving.launch --rest_api_port=...`", file=sys.stderr)
        return 2
    print(json.dumps(reply, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
