"""The one codec between TF Serving's REST JSON and tensors / tf.Examples.

Follows TF Serving's util/json_tensor.cc: row ("instances") and columnar ("inputs") predict
requests, classify/regress "examples" (+ "context"), {"b64": ...} strings, its number
printing (float32 0.1 prints as 0.1; NaN/Infinity bare) and its error messages.
"""
import base64
import binascii
import json
import math
import re

import grpc
import numpy as np

from serving import errors

SIGNATURE_KEY = "signature_name"
INSTANCES_KEY = "instances"
INPUTS_KEY = "inputs"
CONTEXT_KEY = "context"
EXAMPLES_KEY = "examples"
PREDICTIONS_KEY = "predictions"
OUTPUTS_KEY = "outputs"
RESULTS_KEY = "results"
BASE64_KEY = "b64"
BYTES_SUFFIX = "_bytes"  # string outputs named *_bytes are sent back base64-encoded

ROW, COLUMNAR = "row", "columnar"

_INT32 = (-2 ** 31, 2 ** 31 - 1)
_INT64 = (-2 ** 63, 2 ** 63 - 1)
_UINT32 = (0, 2 ** 32 - 1)
_UINT64 = (0, 2 ** 64 - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# NumPy's limit on dimensions (TensorFlow's is 254): deeper input cannot become a tensor here.
MAX_TENSOR_RANK = 32

# TensorFlow DataType enum values (tensorflow/core/framework/types.proto).
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_INT64, DT_BOOL, DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 9, 10, 17, 19, 22, 23

_NUMPY_TYPES = {
    DT_FLOAT: np.float32, DT_DOUBLE: np.float64, DT_INT32: np.int32, DT_UINT8: np.uint8,
    DT_INT16: np.int16, DT_INT8: np.int8, DT_STRING: object, DT_INT64: np.int64,
    DT_BOOL: np.bool_, DT_UINT16: np.uint16, DT_HALF: np.float16, DT_UINT32: np.uint32,
    DT_UINT64: np.uint64,
}


# --- number printing ---------------------------------------------------------------------
def format_decimal(value, single_precision: bool) -> str:
    """TF Serving's WriteDecimal: 6 significant digits if that round-trips, else full."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%.6g" % value
    if single_precision:
        if np.float32(text) != np.float32(value):
            text = "%.9g" % value
    elif float(text) != value:
        text = "%.17g" % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


# --- a writer that lays JSON out the way TF Serving's rapidjson PrettyWriter does --------
class PrettyWriter:
    """Event-style JSON writer; `single_line_arrays` mirrors kFormatSingleLineArray."""

    def __init__(self):
        self._out = []
        self._levels = []  # [is_array, value_count]
        self.single_line_arrays = False

    def _prefix(self):
        if not self._levels:
            return
        level = self._levels[-1]
        indent = " " * (4 * len(self._levels))
        if level[0]:
            if level[1] > 0:
                self._out.append(", " if self.single_line_arrays else ",")
            if not self.single_line_arrays:
                self._out.append("\n" + indent)
        else:
            if level[1] > 0:
                self._out.append(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self._out.append("\n")
            if level[1] % 2 == 0:
                self._out.append(indent)
        level[1] += 1

    def raw(self, text: str):
        self._prefix()
        self._out.append(text)

    def string(self, text: str):
        self.raw(json.dumps(text, ensure_ascii=False))

    def start_object(self):
        self._prefix()
        self._out.append("{")
        self._levels.append([False, 0])

    def end_object(self):
        level = self._levels.pop()
        if level[1]:
            self._out.append("\n" + " " * (4 * len(self._levels)))
        self._out.append("}")

    def start_array(self):
        self._prefix()
        self._out.append("[")
        self._levels.append([True, 0])

    def end_array(self):
        level = self._levels.pop()
        if level[1] and not self.single_line_arrays:
            self._out.append("\n" + " " * (4 * len(self._levels)))
        self._out.append("]")

    def text(self) -> str:
        return "".join(self._out)


# Error messages echo the request's JSON, as TF Serving's do; a bound keeps a small request
# from producing a huge message (pretty-printed deep nesting grows with the square of depth).
MAX_ECHOED_NODES = 128
MAX_ECHOED_DEPTH = 16
MAX_ECHOED_LEAF_CHARS = 128
ELLIPSIS = "..."


def _write_value(writer, value, budget, depth=0):
    """Writes a parsed JSON value (for error messages), as rapidjson's Accept would, up to
    budget[0] values and MAX_ECHOED_DEPTH levels; what is left out is written as ..."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_ECHOED_DEPTH:
        writer.raw(ELLIPSIS)
        return
    if isinstance(value, dict):
        writer.start_object()
        for key, item in value.items():
            if budget[0] < 0:
                break
            writer.string(_shortened(key))
            _write_value(writer, item, budget, depth + 1)
        writer.end_object()
    elif isinstance(value, list):
        writer.start_array()
        for item in value:
            if budget[0] < 0:
                writer.raw(ELLIPSIS)
                break
            _write_value(writer, item, budget, depth + 1)
        writer.end_array()
    elif isinstance(value, bool):
        writer.raw("true" if value else "false")
    elif value is None:
        writer.raw("null")
    elif isinstance(value, float):
        writer.raw(repr(value) if math.isfinite(value) else format_decimal(value, False))
    elif isinstance(value, int):
        writer.raw(_shortened(str(value)))
    else:
        writer.string(_shortened(value))


def _shortened(text: str) -> str:
    if len(text) <= MAX_ECHOED_LEAF_CHARS:
        return text
    return text[:MAX_ECHOED_LEAF_CHARS] + ELLIPSIS


def json_value_to_string(value) -> str:
    if isinstance(value, float):
        return format_decimal(value, _is_lossless_float32(value))
    writer = PrettyWriter()
    _write_value(writer, value, [MAX_ECHOED_NODES])
    return writer.text()


def json_type_name(value) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _is_lossless_float32(value: float) -> bool:
    return not math.isfinite(value) or (
        abs(value) <= _FLOAT32_MAX and float(np.float32(value)) == value)


# --- parsing ------------------------------------------------------------------------------
def _rapidjson_message(error: json.JSONDecodeError, text: str) -> str:
    """Maps Python's JSON error to the wording of rapidjson, which TF Serving reports."""
    message = error.msg
    if message.startswith("Expecting value"):
        return "Invalid value."
    if message.startswith("Expecting property name"):
        return "Missing a name for object member."
    if message.startswith("Expecting ':'"):
        return "Missing a colon after a name of object member."
    if message.startswith("Expecting ','"):
        return ("Missing a comma or ']' after an array element."
                if _innermost_container(text, error.pos) == "["
                else "Missing a comma or '}' after an object member.")
    if message.startswith("Extra data"):
        return "The document root must not be followed by other values."
    if message.startswith("Unterminated string"):
        return "Missing a closing quotation mark in string."
    if message.startswith("Invalid \\escape") or message.startswith("Invalid \\u"):
        return "Invalid escape character in string."
    if message.startswith("Invalid control character"):
        return "Invalid encoding in string."
    return "Invalid value."


def _innermost_container(text: str, pos: int) -> str:
    stack, in_string, escaped = [], False, False
    for char in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


# rapidjson refuses a number no double can hold; Python parses it as an int (up to its own
# 4300-digit limit, past which it raises ValueError) or as inf. Only a body with a long run
# of digits or a 3-digit exponent is looked at more closely, so the common one pays one scan.
_MAYBE_TOO_BIG = re.compile(r"\d{309,}|[eE][+-]?\d{3,}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_DOUBLE_MAX = float(np.finfo(np.float64).max)


class _JsonConstant(float):
    """NaN, Infinity or -Infinity written as such: TF Serving's parser takes them
    (kParseNanAndInfFlag), unlike an infinity that comes from a number too big."""


def _holds_number_too_big(doc) -> bool:
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif type(value) is float and math.isinf(value):
            return True
        elif type(value) is int and abs(value) > _DOUBLE_MAX:
            return True
    return False


def _first_number_too_big(text: str) -> int:
    """Offset of the first number too big for a double, for the error message."""
    for match in _NUMBER.finditer(text):
        if math.isinf(float(match.group())):
            return match.start()
    return 0


_SURROGATE_ESCAPE = re.compile(r"\\[uU][dD][89a-fA-F]")
_ESCAPE = re.compile(r"\\(?:[uU]([0-9a-fA-F]{4})|.)", re.DOTALL)


def _invalid_surrogate(text: str):
    """Offset of a \\u escape that is half a surrogate pair (rapidjson refuses those), else None.

    Only \\u escapes can make one: the body was valid UTF-8, which cannot encode surrogates.
    """
    pending_high = None  # (offset, end) of a high surrogate waiting for its low half
    for match in _ESCAPE.finditer(text):
        code = int(match.group(1), 16) if match.group(1) else None
        if pending_high is not None:
            if code is None or not 0xDC00 <= code <= 0xDFFF or match.start() != pending_high[1]:
                return pending_high[0]
            pending_high = None
            continue
        if code is not None and 0xD800 <= code <= 0xDBFF:
            pending_high = (match.start(), match.end())
        elif code is not None and 0xDC00 <= code <= 0xDFFF:
            return match.start()
    return pending_high[0] if pending_high else None


def parse_json(body) -> dict:
    """Parses a request body; the top level must be an object, as TF Serving requires."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise errors.invalid_argument(
                f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from None
    else:
        text = body
    if not text.strip():
        raise errors.invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(text, parse_constant=_JsonConstant)
    except json.JSONDecodeError as e:
        raise errors.invalid_argument(
            f"JSON Parse error: {_rapidjson_message(e, text)} at offset: {e.pos}") from None
    except RecursionError:
        raise errors.invalid_argument(
            "JSON Parse error: Terminate parsing due to Handler error. at offset: 0") from None
    except ValueError:  # an integer past Python's digit limit: far too big for a double
        doc = None
    if doc is None or (_MAYBE_TOO_BIG.search(text) and _holds_number_too_big(doc)):
        raise errors.invalid_argument(
            "JSON Parse error: Number too big to be stored in double. at offset: "
            f"{_first_number_too_big(text)}")
    if _SURROGATE_ESCAPE.search(text):
        offset = _invalid_surrogate(text)
        if offset is not None:
            raise errors.invalid_argument(
                "JSON Parse error: The surrogate pair in string is invalid. at offset: "
                f"{offset}")
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    return doc


def _format_error(value, *parts) -> errors.ServingError:
    return errors.invalid_argument(f"JSON Value: {json_value_to_string(value)} " + "".join(parts))


def signature_name_of(doc: dict) -> str:
    if SIGNATURE_KEY not in doc:
        return ""
    name = doc[SIGNATURE_KEY]
    if not isinstance(name, str):
        raise errors.invalid_argument(
            f"JSON Value: {json_value_to_string(doc)} not formatted correctly. "
            "'signature_name' key must be a string value.")
    return name


# --- predict request -> tensors -------------------------------------------------------
def _is_b64_object(value) -> bool:
    return (isinstance(value, dict) and len(value) == 1 and BASE64_KEY in value
            and isinstance(value[BASE64_KEY], str))


def _is_element_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64_object(value)


def _decode_b64(value) -> bytes:
    if not _is_b64_object(value):
        raise errors.invalid_argument(
            f"JSON Value: {json_value_to_string(value)} not formatted correctly for base64 "
            "data")
    text = value[BASE64_KEY].strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_argument("Unable to base64 decode") from None


def _type_error(value, dtype) -> errors.ServingError:
    from serving.servable import dtype_name

    return errors.invalid_argument(
        f"JSON Value: {json_value_to_string(value)} Type: {json_type_name(value)} is not of "
        f"expected type: {dtype_name(dtype)}")


def _lossy_error(value, target) -> errors.ServingError:
    return errors.invalid_argument(
        f"Cannot convert JSON value: {json_value_to_string(value)} to {target} without loss "
        "of precision.")


def _is_lossless(value, bits: int, max_value: float) -> bool:
    if isinstance(value, int):
        return abs(value) <= (1 << bits) - 1
    return not math.isfinite(value) or -max_value <= value <= max_value


def _is_int_in(value, bounds) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and \
        bounds[0] <= value <= bounds[1]


def _convert_scalar(value, dtype):
    """One JSON leaf -> a Python value of the tensor's dtype, or TF Serving's error."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if dtype in (DT_FLOAT, DT_HALF):
        if not is_number:
            raise _type_error(value, dtype)
        if not _is_lossless(value, 24, _FLOAT32_MAX):
            raise _lossy_error(value, "float")
        return float(value)
    if dtype == DT_DOUBLE:
        if not is_number:
            raise _type_error(value, dtype)
        if isinstance(value, int) and not _is_lossless(value, 53, float("inf")):
            raise _lossy_error(value, "double")
        return float(value)
    if dtype in (DT_INT32, DT_INT16, DT_INT8, DT_UINT8, DT_UINT16):
        if not _is_int_in(value, _INT32):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_INT64:
        if not _is_int_in(value, _INT64):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_UINT32:
        if not _is_int_in(value, _UINT32):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_UINT64:
        if not _is_int_in(value, _UINT64):
            raise _type_error(value, dtype)
        return value
    if dtype == DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", errors="surrogateescape")
    if dtype == DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    from serving.servable import dtype_name

    raise errors.ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {json_value_to_string(value)} to type: "
        f"{dtype_name(dtype)}")


def _dense_shape(value) -> list:
    """Shape implied by following the first element at each level (GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    _check_rank(shape)  # before _fill_values recurses once per dimension
    return shape


def _check_rank(shape):
    if len(shape) > MAX_TENSOR_RANK:
        raise errors.invalid_argument(
            f"Tensor of rank {len(shape)} is deeper than the {MAX_TENSOR_RANK} dimensions this "
            "server supports")


def _fill_values(value, level, shape, dtype, out):
    """Flattens `value` into out, checking it is dense with `shape` (FillTensorProto)."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise errors.invalid_argument(
                f"JSON Value: {json_value_to_string(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}")
        if isinstance(value, dict):
            if dtype != DT_STRING:
                raise _type_error(value, dtype)
            out.append(_decode_b64(value))
        else:
            out.append(_convert_scalar(value, dtype))
        return
    if level >= rank:
        raise errors.invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise errors.invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected "
            f"size: {shape[level]}")
    for item in value:
        _fill_values(item, level + 1, shape, dtype, out)


