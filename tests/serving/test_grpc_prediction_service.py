"""PredictionService over gRPC, called the way a TF Serving user does: the generated stub
and tensorflow_serving.apis protos, nothing of ours on the client side (but one test of
the servable's deadline check, which a call with a deadline runs).

Runs against the shared `models_server` (half_plus_two v1 and multi_io v1), plus a
TF1-style model for MultiInference, which needs signatures sharing one input tensor.
"""
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     inference_pb2, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from serving import errors, servable
from tests.serving.conftest import make_model_base, start_server


@pytest.fixture(scope="module")
def stub(models_server):
    channel = grpc.insecure_channel(models_server.grpc_address)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def build_tf1_half_plus_two(export_dir):
    """y = 0.5x + 2 with classify and regress signatures on ONE serialized-examples input,
    like TF Serving's own (TF1) half_plus_two; TF2 signatures never share an input."""
    with tf.Graph().as_default():
        serialized = tf.compat.v1.placeholder(tf.string, [None], name="tf_example")
        x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        y = tf.add(tf.multiply(x, 0.5), 2.0, name="y")
        builder = tf.compat.v1.saved_model.Builder(export_dir)
        with tf.compat.v1.Session() as session:
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
                "classify_x_to_y": tf.compat.v1.saved_model.classification_signature_def(
                    serialized, None, y),
                "regress_x_to_y": tf.compat.v1.saved_model.regression_signature_def(
                    serialized, y),
            })
        builder.save()
    return export_dir


@pytest.fixture(scope="module")
def tf1_stub(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf1_model")
    base = make_model_base(root / "tf1", {1: build_tf1_half_plus_two(str(root / "export"))})
    server = start_server("--model_name=tf1_half_plus_two", f"--model_base_path={base}",
                          rest=False, tmp_dir=root)
    channel = grpc.insecure_channel(server.grpc_address)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    server.stop()


def predict_request(model="half_plus_two", signature=None, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature is not None:
        request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def example(**features):
    proto = example_pb2.Example()
    for name, value in features.items():
        if isinstance(value, float):
            proto.features.feature[name].float_list.value.append(value)
        else:
            proto.features.feature[name].bytes_list.value.append(value)
    return proto


def rpc_error(call, request):
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    return raised.value.code(), raised.value.details()


# --- Predict ------------------------------------------------------------------------------

def test_predict_like_tf_serving_example_clients(stub):
    # Built and read field by field, as TF Serving's own example clients do.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    response = stub.Predict(request, timeout=30)
    assert list(response.outputs["y"].float_val) == [3.0]
    assert response.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in response.outputs["y"].tensor_shape.dim] == [1]
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_calls_without_a_deadline_are_answered(stub):
    # grpc's Python server reports "no deadline" as a practically infinite time left;
    # it must not turn into a wait no clock can take (an INTERNAL error once).
    response = stub.Predict(predict_request(x=np.array([2.0], dtype=np.float32)))
    assert list(response.outputs["y"].float_val) == [3.0]
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add().CopyFrom(example(x=2.0))
    assert [r.value for r in stub.Regress(request).result.regressions] == [3.0]


def test_a_call_past_its_deadline_fails_and_the_server_goes_on(stub):
    slow = predict_request("multi_io", "slow", n=np.array([3000000], np.int64))
    with pytest.raises(grpc.RpcError) as failure:
        stub.Predict(slow, timeout=0.25)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    fast = predict_request("multi_io", "slow", n=np.array([10], np.int64))
    assert list(stub.Predict(fast, timeout=60).outputs["count"].int64_val) == [9]


def test_the_servable_answers_deadline_exceeded_before_and_after_a_late_run():
    # What a gRPC call with a deadline runs: TF's session timeout, checked on this thread.
    ran = []

    def work(seconds):
        ran.append(seconds)
        time.sleep(seconds)
        return "outputs"

    with pytest.raises(errors.ServingError) as late:
        servable.run_with_deadline(lambda: work(0.3), time.monotonic() + 0.1)
    assert (late.value.code, late.value.message) == (
        grpc.StatusCode.DEADLINE_EXCEEDED, "Timed out waiting for notification")
    with pytest.raises(errors.ServingError):
        servable.run_with_deadline(lambda: work(0), time.monotonic() - 1)
    assert ran == [0.3]  # a call already past its deadline does not run
    assert servable.run_with_deadline(lambda: work(0), time.monotonic() + 60) == "outputs"


def test_predict_batch_with_make_tensor_proto(stub):
    response = stub.Predict(predict_request(x=np.array([1.0, 2.0, 5.0], np.float32)),
                            timeout=30)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]),
                                  np.array([2.5, 3.0, 4.5], np.float32))


