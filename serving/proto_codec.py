"""TF Serving's API protos <-> the numpy arrays a Servable takes and returns.

The one codec between protos and tensors, as json_codec is for JSON: grpc_api decodes
requests and encodes responses with it, request_logging builds the protos it logs with it.
"""
import numpy as np

import serving  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from serving import errors
from serving.servable import DEFAULT_SIGNATURE

import tensorflow as tf  # noqa: E402  (after `serving` set the Keras flavour)
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402,E501


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


# --- serialized tensors, for the request logger --------------------------------------------------
# The request logger needs bytes, not messages. Building a message costs microseconds a
# field through protobuf's Python API, and serializing a map of them as much again: a
# 14-feature request took ~80 us to log, a sixth of the request's own cost on two cores.
# Written directly, from a header worked out once per dtype and shape, the same bytes take
# ~1 us a tensor; tests hold them equal to fill_tensor_proto's serialized.

def length_delimited(field_number: int, payload: bytes) -> bytes:
    """One protobuf field of wire type 2 (a message, string or packed values)."""
    return varint(field_number << 3 | 2) + varint(len(payload)) + payload


_ONE_BYTE_VARINTS = [bytes((value,)) for value in range(128)]


def varint(value: int) -> bytes:
    """A protobuf varint; a negative value as its 64-bit two's complement, as protobuf does."""
    if 0 <= value < 128:  # tags, lengths and small numbers: nearly every call
        return _ONE_BYTE_VARINTS[value]
    if 0 < value < 16384:  # the lengths of tensors and logs
        return bytes((value & 0x7F | 0x80, value >> 7))
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_TENSOR_FIELDS = {name: field.number
                  for name, field in tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name.items()}
_SHAPE_DIM = tensor_shape_pb2.TensorShapeProto.DESCRIPTOR.fields_by_name["dim"].number
_DIM_SIZE = tensor_shape_pb2.TensorShapeProto.Dim.DESCRIPTOR.fields_by_name["size"].number
# numpy dtypes written here, -> a little-endian fixed-width format, or None for varints.
_PACKED_FORMATS = {np.dtype(name): packed for name, packed in (
    ("float32", "<f4"), ("float64", "<f8"), ("int8", None), ("int16", None), ("int32", None),
    ("uint8", None), ("uint16", None), ("int64", None), ("uint32", None), ("uint64", None),
    ("bool", None))}
_MAX_PLANS = 1024  # (dtype, shape) pairs remembered; shapes vary with batch sizes
_headers = {}


def value_field_tag(field_name: str) -> bytes:
    """The tag of a TensorProto *_val field ("float_val", ...), length-delimited: packed
    numbers, or one string each."""
    return varint(_TENSOR_FIELDS[field_name] << 3 | 2)


def tensor_header(dtype: int, shape: tuple) -> bytes:
    """A TensorProto's dtype and tensor_shape fields, serialized (once per dtype and shape)."""
    header = _headers.get((dtype, shape))
    if header is None:
        header = varint(_TENSOR_FIELDS["dtype"] << 3) + varint(dtype)
        if shape:  # proto3 leaves a zero size out: an empty Dim
            header += length_delimited(_TENSOR_FIELDS["tensor_shape"], b"".join(
                length_delimited(_SHAPE_DIM,
                                 varint(_DIM_SIZE << 3) + varint(size) if size else b"")
                for size in shape))
        if len(_headers) >= _MAX_PLANS:
            _headers.clear()
        _headers[dtype, shape] = header
    return header


_encodings = {}


def _tensor_encoding(numpy_dtype):
    """(DataType, values field tag or None for strings, packed format or None for varints),
    or None for dtypes left to fill_tensor_proto (half, complex, ...)."""
    encoding = _encodings.get(numpy_dtype, False)
    if encoding is False:
        if numpy_dtype.kind in ("O", "S", "U"):
            encoding = (types_pb2.DT_STRING, None, None)
        elif numpy_dtype in _PACKED_FORMATS:
            dtype, field = _output_encoding(numpy_dtype)
            encoding = (dtype, value_field_tag(field), _PACKED_FORMATS[numpy_dtype])
        else:
            encoding = None
        _encodings[numpy_dtype] = encoding
    return encoding


def string_values(items) -> bytes:
    """Strings (bytes, or anything else as its str in UTF-8) as TensorProto string_val
    fields."""
    string_tag = _STRING_VAL_TAG
    parts = []
    for item in items:
        item = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts += (string_tag, varint(len(item)), item)
    return b"".join(parts)


