"""Calls every signature a client uses through the prediction API and checks
the answer against the signature metadata the server itself reports
(GetModelMetadata): the output names, dtypes and shapes, batch size included.
"""
import grpc
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from pipeline.components.infra_failure import InfraValidationFailed

REQUEST_TIMEOUT_SECONDS = 30.0  # a first call may still build the graph


def served_signatures(channel, model_name: str) -> dict:
    """{name: SignatureDef} as GetModelMetadata answers for the served version."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model_name
    try:
        response = stub.GetModelMetadata(request, timeout=REQUEST_TIMEOUT_SECONDS)
    except grpc.RpcError as error:
        raise InfraValidationFailed(
            f"GetModelMetadata failed: {error.code().name} {error.details()}") from None
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return dict(signature_map.signature_def)


def send(stub, request, timeout: float):
    """The API call that fits the request's type; returns its response."""
    if isinstance(request, classification_pb2.ClassificationRequest):
        return stub.Classify(request, timeout=timeout)
    if isinstance(request, regression_pb2.RegressionRequest):
        return stub.Regress(request, timeout=timeout)
    return stub.Predict(request, timeout=timeout)


def send_async(stub, request, timeout: float):
    """As `send`, returning a gRPC future at once (for the load test)."""
    if isinstance(request, classification_pb2.ClassificationRequest):
        return stub.Classify.future(request, timeout=timeout)
    if isinstance(request, regression_pb2.RegressionRequest):
        return stub.Regress.future(request, timeout=timeout)
    return stub.Predict.future(request, timeout=timeout)


def batch_size(request) -> int:
    if isinstance(request, predict_pb2.PredictRequest):
        return max(tf.make_ndarray(tensor).shape[0] for tensor in request.inputs.values())
    return len(request.input.example_list.examples)


def _shape(tensor_shape_proto) -> list[int] | None:
    if tensor_shape_proto.unknown_rank:
        return None
    return [dim.size for dim in tensor_shape_proto.dim]


def _described(dtype_enum, shape) -> str:
    return f"{tf.dtypes.as_dtype(dtype_enum).name} {shape}"


def output_problems(signature_def, response, batch: int) -> list[str]:
    """What in a PredictResponse disagrees with the signature (nothing: [])."""
    expected, answered = signature_def.outputs, response.outputs
    problems = []
    if set(answered) != set(expected):
        problems.append(f"outputs {sorted(answered)}, the signature declares {sorted(expected)}")
    for name in sorted(set(answered) & set(expected)):
        declared, got = expected[name], answered[name]
        got_shape = _shape(got.tensor_shape)
        declared_shape = _shape(declared.tensor_shape)
        if got.dtype != declared.dtype:
            problems.append(f"output {name} is {_described(got.dtype, got_shape)}, declared "
                            f"{_described(declared.dtype, declared_shape)}")
            continue
        if declared_shape is None:
            continue
        # -1 in the declaration is any size, except the batch: one answer per row sent.
        wanted = [batch if i == 0 and size == -1 else size
                  for i, size in enumerate(declared_shape)]
        if got_shape is None or len(got_shape) != len(wanted) or any(
                w not in (-1, g) for w, g in zip(wanted, got_shape)):
            problems.append(f"output {name} has shape {got_shape} for {batch} row(s), "
                            f"declared {declared_shape}")
    return problems


def check_signatures(channel, model_name: str, requests_by_signature: dict) -> dict:
    """Sends every request; raises InfraValidationFailed naming each wrong answer.
    Returns {signature: {output: "dtype [shape]"}} as declared, for the record."""
    declared = served_signatures(channel, model_name)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    problems = []
    for signature, requests in requests_by_signature.items():
        if signature not in declared:
            problems.append(f"{signature}: not among the served signatures "
                            f"({', '.join(sorted(declared))})")
            continue
        for request in requests:
            try:
                response = send(stub, request, REQUEST_TIMEOUT_SECONDS)
            except grpc.RpcError as error:
                problems.append(f"{signature}: the call failed: {error.code().name} "
                                f"{error.details()}")
                break
            if isinstance(response, predict_pb2.PredictResponse):
                wrong = output_problems(declared[signature], response, batch_size(request))
                if wrong:
                    problems.append(f"{signature}: " + "; ".join(wrong))
                    break
    if problems:
        raise InfraValidationFailed("wrong answers through the prediction API: "
                                    + " / ".join(problems))
    return {signature: {name: _described(tensor.dtype, _shape(tensor.tensor_shape))
                        for name, tensor in sorted(declared[signature].outputs.items())}
            for signature in requests_by_signature}