def test_predict_named_inputs_strings_and_ints(stub):
    request = predict_request(
        "multi_io", a=np.array([1.5, 4.0], np.float32), b=np.array([2, 0], np.int64),
        text=np.array([b"hello", "ça".encode()], object),
        image_bytes=np.array([b"\x00\xffpng", b""], object))
    response = stub.Predict(request, timeout=30)
    outputs = {name: tf.make_ndarray(tensor) for name, tensor in response.outputs.items()}
    assert sorted(outputs) == ["echo_bytes", "length", "ratio", "sum", "text_upper"]
    np.testing.assert_array_equal(outputs["sum"], np.array([3.5, 4.0], np.float32))
    assert outputs["ratio"][0] == np.float32(0.75) and np.isinf(outputs["ratio"][1])
    assert list(outputs["text_upper"]) == [b"HELLO", "çA".encode()]
    assert outputs["length"].dtype == np.int32 and list(outputs["length"]) == [5, 3]
    assert list(outputs["echo_bytes"]) == [b"\x00\xffpng", b""]
    assert list(response.outputs["text_upper"].string_val) == [b"HELLO", "çA".encode()]


def test_inputs_are_checked_and_decoded_on_every_call_not_only_the_first(stub):
    # The server works out a signature's input dtypes once; a later request must still be
    # checked against them, and bytes with trailing NULs must come back whole.
    good = predict_request("multi_io", a=np.array([1.0], np.float32), b=np.array([4], np.int64),
                           text=np.array([b"x"], object),
                           image_bytes=np.array([b"png\x00\x00"], object))
    for _ in range(2):
        response = stub.Predict(good, timeout=30)
        assert list(response.outputs["echo_bytes"].string_val) == [b"png\x00\x00"]
    wrong = predict_request("multi_io", a=np.array([1.0], np.float32),
                            b=np.array([4.0], np.float32), text=np.array([b"x"], object),
                            image_bytes=np.array([b"y"], object))
    assert rpc_error(stub.Predict, wrong) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[1] to be int64 but float is provided")


def test_predict_rank_two_signature(stub):
    request = predict_request("multi_io", "matrix", m=np.arange(6, dtype=np.float32).reshape(2, 3))
    response = stub.Predict(request, timeout=30)
    assert response.model_spec.signature_name == "matrix"
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["doubled"]),
                                  np.arange(6, dtype=np.float32).reshape(2, 3) * 2)


def test_predict_output_filter(stub):
    request = predict_request("multi_io", a=np.array([1.0], np.float32),
                              b=np.array([4], np.int64), text=np.array([b"x"], object),
                              image_bytes=np.array([b"y"], object))
    request.output_filter.extend(["ratio", "text_upper"])
    response = stub.Predict(request, timeout=30)
    assert sorted(response.outputs) == ["ratio", "text_upper"]
    assert list(response.outputs["ratio"].float_val) == [0.25]