def packed_encoding(dtype_str: str):
    """(DataType, values field tag) for a numpy dtype.str whose bytes are already the
    values as the field packs them (little-endian float32 and float64), else None."""
    return _PACKED_AS_IS.get(dtype_str)


def _values(array, tag, packed_format) -> bytes:
    """The array's values as the TensorProto holds them: packed numbers (without their tag
    and length), or for strings (tag None) their string_val fields."""
    if tag is None:
        return string_values(array.ravel().tolist())
    flat = array.ravel()
    if packed_format:
        return flat.astype(packed_format, copy=False).tobytes()
    return b"".join([varint(item) for item in flat.tolist()])


def serialized_tensor_proto(value) -> bytes:
    """fill_tensor_proto's TensorProto, serialized, without building the message."""
    array = np.asarray(value)
    encoding = _tensor_encoding(array.dtype)
    if encoding is None:
        message = tensor_pb2.TensorProto()
        fill_tensor_proto(message, array)
        return message.SerializeToString()
    dtype, tag, packed_format = encoding
    header = tensor_header(dtype, array.shape)
    payload = _values(array, tag, packed_format)
    if tag is None or not payload:  # strings carry their own tags; no values, no field
        return header + payload
    return b"".join((header, tag, varint(len(payload)), payload))


_STRING_VAL_TAG = value_field_tag("string_val")
_PACKED_AS_IS = {"<f4": (types_pb2.DT_FLOAT, value_field_tag("float_val")),
                 "<f8": (types_pb2.DT_DOUBLE, value_field_tag("double_val"))}
_MAP_KEYS = {}  # alias -> map_entry_key(alias)


def map_entry_key(alias: str) -> bytes:
    """The start of a map<string, TensorProto> entry: its key field (1) and the tag of its
    value field (2); the value's length and bytes follow."""
    key = _MAP_KEYS.get(alias)
    if key is None:
        key = length_delimited(1, alias.encode("utf-8")) + varint(2 << 3 | 2)
        if len(_MAP_KEYS) < _MAX_PLANS:
            _MAP_KEYS[alias] = key
    return key


def tensor_map_entry_start(field_number: int, alias: str, dtype: int, shape: tuple, values_tag,
                           payload_length: int) -> bytes:
    """All of a map<string, TensorProto> field's entry but the tensor's values, which
    follow it: the tensor has dtype and shape, and its values are payload_length bytes of
    the packed field values_tag, or for strings (values_tag None) their string_val fields."""
    tensor_start = tensor_header(dtype, shape)
    if values_tag is not None and payload_length:
        tensor_start += values_tag + varint(payload_length)
    entry_start = map_entry_key(alias) + varint(len(tensor_start) + payload_length) \
        + tensor_start
    return varint(field_number << 3 | 2) + varint(len(entry_start) + payload_length) \
        + entry_start


_entry_starts = {}


def tensor_map_entry(field_number: int, alias: str, dtype: int, shape: tuple, values_tag,
                     payload: bytes) -> bytes:
    """tensor_map_entry_start and the payload; the start serialized once per alias, dtype,
    shape and payload length."""
    key = (field_number, alias, dtype, shape, values_tag, len(payload))
    start = _entry_starts.get(key)
    if start is None:
        if len(_entry_starts) >= 16 * _MAX_PLANS:  # payload lengths vary for varints, strings
            _entry_starts.clear()
        start = _entry_starts[key] = tensor_map_entry_start(
            field_number, alias, dtype, shape, values_tag, len(payload))
    return start + payload


def serialized_tensor_map(field_number: int, tensors: dict) -> bytes:
    """A map<string, TensorProto> field (PredictRequest.inputs, PredictResponse.outputs)."""
    parts = []
    for alias, value in tensors.items():
        array = np.asarray(value)
        encoding = _tensor_encoding(array.dtype)
        if encoding is None:
            tensor = serialized_tensor_proto(array)
            entry = b"".join((map_entry_key(alias), varint(len(tensor)), tensor))
            parts.append(length_delimited(field_number, entry))
            continue
        dtype, tag, packed_format = encoding
        parts.append(tensor_map_entry(field_number, alias, dtype, array.shape, tag,
                                      _values(array, tag, packed_format)))
    return b"".join(parts)


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
