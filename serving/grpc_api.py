"""TF Serving's gRPC services (PredictionService, ModelService) over the ModelManager.

A thin layer like model_servers/prediction_service_impl.cc: it turns protos into numpy
and serialized examples, asks the manager for a Servable and maps ServingError to status.
"""
import logging
import time

import grpc

import serving  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from serving import errors, metrics, multi_inference, proto_codec, request_logging

from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, inference_pb2,
    model_management_pb2, model_pb2, model_service_pb2_grpc, predict_pb2,
    prediction_service_pb2_grpc, regression_pb2)

log = logging.getLogger("serving.grpc_api")

SIGNATURE_DEF_FIELD = "signature_def"


def add_services(grpc_server, manager, request_logger=None) -> None:
    """Registers both TF Serving services on `grpc_server` (not yet started)."""
    grpc_server.add_generic_rpc_handlers((
        _prediction_service_handler(PredictionService(manager, request_logger)),))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), grpc_server)


class _Received:
    """A request message and the bytes it was parsed from, which a request log reuses:
    serializing a PredictRequest again would cost as much as parsing it."""
    __slots__ = ("message", "data")

    def __init__(self, message, data):
        self.message, self.data = message, data


def _prediction_service_handler(service):
    """tensorflow.serving.PredictionService as the generated add_..._to_server registers it,
    but the inference calls also get the bytes their request arrived as."""
    def keeping_bytes(method, request_class):
        return grpc.unary_unary_rpc_method_handler(
            lambda received, context: method(received.message, context, received.data),
            request_deserializer=lambda data: _Received(request_class.FromString(data), data),
            response_serializer=lambda response: response.SerializeToString())

    handlers = {
        "Predict": keeping_bytes(service.Predict, predict_pb2.PredictRequest),
        "Classify": keeping_bytes(service.Classify, classification_pb2.ClassificationRequest),
        "Regress": keeping_bytes(service.Regress, regression_pb2.RegressionRequest),
        "MultiInference": keeping_bytes(service.MultiInference,
                                        inference_pb2.MultiInferenceRequest),
        "GetModelMetadata": grpc.unary_unary_rpc_method_handler(
            service.GetModelMetadata,
            request_deserializer=get_model_metadata_pb2.GetModelMetadataRequest.FromString,
            response_serializer=get_model_metadata_pb2.GetModelMetadataResponse
            .SerializeToString),
    }
    return grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService",
                                                handlers)


# --- request plumbing shared by both services ---------------------------------------------

def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise errors.invalid_argument("Missing ModelSpec")


def _servable(manager, model_spec):
    """The Servable a ModelSpec names, with ServerCore's checks on the spec itself."""
    if not model_spec.name:
        raise errors.invalid_argument("ModelSpec has no name specified.")
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return manager.servable(model_spec.name, version=model_spec.version.value)
    if choice == "version_label":
        return manager.servable(model_spec.name, label=model_spec.version_label)
    return manager.servable(model_spec.name)


_NO_DEADLINE_SECONDS = 365 * 24 * 3600  # longer than any real deadline


def _deadline(context):
    """The client's gRPC deadline as a time.monotonic() value (None: no deadline),
    the form Servable takes; TF Serving likewise turns it into the session's timeout."""
    remaining = context.time_remaining()
    # A call without grpc-timeout reports a practically infinite time remaining, which
    # no wait can take ("timestamp too large to convert to C _PyTime_t").
    if remaining is None or remaining > _NO_DEADLINE_SECONDS:
        return None
    return time.monotonic() + remaining


class _Call:
    """Times one RPC, reports it to metrics and turns ServingError into a gRPC status."""

    def __init__(self, context, api: str, model_name: str):
        self.context, self.api, self.model_name = context, api, model_name
        self.version = None  # the version the call resolved to, for the per-version metrics

    def resolved(self, servable):
        """Notes the version `servable` is (a failure after this still counts under it)."""
        self.version = servable.version
        return servable

    def __enter__(self):
        self.started = time.monotonic()
        self.received = time.time()  # the request time a request log records
        return self

    def __exit__(self, exc_type, exc, _traceback):
        if exc_type is None:
            status = "OK"
        elif issubclass(exc_type, errors.ServingError):
            status = exc.code.name
        else:
            status = grpc.StatusCode.INTERNAL.name
            log.exception("%s failed unexpectedly", self.api, exc_info=exc)
        metrics.observe_request(self.model_name, self.api, status,
                                time.monotonic() - self.started, entrypoint="GRPC",
                                version=self.version)
        if exc_type is None:
            return False
        if issubclass(exc_type, errors.ServingError):
            self.context.abort(exc.code, exc.message)
        # abort() raises, so the original exception never reaches grpc's generic handler.
        self.context.abort(grpc.StatusCode.INTERNAL, str(exc))
        return False


# --- the services ---------------------------------------------------------------------------

