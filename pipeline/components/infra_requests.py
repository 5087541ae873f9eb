"""The requests an infra validation sends: real rows of the eval split, one
request per row and signature.

Signatures that take serialized tf.Examples get TFX's own RequestSpec requests
(tfx/components/infra_validator/request_builder.py). TFX builds no request for
a signature with one tensor per feature (serving_raw), so those are made here
from the same rows, as a REST or gRPC client would send plain values.
"""
import os

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_log_pb2, \
    regression_pb2
from tfx.components.infra_validator import request_builder
from tfx.proto import infra_validator_pb2


def signature_defs(saved_model_dir: str) -> dict:
    """{name: SignatureDef} of the serving graph, read from saved_model.pb without
    loading the model."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    for meta_graph in saved_model.meta_graphs:
        if tf.saved_model.SERVING in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{saved_model_dir}/saved_model.pb has no '{tf.saved_model.SERVING}' "
                     "graph; export the model with serving signatures")


def takes_serialized_examples(signature_def) -> bool:
    """One string input of shape [None]: what TFX's request builder can fill."""
    if len(signature_def.inputs) != 1:
        return False
    (tensor,) = signature_def.inputs.values()
    return (tensor.dtype == tf.string.as_datatype_enum
            and tensor.tensor_shape == tf.TensorShape([None]).as_proto())


def example_requests(model_name: str, model, examples, request_spec) -> list:
    """TFX's requests for the RequestSpec's signatures, one per eval-split row."""
    return request_builder.build_requests(model_name=model_name, model=model,
                                          examples=examples, request_spec=request_spec)


def rows_of(requests) -> list:
    """The tf.Examples the requests of the first signature carry, in order."""
    rows, first_signature = [], None
    for request in requests:
        first_signature = first_signature or request.model_spec.signature_name
        if request.model_spec.signature_name != first_signature:
            break
        if isinstance(request, predict_pb2.PredictRequest):
            (tensor,) = request.inputs.values()
            rows += [tf.train.Example.FromString(record) for record in tensor.string_val]
        else:
            rows += list(request.input.example_list.examples)
    return rows


def _feature_value(example, name: str, dtype):
    """The row's value of one feature; a value missing from the row becomes the
    dtype's zero, since a plain tensor cannot leave it out (the model fills in
    missing values the same way for every row)."""
    feature = example.features.feature.get(name)
    values = []
    if feature is not None:
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
    if values:
        return values[0]
    return b"" if dtype == tf.string else tf.zeros([], dtype).numpy()


def feature_requests(model_name: str, signature_name: str, signature_def, rows) -> list:
    """PredictRequests for a signature with one [batch] tensor per feature."""
    requests = []
    for example in rows:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        for name, tensor_info in signature_def.inputs.items():
            dtype = tf.dtypes.as_dtype(tensor_info.dtype)
            request.inputs[name].CopyFrom(
                tf.make_tensor_proto([_feature_value(example, name, dtype)], dtype=dtype))
        requests.append(request)
    return requests


def build(model_name: str, model, examples, saved_model_dir: str, request_spec) -> dict:
    """{signature: requests} for every signature the RequestSpec names, in its order."""
    signature_names = list(request_spec.tensorflow_serving.signature_names)
    defs = signature_defs(saved_model_dir)
    missing = [name for name in signature_names if name not in defs]
    if missing:
        raise ValueError(f"the model has no signature {', '.join(missing)} (it has "
                         f"{', '.join(sorted(defs))}); see models/signatures.py")
    by_examples = [name for name in signature_names if takes_serialized_examples(defs[name])]
    if not by_examples:
        raise ValueError("the RequestSpec names no signature that takes serialized "
                         "tf.Examples, so there are no eval rows to build requests from")
    tfx_spec = infra_validator_pb2.RequestSpec()
    tfx_spec.CopyFrom(request_spec)
    del tfx_spec.tensorflow_serving.signature_names[:]
    tfx_spec.tensorflow_serving.signature_names.extend(by_examples)
    built = example_requests(model_name, model, examples, tfx_spec)
    by_signature = {name: [] for name in signature_names}
    for request in built:
        by_signature[request.model_spec.signature_name].append(request)
    rows = rows_of(built)
    for name in signature_names:
        if name not in by_examples:
            by_signature[name] = feature_requests(model_name, name, defs[name], rows)
    return by_signature


def prediction_log(request) -> prediction_log_pb2.PredictionLog:
    """A request as TF Serving's warmup file holds it (assets.extra/tf_serving_warmup_requests)."""
    if isinstance(request, classification_pb2.ClassificationRequest):
        return prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=request))
    if isinstance(request, regression_pb2.RegressionRequest):
        return prediction_log_pb2.PredictionLog(
            regress_log=prediction_log_pb2.RegressLog(request=request))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