def _to_array(values, shape, dtype):
    _check_rank(shape)  # a batch of rank-32 instances is one deeper
    numpy_type = _NUMPY_TYPES.get(dtype, object)
    if numpy_type is object:
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        array = np.array(values, dtype=numpy_type)
    return array.reshape(shape)


def _status_string(error: errors.ServingError) -> str:
    return f"{error.code_name}: {error.message}"


def _shape_string(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _inputs_from_instances(instances, tensor_infos):
    names = sorted(tensor_infos)
    if not isinstance(instances[0], dict) and len(names) > 1:
        raise errors.invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple input "
            "tensors required as per tensorinfo_map")
    elements_are_objects = _is_element_object(instances[0])
    values = {}  # name -> flat list over all instances
    item_shapes = {}
    item_sizes = {}

    def add_item(item, name):
        if name not in tensor_infos:
            raise errors.invalid_argument(
                f"JSON object: does not have named input: {name}")
        dtype = tensor_infos[name].dtype
        shape = _dense_shape(item)
        flat = []
        _fill_values(item, 0, shape, dtype, flat)
        if name not in item_sizes:
            item_sizes[name] = len(flat)
            item_shapes[name] = shape
        elif item_sizes[name] != len(flat):
            raise errors.invalid_argument(
                f"Expecting tensor size: {item_sizes[name]} but got: {len(flat)}")
        elif item_shapes[name] != shape:
            raise errors.invalid_argument(
                f"Expecting shape {_shape_string(item_shapes[name])} but got: "
                f"{_shape_string(shape)}")
        values.setdefault(name, []).extend(flat)

    for index, element in enumerate(instances):
        if elements_are_objects:
            if not _is_element_object(element):
                raise errors.invalid_argument(
                    f"Expecting object but got list at item {index} of input list")
            for key, item in element.items():
                try:
                    add_item(item, key)
                except errors.ServingError as e:
                    raise errors.invalid_argument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {_status_string(e)}") from None
            if set(element) != set(names):
                raise errors.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{json_value_to_string(element)} keys must be equal to: {','.join(names)}")
        else:
            if _is_element_object(element):
                raise errors.invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(element, names[0])
            except errors.ServingError as e:
                raise errors.invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. Error: "
                    f"{_status_string(e)}") from None
    return {name: _to_array(flat, [len(instances)] + item_shapes[name],
                            tensor_infos[name].dtype)
            for name, flat in values.items()}