@pytest.mark.parametrize("output_filter, message", [
    (["nope"], "output tensor alias not found in signature: nope Outputs expected to be in "
               "the set {echo_bytes,length,ratio,sum,text_upper}."),
    (["sum", "sum"], "duplicate output tensor alias: sum"),
])
def test_predict_bad_output_filter(stub, output_filter, message):
    request = predict_request("multi_io", a=np.array([1.0], np.float32),
                              b=np.array([4], np.int64), text=np.array([b"x"], object),
                              image_bytes=np.array([b"y"], object))
    request.output_filter.extend(output_filter)
    assert rpc_error(stub.Predict, request) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_predict_wrong_dtype(stub):
    request = predict_request(x=np.array(["a"], object))
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be float but string is provided")


def test_predict_missing_and_extra_inputs(stub):
    request = predict_request(x=np.array([1.0], np.float32), z=np.array([1.0], np.float32))
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
        "Sent extra: {z}. Missing but required: {}.")


def test_predict_unparsable_tensor(stub):
    request = predict_request()
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 3
    request.inputs["x"].tensor_content = b"\x00\x00"  # 2 bytes cannot be 3 floats
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: x")


def test_predict_short_value_list_is_padded_like_tf(stub):
    # TF's Tensor::FromProto repeats the last value to fill the shape.
    request = predict_request()
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 3
    request.inputs["x"].float_val.extend([1.0, 4.0])
    response = stub.Predict(request, timeout=30)
    assert list(response.outputs["y"].float_val) == [2.5, 4.0, 4.0]


