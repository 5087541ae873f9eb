"""Reads the server's text-proto config files: ModelServerConfig, BatchingParameters, MonitoringConfig.

ModelServerConfig comes from tensorflow-serving-api; the pip package lacks the other two
messages, so they are declared here with TF Serving's package, field names and types.
"""
from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from google.protobuf import message_factory
from tensorflow_serving.config import model_server_config_pb2

from serving import errors

TENSORFLOW_PLATFORM = "tensorflow"


def _declare_messages():
    """Builds tensorflow.serving.BatchingParameters and MonitoringConfig message classes."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(wrappers)
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="serving_local/config_messages.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])

    def add_message(name, fields):
        message = proto.message_type.add(name=name)
        for number, (field_name, field_type, type_name, repeated) in enumerate(fields, 1):
            field = message.field.add(
                name=field_name, number=number, type=field_type,
                label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name

    int64_value = ".google.protobuf.Int64Value"
    add_message("BatchingParameters", [
        ("max_batch_size", f.TYPE_MESSAGE, int64_value, False),
        ("batch_timeout_micros", f.TYPE_MESSAGE, int64_value, False),
        ("max_enqueued_batches", f.TYPE_MESSAGE, int64_value, False),
        ("num_batch_threads", f.TYPE_MESSAGE, int64_value, False),
        ("thread_pool_name", f.TYPE_MESSAGE, ".google.protobuf.StringValue", False),
        ("allowed_batch_sizes", f.TYPE_INT64, None, True),
        ("pad_variable_length_inputs", f.TYPE_BOOL, None, False),
        ("enable_large_batch_splitting", f.TYPE_MESSAGE, ".google.protobuf.BoolValue", False),
        ("max_execution_batch_size", f.TYPE_MESSAGE, int64_value, False),
    ])
    add_message("PrometheusConfig", [
        ("enable", f.TYPE_BOOL, None, False),
        ("path", f.TYPE_STRING, None, False),
    ])
    add_message("MonitoringConfig", [
        ("prometheus_config", f.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", False),
    ])
    pool.Add(proto)
    classes = {}
    for name in ("BatchingParameters", "PrometheusConfig", "MonitoringConfig"):
        descriptor = pool.FindMessageTypeByName(f"tensorflow.serving.{name}")
        classes[name] = message_factory.MessageFactory(pool).GetPrototype(descriptor)
    return classes


_MESSAGES = _declare_messages()
BatchingParameters = _MESSAGES["BatchingParameters"]
MonitoringConfig = _MESSAGES["MonitoringConfig"]
ModelServerConfig = model_server_config_pb2.ModelServerConfig


def parse_text_proto(path: str, message_class):
    """Parses a text proto file; ServingError INVALID_ARGUMENT if unreadable or malformed."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise errors.not_found(f"{path}; {e.strerror or e}") from None
    message = message_class()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise errors.invalid_argument(f"Invalid protobuf file: '{path}' ({e})") from None
    return message


def read_model_server_config(path: str):
    return parse_text_proto(path, ModelServerConfig)


def read_batching_parameters(path: str):
    return parse_text_proto(path, BatchingParameters)


def read_monitoring_config(path: str):
    return parse_text_proto(path, MonitoringConfig)


def single_model_config(model_name: str, base_path: str):
    """What --model_name/--model_base_path mean: one model, latest version policy."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def server_config_from_options(options):
    if options.model_config_file:
        return read_model_server_config(options.model_config_file)
    return single_model_config(options.model_name, options.model_base_path)