def _inputs_from_columns(value, tensor_infos):
    names = sorted(tensor_infos)
    if not isinstance(value, dict) or _is_b64_object(value):
        if len(names) > 1:
            raise errors.invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map")
        columns = {names[0]: value}
    else:
        columns = {}
        for name in names:
            if name not in value:
                raise errors.invalid_argument(
                    f"Missing named input: {name} in 'inputs' object.")
            columns[name] = value[name]
    arrays = {}
    for name, column in columns.items():
        dtype = tensor_infos[name].dtype
        shape = _dense_shape(column)
        flat = []
        _fill_values(column, 0, shape, dtype, flat)
        arrays[name] = _to_array(flat, shape, dtype)
    return arrays


def decode_predict_request(doc: dict, tensor_infos):
    """-> (inputs {name: ndarray}, ROW or COLUMNAR). tensor_infos: signature inputs map."""
    if not tensor_infos:
        signature_name = doc.get(SIGNATURE_KEY) or "DEFAULT"
        raise errors.invalid_argument(f"Failed to get input map for signature: {signature_name}")
    has_instances = INSTANCES_KEY in doc
    has_inputs = INPUTS_KEY in doc
    if has_instances and has_inputs:
        raise _format_error(doc, "Not formatted correctly expecting only one of 'inputs' or "
                                 "'instances' keys to exist ")
    if has_instances:
        instances = doc[INSTANCES_KEY]
        if not isinstance(instances, list):
            raise _format_error(doc, "Excepting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return _inputs_from_instances(instances, tensor_infos), ROW
    if has_inputs:
        return _inputs_from_columns(doc[INPUTS_KEY], tensor_infos), COLUMNAR
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")


# --- tensors -> predict response --------------------------------------------------------
def _write_scalar(writer, value, as_bytes: bool):
    if isinstance(value, (bytes, np.bytes_)):
        if as_bytes:
            writer.start_object()
            writer.string(BASE64_KEY)
            writer.string(base64.b64encode(bytes(value)).decode("ascii"))
            writer.end_object()
        else:
            writer.string(bytes(value).decode("utf-8", errors="surrogateescape"))
    elif isinstance(value, str):
        writer.string(value)
    elif isinstance(value, (bool, np.bool_)):
        writer.raw("true" if value else "false")
    elif isinstance(value, (np.floating, float)):
        writer.raw(format_decimal(value, not isinstance(value, (np.float64, float))))
    elif isinstance(value, (np.integer, int)):
        writer.raw(str(int(value)))
    else:
        raise errors.invalid_argument(
            f"Failed to write JSON value for tensor type: {type(value).__name__}")


def _write_tensor(writer, array, as_bytes: bool):
    """Nested arrays for every dimension of `array`; a bare value for a scalar."""
    if not isinstance(array, np.ndarray):  # one element of an object (string) array
        _write_scalar(writer, array, as_bytes)
        return
    if array.ndim == 0:
        _write_scalar(writer, array[()], as_bytes)
        return
    writer.start_array()
    for item in array:
        if array.ndim == 1:
            _write_scalar(writer, item, as_bytes)
        else:
            _write_tensor(writer, item, as_bytes)
    writer.end_array()


def _is_bytes_output(name, array) -> bool:
    return array.dtype == object and name.endswith(BYTES_SUFFIX)


def encode_predict_response(outputs: dict, request_format: str) -> str:
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    writer = PrettyWriter()
    writer.start_object()
    multiple = len(names) > 1
    if request_format == ROW:
        batch_size = -1
        for name in names:
            if arrays[name].ndim == 0:
                raise errors.invalid_argument(f"Tensor name: {name} has no shape information ")
            current = arrays[name].shape[0]
            if batch_size >= 0 and batch_size != current:
                raise errors.invalid_argument(
                    f"Tensor name: {name} has inconsistent batch size: {current} expecting: "
                    f"{batch_size}")
            batch_size = current
        writer.string(PREDICTIONS_KEY)
        writer.start_array()
        for row in range(batch_size):
            if multiple:
                writer.start_object()
            writer.single_line_arrays = True
            for name in names:
                if multiple:
                    writer.string(name)
                _write_tensor(writer, arrays[name][row], _is_bytes_output(name, arrays[name]))
            writer.single_line_arrays = False
            if multiple:
                writer.end_object()
        writer.end_array()
    else:
        writer.string(OUTPUTS_KEY)
        if multiple:
            writer.start_object()
        for name in names:
            if multiple:
                writer.string(name)
            _write_tensor(writer, arrays[name], _is_bytes_output(name, arrays[name]))
        if multiple:
            writer.end_object()
    writer.end_object()
    return writer.text()


# --- classify / regress ---------------------------------------------------------------
def _feature_kind_error(name, kind) -> errors.ServingError:
    return errors.invalid_argument(
        f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_feature_value(value, name, kinds, feature_values):
    """Appends one JSON value to a feature; `kinds` holds the feature's kind once chosen."""
    def check_kind(kind):
        if kinds and kinds[0] != kind:
            raise _feature_kind_error(name, kinds[0])
        if not kinds:
            kinds.append(kind)

    if value is None or isinstance(value, list):
        raise errors.invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)}")
    if isinstance(value, bool):
        check_kind("int64")
        feature_values.append(1 if value else 0)
    elif isinstance(value, dict):
        if not _is_b64_object(value):
            raise errors.invalid_argument(
                f"Feature: {name} has element with unexpected JSON type: Object")
        check_kind("bytes")
        feature_values.append(_decode_b64(value))
    elif isinstance(value, str):
        check_kind("bytes")
        feature_values.append(value.encode("utf-8", errors="surrogateescape"))
    elif isinstance(value, float):
        check_kind("float")
        if not _is_lossless(value, 24, _FLOAT32_MAX):
            raise _lossy_error(value, "float")
        feature_values.append(value)
    else:
        check_kind("int64")
        if value > _INT64[1]:
            raise errors.invalid_argument(
                f"Feature: {name} has uint64 element. Only int64 is supported.")
        if value < _INT64[0]:
            raise _type_error(value, DT_INT64)
        feature_values.append(value)


