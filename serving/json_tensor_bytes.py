"""A REST predict body written straight into the bytes of PredictRequest.inputs, for the
request log: the TensorProtos json_codec's arrays would serialize to, without the arrays.

The request log writer decodes every logged REST body again. Through json_codec and numpy
that cost ~60 us for taxi's 14 features, most of the writer's time per log; most bodies are
plain (numbers, strings, short lists), and for those the values can go from the parsed JSON
into the wire format directly. Anything else, including whatever the codec would refuse,
gives None and is left to the codec: this path never decides what a body means.
"""
import base64
import binascii
import struct

import orjson

from serving import json_codec, proto_codec

_ROW_KEY, _COLUMN_KEY, _B64_KEY = (json_codec.INSTANCES_KEY, json_codec.INPUTS_KEY,
                                   json_codec.BASE64_KEY)
# orjson, unlike json, reads an integer past 64 bits as a float; floats this large are left
# to the codec, which reads the body with json.
_LARGEST_TRUSTED_FLOAT = 2.0 ** 63


def parse_body(body: bytes):
    """The body as json.loads reads it, or None where orjson cannot tell (NaN, numbers too
    big, invalid text): the codec's parse_json then reads it, and decides."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return doc if type(doc) is dict else None


# --- values -> packed payloads: each None for anything but what the codec takes as is -------

def _floats(largest_int, pack_format):
    """-> payload(values): floats, and the integers the codec takes without loss of
    precision, packed as pack_format ("f" or "d")."""
    def payload(values):
        for value in values:
            kind = type(value)
            if kind is float:
                if not -_LARGEST_TRUSTED_FLOAT < value < _LARGEST_TRUSTED_FLOAT:
                    return None  # NaN too
            elif kind is not int or not -largest_int <= value <= largest_int:
                return None
        return packer(pack_format, len(values))(*values)
    return payload


_packers = {}  # (format, count) -> struct packing function


def packer(pack_format, count):
    """struct's packing function for count values of a struct format character,
    little-endian."""
    pack = _packers.get((pack_format, count))
    if pack is None:
        if len(_packers) >= 1024:
            _packers.clear()
        pack = _packers[pack_format, count] = struct.Struct(f"<{count}{pack_format}").pack
    return pack


def _integers(bits):
    """-> payload(values): integers (not bools) of a signed type of that many bits, as
    varints."""
    low, high = -2 ** (bits - 1), 2 ** (bits - 1)

    def payload(values):
        one_byte_each = True  # taxi's codes and counts
        for value in values:
            if type(value) is not int:
                return None
            if not 0 <= value < 128:
                if not low <= value < high:
                    return None
                one_byte_each = False
        return bytes(values) if one_byte_each else _varints(values)
    return payload


def _varints(values):
    varint = proto_codec.varint
    return b"".join([varint(value) for value in values])


def _bool_payload(values):
    for value in values:
        if type(value) is not bool:
            return None
    return bytes(values)


def _string_items(values):
    """Each string as its string_val field, or None."""
    tag, varint = _STRING_TAG, proto_codec.varint
    parts = []
    for value in values:
        if type(value) is str:
            item = value.encode("utf-8")
        elif type(value) is dict and len(value) == 1 and type(value.get(_B64_KEY)) is str:
            text = value[_B64_KEY].strip()
            try:
                item = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                return None
        else:
            return None
        parts += (tag, varint(len(item)), item)
    return b"".join(parts)


_STRING_TAG = proto_codec.value_field_tag("string_val")
# DataType -> (TensorProto values field tag, or None for strings; payload function).
_ENCODINGS = {
    json_codec.DT_FLOAT: (proto_codec.value_field_tag("float_val"), _floats(2 ** 24 - 1, "f")),
    json_codec.DT_DOUBLE: (proto_codec.value_field_tag("double_val"),
                           _floats(2 ** 53 - 1, "d")),
    json_codec.DT_INT32: (proto_codec.value_field_tag("int_val"), _integers(32)),
    json_codec.DT_INT64: (proto_codec.value_field_tag("int64_val"), _integers(64)),
    json_codec.DT_BOOL: (proto_codec.value_field_tag("bool_val"), _bool_payload),
    json_codec.DT_STRING: (None, _string_items),
}


# --- the body's shape ----------------------------------------------------------------------

def _is_b64(value) -> bool:
    return len(value) == 1 and type(value.get(_B64_KEY)) is str


def _flatten(item, out):
    """Appends a scalar, a list of scalars or a list of equally long lists of scalars to out
    -> its shape; None for anything else (deeper, empty or ragged: the codec's to judge)."""
    if type(item) is not list:
        out.append(item)
        return ()
    if not item:
        return None
    if type(item[0]) is not list:
        for value in item:
            if type(value) is list:
                return None
        out += item
        return (len(item),)
    width = len(item[0])
    if not width:
        return None
    for row in item:
        if type(row) is not list or len(row) != width:
            return None
        for value in row:
            if type(value) is list:
                return None
        out += row
    return (len(item), width)


def _row_columns(instances, names):
    """[(shape, flat values) of each name] of an "instances" list, or None."""
    first = instances[0]
    if type(first) is not dict or _is_b64(first):  # a list of one input's values
        if len(names) != 1:
            return None
        values, shape = [], None
        for instance in instances:
            if type(instance) is dict and not _is_b64(instance):
                return None
            item_shape = _flatten(instance, values)
            if item_shape is None or (shape is not None and item_shape != shape):
                return None
            shape = item_shape
        return [((len(instances),) + shape, values)]
    for instance in instances:  # objects naming every input once (and nothing else)
        if type(instance) is not dict or len(instance) != len(names) or _is_b64(instance):
            return None
    columns = []
    if len(instances) == 1:  # the usual request: one row, most items scalars
        for name in names:
            item = first.get(name, _MISSING)
            if type(item) is list:
                values = []
                shape = _flatten(item, values)
                if shape is None:
                    return None
                columns.append(((1,) + shape, values))
            elif item is _MISSING:
                return None
            else:
                columns.append((_ONE, [item]))
        return columns
    for name in names:
        values, shape = [], None
        for instance in instances:
            item = instance.get(name, _MISSING)
            if item is _MISSING:
                return None
            item_shape = _flatten(item, values)
            if item_shape is None or (shape is not None and item_shape != shape):
                return None
            shape = item_shape
        columns.append(((len(instances),) + shape, values))
    return columns


_ONE = (1,)
_MISSING = object()


def _named_columns(inputs, names):
    """[(shape, flat values) of each name] of an "inputs" value, or None."""
    if type(inputs) is not dict or _is_b64(inputs):
        if len(names) != 1:
            return None
        inputs = {names[0]: inputs}
    columns = []
    for name in names:
        item = inputs.get(name, _MISSING)
        if item is _MISSING:
            return None
        values = []
        shape = _flatten(item, values)
        if shape is None:
            return None
        columns.append((shape, values))
    return columns


# --- the inputs map ------------------------------------------------------------------------

class InputPlan:
    """What is fixed per signature: its inputs in the signature's map order (the order
    the writer's codec path writes them too), each with its dtype, its encoding (None: not
    one this path writes) and the serialized starts of its map entries, by shape and
    payload length; and the field number of the map (PredictRequest.inputs)."""

    def __init__(self, tensor_infos, field_number: int):
        self.field_number = field_number
        self.inputs = []
        for name in tensor_infos:
            dtype = tensor_infos[name].dtype
            values_tag, payload_of = _ENCODINGS.get(dtype, (None, None))
            self.inputs.append((name, dtype, values_tag, payload_of, {}))
        self.names = [name for name, *_ in self.inputs]
        self.covered = all(payload_of is not None for _, _, _, payload_of, _ in self.inputs)


_MAX_STARTS = 256  # an input's (shape, payload length) pairs remembered


def serialized_inputs(doc: dict, plan: InputPlan):
    """The inputs field of a PredictRequest as serialized_tensor_map writes the arrays
    json_codec.decode_predict_request makes of doc; None where this path does not cover
    the body (the caller decodes it with the codec)."""
    if not plan.covered or not plan.inputs:
        return None
    instances = doc.get(_ROW_KEY, _MISSING)
    inputs = doc.get(_COLUMN_KEY, _MISSING)
    if instances is not _MISSING:
        if inputs is not _MISSING or type(instances) is not list or not instances:
            return None
        columns = _row_columns(instances, plan.names)
    elif inputs is not _MISSING:
        columns = _named_columns(inputs, plan.names)
    else:
        return None
    if columns is None:
        return None
    parts = []
    for (name, dtype, values_tag, payload_of, starts), (shape, values) in zip(plan.inputs,
                                                                               columns):
        payload = payload_of(values)
        if payload is None:
            return None
        # All but the values depends on the shape and the payload's length only.
        start = starts.get((shape, len(payload)))
        if start is None:
            if len(starts) >= _MAX_STARTS:
                starts.clear()
            start = starts[shape, len(payload)] = proto_codec.tensor_map_entry_start(
                plan.field_number, name, dtype, shape, values_tag, len(payload))
        parts += (start, payload)
    return b"".join(parts)
