"""TF Serving's API protos <-> the numpy arrays a Servable takes and returns.

The one codec between protos and tensors, as json_codec is for JSON: grpc_api decodes
requests and encodes responses with it, request_logging builds the protos it logs with it.
"""
import numpy as np

import serving  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from serving import errors
from serving.servable import DEFAULT_SIGNATURE

import tensorflow as tf  # noqa: E402  (after `serving` set the Keras flavour)
from tensorflow.core.framework import types_pb2  # noqa: E402


def set_model_spec(model_spec, name, version, signature_name=None):
    """Response model_spec as TF Serving's MakeModelSpec fills it."""
    model_spec.name = name
    model_spec.version.value = version
    if signature_name is not None:
        model_spec.signature_name = signature_name or DEFAULT_SIGNATURE


def serialized_examples(input_proto) -> list:
    """Input -> serialized tf.Examples, the tensor a classify/regress signature takes.

    With a context, the context's bytes go first: parsing the concatenation merges
    both messages, so an example's own feature wins over a context feature of the
    same name, exactly as TF Serving does it.
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        context = with_context.context.SerializeToString()
        return [context + e.SerializeToString() for e in with_context.examples]
    return []


# DataType -> (numpy dtype, the typed TensorProto field that holds its values).
_PROTO_FIELDS = {
    types_pb2.DT_FLOAT: (np.float32, "float_val"), types_pb2.DT_DOUBLE: (np.float64, "double_val"),
    types_pb2.DT_INT32: (np.int32, "int_val"), types_pb2.DT_INT16: (np.int16, "int_val"),
    types_pb2.DT_INT8: (np.int8, "int_val"), types_pb2.DT_UINT8: (np.uint8, "int_val"),
    types_pb2.DT_UINT16: (np.uint16, "int_val"), types_pb2.DT_INT64: (np.int64, "int64_val"),
    types_pb2.DT_UINT32: (np.uint32, "uint32_val"), types_pb2.DT_UINT64: (np.uint64, "uint64_val"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val"), types_pb2.DT_STRING: (object, "string_val"),
}


def tensor_proto_to_numpy(tensor_proto):
    """TensorProto -> ndarray with TF's Tensor::FromProto rules for the common dtypes.

    tf.make_ndarray costs ~15 us a tensor, as much as a small model's whole run for a
    request of 14 raw features; this direct path is a few times faster. Every attribute
    read of a proto costs, so each is read once.
    """
    dtype_and_field = _PROTO_FIELDS.get(tensor_proto.dtype)
    if dtype_and_field is None:  # half, bfloat16, complex, ...: TF's own converter
        return tf.make_ndarray(tensor_proto)
    dtype, field = dtype_and_field
    shape = [d.size for d in tensor_proto.tensor_shape.dim]
    count = 1
    for size in shape:
        if size < 0:
            raise ValueError("negative dimension")
        count *= size
    if dtype is not object:
        content = tensor_proto.tensor_content
        if content:
            return np.frombuffer(content, dtype=dtype).reshape(shape).copy()
    values = getattr(tensor_proto, field)
    given = len(values)
    if given == count:  # the usual case: one value per element
        if dtype is object:
            array = np.empty(count, dtype=object)
            array[:] = list(values)
            return array.reshape(shape)
        return np.array(list(values), dtype=dtype).reshape(shape)
    if given > count:
        raise ValueError("more values than the shape holds")
    # Like TF, a short value list is padded with its last value (or zeros/empty).
    values = list(values) + [values[-1] if given else (b"" if dtype is object else 0)] * (
        count - given)
    if dtype is object:
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def inputs_as_numpy(request_inputs) -> dict:
    arrays = {}
    # By key, not .items(): a proto map's items() is a pure-Python view, ~1 us an entry.
    for alias in request_inputs:
        try:
            arrays[alias] = tensor_proto_to_numpy(request_inputs[alias])
        except Exception:  # any malformed TensorProto: TF's FromProto just fails
            raise errors.invalid_argument(f"tensor parsing error: {alias}") from None
    return arrays


# numpy kind/size -> the typed TensorProto field TF's Tensor::AsProtoField writes.
_VALUE_FIELDS = {
    "float32": "float_val", "float64": "double_val", "int8": "int_val", "int16": "int_val",
    "int32": "int_val", "uint8": "int_val", "uint16": "int_val", "int64": "int64_val",
    "uint32": "uint32_val", "uint64": "uint64_val", "bool": "bool_val",
    "complex64": "scomplex_val", "complex128": "dcomplex_val",
}


# numpy dtype -> (DataType enum, *_val field or None); tf.dtypes.as_dtype and dtype.name
# cost microseconds a call, as much as writing a small output.
_OUTPUT_ENCODINGS = {}


def _output_encoding(numpy_dtype):
    encoding = _OUTPUT_ENCODINGS.get(numpy_dtype)
    if encoding is None:
        encoding = _OUTPUT_ENCODINGS[numpy_dtype] = (
            tf.dtypes.as_dtype(numpy_dtype).as_datatype_enum,
            _VALUE_FIELDS.get(numpy_dtype.name))
    return encoding


def fill_tensor_proto(tensor_proto, value) -> None:
    """Writes an output the way TF Serving's Predict does: typed *_val fields.

    Clients such as TF Serving's own examples read `outputs[...].float_val`
    directly, which tf.make_tensor_proto's packed tensor_content would break.
    """
    array = np.asarray(value)
    for size in array.shape:
        tensor_proto.tensor_shape.dim.add().size = size
    if array.dtype.kind in ("O", "S", "U"):
        tensor_proto.dtype = types_pb2.DT_STRING
        tensor_proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel())
        return
    tensor_proto.dtype, field = _output_encoding(array.dtype)
    if field is None:  # float16/bfloat16 and rarer types: the packed form is still valid
        tensor_proto.tensor_content = array.tobytes()
        return
    flat = array.ravel()
    if array.dtype.kind == "c":  # complex values go in as (real, imaginary) pairs
        flat = np.stack([flat.real, flat.imag], axis=-1).ravel()
    getattr(tensor_proto, field).extend(flat.tolist())


def classification_result(result, classes, scores) -> None:
    batch = classes.shape[0] if classes is not None else scores.shape[0]
    num_classes = classes.shape[1] if classes is not None else scores.shape[1]
    for row in range(batch):
        classifications = result.classifications.add()
        for column in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                label = classes[row, column]
                entry.label = label.decode("utf-8", "replace") if isinstance(
                    label, bytes) else str(label)
            if scores is not None:
                entry.score = float(scores[row, column])


def regression_result(result, values) -> None:
    for value in values:
        result.regressions.add().value = float(value)