def example_from_json(value):
    """A JSON object {feature: value | [values]} -> tf.train.Example (MakeExampleFromJsonObject)."""
    from tensorflow.core.example import example_pb2

    if not isinstance(value, dict):
        raise errors.invalid_argument(
            f"Example must be JSON object but got JSON {json_type_name(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        kinds, values = [], []
        for item in (content if isinstance(content, list) else [content]):
            _add_feature_value(item, name, kinds, values)
        feature = example.features.feature[name]
        if kinds == ["bytes"]:
            feature.bytes_list.value.extend(values)
        elif kinds == ["float"]:
            feature.float_list.value.extend(values)
        elif kinds == ["int64"]:
            feature.int64_list.value.extend(values)
    return example


def decode_examples_request(doc: dict) -> tuple:
    """A classify/regress request's (context tf.Example or None, [tf.Example])."""
    context = example_from_json(doc[CONTEXT_KEY]) if CONTEXT_KEY in doc else None
    if EXAMPLES_KEY not in doc:
        raise _format_error(doc, "When method is classify, key 'examples' is expected and was "
                                 "not found")
    examples = doc[EXAMPLES_KEY]
    if not isinstance(examples, list):
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    return context, [example_from_json(example) for example in examples]


def serialized_examples(context, examples) -> list:
    """The tensor a classify/regress signature takes: each example merged with the context.

    Concatenated serializations merge: the example's own features win over the context's.
    """
    prefix = context.SerializeToString() if context is not None else b""
    return [prefix + example.SerializeToString() for example in examples]


def encode_classify_response(classes, scores) -> str:
    rows = (classes if classes is not None else scores)
    if rows is None or len(rows) == 0:
        raise errors.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.string(RESULTS_KEY)
    writer.start_array()
    for i in range(len(rows)):
        writer.single_line_arrays = True
        writer.start_array()
        for c in range(rows.shape[1]):
            writer.start_array()
            label = classes[i, c] if classes is not None else b""
            if isinstance(label, bytes):
                label = label.decode("utf-8", errors="surrogateescape")
            writer.string(str(label))
            writer.raw(format_decimal(scores[i, c] if scores is not None else 0.0, True))
            writer.end_array()
        writer.end_array()
        writer.single_line_arrays = False
    writer.end_array()
    writer.end_object()
    return writer.text()


def encode_regress_response(values) -> str:
    if values is None or len(values) == 0:
        raise errors.invalid_argument("Cannot convert empty RegressionResults to JSON")
    writer = PrettyWriter()
    writer.start_object()
    writer.string(RESULTS_KEY)
    writer.single_line_arrays = True
    writer.start_array()
    for value in values:
        writer.raw(format_decimal(value, True))
    writer.end_array()
    writer.end_object()
    return writer.text()


def encode_error(message: str) -> str:
    writer = PrettyWriter()
    writer.start_object()
    writer.string("error")
    writer.string(message)
    writer.end_object()
    return writer.text()