def test_predict_unknown_signature(stub):
    request = predict_request(signature="nope", x=np.array([1.0], np.float32))
    assert rpc_error(stub.Predict, request) == (
        grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')


# --- which servable: unknown model, version, label ----------------------------------------

@pytest.mark.parametrize("spec, code, message", [
    ({"name": "nope"}, grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    ({"name": "half_plus_two", "version": 42}, grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(half_plus_two, 42)"),
    ({"name": "half_plus_two", "label": "canary"}, grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: canary"),
    ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
])
def test_servable_lookup_errors_on_every_api(stub, spec, code, message):
    requests = [predict_request(x=np.array([1.0], np.float32)),
                classification_pb2.ClassificationRequest(),
                regression_pb2.RegressionRequest(),
                get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])]
    calls = [stub.Predict, stub.Classify, stub.Regress, stub.GetModelMetadata]
    for call, request in zip(calls, requests):
        request.model_spec.name = spec["name"]
        if "version" in spec:
            request.model_spec.version.value = spec["version"]
        if "label" in spec:
            request.model_spec.version_label = spec["label"]
        assert rpc_error(call, request) == (code, message), call


# --- Classify / Regress ---------------------------------------------------------------------

def test_classify_scores_only(stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.extend([example(x=2.0), example(x=4.0)])
    response = stub.Classify(request, timeout=30)
    got = [[(c.label, c.score) for c in r.classes] for r in response.result.classifications]
    assert got == [[("", 3.0)], [("", 4.0)]]
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("half_plus_two", 1, "classify_x_to_y")


def test_classify_labels_and_scores(stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_with_classes"
    request.input.example_list.examples.append(example(x=-2.0))
    response = stub.Classify(request, timeout=30)
    got = [[(c.label, c.score) for c in r.classes] for r in response.result.classifications]
    assert got == [[("low", 0.0), ("high", 1.0)]]


def test_regress_with_context_merged_into_each_example(stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.CopyFrom(example(x=10.0))
    # The first example has no x of its own (context's 10 applies), the second overrides it.
    with_context.examples.extend([example(other=b"a"), example(x=4.0)])
    response = stub.Regress(request, timeout=30)
    assert [r.value for r in response.result.regressions] == [7.0, 4.0]
    assert response.model_spec.signature_name == "regress_x_to_y"
    assert response.model_spec.version.value == 1


def test_regress_empty_input(stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x_to_y"
    assert rpc_error(stub.Regress, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")


def test_classify_unknown_signature(stub):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "nope"
    request.input.example_list.examples.append(example(x=1.0))
    assert rpc_error(stub.Classify, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, "No signature was found with the name: nope")


def test_regress_on_a_predict_signature(stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"  # serving_default takes "x", not "inputs"
    request.input.example_list.examples.append(example(x=1.0))
    code, message = rpc_error(stub.Regress, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("No regression inputs found in SignatureDef: ")


# --- MultiInference -------------------------------------------------------------------------

def multi_inference_request(*tasks, examples=(1.0, 3.0)):
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.extend(example(x=x) for x in examples)
    return request


CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def test_multi_inference_classify_and_regress_in_one_call(tf1_stub):
    request = multi_inference_request(("tf1_half_plus_two", "classify_x_to_y", CLASSIFY),
                                      ("tf1_half_plus_two", "regress_x_to_y", REGRESS))
    response = tf1_stub.MultiInference(request, timeout=30)
    assert len(response.results) == 2
    classification, regression = response.results
    assert [[c.score for c in r.classes]
            for r in classification.classification_result.classifications] == [[2.5], [3.5]]
    assert [r.value for r in regression.regression_result.regressions] == [2.5, 3.5]
    assert [(r.model_spec.name, r.model_spec.version.value, r.model_spec.signature_name)
            for r in response.results] == [("tf1_half_plus_two", 1, "classify_x_to_y"),
                                           ("tf1_half_plus_two", 1, "regress_x_to_y")]


@pytest.mark.parametrize("tasks, code, message", [
    ([("half_plus_two", "regress_x_to_y", REGRESS), ("half_plus_two", "regress_x_to_y", REGRESS)],
     grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: regress_x_to_y"),
    ([("half_plus_two", "regress_x_to_y", REGRESS), ("multi_io", "classify_x_to_y", CLASSIFY)],
     grpc.StatusCode.INVALID_ARGUMENT,
     "All ModelSpecs in a MultiInferenceRequest must access the same model name."),
    ([("half_plus_two", "nope", REGRESS)],
     grpc.StatusCode.INVALID_ARGUMENT, "Requested signature not found in model graph: nope"),
    ([("half_plus_two", "regress_x_to_y", "tensorflow/serving/predict")],
     grpc.StatusCode.UNIMPLEMENTED,
     "Unsupported signature method_name: tensorflow/serving/predict"),
    ([("nope", "regress_x_to_y", REGRESS)],
     grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    # Each TF2 signature has its own placeholder, so TF Serving refuses to combine them.
    ([("half_plus_two", "classify_x_to_y", CLASSIFY), ("half_plus_two", "regress_x_to_y", REGRESS)],
     grpc.StatusCode.INVALID_ARGUMENT, "Input tensor must be the same for all Signatures."),
])
def test_multi_inference_errors(stub, tasks, code, message):
    assert rpc_error(stub.MultiInference, multi_inference_request(*tasks)) == (code, message)


# --- GetModelMetadata -----------------------------------------------------------------------

def test_get_model_metadata_signature_defs(stub, saved_models):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "half_plus_two"
    request.metadata_field.append("signature_def")
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == ""  # TF Serving leaves it unset here
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    saved = tf.saved_model.load(saved_models["half_plus_two"])
    assert set(signature_map.signature_def) >= set(saved.signatures)
    predict = signature_map.signature_def["serving_default"]
    assert predict.method_name == "tensorflow/serving/predict"
    assert predict.inputs["x"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in predict.inputs["x"].tensor_shape.dim] == [-1]
    assert list(predict.outputs) == ["y"]


@pytest.mark.parametrize("fields, message", [
    ([], "GetModelMetadataRequest must specify at least one metadata_field"),
    (["signature_def", "graph"], "Metadata field %s is not supportedgraph"),
])
def test_get_model_metadata_bad_fields(stub, fields, message):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = "half_plus_two"
    assert rpc_error(stub.GetModelMetadata, request) == (
        grpc.StatusCode.INVALID_ARGUMENT, message)
