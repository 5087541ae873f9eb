"""One MultiInferenceRequest run on one Servable, as TF Serving's multi_inference.cc does.

Below the APIs: gRPC's MultiInference and the warmup replay of a multi_inference_log both
call run(); the caller has already resolved the servable (from the first task's spec).
"""
import grpc

from serving import errors, proto_codec
from serving.servable import DEFAULT_SIGNATURE

from tensorflow_serving.apis import inference_pb2  # noqa: E402

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def run(servable, request, deadline=None):
    """-> MultiInferenceResponse; raises ServingError with TF Serving's messages.

    deadline: time.monotonic() value for every task's run, None for none.
    """
    check_tasks(request.tasks, servable.signature_defs())
    examples = proto_codec.serialized_examples(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            classes, scores = servable.classify(task.model_spec.signature_name, examples,
                                                deadline=deadline)
            proto_codec.classification_result(result.classification_result, classes, scores)
        else:
            proto_codec.regression_result(result.regression_result, servable.regress(
                task.model_spec.signature_name, examples, deadline=deadline))
        proto_codec.set_model_spec(result.model_spec, task.model_spec.name,
                                   servable.version, task.model_spec.signature_name)
    return response


def check_tasks(tasks, signature_defs) -> None:
    """MultiInference's request checks, in TF Serving's order and with its messages."""
    model_name = ""
    input_tensor = ""
    seen_signatures = set()
    for task in tasks:
        if not task.model_spec.name:
            raise errors.invalid_argument("Found ModelSpec with an empty model name.")
        if model_name and task.model_spec.name != model_name:
            raise errors.invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        model_name = task.model_spec.name
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen_signatures:
            raise errors.invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
        seen_signatures.add(signature_name)
        signature = signature_defs.get(signature_name)
        if signature is None:
            raise errors.invalid_argument(
                f"Requested signature not found in model graph: {signature_name}")
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise errors.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                      f"Unsupported signature method_name: {task.method_name}")
        # The signature's method_name is not compared (TF Serving only does so under
        # --enable_signature_method_name_check); Servable.classify/regress check its shape.
        task_input = signature.inputs["inputs"].name if "inputs" in signature.inputs else ""
        if input_tensor and task_input != input_tensor:
            raise errors.invalid_argument("Input tensor must be the same for all Signatures.")
        input_tensor = task_input