class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService, answering as tensorflow_model_server does.

    The inference calls take the request's bytes too (request_bytes), for its log."""

    def __init__(self, manager, request_logger=None):
        self._manager = manager
        self._request_logger = request_logger

    def _log(self, call, kind, servable, signature_name, request, response):
        """Hands a successful call to the request logger, which serializes it later.
        request: the bytes the request arrived as, or (called directly) its message."""
        if self._request_logger is not None:
            self._request_logger.log(call.received, kind, servable.name, servable.version,
                                     signature_name, request_logging.serialized_protos,
                                     request, response)

    def Predict(self, request, context, request_bytes=None):
        with _Call(context, "predict", request.model_spec.name) as call:
            _require_model_spec(request)
            servable = call.resolved(_servable(self._manager, request.model_spec))
            inputs = proto_codec.inputs_as_numpy(request.inputs)
            outputs = servable.predict(request.model_spec.signature_name, inputs,
                                       list(request.output_filter) or None,
                                       deadline=_deadline(context))
            response = predict_pb2.PredictResponse()
            proto_codec.set_model_spec(response.model_spec, servable.name, servable.version,
                                       request.model_spec.signature_name)
            for alias, value in outputs.items():
                proto_codec.fill_tensor_proto(response.outputs[alias], value)
            self._log(call, request_logging.PREDICT, servable,
                      request.model_spec.signature_name,
                      request_bytes or request, response)
            return response

    def Classify(self, request, context, request_bytes=None):
        with _Call(context, "classify", request.model_spec.name) as call:
            _require_model_spec(request)
            servable = call.resolved(_servable(self._manager, request.model_spec))
            classes, scores = servable.classify(request.model_spec.signature_name,
                                                proto_codec.serialized_examples(request.input),
                                                deadline=_deadline(context))
            response = classification_pb2.ClassificationResponse()
            proto_codec.set_model_spec(response.model_spec, servable.name, servable.version,
                                       request.model_spec.signature_name)
            proto_codec.classification_result(response.result, classes, scores)
            self._log(call, request_logging.CLASSIFY, servable,
                      request.model_spec.signature_name,
                      request_bytes or request, response)
            return response

    def Regress(self, request, context, request_bytes=None):
        with _Call(context, "regress", request.model_spec.name) as call:
            _require_model_spec(request)
            servable = call.resolved(_servable(self._manager, request.model_spec))
            values = servable.regress(request.model_spec.signature_name,
                                      proto_codec.serialized_examples(request.input),
                                      deadline=_deadline(context))
            response = regression_pb2.RegressionResponse()
            proto_codec.set_model_spec(response.model_spec, servable.name, servable.version,
                                       request.model_spec.signature_name)
            proto_codec.regression_result(response.result, values)
            self._log(call, request_logging.REGRESS, servable,
                      request.model_spec.signature_name,
                      request_bytes or request, response)
            return response

    def MultiInference(self, request, context, request_bytes=None):
        first_spec = request.tasks[0].model_spec if request.tasks else None
        with _Call(context, "multi_inference", first_spec.name if first_spec else "") as call:
            # TF Serving resolves the servable from the first task's spec, then checks tasks.
            servable = call.resolved(_servable(self._manager,
                                               first_spec or model_pb2.ModelSpec()))
            response = multi_inference.run(servable, request, deadline=_deadline(context))
            self._log(call, request_logging.MULTI_INFERENCE, servable, None,
                      request_bytes or request, response)
            return response

    def GetModelMetadata(self, request, context):
        with _Call(context, "metadata", request.model_spec.name):
            _require_model_spec(request)
            if not request.metadata_field:
                raise errors.invalid_argument(
                    "GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    # TF Serving's message really keeps the "%s" (StrCat, not printf).
                    raise errors.invalid_argument(f"Metadata field %s is not supported{field}")
            servable = _servable(self._manager, request.model_spec)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for name, signature in servable.signature_defs().items():
                signature_map.signature_def[name].CopyFrom(signature)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            proto_codec.set_model_spec(response.model_spec, servable.name, servable.version)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
            return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: version states and config reloads."""

    def __init__(self, manager):
        self._manager = manager

    def GetModelStatus(self, request, context):
        with _Call(context, "status", request.model_spec.name):
            _require_model_spec(request)
            spec = request.model_spec
            # Like TF Serving, only an explicit version narrows the answer; a label does not.
            version = spec.version.value if spec.HasField("version") else None
            response = get_model_status_pb2.GetModelStatusResponse()
            for state in self._manager.version_states(spec.name, version=version):
                entry = response.model_version_status.add()
                entry.version = state.version
                entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
                entry.status.error_code = state.error_code
                entry.status.error_message = state.error_message
            return response

    def HandleReloadConfigRequest(self, request, context):
        started = time.monotonic()
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise errors.invalid_argument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                    "Only ModelConfigList is currently supported")
            for index, config in enumerate(request.config.model_config_list.config):
                log.info("Reload config entry %d: name %s path %s platform %s", index,
                         config.name, config.base_path, config.model_platform)
            self._manager.reload_config(request.config)
        except errors.ServingError as error:
            log.error("ReloadConfig failed: %s", error.message)
            context.abort(error.code, error.message)
        except Exception as error:  # a reload must answer, whatever broke
            log.exception("ReloadConfig failed")
            context.abort(grpc.StatusCode.INTERNAL, str(error))
        log.info("ReloadConfig done in %.2fs", time.monotonic() - started)
        return response  # its status is the default StatusProto: error_code OK
